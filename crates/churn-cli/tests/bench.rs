//! `churn bench` end to end on a small store: both sides run on the same input and report
//! the same rows, counted independently from the generated files.

use churn_test_kit::{Churn, python, s};

const CHURN: Churn = Churn::new(env!("CARGO_BIN_EXE_churn"));

/// Data lines of a CSV file, read with a CSV parser.
fn csv_rows(path: &std::path::Path) -> u64 {
    csv::Reader::from_path(path).unwrap().records().count() as u64
}

/// The run of median wall time among `runs` (JSON of measured runs), computed here on its own.
fn median_by_wall(runs: &[&serde_json::Value]) -> serde_json::Value {
    let mut runs: Vec<&serde_json::Value> = runs.to_vec();
    runs.sort_by(|a, b| {
        let wall = |m: &serde_json::Value| m["wall_seconds"].as_f64().unwrap();
        wall(a).partial_cmp(&wall(b)).unwrap()
    });
    runs[(runs.len() - 1) / 2].clone()
}

/// Checks that the throughput ratio of ingest figures (or of one round) is churn's rows per
/// second over DuckDB's.
fn assert_ratio_is_churn_over_duckdb(figures: &serde_json::Value) {
    let ratio = figures["churn"]["rows_per_second"].as_f64().unwrap()
        / figures["duckdb"]["rows_per_second"].as_f64().unwrap();
    let reported = figures["throughput_ratio_churn_over_duckdb"]
        .as_f64()
        .unwrap();
    assert!((ratio - reported).abs() < 1e-9 * ratio, "{figures}");
}

/// Checks that an ingest benchmark's figures have `rounds` rounds and that each side's figure
/// is its median round.
fn assert_each_side_is_its_median_round(ingest: &serde_json::Value, rounds: usize) {
    let done = ingest["rounds"].as_array().unwrap();
    assert_eq!(done.len(), rounds, "{ingest}");
    for side in ["churn", "duckdb"] {
        let runs: Vec<&serde_json::Value> = done.iter().map(|round| &round[side]).collect();
        assert_eq!(ingest[side], median_by_wall(&runs), "{side}: {ingest}");
    }
}

#[test]
fn bench_ingest_times_churn_with_the_memory_settings_given_and_duckdb_on_every_transaction() {
    let work = tempfile::tempdir().unwrap();
    let python = python();
    let figures = CHURN.json(&[
        "bench",
        "ingest",
        "--json",
        "--customers",
        "300",
        "--work",
        s(work.path()),
        "--python",
        &python,
        "--repeat",
        "3",
    ]);
    // Three rounds, each side's figure its median round, the ratio the medians' (below).
    assert_each_side_is_its_median_round(&figures, 3);
    for round in figures["rounds"].as_array().unwrap() {
        assert_ratio_is_churn_over_duckdb(round);
    }
    let transactions = csv_rows(&work.path().join("store-300-1/transactions.csv"));
    assert!(transactions > 1000);
    assert_eq!(figures["kind"], "bench_ingest");
    assert_eq!(figures["churn"]["rows"], transactions);
    assert_eq!(figures["duckdb"]["rows"], transactions);
    assert_ratio_is_churn_over_duckdb(&figures);
    assert_eq!(figures["spilled_runs"], 0, "{figures}");

    // The ingest's memory settings reach the timed ingest: with small buffers and no run
    // memory it spills runs, and loads every row. (A buffer fills a CSV block of records at a
    // time, 32,768, so the store has more transactions than one block.)
    let spilling = CHURN.json(&[
        "bench",
        "ingest",
        "--json",
        "--customers",
        "3000",
        "--work",
        s(work.path()),
        "--python",
        &python,
        "--buffer-rows",
        "200",
        "--run-memory-mib",
        "0",
    ]);
    let transactions = csv_rows(&work.path().join("store-3000-1/transactions.csv"));
    assert!(transactions > 32_768);
    assert!(spilling["spilled_runs"].as_u64().unwrap() > 0, "{spilling}");
    assert_eq!(spilling["churn"]["rows"], transactions);
    assert_eq!(spilling["duckdb"]["rows"], transactions);
}

#[test]
fn bench_features_builds_the_same_population_with_churn_and_the_duckdb_reference() {
    let work = tempfile::tempdir().unwrap();
    let python = python();
    let figures = CHURN.json(&[
        "bench",
        "features",
        "--json",
        "--customers",
        "300",
        "--work",
        s(work.path()),
        "--python",
        &python,
        "--as-of",
        "2026-06-01",
    ]);
    assert_eq!(figures["kind"], "bench_features");
    let population = figures["churn"]["rows"].as_u64().unwrap();
    assert!(population > 100, "{figures}");
    assert_eq!(figures["duckdb"]["rows"], population);
    // The reference's own output file, one line per customer after the header.
    assert_eq!(
        csv_rows(&work.path().join("duckdb-features.csv")),
        population
    );
}

