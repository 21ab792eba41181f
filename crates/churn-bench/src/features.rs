//! `churn bench features`: wall time and peak memory of one feature snapshot of the benchmark
//! lake, against DuckDB computing the contract's required columns from the same Parquet lake
//! with the reference SQL of `tests/reference/` (the one the feature tests check against).

use std::process::Command;

use churn_features::FeaturesSummary;
use serde::Serialize;

use crate::run::{measure, python_has, read_through};
use crate::{BenchError, Measured, Result, Setup};

/// The DuckDB reference of the feature contract, embedded so that the binary runs anywhere.
const REFERENCE_FILES: &[(&str, &str)] = &[
    (
        "run_reference.py",
        include_str!("../../../tests/reference/run_reference.py"),
    ),
    (
        "features.duckdb.sql",
        include_str!("../../../tests/reference/features.duckdb.sql"),
    ),
    (
        "labels.duckdb.sql",
        include_str!("../../../tests/reference/labels.duckdb.sql"),
    ),
];

/// Both sides' figures for one snapshot date.
#[derive(Debug, Clone, Serialize)]
pub struct FeaturesFigures {
    pub kind: &'static str,
    pub as_of: String,
    pub churn: Measured,
    /// Absent when the Python has no `duckdb`.
    pub duckdb: Option<Measured>,
    /// DuckDB's wall time over churn's.
    pub speedup_churn_over_duckdb: Option<f64>,
}

/// Times `churn features` for `as_of` on the store's lake (ingested first if needed), then
/// the DuckDB reference when `setup.python` has DuckDB; each side reads the lake from the page
/// cache.
pub fn bench_features(
    setup: &Setup,
    as_of: &str,
    memory_limit: Option<&str>,
    progress: &dyn Fn(&str),
) -> Result<FeaturesFigures> {
    let lake = setup.lake(progress)?;
    let mut cmd = Command::new(&setup.churn);
    cmd.args(["features", "--json", "--as-of", as_of, "--lake"])
        .arg(&lake);
    if let Some(limit) = memory_limit {
        cmd.args(["--memory-limit", limit]);
    }
    read_through(&lake)?;
    let run = measure(&mut cmd)?;
    let summary: FeaturesSummary = run.json("the features summary")?;
    let rows = summary.snapshots.first().map_or(0, |s| s.customers);
    let churn = Measured::new("churn features (all built-in feature files)", &run, rows);

    let duckdb = if python_has(&setup.python, &["duckdb"]) {
        let dir = setup.work.join("duckdb-reference");
        std::fs::create_dir_all(&dir).map_err(|e| BenchError::io(&dir, e))?;
        for (name, text) in REFERENCE_FILES {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|e| BenchError::io(&path, e))?;
        }
        let out_csv = setup.work.join("duckdb-features.csv");
        read_through(&lake)?;
        let run = measure(
            Command::new(&setup.python)
                .arg(dir.join("run_reference.py"))
                .args(["--lake", "--what", "features", "--as-of", as_of, "--input"])
                .arg(&lake)
                .arg("--out")
                .arg(&out_csv),
        )?;
        let text = std::fs::read_to_string(&out_csv).map_err(|e| BenchError::io(&out_csv, e))?;
        // The reference writes a header line, then one line per customer.
        let rows = text.lines().count().saturating_sub(1) as u64;
        Some(Measured::new(
            "duckdb reference SQL (required columns, exact decimal sums, CSV out)",
            &run,
            rows,
        ))
    } else {
        progress(&format!(
            "DuckDB is not available ({} -c 'import duckdb' failed); printing our figures only",
            setup.python
        ));
        None
    };
    let ratio = duckdb.as_ref().map(|d| d.wall_seconds / churn.wall_seconds);
    Ok(FeaturesFigures {
        kind: "bench_features",
        as_of: as_of.to_string(),
        churn,
        duckdb,
        speedup_churn_over_duckdb: ratio,
    })
}
