//! `churn run`: execute a pipeline file for one logical date.

use std::path::PathBuf;

use anyhow::Context;
use churn_core::Lake;
use churn_ingest::IngestOptions;
use churn_pipeline::{Pipeline, RunStatus, RunSummary, Start, StepOutcome};
use serde::Serialize;

use crate::exit::UsageError;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Pipeline file (TOML).
    pipeline: PathBuf,
    /// Logical date of the run (YYYY-MM-DD); re-running a date replaces its outputs.
    #[arg(long, value_parser = super::parse_date, required_unless_present = "from", conflicts_with = "from")]
    as_of: Option<chrono::NaiveDate>,
    /// Backfill: run every date from this one to --to (inclusive) in date order, stopping at
    /// the first that fails.
    #[arg(long, value_parser = super::parse_date, requires = "to")]
    from: Option<chrono::NaiveDate>,
    /// Last date of a backfill.
    #[arg(long, value_parser = super::parse_date, requires = "from")]
    to: Option<chrono::NaiveDate>,
    /// Continue the newest failed run of each date from its failed step (steps it finished
    /// are not run again); a date whose newest run succeeded is not run again.
    #[arg(long)]
    resume: bool,
    /// Lake root, overriding the pipeline file's [lake] path.
    #[arg(long)]
    lake: Option<String>,
    /// Query engine of the features, labels and score steps, overriding the pipeline file's
    /// `engine`: local, ballista://HOST:PORT or ballista-standalone.
    #[arg(long, value_parser = super::parse_engine)]
    engine: Option<churn_core::Engine>,
    /// Memory budget of every step's queries (e.g. 2GiB), overriding the pipeline file's
    /// `[lake] memory_limit_mib`; beyond it, work spills to disk.
    #[arg(long, value_parser = super::parse_bytes)]
    memory_limit: Option<usize>,
}

/// What the command line changes in a pipeline file's settings.
#[derive(Debug, Default)]
pub struct Overrides<'a> {
    pub lake: Option<&'a str>,
    pub engine: Option<&'a churn_core::Engine>,
    pub memory_limit_bytes: Option<usize>,
}

/// What a backfill did: one run per date, in date order.
#[derive(Debug, Serialize)]
struct Backfill {
    kind: &'static str,
    runs: Vec<RunSummary>,
}

pub async fn run(args: Args, json: bool) -> anyhow::Result<()> {
    let start = if args.resume {
        Start::Resume
    } else {
        Start::Fresh
    };
    let run_on = |as_of| {
        let overrides = Overrides {
            lake: args.lake.as_deref(),
            engine: args.engine.as_ref(),
            memory_limit_bytes: args.memory_limit,
        };
        run_pipeline(&args.pipeline, overrides, as_of, start, json)
    };
    let (Some(from), Some(to)) = (args.from, args.to) else {
        let as_of = args.as_of.expect("clap requires --as-of without --from");
        let summary = run_on(as_of).await?;
        return crate::output::emit(json, &summary, || human(&summary));
    };
    if from > to {
        return Err(UsageError(format!("--from {from} is after --to {to}")).into());
    }
    let mut runs = Vec::new();
    for as_of in from.iter_days().take_while(|d| *d <= to) {
        runs.push(run_on(as_of).await?);
    }
    let backfill = Backfill {
        kind: "backfill",
        runs,
    };
    crate::output::emit(json, &backfill, || {
        backfill.runs.iter().map(human).collect::<Vec<_>>().join("")
    })
}

/// The lake of a pipeline: `--lake` when given, else the file's `[lake] path`.
pub fn pipeline_lake(pipeline: &Pipeline, lake: Option<&str>) -> anyhow::Result<Lake> {
    let location = lake
        .map(str::to_string)
        .or_else(|| pipeline.lake.clone())
        .ok_or_else(|| {
            UsageError(format!(
                "{} has no [lake] path; pass --lake",
                pipeline.path.display()
            ))
        })?;
    Ok(Lake::open(&location)?)
}

