//! Exit codes per error kind, through the binary: every library error reports a kind, and a
//! wrapped error keeps the kind of the error it wraps (a time-zone mismatch found while
//! running a pipeline is still a configuration error). Codes: 2 config, 3 data, 1 internal
//! (75, another writer holds the lake, is tested in `writers.rs`).

use std::path::{Path, PathBuf};

use churn_test_kit::{Churn, s, stderr};

const CHURN: Churn = Churn::new(env!("CARGO_BIN_EXE_churn"));

/// A lake in UTC with a small generated store's transactions.
fn small_lake(dir: &Path) -> PathBuf {
    let store = dir.join("store");
    CHURN.generate(
        &store,
        &["--customers", "150", "--seed", "3", "--days", "200"],
    );
    let lake = dir.join("lake");
    let source = store.join("transactions.csv");
    CHURN.ingest(&lake, "transactions", &source, &["--timezone", "UTC"]);
    lake
}

#[test]
fn a_time_zone_mismatch_inside_a_pipeline_run_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let lake = small_lake(dir.path());
    let pipeline = dir.path().join("p.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[lake]\npath = {:?}\ntimezone = \"Asia/Shanghai\"\n",
            s(&lake)
        ),
    )
    .unwrap();
    let out = CHURN.run(&["run", s(&pipeline), "--as-of", "2026-01-01"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("UTC") && err.contains("Asia/Shanghai"),
        "{err}"
    );
}

#[test]
fn labels_the_data_cannot_observe_yet_are_a_data_error() {
    let dir = tempfile::tempdir().unwrap();
    let lake = small_lake(dir.path());
    let out = CHURN.run(&["labels", "--lake", s(&lake), "--as-of", "2099-01-01"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("2099-01-01"), "{}", stderr(&out));
}

#[test]
fn a_feature_file_with_bad_sql_is_a_configuration_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let lake = small_lake(dir.path());
    let features = dir.path().join("features");
    std::fs::create_dir(&features).unwrap();
    std::fs::write(
        features.join("broken.sql"),
        "-- grain: one row per customer\n-- columns:\n--   x: a value\n\
         with final as (select customer_id, no_such_column as x from population)\n\
         select * from final\n",
    )
    .unwrap();
    let out = CHURN.run(&[
        "features",
        "--lake",
        s(&lake),
        "--as-of",
        "2026-03-01",
        "--features-dir",
        s(&features),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("broken.sql"), "{}", stderr(&out));
}

#[test]
fn a_corrupt_lake_file_is_an_internal_error_and_not_blamed_on_a_feature_file() {
    let dir = tempfile::tempdir().unwrap();
    let lake = small_lake(dir.path());
    // Damage one day's Parquet file: reading it fails in the middle of a feature query.
    let day = std::fs::read_dir(lake.join("transactions"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    let file = std::fs::read_dir(&day)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle - 64..middle + 64].fill(0xAB);
    std::fs::write(&file, bytes).unwrap();
    let out = CHURN.run(&["features", "--lake", s(&lake), "--as-of", "2099-01-01"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!stderr(&out).contains("does not run"), "{}", stderr(&out));
}
