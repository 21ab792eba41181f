//! `churn score`: score every customer of a date's population with a registered model.

use std::path::PathBuf;

use anyhow::Context;
use churn_core::Lake;
use churn_core::session::SessionOptions;
use churn_features::FeatureOptions;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Lake root: a local path or a URL.
    #[arg(long)]
    lake: String,
    /// Date D: customers with a purchase in the lookback window before D are scored, from
    /// what was known before D.
    #[arg(long, value_parser = super::parse_date)]
    as_of: chrono::NaiveDate,
    /// Registered model: NAME (its newest version) or NAME@VERSION.
    #[arg(long, default_value = "churn")]
    model: String,
    /// Folder of feature SQL files, used when the snapshot of D must be built; default
    /// pipelines/features when it exists, else the built-in files.
    #[arg(long)]
    features_dir: Option<PathBuf>,
    /// Population window of a snapshot built here (days).
    #[arg(long, default_value_t = churn_features::DEFAULT_LOOKBACK_DAYS)]
    lookback_days: u32,
    /// Memory budget of the query engine (e.g. 2GiB); beyond it, work spills to disk.
    #[arg(long, value_parser = super::parse_bytes)]
    memory_limit: Option<usize>,
}

pub async fn run(args: Args, json: bool) -> anyhow::Result<()> {
    let lake = Lake::open(&args.lake)?;
    let features = FeatureOptions {
        session: SessionOptions {
            memory_limit_bytes: args.memory_limit,
            spill_dir: None,
        },
        files: super::features::feature_files(args.features_dir.as_ref())?,
        lookback_days: args.lookback_days,
    };
    let summary = churn_activate::score(&lake, args.as_of, &args.model, &features)
        .await
        .with_context(|| {
            format!(
                "scoring {} as of {} with {}",
                lake.display(),
                args.as_of,
                args.model
            )
        })?;
    crate::output::emit(json, &summary, || {
        format!(
            "Scored {} customers as of {} with {}@{} in {:.1} s: {} high, {} medium, {} low risk; value at risk {:.2}\n  -> {}\n",
            summary.customers,
            summary.as_of,
            summary.model_name,
            summary.model_version,
            summary.duration_ms as f64 / 1000.0,
            summary.risk_bands.high,
            summary.risk_bands.medium,
            summary.risk_bands.low,
            summary.value_at_risk,
            summary.output
        )
    })
}
