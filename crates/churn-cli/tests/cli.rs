//! The `churn` binary as users run it: subcommands, JSON summaries, exit codes, the demo.

use churn_test_kit::{Churn, repo_root, s};

const CHURN: Churn = Churn::new(env!("CARGO_BIN_EXE_churn"));

#[test]
fn help_documents_every_subcommand() {
    let out = CHURN.run(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    // The Commands section: one `  name  description` line per subcommand.
    let listed: Vec<(String, String)> = text
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| {
            let l = l.trim_start();
            let (name, description) = l.split_once(' ')?;
            Some((name.to_string(), description.trim().to_string()))
        })
        .collect();
    let names: Vec<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "demo",
            "generate",
            "ingest",
            "features",
            "labels",
            "run",
            "runs",
            "stream",
            "train",
            "score",
            "segment",
            "triggers",
            "export",
            "campaigns",
            "report",
            "models",
            "btyd",
            "sql",
            "bench",
            "engine",
            "help"
        ],
        "{text}"
    );
    for (name, description) in &listed {
        assert!(!description.is_empty(), "{name} has no description");
    }
}

#[test]
fn generate_then_ingest_reports_counts_that_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let generated = CHURN.json(&[
        "generate",
        "--customers",
        "150",
        "--seed",
        "2",
        "--days",
        "200",
        "--mess",
        "--json",
        "--out",
        s(&store),
    ]);
    let mess = &generated["mess"];
    let lake = dir.path().join("lake");
    let csv = store.join("transactions.csv");
    let summary = CHURN.json(&[
        "ingest",
        "--json",
        "--lake",
        s(&lake),
        "--table",
        "transactions",
        "--source",
        s(&csv),
        "--max-reject-ratio",
        "0.2",
    ]);
    assert_eq!(summary["rows_read"], mess["data_lines"]);
    assert_eq!(summary["accepted"], mess["expected_accepted"]);
    assert_eq!(summary["rejected"], mess["expected_rejected"]);
    assert_eq!(summary["duplicates"], mess["expected_duplicates"]);
    let manifest = lake.join(summary["manifest"].as_str().unwrap());
    let recorded: serde_json::Value =
        serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
    assert_eq!(recorded["accepted"], summary["accepted"]);

    let out = CHURN.run(&[
        "sql",
        "--lake",
        s(&lake),
        "--format",
        "csv",
        "SELECT count(*) AS n FROM transactions",
    ]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("n\n{}\n", summary["accepted"])
    );
}

