//! `churn runs list | show`: the run manifests of a lake (`_runs/run-*.json`), newest first:
//! what ran for which date, with which pipeline file and version, how long each step took,
//! and where and why a run failed.

use churn_core::Lake;
use churn_pipeline::RunSummary;
use serde::Serialize;

use crate::exit::UsageError;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// The runs of the lake, newest first.
    List(ListArgs),
    /// One run in full: every step with its time and figures, and the failure if it failed.
    Show(ShowArgs),
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// Lake root: a local path or a URL.
    #[arg(long)]
    lake: String,
    /// Only the runs of this logical date.
    #[arg(long, value_parser = super::parse_date)]
    as_of: Option<chrono::NaiveDate>,
    /// At most this many runs.
    #[arg(long, default_value_t = 20)]
    limit: usize,
}

#[derive(Debug, clap::Args)]
struct ShowArgs {
    /// Lake root: a local path or a URL.
    #[arg(long)]
    lake: String,
    /// A run id from `churn runs list`, or `latest`.
    run: String,
}

#[derive(Debug, Serialize)]
struct RunList {
    kind: &'static str,
    runs: Vec<RunSummary>,
}

fn list_text(runs: &[RunSummary]) -> String {
    if runs.is_empty() {
        return "No runs in this lake yet (`churn run PIPELINE.toml --as-of D` makes one).\n"
            .into();
    }
    let mut text = format!(
        "{:<36} {:<10} {:<9} {:>6} {:>9}  {}\n",
        "run", "as of", "status", "steps", "seconds", "note"
    );
    for r in runs {
        let note = match (&r.failed_step, &r.resumed_from) {
            (Some(step), _) => format!("failed at {step}"),
            (None, Some(previous)) => format!("resumed {previous}"),
            (None, None) => String::new(),
        };
        text.push_str(&format!(
            "{:<36} {:<10} {:<9} {:>6} {:>9.1}  {note}\n",
            r.run_id,
            r.as_of,
            r.status.as_str(),
            r.steps.len(),
            r.duration_ms as f64 / 1000.0
        ));
    }
    text
}

pub async fn run(args: Args, json: bool) -> anyhow::Result<()> {
    match args.what {
        What::List(a) => {
            let lake = Lake::open(&a.lake)?;
            let mut runs = churn_pipeline::run_manifests(&lake).await?;
            if let Some(as_of) = a.as_of {
                runs.retain(|r| r.as_of == as_of.to_string());
            }
            runs.truncate(a.limit);
            let list = RunList { kind: "runs", runs };
            crate::output::emit(json, &list, || list_text(&list.runs))
        }
        What::Show(a) => {
            let lake = Lake::open(&a.lake)?;
            let runs = churn_pipeline::run_manifests(&lake).await?;
            let found = if a.run == "latest" {
                runs.into_iter().next()
            } else {
                runs.into_iter().find(|r| r.run_id == a.run)
            };
            let Some(summary) = found else {
                return Err(UsageError(format!(
                    "no run {:?} in {} (see `churn runs list --lake {}`)",
                    a.run,
                    lake.display(),
                    a.lake
                ))
                .into());
            };
            crate::output::emit(json, &summary, || {
                format!(
                    "{}  pipeline sha256 {}, churn {}, started {}\n",
                    super::run::human(&summary).trim_end(),
                    summary.pipeline_sha256,
                    summary.code_version,
                    summary.started_at
                )
            })
        }
    }
}
