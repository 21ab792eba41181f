//! `churn bench ingest`: CSV → lake throughput and peak memory of `churn ingest`, against
//! DuckDB's `COPY (SELECT * FROM read_csv(...)) TO ... (FORMAT parquet)` on the same file.

use std::process::Command;

use churn_ingest::IngestSummary;
use serde::Serialize;

use crate::run::{measure, python_has};
use crate::store::remove;
use crate::{BenchError, Measured, Result, Setup};

/// DuckDB's side, run with `python -c` so that the binary needs no file beside it.
const DUCKDB_SCRIPT: &str = include_str!("../scripts/duckdb_ingest.py");

/// Both sides' figures on the store's transactions CSV.
#[derive(Debug, Clone, Serialize)]
pub struct IngestFigures {
    pub kind: &'static str,
    pub customers: u64,
    pub csv_mib: f64,
    pub churn: Measured,
    /// Absent when the Python has no `duckdb`.
    pub duckdb: Option<Measured>,
    pub throughput_ratio_churn_over_duckdb: Option<f64>,
}

/// Times `churn ingest` of the store's transactions into a fresh lake, then DuckDB on the
/// same file when `setup.python` has it.
pub fn bench_ingest(
    setup: &Setup,
    buffer_rows: usize,
    progress: &dyn Fn(&str),
) -> Result<IngestFigures> {
    let store = setup.store(progress)?;
    let csv = store.join("transactions.csv");
    let csv_mib = std::fs::metadata(&csv)
        .map_err(|e| BenchError::io(&csv, e))?
        .len() as f64
        / (1024.0 * 1024.0);

    let lake = setup.lake_path();
    remove(&lake)?;
    let run = measure(
        Command::new(&setup.churn)
            .args(["ingest", "--json", "--table", "transactions"])
            .arg("--buffer-rows")
            .arg(buffer_rows.to_string())
            .arg("--lake")
            .arg(&lake)
            .arg("--source")
            .arg(&csv),
    )?;
    let summary: IngestSummary = run.json("the ingest summary")?;
    let churn = Measured::new(
        "churn ingest (validate, dedup, partition by date)",
        &run,
        summary.rows_read,
    );

    let duck_out = setup.work.join("duckdb.parquet");
    remove(&duck_out)?;
    let duckdb = if python_has(&setup.python, &["duckdb"]) {
        let run = measure(
            Command::new(&setup.python)
                .args(["-c", DUCKDB_SCRIPT])
                .arg(&csv)
                .arg(&duck_out),
        )?;
        let text = run.stdout.trim();
        let rows = text.parse().map_err(|_| BenchError::Count {
            what: "DuckDB's row count",
            text: text.to_string(),
        })?;
        Some(Measured::new("duckdb COPY read_csv -> parquet", &run, rows))
    } else {
        progress(&format!(
            "DuckDB is not available ({} -c 'import duckdb' failed; pip install duckdb); printing our figures only",
            setup.python
        ));
        None
    };
    let ratio = duckdb
        .as_ref()
        .map(|d| churn.rows_per_second / d.rows_per_second);
    Ok(IngestFigures {
        kind: "bench_ingest",
        customers: setup.customers,
        csv_mib,
        churn,
        duckdb,
        throughput_ratio_churn_over_duckdb: ratio,
    })
}
