//! Generator of realistic retail stores for demos, tests and benchmarks. Customers follow a
//! buy-till-you-die process (a latent purchase rate and a hidden dropout time), drift before
//! they leave, answer campaigns (a redemption postpones their dropout) and buy with weekly
//! seasonality. Output follows the input contract, plus the ground truth that a model should
//! recover. Everything is streamed per customer, so memory does not grow with the store.

mod mess;
mod model;
mod writer;

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::NaiveDate;
use serde::Serialize;

pub use mess::MessManifest;
pub use model::{Customer, StoreModel};

/// File format of the generated tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Csv,
    Parquet,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub customers: u64,
    pub seed: u64,
    /// First day of the simulated period.
    pub start: NaiveDate,
    /// Length of the period in days; the last simulated day is `start + days - 1`.
    pub days: u32,
    pub format: OutputFormat,
    /// Inject realistic dirt into the transactions CSV and write `mess_manifest.json`.
    pub mess: bool,
    /// Also write `transactions_gb18030.csv`: the same transactions as a Chinese till export
    /// (GB18030, Chinese headers, `YYYY/MM/DD` timestamps, 是/否 flags).
    pub chinese_export: bool,
    pub out: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("invalid options: {0}")]
    InvalidOptions(String),
}

impl SynthError {
    pub fn kind(&self) -> churn_core::ErrorKind {
        match self {
            SynthError::InvalidOptions(_) => churn_core::ErrorKind::Config,
            SynthError::Io { .. } | SynthError::Parquet { .. } => churn_core::ErrorKind::Internal,
        }
    }
}

pub type Result<T, E = SynthError> = std::result::Result<T, E>;

/// What was generated and where.
#[derive(Debug, Clone, Serialize)]
pub struct GenerateSummary {
    pub kind: &'static str,
    pub out: String,
    pub customers: u64,
    pub transactions: u64,
    pub campaign_events: u64,
    pub alive_at_end: u64,
    pub first_day: String,
    pub last_day: String,
    pub files: Vec<String>,
    pub mess: Option<MessManifest>,
    pub duration_ms: u64,
}

pub(crate) fn io_error(path: &Path) -> impl Fn(std::io::Error) -> SynthError + '_ {
    move |source| SynthError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Generates a store into `options.out`.
pub fn generate(options: &GenerateOptions) -> Result<GenerateSummary> {
    let started = Instant::now();
    if options.customers == 0 || options.days < 30 {
        return Err(SynthError::InvalidOptions(format!(
            "need at least one customer and 30 days, got {} customers and {} days",
            options.customers, options.days
        )));
    }
    if options.mess && options.format != OutputFormat::Csv {
        return Err(SynthError::InvalidOptions(
            "--mess applies to CSV output only".into(),
        ));
    }
    std::fs::create_dir_all(&options.out).map_err(io_error(&options.out))?;
    let model = StoreModel::new(options.seed, options.start, options.days, options.customers);
    let mut out = writer::StoreWriter::create(options)?;
    let mut summary = GenerateSummary {
        kind: "generate",
        out: options.out.display().to_string(),
        customers: options.customers,
        transactions: 0,
        campaign_events: 0,
        alive_at_end: 0,
        first_day: options.start.to_string(),
        last_day: model.last_day().to_string(),
        files: Vec::new(),
        mess: None,
        duration_ms: 0,
    };
    for index in 0..options.customers {
        let customer = model.customer(index);
        summary.transactions += customer.transactions.len() as u64;
        summary.campaign_events += customer.campaign_events.len() as u64;
        summary.alive_at_end += customer.alive_at_end as u64;
        out.write_customer(&customer)?;
    }
    let (files, mess) = out.finish()?;
    summary.files = files;
    summary.mess = mess;
    summary.duration_ms = started.elapsed().as_millis() as u64;
    Ok(summary)
}
