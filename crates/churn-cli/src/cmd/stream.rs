//! `churn stream PIPELINE.toml [--once]`: micro-batch ingest from the sources' landing
//! folders until SIGTERM or SIGINT (or, with `--once`, until what has landed is taken), and
//! `churn stream status PIPELINE.toml`: what was taken and what is waiting.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use churn_core::Lake;
use churn_pipeline::Pipeline;
use churn_stream::{Mode, Stream, StreamStatus, StreamSummary};

use crate::exit::UsageError;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    what: Option<What>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Per source: files taken, failed or rejected, the newest batch, and what is waiting in
    /// the landing folder now (files, bytes, lag). Reads only.
    Status(StatusArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Pipeline file (TOML): its [sources.*] locations are the landing folders or prefixes,
    /// its [stream] section the polling and batch limits.
    pipeline: Option<PathBuf>,
    /// Take what has landed and is complete, then exit (for cron and tests).
    #[arg(long)]
    once: bool,
    /// Lake root, overriding the pipeline file's [lake] path.
    #[arg(long)]
    lake: Option<String>,
    #[command(flatten)]
    memory: super::ingest::MemoryArgs,
}

#[derive(Debug, clap::Args)]
struct StatusArgs {
    /// Pipeline file (TOML).
    pipeline: PathBuf,
    /// Lake root, overriding the pipeline file's [lake] path.
    #[arg(long)]
    lake: Option<String>,
}

pub async fn run(args: Args, json: bool) -> anyhow::Result<()> {
    match args.what {
        Some(What::Status(status)) => show_status(status, json).await,
        None => stream(args.run, json).await,
    }
}

fn load(pipeline: &Path, lake: Option<&str>) -> anyhow::Result<(Pipeline, Lake)> {
    let pipeline = Pipeline::load(pipeline)?;
    let location = lake
        .map(str::to_string)
        .or_else(|| pipeline.lake.clone())
        .ok_or_else(|| UsageError("--lake is required (or a [lake] path in the file)".into()))?;
    let lake = Lake::open(&location)?;
    if pipeline.stream_sources().is_empty() {
        return Err(UsageError(format!(
            "{} has no [sources.*] section to stream from",
            pipeline.path.display()
        ))
        .into());
    }
    Ok((pipeline, lake))
}

async fn stream(args: RunArgs, json: bool) -> anyhow::Result<()> {
    let path = args
        .pipeline
        .ok_or_else(|| UsageError("churn stream needs a pipeline file".into()))?;
    let (pipeline, lake) = load(&path, args.lake.as_deref())?;
    let features = pipeline.feature_options()?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // A second signal while the batch under way finishes ends the process at once; the
        // lake stays consistent (its commit is atomic), the batch is taken again next time.
        signal_hook::flag::register_conditional_shutdown(signal, 130, stop.clone())
            .context("installing the signal handlers")?;
        signal_hook::flag::register(signal, stop.clone())
            .context("installing the signal handlers")?;
    }
    let service = Stream::new(
        lake.clone(),
        pipeline.stream_sources(),
        pipeline.stream.clone(),
        crate::lease::options("churn stream"),
        args.memory.options(),
        features,
        pipeline
            .activate
            .as_ref()
            .map(|(activation, _)| activation.clone()),
    );
    let mode = if args.once {
        Mode::Once
    } else {
        Mode::UntilStopped
    };
    let summary = service
        .run(mode, stop)
        .await
        .with_context(|| format!("streaming {} into {}", path.display(), lake.display()))?;
    crate::output::emit(json, &summary, || human(&summary))
}

fn human(s: &StreamSummary) -> String {
    let mut text = format!(
        "Stream into {} ({}): {} polls, {} micro-batches, {} files taken.\n",
        s.lake,
        if s.ended == "once" {
            "ran once"
        } else {
            "stopped"
        },
        s.polls,
        s.batches,
        s.files_taken
    );
    text.push_str(&format!(
        "  rows read {}: accepted {}, rejected {} (quarantine), duplicates {}",
        s.rows_read, s.accepted, s.rejected, s.duplicates
    ));
    if s.held_back > 0 {
        text.push_str(&format!(
            ", held back {} (batches over the reject limit)",
            s.held_back
        ));
    }
    text.push('\n');
    if s.live_scored > 0 {
        text.push_str(&format!(
            "  live scores: {} customers scored again (scores_live/); live rules: {} actions (triggers_live/)\n",
            s.live_scored, s.live_actions
        ));
    }
    for batch in &s.recent_batches {
        for (file, why) in &batch.failed_files {
            text.push_str(&format!("  FAILED {file}: {why}\n"));
        }
        if let Some(error) = &batch.live_error {
            text.push_str(&format!(
                "  NO LIVE SCORES for batch {} (its rows are in the lake): {error}\n",
                batch.batch_id
            ));
        }
    }
    if s.busy_polls > 0 {
        text.push_str(&format!(
            "  {} polls found another writer on the lake and waited for the next poll\n",
            s.busy_polls
        ));
    }
    for file in &s.still_changing {
        text.push_str(&format!("  not taken, still being written: {file}\n"));
    }
    text
}

async fn show_status(args: StatusArgs, json: bool) -> anyhow::Result<()> {
    let (pipeline, lake) = load(&args.pipeline, args.lake.as_deref())?;
    let status = churn_stream::status(&lake, &pipeline.stream_sources(), &pipeline.stream)
        .await
        .with_context(|| format!("reading the stream's checkpoints in {}", lake.display()))?;
    crate::output::emit(json, &status, || status_text(&status))
}

fn status_text(status: &StreamStatus) -> String {
    let mut text = format!("Stream status of {}:\n", status.lake);
    for s in &status.sources {
        text.push_str(&format!(
            "  {}: {} files taken; last batch {} at {}; waiting {} files ({} bytes){}\n",
            s.source,
            s.taken_files,
            s.last_batch_id.as_deref().unwrap_or("-"),
            s.last_taken_at.as_deref().unwrap_or("-"),
            s.waiting_files,
            s.waiting_bytes,
            s.lag_secs
                .map(|l| format!(", oldest waiting {l:.1} s"))
                .unwrap_or_default()
        ));
        for f in &s.failed_files {
            text.push_str(&format!(
                "    FAILED {}: {}\n",
                f.location,
                f.error.as_deref().unwrap_or("")
            ));
        }
        for f in &s.rejected_files {
            text.push_str(&format!(
                "    REJECTED (too many bad rows; see quarantine) {}\n",
                f.location
            ));
        }
    }
    let live = &status.live_scores;
    text.push_str(&format!(
        "  live scores: {} batches; newest written at {}\n",
        live.batches,
        live.newest_written_at.as_deref().unwrap_or("-")
    ));
    text
}
