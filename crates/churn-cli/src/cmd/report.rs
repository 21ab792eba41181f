//! `churn report`: retention marts for BI tools and the HTML report of a date.

use anyhow::Context;
use churn_core::Lake;
use churn_core::session::SessionOptions;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Lake root: a local path or a URL.
    #[arg(long)]
    lake: String,
    /// Date D: the marts and the page read only events before D.
    #[arg(long, value_parser = super::parse_date)]
    as_of: chrono::NaiveDate,
    /// Language of the page: en or zh-CN.
    #[arg(long, default_value = "en")]
    lang: churn_activate::Lang,
    /// The churn trend's horizon: a month's buyer churned with no purchase in this many days
    /// after the month.
    #[arg(long, default_value_t = churn_features::DEFAULT_HORIZON_DAYS,
          value_parser = clap::value_parser!(u32).range(1..))]
    horizon_days: u32,
    /// Days after an export over which its campaign's purchases count.
    #[arg(long, default_value_t = churn_report::DEFAULT_CAMPAIGN_WINDOW_DAYS,
          value_parser = clap::value_parser!(u32).range(1..))]
    window_days: u32,
    /// Memory budget of the query engine (e.g. 2GiB).
    #[arg(long, value_parser = super::parse_bytes)]
    memory_limit: Option<usize>,
}

pub async fn run(args: Args, json: bool) -> anyhow::Result<()> {
    let lake = Lake::open(&args.lake)?;
    let options = churn_report::ReportOptions {
        lang: args.lang,
        horizon_days: args.horizon_days,
        campaign_window_days: args.window_days,
        session: SessionOptions::with_memory_limit(args.memory_limit),
    };
    let summary = crate::lease::writing(&lake, "churn report", async |lake| {
        churn_report::report(lake, args.as_of, &options)
            .await
            .with_context(|| format!("report of {} as of {}", lake.display(), args.as_of))
    })
    .await?;
    crate::output::emit(json, &summary, || human(&summary))
}

/// The report's summary as a person reads it.
pub fn human(s: &churn_report::ReportSummary) -> String {
    let mut text = format!(
        "Report of {} in {:.1} s: {}\n",
        s.as_of,
        s.duration_ms as f64 / 1000.0,
        s.report_location
    );
    for m in &s.marts {
        text.push_str(&format!(
            "  mart {:<20} {:>7} rows -> {}\n",
            m.name, m.rows, m.file
        ));
    }
    for missing in &s.missing {
        text.push_str(&format!("  missing: {missing}\n"));
    }
    text
}
