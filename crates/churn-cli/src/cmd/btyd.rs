//! `churn btyd fit`: fit a buy-till-you-die model on the lake as of a date, print its
//! parameters, log-likelihood and standard errors, and write per-customer scores.

use anyhow::Context;
use churn_core::Lake;
use churn_features::Grain;
use churn_train::fit_btyd::{BtydModel, fit_btyd};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Fit a model on every customer with a purchase before --as-of and score them.
    Fit(FitArgs),
}

#[derive(Debug, clap::Args)]
struct FitArgs {
    /// Lake root: a local path or a URL.
    #[arg(long)]
    lake: String,
    /// End of calibration: purchases before this date count; age runs to the day before it.
    #[arg(long, value_parser = super::parse_date)]
    as_of: chrono::NaiveDate,
    /// bgnbd, pareto-nbd or gamma-gamma.
    #[arg(long, value_parser = parse_model)]
    model: BtydModel,
    /// Horizon of the expected purchases, in days.
    #[arg(long, default_value_t = 90)]
    horizon_days: u32,
    /// Purchase periods: `day` (purchases on one day count once; the published convention)
    /// or `week` (Monday-to-Sunday weeks count once; whole weeks).
    #[arg(long, value_enum, default_value_t = GrainArg::Day)]
    grain: GrainArg,
    /// Memory budget of the query that summarises the customers (e.g. 2GiB); beyond it, work
    /// spills to disk.
    #[arg(long, value_parser = super::parse_bytes)]
    memory_limit: Option<usize>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum GrainArg {
    Day,
    Week,
}

/// Accepts the usual spellings (`bgnbd`, `bg-nbd`, `pareto_nbd`, `GammaGamma`, …).
fn parse_model(s: &str) -> Result<BtydModel, String> {
    match s.to_ascii_lowercase().replace(['_', '-', '/'], "").as_str() {
        "bgnbd" => Ok(BtydModel::Bgnbd),
        "paretonbd" => Ok(BtydModel::ParetoNbd),
        "gammagamma" => Ok(BtydModel::GammaGamma),
        _ => Err(format!(
            "expected bgnbd, pareto-nbd or gamma-gamma, got {s:?}"
        )),
    }
}

pub async fn run(args: Args, json: bool) -> anyhow::Result<()> {
    let What::Fit(args) = args.what;
    let lake = Lake::open(&args.lake)?;
    let grain = match args.grain {
        GrainArg::Day => Grain::Day,
        GrainArg::Week => Grain::Week,
    };
    let session = churn_core::session::SessionOptions::with_memory_limit(args.memory_limit);
    let summary = crate::lease::writing(&lake, "churn btyd fit", async |lake| {
        fit_btyd(
            lake,
            args.as_of,
            args.model,
            grain,
            args.horizon_days,
            &session,
        )
        .await
        .with_context(|| {
            format!(
                "fitting {} on the customers of {} before {}",
                args.model.name(),
                lake.display(),
                args.as_of
            )
        })
    })
    .await?;
    crate::output::emit(json, &summary, || {
        let mut text = format!(
            "{} fitted on {} customers as of {} (log-likelihood {:.2}):\n",
            summary.model, summary.customers, summary.as_of, summary.log_likelihood
        );
        for name in &summary.parameter_order {
            text.push_str(&format!(
                "  {name:<6} {:>10.4}  (se {:.4})\n",
                summary.parameters[name], summary.standard_errors[name]
            ));
        }
        text.push_str(&format!("  per-customer scores -> {}\n", summary.output));
        text
    })
}
