//! `churn triggers`: the day's action list from the retention rules.

use std::path::PathBuf;

use anyhow::Context;
use churn_core::Lake;
use churn_core::session::SessionOptions;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Lake root: a local path or a URL.
    #[arg(long)]
    lake: String,
    /// Date D of the actions; needs the segments of D (`churn segment`).
    #[arg(long, value_parser = super::parse_date)]
    as_of: chrono::NaiveDate,
    /// Activation file (rules); default pipelines/rules.toml when it exists, else the
    /// built-in playbook.
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Memory budget of the query engine (e.g. 2GiB); beyond it, work spills to disk.
    #[arg(long, value_parser = super::parse_bytes)]
    memory_limit: Option<usize>,
}

pub async fn run(args: Args, json: bool) -> anyhow::Result<()> {
    let lake = Lake::open(&args.lake)?;
    let activation = super::activation(args.rules.as_ref())?;
    let session = SessionOptions::with_memory_limit(args.memory_limit);
    let summary = crate::lease::writing(&lake, "churn triggers", async |lake| {
        churn_activate::triggers(lake, args.as_of, &activation, &session)
            .await
            .with_context(|| {
                format!(
                    "running the rules of {} for {}",
                    activation.source, args.as_of
                )
            })
    })
    .await?;
    crate::output::emit(json, &summary, || {
        let mut text = format!(
            "{} actions for {} in {:.1} s\n  {:<32} {:>8} {:>12} {:>11} {:>8} {:>8}\n",
            summary.actions,
            summary.as_of,
            summary.duration_ms as f64 / 1000.0,
            "rule",
            "matched",
            "not opted in",
            "in cooldown",
            "over cap",
            "actions"
        );
        for r in &summary.rules {
            text.push_str(&format!(
                "  {:<32} {:>8} {:>12} {:>11} {:>8} {:>8}\n",
                r.rule,
                r.matched,
                r.not_opted_in,
                r.in_cooldown,
                r.over_cap,
                r.actions + r.referrer_actions
            ));
        }
        if !summary.scores {
            text.push_str("  note: the lake has no scores of this date; rules on score columns matched nobody\n");
        }
        text.push_str(&format!("  -> {}\n", summary.output));
        text
    })
}
