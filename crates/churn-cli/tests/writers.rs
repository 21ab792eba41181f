//! One writer per lake: a command that writes waits for, or refuses, a lake another writer
//! holds (exit code 75, naming the holder); a lease left by a writer that died is taken over;
//! writers started together commit one after another, so no row lands twice.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use churn_test_kit::{Churn, s, stderr};

const CHURN: Churn = Churn::new(env!("CARGO_BIN_EXE_churn"));

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// Writes lease generation `generation` into `lake` as another holder would.
fn place_lease(lake: &Path, generation: u64, pid: u32, expires_in_ms: i64, released: bool) {
    let dir = lake.join("_lease");
    std::fs::create_dir_all(&dir).unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let record = serde_json::json!({
        "generation": generation,
        "holder": "churn run (nightly)",
        "host": host_name(),
        "pid": pid,
        "acquired_at": "2026-12-02T00:00:00+00:00",
        "expires_at_unix_ms": now_ms + expires_in_ms,
        "released": released,
    });
    std::fs::write(
        dir.join(format!("{generation:020}.json")),
        serde_json::to_vec(&record).unwrap(),
    )
    .unwrap();
}

/// The lease files of `lake` as (generation, record), oldest first.
fn leases(lake: &Path) -> Vec<(u64, serde_json::Value)> {
    let mut out: Vec<(u64, serde_json::Value)> = std::fs::read_dir(lake.join("_lease"))
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let generation = path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
            let record = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            (generation, record)
        })
        .collect();
    out.sort_by_key(|(g, _)| *g);
    out
}

/// A generated store's transactions file.
fn transactions(dir: &Path) -> PathBuf {
    let store = dir.join("store");
    CHURN.generate(
        &store,
        &["--customers", "120", "--seed", "5", "--days", "150"],
    );
    store.join("transactions.csv")
}

fn ingest(lake: &Path, source: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "ingest",
        "--json",
        "--lake",
        s(lake),
        "--table",
        "transactions",
        "--source",
        s(source),
        "--timezone",
        "UTC",
    ];
    args.extend_from_slice(extra);
    CHURN.run(&args)
}

fn source_rows(source: &Path) -> u64 {
    csv::Reader::from_path(source).unwrap().records().count() as u64
}

fn lake_rows(lake: &Path) -> u64 {
    let out = CHURN.ok(&[
        "sql",
        "--lake",
        s(lake),
        "--format",
        "csv",
        "SELECT count(*) AS n FROM transactions",
    ]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_held_lake_refuses_a_second_writer_with_exit_75_and_lets_it_through_once_released() {
    let dir = tempfile::tempdir().unwrap();
    let source = transactions(dir.path());
    let lake = dir.path().join("lake");
    // A live holder: this test process, on this host, for the next ten minutes.
    place_lease(&lake, 1, std::process::id(), 600_000, false);

    let refused = ingest(&lake, &source, &["--wait-secs", "0"]);
    assert_eq!(refused.status.code(), Some(75), "{}", stderr(&refused));
    let message = stderr(&refused);
    assert!(
        message.contains("busy") && message.contains("churn run (nightly)"),
        "{message}"
    );
    assert!(!lake.join("transactions").exists(), "nothing was written");
    // Readers are never blocked by a writer.
    CHURN.ok(&["sql", "--lake", s(&lake), "SELECT 1 AS one"]);

    // The holder finishes a second later; a writer told to wait proceeds then.
    let releaser = {
        let lake = lake.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1500));
            place_lease(&lake, 1, std::process::id(), 0, true);
        })
    };
    let started = Instant::now();
    let waited = ingest(&lake, &source, &["--wait-secs", "60"]);
    releaser.join().unwrap();
    assert!(waited.status.success(), "{}", stderr(&waited));
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert_eq!(lake_rows(&lake), source_rows(&source));
    // The writer took generation 2, removed the older file and released its own.
    let files = leases(&lake);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].0, 2);
    assert_eq!(files[0].1["holder"], "churn ingest");
    assert_eq!(files[0].1["released"], true);
}

#[test]
fn a_lease_left_by_a_writer_killed_on_this_host_is_taken_over_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let source = transactions(dir.path());
    let lake = dir.path().join("lake");
    // A writer that was killed: its process is gone, its lease would last another ten minutes.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    place_lease(&lake, 4, pid, 600_000, false);
    let out = ingest(&lake, &source, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("stale"), "{}", stderr(&out));
    assert_eq!(leases(&lake)[0].0, 5);
}

#[test]
fn writers_started_together_commit_one_after_another_and_no_row_lands_twice() {
    let dir = tempfile::tempdir().unwrap();
    let source = transactions(dir.path());
    let lake = dir.path().join("lake");
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let (lake, source) = (lake.clone(), source.clone());
            std::thread::spawn(move || ingest(&lake, &source, &["--wait-secs", "120"]))
        })
        .collect();
    let mut accepted = 0;
    for w in writers {
        let out = w.join().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        accepted += summary["accepted"].as_u64().unwrap();
    }
    // Exactly one of them found the rows new; the others found them already in the lake.
    let rows = source_rows(&source);
    assert_eq!(accepted, rows);
    assert_eq!(lake_rows(&lake), rows);
    assert_eq!(leases(&lake).len(), 1);

    // Without waiting, a writer that meets another one exits 75 and writes nothing.
    let writers: Vec<_> = (0..3)
        .map(|_| {
            let (lake, source) = (lake.clone(), source.clone());
            std::thread::spawn(move || ingest(&lake, &source, &["--wait-secs", "0"]))
        })
        .collect();
    for w in writers {
        let code = w.join().unwrap().status.code();
        assert!(matches!(code, Some(0) | Some(75)), "{code:?}");
    }
    assert_eq!(lake_rows(&lake), rows);
}
