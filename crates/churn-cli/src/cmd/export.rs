//! `churn export`: the campaign lists of a pipeline file's `[campaigns.NAME]` sections for
//! one date, with control groups, for CRMs and messaging tools.

use std::path::PathBuf;

use anyhow::Context;
use churn_core::session::SessionOptions;
use churn_pipeline::Pipeline;

use crate::exit::UsageError;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Pipeline file whose [campaigns.NAME] sections define the exports.
    #[arg(long)]
    config: PathBuf,
    /// Lake root, overriding the pipeline file's [lake] path.
    #[arg(long)]
    lake: Option<String>,
    /// Date D of the lists; needs the segments of D (and the triggers of D for audiences by
    /// rule).
    #[arg(long, value_parser = super::parse_date)]
    as_of: chrono::NaiveDate,
    /// Export only this campaign (default: every campaign of the file).
    #[arg(long)]
    campaign: Option<String>,
    /// Memory budget of the query engine (e.g. 2GiB).
    #[arg(long, value_parser = super::parse_bytes)]
    memory_limit: Option<usize>,
}

pub async fn run(args: Args, json: bool) -> anyhow::Result<()> {
    let pipeline = Pipeline::load(&args.config)?;
    let campaigns: Vec<_> = pipeline
        .campaigns
        .iter()
        .filter(|c| args.campaign.as_ref().is_none_or(|n| *n == c.name))
        .cloned()
        .collect();
    if campaigns.is_empty() {
        let known: Vec<&str> = pipeline.campaigns.iter().map(|c| c.name.as_str()).collect();
        return Err(UsageError(match &args.campaign {
            Some(n) => format!(
                "{} has no campaign {n:?} (it has {known:?})",
                args.config.display()
            ),
            None => format!("{} has no [campaigns.NAME] section", args.config.display()),
        })
        .into());
    }
    let lake = super::run::pipeline_lake(&pipeline, args.lake.as_deref())?;
    let session = SessionOptions::with_memory_limit(args.memory_limit);
    let summary = crate::lease::writing(&lake, "churn export", async |lake| {
        churn_activate::export(lake, args.as_of, &campaigns, &session)
            .await
            .with_context(|| {
                format!(
                    "exporting campaigns of {} for {}",
                    args.config.display(),
                    args.as_of
                )
            })
    })
    .await?;
    crate::output::emit(json, &summary, || {
        let mut text = format!(
            "Exported {} campaign(s) for {} in {:.1} s\n",
            summary.campaigns.len(),
            summary.as_of,
            summary.duration_ms as f64 / 1000.0
        );
        for c in &summary.campaigns {
            text.push_str(&format!(
                "  {}: audience {}, left out {} not opted in, {} recently contacted, {} on the suppression list, {} over the cap; {} to contact, {} held out as control\n",
                c.campaign,
                c.audience,
                c.suppressed.not_opted_in,
                c.suppressed.recently_contacted,
                c.suppressed.suppression_list,
                c.over_cap,
                c.treated,
                c.control
            ));
            for f in &c.files {
                text.push_str(&format!("    -> {f}\n"));
            }
        }
        text
    })
}
