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

/// Both sides' figures on the store's transactions CSV: each side's median round, and every
/// round.
#[derive(Debug, Clone, Serialize)]
pub struct IngestFigures {
    pub kind: &'static str,
    pub customers: u64,
    pub csv_mib: f64,
    /// churn's median round by wall time (of an even number, the faster of the middle two).
    pub churn: Measured,
    /// Sorted runs the ingest spilled to staging (0 when all were held in memory).
    pub spilled_runs: usize,
    /// DuckDB's median round, as churn's; absent when the Python has no `duckdb`.
    pub duckdb: Option<Measured>,
    /// churn's median throughput over DuckDB's.
    pub throughput_ratio_churn_over_duckdb: Option<f64>,
    /// Every round in the order run: churn's ingest, then DuckDB's.
    pub rounds: Vec<IngestRound>,
}

/// One round: churn's ingest into a fresh lake, then DuckDB's COPY of the same file.
#[derive(Debug, Clone, Serialize)]
pub struct IngestRound {
    pub churn: Measured,
    pub duckdb: Option<Measured>,
    pub throughput_ratio_churn_over_duckdb: Option<f64>,
}

/// The run of median wall time among `runs` (of an even number, the faster of the middle two).
fn median_run(runs: impl Iterator<Item = Measured>) -> Option<Measured> {
    let mut runs: Vec<Measured> = runs.collect();
    runs.sort_by(|a, b| a.wall_seconds.total_cmp(&b.wall_seconds));
    let middle = runs.len().checked_sub(1)? / 2;
    Some(runs.swap_remove(middle))
}

/// churn's throughput over DuckDB's, when DuckDB ran.
fn throughput_ratio(churn: &Measured, duckdb: Option<&Measured>) -> Option<f64> {
    duckdb.map(|d| churn.rows_per_second / d.rows_per_second)
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
/// same file when `setup.python` has it, `rounds` times (at least once); each side reads the
/// file from the page cache. On a machine whose speed varies from minute to minute, one
/// round's ratio is as much the machine as the tools: the median rounds' is steadier.
pub fn bench_ingest(
    setup: &Setup,
    memory: IngestMemory,
    rounds: usize,
    progress: &dyn Fn(&str),
) -> Result<IngestFigures> {
    let store = setup.store(progress)?;
    let csv = store.join("transactions.csv");
    let csv_mib = std::fs::metadata(&csv)
        .map_err(|e| BenchError::io(&csv, e))?
        .len() as f64
        / (1024.0 * 1024.0);
    let has_duckdb = python_has(&setup.python, &["duckdb"]);
    if !has_duckdb {
        progress(&format!(
            "DuckDB is not available ({} -c 'import duckdb' failed; pip install duckdb); printing our figures only",
            setup.python
        ));
    }
    let rounds = rounds.max(1);
    let mut done = Vec::with_capacity(rounds);
    let mut spilled_runs = 0;
    for round in 1..=rounds {
        if rounds > 1 {
            progress(&format!("bench ingest: round {round} of {rounds}"));
        }
        let (churn, spilled) = time_churn(setup, memory, &csv)?;
        spilled_runs = spilled;
        let duckdb = if has_duckdb {
            Some(time_duckdb(setup, &csv)?)
        } else {
            None
        };
        done.push(IngestRound {
            throughput_ratio_churn_over_duckdb: throughput_ratio(&churn, duckdb.as_ref()),
            churn,
            duckdb,
        });
    }
    let churn = median_run(done.iter().map(|r| r.churn.clone())).expect("at least one round");
    let duckdb = median_run(done.iter().filter_map(|r| r.duckdb.clone()));
    Ok(IngestFigures {
        kind: "bench_ingest",
        customers: setup.customers,
        csv_mib,
        throughput_ratio_churn_over_duckdb: throughput_ratio(&churn, duckdb.as_ref()),
        churn,
        spilled_runs,
        duckdb,
        rounds: done,
    })
}

/// `churn ingest` of `csv` into a fresh lake: its figures and the runs it spilled.
fn time_churn(
    setup: &Setup,
    memory: IngestMemory,
    csv: &std::path::Path,
) -> Result<(Measured, usize)> {
    let lake = setup.lake_path();
    remove(&lake)?;
    read_through(csv)?;
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
            .arg(csv),
    )?;
    let summary: IngestSummary = run.json("the ingest summary")?;
    let churn = Measured::new(
        "churn ingest (validate, dedup, partition by date)",
        &run,
        summary.rows_read,
    );
    Ok((churn, summary.spilled_runs))
}

/// DuckDB's COPY of `csv` to one Parquet file.
fn time_duckdb(setup: &Setup, csv: &std::path::Path) -> Result<Measured> {
    let duck_out = setup.work.join("duckdb.parquet");
    remove(&duck_out)?;
    read_through(csv)?;
    let run = measure(
        Command::new(&setup.python)
            .args(["-c", DUCKDB_SCRIPT])
            .arg(csv)
            .arg(&duck_out),
    )?;
    let text = run.stdout.trim();
    let rows = text.parse().map_err(|_| BenchError::Count {
        what: "DuckDB's row count",
        text: text.to_string(),
    })?;
    Ok(Measured::new("duckdb COPY read_csv -> parquet", &run, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(wall_seconds: f64) -> Measured {
        Measured {
            tool: format!("{wall_seconds}"),
            wall_seconds,
            peak_rss_mib: 1.0,
            rows: 10,
            rows_per_second: 10.0 / wall_seconds,
        }
    }

    #[test]
    fn the_median_run_is_the_middle_wall_time_or_the_faster_of_the_middle_two() {
        let median =
            |walls: &[f64]| median_run(walls.iter().map(|w| run(*w))).map(|m| m.wall_seconds);
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[9.0]), Some(9.0));
        assert_eq!(median(&[9.0, 7.5, 8.25]), Some(8.25));
        assert_eq!(median(&[9.0, 7.5, 8.25, 10.0]), Some(8.25));
    }
}
