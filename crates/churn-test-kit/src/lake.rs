//! Stores and lakes built through the library crates, for the tests of those crates (the
//! binary's tests use [`crate::Churn`] instead). Each lives in its own temporary folder, kept
//! as long as the returned `TempDir`.

use std::path::Path;

use churn_core::Lake;
use churn_ingest::{IngestOptions, SourceSpec, ingest};
use churn_synth::{GenerateOptions, GenerateSummary, OutputFormat, generate};
use tempfile::TempDir;

/// A generated store to build: `customers` and `seed`, from 2024-01-01 for a year of clean
/// CSV unless told otherwise.
#[derive(Debug, Clone)]
pub struct Store {
    options: GenerateOptions,
}

impl Store {
    pub fn new(customers: u64, seed: u64) -> Store {
        Store {
            options: GenerateOptions {
                customers,
                seed,
                start: chrono::NaiveDate::from_ymd_opt(2024, 1, 1).expect("valid date"),
                days: 365,
                format: OutputFormat::Csv,
                mess: false,
                chinese_export: false,
                out: Default::default(),
            },
        }
    }

    pub fn days(mut self, days: u32) -> Store {
        self.options.days = days;
        self
    }

    /// Realistic dirt in `transactions.csv`, with its manifest.
    pub fn mess(mut self) -> Store {
        self.options.mess = true;
        self
    }

    /// Also the GB18030 Chinese till export of the transactions.
    pub fn chinese_export(mut self) -> Store {
        self.options.chinese_export = true;
        self
    }

    pub fn format(mut self, format: OutputFormat) -> Store {
        self.options.format = format;
        self
    }

    /// Writes the store into a new temporary folder.
    pub fn generate(self) -> (TempDir, GenerateSummary) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let options = GenerateOptions {
            out: dir.path().to_path_buf(),
            ..self.options
        };
        let summary = generate(&options).expect("the store generates");
        (dir, summary)
    }
}

/// An empty lake in a new temporary folder.
pub fn new_lake() -> (TempDir, Lake) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let lake = Lake::open(crate::s(&dir.path().join("lake"))).expect("a local lake opens");
    (dir, lake)
}

/// A new lake holding whichever of the contract CSV files (`transactions.csv`,
/// `customers.csv`, `campaign_events.csv`) `dir` has, ingested with the default options.
pub async fn lake_from(dir: &Path) -> (TempDir, Lake) {
    let (tmp, lake) = new_lake();
    for table in ["transactions", "customers", "campaign_events"] {
        let path = dir.join(format!("{table}.csv"));
        if path.exists() {
            let spec = SourceSpec {
                table: table.into(),
                path: path.display().to_string(),
                ..Default::default()
            };
            let config = spec.validate().expect("a valid source");
            ingest(&lake, &config, &IngestOptions::default())
                .await
                .expect("the source ingests");
        }
    }
    (tmp, lake)
}
