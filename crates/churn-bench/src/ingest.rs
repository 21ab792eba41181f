//! `churn bench ingest`: CSV → lake throughput and peak memory of `churn ingest`, against
//! DuckDB's `COPY (SELECT * FROM read_csv(...)) TO ... (FORMAT parquet)` on the same file.

use std::process::Command;

use churn_ingest::IngestSummary;
use serde::Serialize;

use crate::run::{measure, python_has, read_through};
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
    /// Sorted runs the ingest spilled to staging (0 when all were held in memory).
    pub spilled_runs: usize,
    /// Absent when the Python has no `duckdb`.
    pub duckdb: Option<Measured>,
    pub throughput_ratio_churn_over_duckdb: Option<f64>,
}

/// How much of the batch the timed `churn ingest` holds in memory: its `--buffer-rows` and
/// `--run-memory-mib`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestMemory {
    /// Rows held before they are sorted by day into a run (default 1,000,000).
    pub buffer_rows: usize,
    /// MiB the batch's sorted runs may take before further ones are spilled (default 2048).
    pub run_memory_mib: usize,
}

impl Default for IngestMemory {
    /// `churn ingest`'s defaults.
    fn default() -> Self {
        IngestMemory {
            buffer_rows: churn_ingest::DEFAULT_BUFFER_ROWS,
            run_memory_mib: churn_ingest::DEFAULT_RUN_MEMORY_MIB,
        }
    }
}

/// Times `churn ingest` of the store's transactions into a fresh lake, then DuckDB on the
/// same file when `setup.python` has it; each side reads the file from the page cache.
pub fn bench_ingest(
    setup: &Setup,
    memory: IngestMemory,
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
    read_through(&csv)?;
    let run = measure(
        Command::new(&setup.churn)
            .args(["ingest", "--json", "--table", "transactions"])
            .arg("--buffer-rows")
            .arg(memory.buffer_rows.to_string())
            .arg("--run-memory-mib")
            .arg(memory.run_memory_mib.to_string())
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
        read_through(&csv)?;
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
        spilled_runs: summary.spilled_runs,
        duckdb,
        throughput_ratio_churn_over_duckdb: ratio,
    })
}
