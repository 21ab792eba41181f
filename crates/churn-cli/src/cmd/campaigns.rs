//! `churn campaigns results`: treated against control after an export's window.

use anyhow::Context;
use churn_core::Lake;
use churn_core::session::SessionOptions;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Purchase rate and revenue per customer of the treated against the control group in
    /// the window after an export, with the difference and its 95 % confidence interval.
    Results(ResultsArgs),
}

#[derive(Debug, clap::Args)]
struct ResultsArgs {
    /// Lake root: a local path or a URL.
    #[arg(long)]
    lake: String,
    /// Campaign name (its [campaigns.NAME] section).
    #[arg(long)]
    campaign: String,
    /// Date D of the export.
    #[arg(long, value_parser = super::parse_date)]
    as_of: chrono::NaiveDate,
    /// Days after D over which purchases count: [D, D + window).
    #[arg(long, default_value_t = 30)]
    window_days: u32,
    /// Memory budget of the query engine (e.g. 2GiB).
    #[arg(long, value_parser = super::parse_bytes)]
    memory_limit: Option<usize>,
}

pub async fn run(args: Args, json: bool) -> anyhow::Result<()> {
    let What::Results(args) = args.what;
    let lake = Lake::open(&args.lake)?;
    let session = SessionOptions::with_memory_limit(args.memory_limit);
    let r = crate::lease::writing(&lake, "churn campaigns results", async |lake| {
        churn_activate::campaign_results(
            lake,
            &args.campaign,
            args.as_of,
            args.window_days,
            &session,
        )
        .await
        .with_context(|| {
            format!(
                "results of campaign {} exported on {}",
                args.campaign, args.as_of
            )
        })
    })
    .await?;
    crate::output::emit(json, &r, || {
        let group = |name: &str, g: &churn_activate::results::GroupOutcome| {
            format!(
                "  {name:<8} {:>8} customers, {:>6.2} % bought, {:>10.2} revenue per customer\n",
                g.customers,
                100.0 * g.purchase_rate,
                g.revenue_per_customer
            )
        };
        let diff = |name: &str, d: &Option<churn_activate::results::Difference>, scale: f64| match d
        {
            Some(d) => format!(
                "  {name}: {:+.3} (95 % CI {:+.3} to {:+.3}), {}\n",
                d.estimate * scale,
                d.ci_low * scale,
                d.ci_high * scale,
                if d.significant {
                    "significant"
                } else {
                    "not significant"
                }
            ),
            None => format!("  {name}: not measurable (a group is empty)\n"),
        };
        format!(
            "Campaign {} exported {}, purchases in the {} days from then:\n{}{}{}{}",
            r.campaign,
            r.as_of,
            r.window_days,
            group("treated", &r.treated),
            group("control", &r.control),
            diff(
                "purchase-rate uplift (points)",
                &r.purchase_rate_uplift,
                100.0
            ),
            diff("revenue uplift per customer", &r.revenue_uplift, 1.0)
        )
    })
}
