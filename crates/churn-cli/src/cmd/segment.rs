//! `churn segment`: RFM segments, lifecycle stages, suggested tiers and tags of every
//! customer of a date's population.

use std::path::PathBuf;

use anyhow::Context;
use churn_core::Lake;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Lake root: a local path or a URL.
    #[arg(long)]
    lake: String,
    /// Date D: customers with a purchase in the lookback window before D, from what was known
    /// before D.
    #[arg(long, value_parser = super::parse_date)]
    as_of: chrono::NaiveDate,
    /// Language of the labels: en or zh-CN.
    #[arg(long, default_value = "en")]
    lang: churn_activate::Lang,
    /// Activation file (segment thresholds and rules); default pipelines/rules.toml when it
    /// exists, else the built-in playbook.
    #[arg(long)]
    rules: Option<PathBuf>,
    #[command(flatten)]
    snapshot: super::SnapshotArgs,
}

pub async fn run(args: Args, json: bool) -> anyhow::Result<()> {
    let lake = Lake::open(&args.lake)?;
    let activation = super::activation(args.rules.as_ref())?;
    let features = args.snapshot.feature_options()?;
    let summary = crate::lease::writing(&lake, "churn segment", async |lake| {
        churn_activate::segment(lake, args.as_of, &activation, args.lang, &features)
            .await
            .with_context(|| format!("segmenting {} as of {}", lake.display(), args.as_of))
    })
    .await?;
    crate::output::emit(json, &summary, || {
        let list = |m: &std::collections::BTreeMap<String, u64>| {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "Segmented {} customers as of {} in {:.1} s\n  RFM segments: {}\n  lifecycle: {}\n  tiers: {}\n  tags: {}\n  -> {}\n",
            summary.customers,
            summary.as_of,
            summary.duration_ms as f64 / 1000.0,
            list(&summary.rfm_segments),
            list(&summary.lifecycle_stages),
            list(&summary.tiers),
            if summary.tags.is_empty() {
                "none".to_string()
            } else {
                list(&summary.tags)
            },
            summary.output
        )
    })
}
