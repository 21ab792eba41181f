//! Benchmarks that run churn and another tool on the same generated store in the same run and
//! report both sets of figures (wall time, peak memory, throughput, test ROC AUC): figures
//! only, never pass/fail. The `churn bench` subcommand parses its flags, calls these and
//! prints the results.
//!
//! Each side runs as its own child process (churn as the `churn` binary, the other tool as
//! a Python script shipped in this crate's `scripts/`), so that peak memory is the process's
//! own. The other tool is optional: without it, only churn's figures are reported.

mod all;
mod btyd;
mod error;
mod features;
mod ingest;
mod run;
mod store;
mod stream;
mod train;

use std::path::PathBuf;

use serde::Serialize;

pub use all::{AllFigures, StreamFiles, SummaryRow, bench_all};
pub use btyd::{BtydFigures, BtydModelFigures, bench_btyd};
pub use error::BenchError;
pub use features::{FeaturesFigures, bench_features};
pub use ingest::{IngestFigures, IngestMemory, IngestRound, bench_ingest};
pub use run::python_has;
pub use stream::{LiveLatency, StreamFigures, bench_stream};
pub use train::{TrainFigures, TrainResults, bench_train};

pub type Result<T, E = BenchError> = std::result::Result<T, E>;

/// What every benchmark runs on: a generated store (kept in `work` for reuse), the churn
/// binary to time, and the Python that has the other tool.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The `churn` binary (the running one, for `churn bench`).
    pub churn: PathBuf,
    /// Customers in the generated store (about sixteen transactions each over two years).
    pub customers: u64,
    pub seed: u64,
    /// Working folder for the generated store, lake and outputs.
    pub work: PathBuf,
    /// Python interpreter with the other tool's packages.
    pub python: String,
}

/// Wall time, peak memory and output rows of one measured child process.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    pub tool: String,
    pub wall_seconds: f64,
    pub peak_rss_mib: f64,
    pub rows: u64,
    pub rows_per_second: f64,
}

impl Measured {
    fn new(tool: &str, run: &run::Run, rows: u64) -> Measured {
        Measured {
            tool: tool.into(),
            wall_seconds: run.wall_seconds,
            peak_rss_mib: run.peak_rss_mib,
            rows,
            rows_per_second: rows as f64 / run.wall_seconds,
        }
    }
}