#[test]
fn bench_btyd_fits_each_model_to_lifetimes_estimates_on_the_same_customers() {
    let work = tempfile::tempdir().unwrap();
    let python = python();
    let figures = CHURN.json(&[
        "bench",
        "btyd",
        "--json",
        "--customers",
        "400",
        "--work",
        s(work.path()),
        "--python",
        &python,
    ]);
    assert_eq!(figures["kind"], "bench_btyd");
    let models = figures["models"].as_array().unwrap();
    assert_eq!(models.len(), 3, "{figures}");
    // DuckDB's summaries (lifetimes' input) and churn's have the same customers.
    let customers = figures["lifetimes_customers"].as_u64().unwrap();
    assert!(customers > 200, "{figures}");
    for m in models {
        if m["model"] != "gamma-gamma" {
            assert_eq!(m["customers"], customers, "{m}");
        }
        let difference = m["max_relative_parameter_difference"].as_f64().unwrap();
        assert!(difference < 1e-3, "{m}");
        assert!(m["churn_fit_seconds"].as_f64().unwrap() >= 0.0);
        assert!(m["lifetimes_fit_seconds"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn bench_stream_gives_every_landed_files_customers_a_live_score() {
    let work = tempfile::tempdir().unwrap();
    let figures = CHURN.json(&[
        "bench",
        "stream",
        "--json",
        "--customers",
        "2000",
        "--work",
        s(work.path()),
        "--rows",
        "60",
        "--files",
        "2",
        "--burst-files",
        "3",
    ]);
    assert_eq!(figures["kind"], "bench_stream");
    assert!(
        figures["nightly_customers"].as_u64().unwrap() > 500,
        "{figures}"
    );
    let landing = work.path().join("stream-landing");
    let one_by_one = figures["one_by_one"].as_array().unwrap();
    assert_eq!(one_by_one.len(), 2, "{figures}");
    for (k, file) in one_by_one.iter().enumerate() {
        // Every buyer of the file is in the population of the next day: all are scored.
        let mut reader = csv::Reader::from_path(landing.join(format!("till-{k:04}.csv"))).unwrap();
        let customers: std::collections::BTreeSet<String> = reader
            .records()
            .map(|r| r.unwrap()[1].to_string())
            .collect();
        assert_eq!(file["rows"], 60, "{file}");
        assert_eq!(file["customers_scored"], customers.len() as u64, "{file}");
        let (commit, live) = (
            file["commit_lag_seconds"].as_f64().unwrap(),
            file["live_lag_seconds"].as_f64().unwrap(),
        );
        assert!(0.0 <= commit && commit <= live, "{file}");
    }
    assert_eq!(figures["burst_rows"], 180, "{figures}");
    assert!(figures["burst_rows_per_second"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_all_summarises_every_step_with_the_figures_its_benchmark_measured() {
    let work = tempfile::tempdir().unwrap();
    let python = python();
    let figures = CHURN.json(&[
        "bench",
        "all",
        "--json",
        "--customers",
        "2000",
        "--work",
        s(work.path()),
        "--python",
        &python,
        "--stream-rows",
        "60",
        "--stream-files",
        "2",
        "--stream-burst-files",
        "2",
    ]);
    assert_eq!(figures["kind"], "all");
    let summary = figures["summary"].as_array().unwrap();
    let row = |step: &str| {
        summary
            .iter()
            .find(|r| r["step"].as_str().unwrap().starts_with(step))
            .unwrap_or_else(|| panic!("no row {step:?}: {figures}"))
    };
    let same = |row: &serde_json::Value, churn: &serde_json::Value, other: &serde_json::Value| {
        assert_eq!(&row["churn"], churn, "{row}");
        assert_eq!(&row["other"], other, "{row}");
    };
    same(
        row("ingest"),
        &figures["ingest"]["churn"]["wall_seconds"],
        &figures["ingest"]["duckdb"]["wall_seconds"],
    );
    // The ingest's figures are each side's median of three rounds.
    assert_each_side_is_its_median_round(&figures["ingest"], 3);
    same(
        row("features"),
        &figures["features"]["churn"]["wall_seconds"],
        &figures["features"]["duckdb"]["wall_seconds"],
    );
    let models = figures["btyd"]["models"].as_array().unwrap();
    assert_eq!(models.len(), 2, "{figures}");
    for m in models {
        let model = m["model"].as_str().unwrap();
        same(
            row(&format!("btyd: {model} fit")),
            &m["churn_fit_seconds"],
            &m["lifetimes_fit_seconds"],
        );
    }
    let trained = |results: &serde_json::Value, tool: &str| {
        results["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["tool"] == tool)
            .unwrap_or_else(|| panic!("no {tool}: {results}"))
            .clone()
    };
    let gbdt = trained(&figures["train"], "churn train gbdt");
    assert_eq!(
        row("train: churn train gbdt fit")["churn"],
        gbdt["fit_seconds"]
    );
    assert_eq!(
        row("test ROC AUC: churn train gbdt")["churn"],
        gbdt["test_roc_auc"]
    );
    assert_eq!(figures["default_model"]["btyd_features"], true);
    let default_model = trained(&figures["default_model"], "churn train gbdt");
    assert_eq!(
        row("test ROC AUC: the default model")["churn"],
        default_model["test_roc_auc"]
    );
    // Two files one at a time: the second one's latency (the first waits for the lake read).
    same(
        row("stream"),
        &figures["stream"]["one_by_one"][1]["live_lag_seconds"],
        &figures["stream"]["nightly_score_seconds"],
    );
    // Every ratio is churn's figure over the other tool's.
    for r in summary {
        match (r["other"].as_f64(), r["ratio"].as_f64()) {
            (Some(other), Some(ratio)) => {
                let expected = r["churn"].as_f64().unwrap() / other;
                assert!((ratio - expected).abs() <= 1e-12 * expected.abs(), "{r}");
            }
            (other, ratio) => assert!(other.is_none() && ratio.is_none(), "{r}"),
        }
    }
}