/// Loads and runs a pipeline, with a progress bar of its steps on a terminal unless `json`;
/// shared with `churn demo`.
pub async fn run_pipeline(
    path: &std::path::Path,
    overrides: Overrides<'_>,
    as_of: chrono::NaiveDate,
    start: Start,
    json: bool,
) -> anyhow::Result<RunSummary> {
    let mut pipeline = Pipeline::load(path)?;
    if let Some(engine) = overrides.engine {
        pipeline.engine = engine.clone();
    }
    if let Some(bytes) = overrides.memory_limit_bytes {
        pipeline = pipeline.with_memory_limit(bytes);
    }
    let lake = pipeline_lake(&pipeline, overrides.lake)?;
    let progress = crate::progress::StepBar::new(json, &format!("{as_of}"));
    crate::lease::writing(&lake, "churn run", async |lake| {
        churn_pipeline::run(
            &pipeline,
            lake,
            as_of,
            &IngestOptions::default(),
            start,
            &progress,
        )
        .await
        .with_context(|| format!("running {} for {as_of}", path.display()))
    })
    .await
}

pub fn human(s: &RunSummary) -> String {
    let status = match s.status {
        RunStatus::Running => "Running",
        RunStatus::Succeeded => "Ran",
        RunStatus::Failed => "FAILED",
    };
    let mut text = format!(
        "{status} {} for {} into {} in {:.2} s (run {}",
        s.pipeline,
        s.as_of,
        s.lake,
        s.duration_ms as f64 / 1000.0,
        s.run_id
    );
    if let Some(previous) = &s.resumed_from {
        text.push_str(&format!(", resuming {previous}"));
    }
    text.push_str("):\n");
    for step in &s.steps {
        let line = match &step.outcome {
            StepOutcome::Ingest(v) => format!(
                "{:<16} read {:>8}  accepted {:>8}  rejected {:>6}  duplicates {:>7}",
                v.table, v.rows_read, v.accepted, v.rejected, v.duplicates
            ),
            StepOutcome::Features(v) => v
                .snapshots
                .iter()
                .map(|snap| {
                    format!(
                        "{} customers x {} columns -> {}",
                        snap.customers, snap.columns, snap.output
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
            StepOutcome::Labels(v) => v
                .snapshots
                .iter()
                .map(|snap| {
                    format!(
                        "{} customers, {} churned -> {}",
                        snap.customers, snap.churned, snap.output
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
            StepOutcome::Train(v) => format!(
                "{}@{} test {}: roc_auc {:.3} (rule {:.3}, BG/NBD {:.3}), grade {} -> {}",
                v.name,
                v.version,
                v.as_of,
                v.model.roc_auc,
                v.baseline_rule.metrics.roc_auc,
                v.baseline_bgnbd.roc_auc,
                v.grade.grade,
                v.registry_path
            ),
            StepOutcome::Score(v) => format!(
                "{} customers with {}@{}: {} high, {} medium, {} low risk -> {}",
                v.customers,
                v.model_name,
                v.model_version,
                v.risk_bands.high,
                v.risk_bands.medium,
                v.risk_bands.low,
                v.output
            ),
            StepOutcome::Segment(v) => format!(
                "{} customers: {} champions, {} at risk (lifecycle), {} lost (lifecycle) -> {}",
                v.customers,
                v.rfm_segments.get("champions").copied().unwrap_or(0),
                v.lifecycle_stages.get("at_risk").copied().unwrap_or(0),
                v.lifecycle_stages.get("lost").copied().unwrap_or(0),
                v.output
            ),
            StepOutcome::Triggers(v) => format!(
                "{} actions from {} rules -> {}",
                v.actions,
                v.rules.len(),
                v.output
            ),
            StepOutcome::Export(v) => v
                .campaigns
                .iter()
                .map(|c| {
                    format!(
                        "{}: {} contacts, {} held out -> {}",
                        c.campaign,
                        c.treated,
                        c.control,
                        c.files.first().map(String::as_str).unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
            StepOutcome::Report(v) => format!(
                "{} marts, page of {} KiB -> {}",
                v.marts.len(),
                v.report_bytes / 1024,
                v.report_location
            ),
            StepOutcome::Skipped { skipped, .. } => format!("skipped: {skipped}"),
            StepOutcome::Reused(decision) => format!("reused: {}", decision.reason),
        };
        text.push_str(&format!(
            "  {:<8} {:<16} {:>7.1} s  {line}\n",
            step.step,
            step.name,
            step.duration_ms as f64 / 1000.0
        ));
    }
    if let (Some(step), Some(error)) = (&s.failed_step, &s.error) {
        text.push_str(&format!("  failed at {step}: {error}\n"));
    }
    text.push_str(&format!("  manifest {}\n", s.manifest));
    text
}