#[test]
fn configuration_errors_exit_with_code_2_and_name_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let out = CHURN.run(&[
        "ingest",
        "--lake",
        s(&lake),
        "--table",
        "orders",
        "--source",
        "x.csv",
        "--timezone",
        "Mars/Base",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("orders") && err.contains("Mars/Base"), "{err}");

    let out = CHURN.run(&[
        "ingest",
        "--lake",
        s(&lake),
        "--table",
        "transactions",
        "--source",
        s(&dir.path().join("none/*.csv")),
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[lake]\npath = 'x'\n[sources.a]\ntable = 'transactions'\npath = 'a.csv'\ncolour = 'red'\n",
    )
    .unwrap();
    let out = CHURN.run(&["run", s(&bad), "--as-of", "2024-01-01"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("colour"));
}

#[test]
fn too_many_rejected_rows_exit_with_code_3() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("t.csv");
    std::fs::write(
        &csv,
        "transaction_id,customer_id,ts,amount\nT1,C1,2024-01-01,abc\nT2,C1,2024-01-02,5\n",
    )
    .unwrap();
    let out = CHURN.run(&[
        "ingest",
        "--lake",
        s(&dir.path().join("lake")),
        "--table",
        "transactions",
        "--source",
        s(&csv),
    ]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("non_numeric: 1"), "{err}");
}

#[test]
fn the_demo_builds_the_lake_from_the_committed_files() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("demo-lake");
    let root = repo_root();
    let summary = CHURN.json(&[
        "demo",
        "--json",
        "--pipeline",
        s(&root.join("pipelines/demo.toml")),
        "--lake",
        s(&lake),
    ]);
    let steps = summary["steps"].as_array().unwrap();
    let lines = |name: &str| {
        std::fs::read_to_string(root.join("data/demo").join(name))
            .unwrap()
            .lines()
            .count() as u64
            - 1
    };
    let by_source =
        |name: &str| steps.iter().find(|s| s["name"] == name).unwrap()["summary"].clone();
    assert_eq!(
        by_source("transactions")["accepted"],
        lines("transactions.csv")
    );
    assert_eq!(by_source("customers")["accepted"], lines("customers.csv"));
    assert_eq!(
        by_source("campaign_events")["accepted"],
        lines("campaign_events.csv")
    );
    // The Chinese till export holds the same transactions: all duplicates.
    let cn = by_source("till_export_cn");
    assert_eq!(
        (cn["accepted"].as_u64(), cn["duplicates"].as_u64()),
        (Some(0), Some(lines("transactions.csv")))
    );
    assert!(lake.join(summary["manifest"].as_str().unwrap()).exists());
    // Features of the run's date and labels of the date a horizon earlier follow the ingest.
    let features = steps.iter().find(|s| s["step"] == "features").unwrap();
    assert_eq!(features["name"], "2026-11-01");
    assert!(
        features["summary"]["snapshots"][0]["customers"]
            .as_u64()
            .unwrap()
            > 1000
    );
    let labels = steps.iter().find(|s| s["step"] == "labels").unwrap();
    assert_eq!(labels["name"], "2026-08-03");
    assert!(
        labels["summary"]["snapshots"][0]["churned"]
            .as_u64()
            .unwrap()
            > 100
    );
    // Running it again rebuilds rather than failing or doubling.
    let again = CHURN.json(&[
        "demo",
        "--json",
        "--pipeline",
        s(&root.join("pipelines/demo.toml")),
        "--lake",
        s(&lake),
    ]);
    assert_eq!(
        again["steps"][0]["summary"]["accepted"],
        lines("transactions.csv")
    );
}

#[test]
fn a_backfill_runs_each_date_in_order_and_runs_lists_and_shows_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tx.csv"),
        "transaction_id,customer_id,ts,amount\n\
         t1,c1,2026-01-05 10:00:00,10.00\n\
         t2,c1,2026-02-10 10:00:00,20.00\n\
         t3,c2,2026-03-20 10:00:00,30.00\n",
    )
    .unwrap();
    let pipeline = dir.path().join("p.toml");
    std::fs::write(
        &pipeline,
        "[lake]\npath = \"lake\"\ntimezone = \"UTC\"\n\
         [sources.tx]\ntable = \"transactions\"\npath = \"tx.csv\"\n\
         [features]\nlookback_days = 365\n",
    )
    .unwrap();
    let backfill = CHURN.json(&[
        "run",
        s(&pipeline),
        "--from",
        "2026-04-01",
        "--to",
        "2026-04-03",
        "--json",
    ]);
    assert_eq!(backfill["kind"], "backfill");
    let dates: Vec<&str> = backfill["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["as_of"].as_str().unwrap())
        .collect();
    assert_eq!(dates, ["2026-04-01", "2026-04-02", "2026-04-03"]);
    // Only the first date found new rows.
    let accepted: Vec<u64> = backfill["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["steps"][0]["summary"]["accepted"].as_u64().unwrap())
        .collect();
    assert_eq!(accepted, [3, 0, 0]);

    let lake = dir.path().join("lake");
    let listed = CHURN.json(&["runs", "list", "--lake", s(&lake), "--json"]);
    let listed: Vec<(&str, &str)> = listed["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["as_of"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [
            ("2026-04-03", "succeeded"),
            ("2026-04-02", "succeeded"),
            ("2026-04-01", "succeeded")
        ]
    );
    let shown = CHURN.ok(&["runs", "show", "--lake", s(&lake), "latest"]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains("2026-04-03") && text.contains("features") && text.contains("sha256"),
        "{text}"
    );
    // A run that does not exist is a usage error.
    let missing = CHURN.run(&["runs", "show", "--lake", s(&lake), "run-nope"]);
    assert_eq!(missing.status.code(), Some(2));
    // --from after --to is a usage error.
    let reversed = CHURN.run(&[
        "run",
        s(&pipeline),
        "--from",
        "2026-04-03",
        "--to",
        "2026-04-01",
    ]);
    assert_eq!(reversed.status.code(), Some(2));
}

