//! `churn labels`: write the churn label of every active customer for snapshot dates whose
//! horizon the lake already covers.

use anyhow::Context;
use churn_core::Lake;
use churn_core::session::SessionOptions;
use churn_features::as_of_dates;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Lake root: a local path or a URL.
    #[arg(long)]
    lake: String,
    /// Snapshot date(s): YYYY-MM-DD, a list (a,b,c) or a range (from..to, with --every).
    #[arg(long)]
    as_of: String,
    /// Step of a date range: 30d, 2w, ...
    #[arg(long)]
    every: Option<String>,
    /// A customer churned if they make no purchase in [D, D + horizon).
    #[arg(long, default_value_t = churn_features::DEFAULT_HORIZON_DAYS)]
    horizon_days: u32,
    /// Population window, as for features.
    #[arg(long, default_value_t = churn_features::DEFAULT_LOOKBACK_DAYS)]
    lookback_days: u32,
    /// Memory budget of the query engine (e.g. 2GiB).
    #[arg(long, value_parser = super::parse_bytes)]
    memory_limit: Option<usize>,
    #[command(flatten)]
    engine: super::EngineArg,
}

pub async fn run(args: Args, json: bool) -> anyhow::Result<()> {
    let dates = as_of_dates(&args.as_of, args.every.as_deref())?;
    let lake = Lake::open(&args.lake)?;
    let session = SessionOptions::with_memory_limit(args.memory_limit).on(args.engine.engine);
    let summary = crate::lease::writing(&lake, "churn labels", async |lake| {
        churn_features::build_labels(
            lake,
            &dates,
            args.horizon_days,
            args.lookback_days,
            &session,
        )
        .await
        .with_context(|| format!("building labels in {}", lake.display()))
    })
    .await?;
    crate::output::emit(json, &summary, || {
        let mut text = format!(
            "Built labels ({}-day horizon) in {}:\n",
            summary.horizon_days, summary.lake
        );
        for s in &summary.snapshots {
            let share = if s.customers > 0 {
                100.0 * s.churned as f64 / s.customers as f64
            } else {
                0.0
            };
            text.push_str(&format!(
                "  as of {}: {} customers, {} churned ({share:.1} %) -> {}\n",
                s.as_of, s.customers, s.churned, s.output
            ));
        }
        text
    })
}
