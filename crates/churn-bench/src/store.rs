//! The benchmark store and its lake, generated and ingested on first use and kept in the
//! working folder, so that repeated benchmarks time only what they measure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use churn_synth::{GenerateOptions, OutputFormat};

use crate::{BenchError, Result, Setup};

impl Setup {
    /// The generated store's folder, generated on first use.
    pub(crate) fn store(&self, progress: &dyn Fn(&str)) -> Result<PathBuf> {
        let (customers, seed) = (self.customers, self.seed);
        let dir = self.work.join(format!("store-{customers}-{seed}"));
        if dir.join("ground_truth.csv").exists() {
            return Ok(dir);
        }
        progress(&format!(
            "generating a {customers}-customer store into {} ...",
            dir.display()
        ));
        let started = Instant::now();
        let summary = churn_synth::generate(&GenerateOptions {
            customers,
            seed,
            start: chrono::NaiveDate::from_ymd_opt(2024, 11, 1).expect("valid date"),
            days: 730,
            format: OutputFormat::Csv,
            mess: false,
            chinese_export: false,
            out: dir.clone(),
        })?;
        progress(&format!(
            "generated {} transactions in {:.1} s",
            summary.transactions,
            started.elapsed().as_secs_f64()
        ));
        Ok(dir)
    }

    /// Where the store's lake is (or goes).
    pub(crate) fn lake_path(&self) -> PathBuf {
        self.work
            .join(format!("lake-{}-{}", self.customers, self.seed))
    }

    /// The store's lake with its three tables, each ingested by `churn ingest` on first use.
    pub(crate) fn lake(&self, progress: &dyn Fn(&str)) -> Result<PathBuf> {
        let lake = self.lake_path();
        for table in ["transactions", "customers", "campaign_events"] {
            if lake.join(table).is_dir() {
                continue;
            }
            let store = self.store(progress)?;
            progress(&format!("ingesting {table} into {} ...", lake.display()));
            let mut cmd = Command::new(&self.churn);
            cmd.args(["ingest", "--table", table, "--lake"])
                .arg(&lake)
                .arg("--source")
                .arg(store.join(format!("{table}.csv")))
                .stdout(Stdio::null());
            let status = cmd.status().map_err(|source| BenchError::Start {
                command: format!("{cmd:?}"),
                source,
            })?;
            if !status.success() {
                return Err(BenchError::Failed {
                    command: format!("{cmd:?}"),
                    status: status.code().unwrap_or(-1),
                    stdout: String::new(),
                });
            }
        }
        Ok(lake)
    }
}

/// Removes a file or folder if it exists.
pub(crate) fn remove(path: &Path) -> Result<()> {
    let removed = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else if path.exists() {
        std::fs::remove_file(path)
    } else {
        Ok(())
    };
    removed.map_err(|e| BenchError::io(path, e))
}