/// Every row of `table` in `lake` as CSV lines, sorted.
fn table_rows(lake: &std::path::Path, table: &str) -> Vec<String> {
    let csv = String::from_utf8(CHURN.sql_csv(lake, &format!("SELECT * FROM {table}"))).unwrap();
    let mut rows: Vec<String> = csv.lines().map(str::to_string).collect();
    rows.sort();
    rows
}

/// Kill -9 at pseudo-random moments of `churn run` (a fixed walk, so a failure replays), each
/// time resumed, then a last resume: the lake's tables and every output of the date equal an
/// uninterrupted run's, byte for byte.
#[test]
fn kill_9_at_random_moments_of_a_run_then_resume_leaves_the_lake_of_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pipeline = repo_root().join("pipelines/demo.toml");
    let run = |lake: &std::path::Path| {
        let mut cmd = CHURN.command();
        cmd.args([
            "run",
            s(&pipeline),
            "--as-of",
            "2026-11-01",
            "--lake",
            s(lake),
            "--resume",
            "--json",
        ]);
        cmd
    };
    let reference = dir.join("uninterrupted");
    let timed = std::time::Instant::now();
    let out = run(&reference).output().unwrap();
    assert!(out.status.success(), "{}", churn_test_kit::stderr(&out));
    // Kills land within the first third of an uninterrupted run, however fast it has become:
    // each resumed run is shorter than the one before, and one that finishes ends the walk.
    let run_ms = (timed.elapsed().as_millis() as u64).max(1000);

    // Kill moments (ms after start) from a fixed linear congruential walk, so that a failure
    // can be replayed.
    let lake = dir.join("killed");
    let (mut x, mut kills) = (11u64, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
    for _ in 0..6 {
        x = (x * 1_103_515_245 + 12_345) % (1 << 31);
        let after = std::time::Duration::from_millis(300 + x % (run_ms / 3));
        let mut child = run(&lake)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while started.elapsed() < after && child.try_wait().unwrap().is_none() {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
        if std::time::Instant::now() > deadline {
            break;
        }
    }
    assert!(kills >= 3, "only {kills} runs were killed mid-way");
    let last = run(&lake).output().unwrap();
    assert!(last.status.success(), "{}", churn_test_kit::stderr(&last));

    // (The demo store is clean: there is no quarantine to compare.)
    for table in ["transactions", "customers", "campaign_events"] {
        assert!(
            table_rows(&lake, table) == table_rows(&reference, table),
            "{table} differs"
        );
    }
    for folder in [
        "features/as_of=2026-11-01",
        "labels/as_of=2026-08-03",
        "scores/as_of=2026-11-01",
        "segments/as_of=2026-11-01",
        "triggers/as_of=2026-11-01",
        "exports/as_of=2026-11-01",
        "campaign_assignments/as_of=2026-11-01",
        "_models/churn",
    ] {
        let ours = churn_test_kit::output_files(&lake.join(folder));
        let theirs = churn_test_kit::output_files(&reference.join(folder));
        assert_eq!(
            ours.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            theirs.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            "{folder}: other files"
        );
        for ((path, a), (_, b)) in ours.iter().zip(&theirs) {
            if path.ends_with("metrics.json") {
                continue; // timings
            }
            assert!(
                a == b,
                "{folder}/{path} differs from the uninterrupted run's"
            );
        }
    }
}

/// The next night's run (ingest, features, labels, score with the registered model, segments,
/// rules, exports, marts and report) under a memory budget that makes its queries spill
/// writes what an unlimited run writes, read by DuckDB; a budget too small for the queries is
/// an error that names the memory limit.
#[test]
fn a_nightly_run_under_a_memory_limit_writes_what_an_unlimited_run_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pipeline = repo_root().join("pipelines/demo.toml");
    let run = |lake: &std::path::Path, as_of: &str, limit: &[&str]| {
        let mut args = vec!["run", s(&pipeline), "--as-of", as_of, "--lake", s(lake)];
        args.extend(["--json"].iter().chain(limit));
        CHURN.run(&args)
    };
    // The first night trains and registers the model; the next one scores with it.
    let trained = dir.join("trained");
    let out = run(&trained, "2026-11-01", &[]);
    assert!(out.status.success(), "{}", churn_test_kit::stderr(&out));
    let (unlimited, limited, starved) = (dir.join("u"), dir.join("l"), dir.join("s"));
    for lake in [&unlimited, &limited, &starved] {
        churn_test_kit::copy_dir(&trained, lake);
    }
    let next_night = |lake: &std::path::Path, limit: &[&str]| {
        let out = run(lake, "2026-11-02", limit);
        assert!(out.status.success(), "{}", churn_test_kit::stderr(&out));
        let summary = churn_test_kit::json_of(&out);
        let train = summary["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|step| step["step"] == "train")
            .unwrap();
        assert_eq!(train["summary"]["train"], false, "trained again: {train}");
    };
    next_night(&unlimited, &[]);
    next_night(&limited, &["--memory-limit", "16MiB"]);

    let folders = churn_test_kit::derived_table_folders(&unlimited);
    churn_test_kit::assert_same_lake_tables(&unlimited, &limited, &folders, &[]);
    let exports = churn_test_kit::output_files(&unlimited.join("exports/as_of=2026-11-02"));
    assert!(
        !exports.is_empty()
            && exports == churn_test_kit::output_files(&limited.join("exports/as_of=2026-11-02")),
        "the campaign exports differ"
    );

    let out = run(&starved, "2026-11-02", &["--memory-limit", "1MiB"]);
    assert!(!out.status.success());
    let error = churn_test_kit::stderr(&out);
    assert!(error.contains("memory"), "{error}");
}

/// `churn run` shows a bar of its steps when stderr is a terminal (here a pseudo-terminal
/// from `script`), and nothing of the kind when it is not, or under `--json`.
#[test]
fn a_run_draws_a_progress_bar_on_a_terminal_only() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("p.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[lake]\npath = \"lake\"\ntimezone = \"UTC\"\n\n[sources.transactions]\ntable = \"transactions\"\npath = {:?}\n\n[features]\n",
            s(&repo_root().join("data/demo/transactions.csv"))
        ),
    )
    .unwrap();
    let command = format!(
        "{} run {} --as-of 2026-11-01",
        env!("CARGO_BIN_EXE_churn"),
        s(&pipeline)
    );
    let on_terminal = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .expect("script (util-linux) runs the command on a pseudo-terminal");
    assert!(on_terminal.status.success(), "{on_terminal:?}");
    let drawn = String::from_utf8_lossy(&on_terminal.stdout);
    assert!(drawn.contains("steps: ingest:transactions"), "{drawn}");
    assert!(drawn.contains("steps: features"), "{drawn}");

    for extra in [&[][..], &["--json"][..]] {
        let mut args = vec!["run", s(&pipeline), "--as-of", "2026-11-01"];
        args.extend_from_slice(extra);
        let out = CHURN.ok(&args);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.contains("steps:"), "a bar off a terminal: {all}");
    }
}
