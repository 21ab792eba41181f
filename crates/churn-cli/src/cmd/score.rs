//! `churn score`: score every customer of a date's population with a registered model.

use anyhow::Context;
use churn_core::Lake;

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
    #[command(flatten)]
    snapshot: super::SnapshotArgs,
    #[command(flatten)]
    engine: super::EngineArg,
}

pub async fn run(args: Args, json: bool) -> anyhow::Result<()> {
    let lake = Lake::open(&args.lake)?;
    let mut features = args.snapshot.feature_options()?;
    features.session = features.session.on(args.engine.engine);
    let summary = crate::lease::writing(&lake, "churn score", async |lake| {
        churn_activate::score(lake, args.as_of, &args.model, &features)
            .await
            .with_context(|| {
                format!(
                    "scoring {} as of {} with {}",
                    lake.display(),
                    args.as_of,
                    args.model
                )
            })
    })
    .await?;
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
