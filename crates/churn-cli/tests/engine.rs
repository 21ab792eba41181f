//! Feature building, labels and scoring on Apache DataFusion Ballista: a scheduler and an
//! executor inside the `churn` process (`ballista-standalone`), and a scheduler and an
//! executor as separate processes on loopback (`churn engine scheduler|executor`). Their
//! outputs are compared with the local engine's row for row by pandas reading both with
//! DuckDB, so neither side's reader is ours.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use churn_test_kit::{Churn, copy_dir, listens_on, python_stdout, s, stderr};

const CHURN: Churn = Churn::new(env!("CARGO_BIN_EXE_churn"));

/// The date scored, and the labelled snapshot date (its 90-day horizon ends in the data).
const AS_OF: &str = "2026-11-01";
const LABELLED: &str = "2026-08-03";

/// The demo lake with a logistic model registered (trained in this process: training stays
/// on the client with any engine).
fn trained_demo_lake(dir: &Path) -> PathBuf {
    let lake = CHURN.demo_lake(dir);
    let model = dir.join("plain-logistic.toml");
    std::fs::write(
        &model,
        "algorithm = \"logistic\"\n[training]\nsnapshots = 2\n\
         [features]\ninclude = [\"*\"]\nexclude = [\"tier\"]\n",
    )
    .unwrap();
    CHURN.ok(&[
        "train",
        "--lake",
        s(&lake),
        "--model",
        s(&model),
        "--as-of",
        LABELLED,
    ]);
    lake
}

/// A copy of `lake` that `churn` then scores (building the snapshot of D) and labels on
/// `engine`.
fn score_and_label_on(dir: &Path, lake: &Path, name: &str, engine: &str) -> PathBuf {
    let copy = dir.join(name);
    copy_dir(lake, &copy);
    let scored = CHURN.json(&[
        "score",
        "--json",
        "--lake",
        s(&copy),
        "--as-of",
        AS_OF,
        "--model",
        "plain-logistic",
        "--engine",
        engine,
    ]);
    assert_eq!(scored["built_features"], true, "{scored}");
    CHURN.ok(&[
        "labels",
        "--lake",
        s(&copy),
        "--as-of",
        LABELLED,
        "--engine",
        engine,
    ]);
    copy
}

/// Asserts that the Parquet files of `folder` hold the same rows in both lakes: same columns,
/// same customers, equal values (doubles to 1e-12 relative: a distributed sum may add in
/// another order), as pandas sees them through DuckDB.
fn assert_same_rows(local: &Path, other: &Path, folder: &str) {
    let script = r#"
import sys, duckdb, pandas
def read(lake):
    frame = duckdb.sql(f"SELECT * FROM read_parquet('{lake}/{sys.argv[3]}/*.parquet')").df()
    return frame.sort_values("customer_id").reset_index(drop=True)
a, b = read(sys.argv[1]), read(sys.argv[2])
assert len(a) > 100, f"only {len(a)} rows"
pandas.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12, atol=0)
print(len(a))
"#;
    let rows = python_stdout(["-c", script, s(local), s(other), folder]);
    assert!(rows.trim().parse::<u64>().unwrap() > 100, "{rows}");
}

#[test]
fn features_labels_and_scores_on_ballista_standalone_equal_the_local_engines_row_for_row() {
    let dir = tempfile::tempdir().unwrap();
    let lake = trained_demo_lake(dir.path());
    let local = score_and_label_on(dir.path(), &lake, "local", "local");
    let ballista = score_and_label_on(dir.path(), &lake, "ballista", "ballista-standalone");
    for folder in [
        format!("features/as_of={AS_OF}"),
        format!("scores/as_of={AS_OF}"),
        format!("labels/as_of={LABELLED}"),
    ] {
        assert_same_rows(&local, &ballista, &folder);
    }
}

/// `N` distinct free loopback ports. Their listeners are held until all are chosen: taken
/// one at a time, the system could hand out a port just let go again.
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|k| listeners[k].local_addr().unwrap().port())
}

/// A `churn engine …` process, killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `churn engine ARGS` and waits until `port` accepts connections.
fn start(args: &[&str], port: u16) -> Process {
    let child = CHURN
        .command()
        .arg("engine")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut process = Process(child);
    let started = Instant::now();
    while !listens_on(port) {
        assert!(
            process.0.try_wait().unwrap().is_none(),
            "churn engine {args:?} exited"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "churn engine {args:?} did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    process
}

#[test]
fn features_on_a_scheduler_and_an_executor_in_their_own_processes_equal_the_local_engines() {
    let dir = tempfile::tempdir().unwrap();
    let lake = CHURN.demo_lake(dir.path());
    let [scheduler_port, flight, grpc] = free_ports();
    let scheduler = format!("127.0.0.1:{scheduler_port}");
    let _scheduler = start(&["scheduler", "--bind", &scheduler], scheduler_port);
    let _executor = start(
        &[
            "executor",
            "--scheduler",
            &scheduler,
            "--flight-port",
            &flight.to_string(),
            "--grpc-port",
            &grpc.to_string(),
            "--concurrent-tasks",
            "2",
        ],
        flight,
    );
    let remote = dir.path().join("remote");
    copy_dir(&lake, &remote);
    for (at, engine) in [
        (&lake, "local".to_string()),
        (&remote, format!("ballista://{scheduler}")),
    ] {
        CHURN.ok(&[
            "features",
            "--lake",
            s(at),
            "--as-of",
            AS_OF,
            "--engine",
            &engine,
        ]);
    }
    assert_same_rows(&lake, &remote, &format!("features/as_of={AS_OF}"));
}

#[test]
fn a_scheduler_nobody_answers_at_is_a_config_error_naming_it_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let lake = CHURN.demo_lake(dir.path());
    let [port] = free_ports();
    let unanswered = format!("ballista://127.0.0.1:{port}");
    for (engine, named) in [
        (unanswered.as_str(), unanswered.as_str()),
        ("spark://x:1", "ballista://HOST:PORT"),
    ] {
        let out = CHURN.run(&[
            "features",
            "--lake",
            s(&lake),
            "--as-of",
            AS_OF,
            "--engine",
            engine,
        ]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains(named), "{}", stderr(&out));
        assert!(!lake.join("features").exists());
    }
}
