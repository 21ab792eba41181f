//! `churn ingest`: load one source into the lake.

use std::path::PathBuf;

use anyhow::Context;
use churn_core::Lake;
use churn_ingest::{IngestOptions, IngestSummary, SourceConfig, SourceSpec};

use crate::exit::UsageError;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Lake root: a local path or a URL (file://, s3://, memory://). With --config, defaults
    /// to the pipeline file's lake.
    #[arg(long)]
    lake: Option<String>,
    /// Table to load: transactions, customers or campaign_events.
    #[arg(long, required_unless_present = "config")]
    table: Option<String>,
    /// File, folder, glob or URL to read.
    #[arg(long, required_unless_present = "config", conflicts_with = "config")]
    source: Option<String>,
    /// Input format; default from each file's extension.
    #[arg(long)]
    format: Option<String>,
    /// Text encoding: utf-8 (default) or gb18030.
    #[arg(long)]
    encoding: Option<String>,
    /// CSV delimiter (default ",", use "\t" for tab).
    #[arg(long)]
    delimiter: Option<String>,
    /// Map a canonical column to a source column: --map customer_id=会员编号 (repeatable).
    #[arg(long = "map", value_name = "CANONICAL=SOURCE")]
    maps: Vec<String>,
    /// Time zone of timestamps without an offset (default: the lake's; a new lake takes it).
    #[arg(long)]
    timezone: Option<String>,
    /// Extra timestamp format in chrono syntax, e.g. "%d/%m/%Y %H:%M" (repeatable).
    #[arg(long = "timestamp-format")]
    timestamp_formats: Vec<String>,
    /// Extra date format for date columns (repeatable).
    #[arg(long = "date-format")]
    date_formats: Vec<String>,
    /// Keep columns not in the contract as JSON in the `extra` column.
    #[arg(long)]
    keep_extra_columns: bool,
    /// Share of rejected rows (0-1) above which nothing is added and the exit code is 3.
    #[arg(long)]
    max_reject_ratio: Option<f64>,
    /// Pipeline file holding the source definition (use with --source-name).
    #[arg(long, requires = "source_name")]
    config: Option<PathBuf>,
    /// Name of the source section in the pipeline file.
    #[arg(long)]
    source_name: Option<String>,
    #[command(flatten)]
    memory: MemoryArgs,
}

/// How much of a batch an ingest holds in memory (`ingest` and `stream`).
#[derive(Debug, clap::Args)]
pub struct MemoryArgs {
    /// Rows held in memory before they are sorted by day into a run.
    #[arg(long, default_value_t = churn_ingest::DEFAULT_BUFFER_ROWS)]
    buffer_rows: usize,
    /// Memory (MiB) a batch's sorted runs may take; further runs are spilled to the lake's
    /// staging folder and read back at the end.
    #[arg(long, default_value_t = churn_ingest::DEFAULT_RUN_MEMORY_MIB)]
    run_memory_mib: usize,
}

impl MemoryArgs {
    /// The ingest options these flags set, the others at their defaults.
    pub fn options(&self) -> IngestOptions {
        IngestOptions {
            buffer_rows: self.buffer_rows.max(1),
            run_memory_bytes: self.run_memory_mib.saturating_mul(1 << 20),
            ..Default::default()
        }
    }

    /// The same settings for the ingest `churn bench ingest` times (passed on as flags, which
    /// that `churn ingest` reads as above).
    pub fn bench(&self) -> churn_bench::IngestMemory {
        churn_bench::IngestMemory {
            buffer_rows: self.buffer_rows,
            run_memory_mib: self.run_memory_mib,
        }
    }
}

fn spec_from_flags(args: &Args) -> anyhow::Result<SourceSpec> {
    let mut columns = std::collections::BTreeMap::new();
    for m in &args.maps {
        let (canonical, source) = m
            .split_once('=')
            .ok_or_else(|| UsageError(format!("--map expects CANONICAL=SOURCE, got {m:?}")))?;
        columns.insert(canonical.trim().to_string(), source.trim().to_string());
    }
    Ok(SourceSpec {
        table: args.table.clone().unwrap_or_default(),
        path: args.source.clone().unwrap_or_default(),
        format: args.format.clone(),
        encoding: args.encoding.clone(),
        delimiter: args.delimiter.clone(),
        timestamp_formats: args.timestamp_formats.clone(),
        date_formats: args.date_formats.clone(),
        timezone: args.timezone.clone(),
        columns,
        keep_extra_columns: args.keep_extra_columns,
        max_reject_ratio: args.max_reject_ratio,
    })
}

fn resolve_source(args: &Args) -> anyhow::Result<(SourceConfig, Option<String>)> {
    match (&args.config, &args.source_name) {
        (Some(path), Some(name)) => {
            let pipeline = churn_pipeline::Pipeline::load(path)?;
            let source = pipeline.source(name)?.clone();
            Ok((source, pipeline.lake.clone()))
        }
        _ => Ok((spec_from_flags(args)?.validate()?, None)),
    }
}

pub async fn run(args: Args, json: bool) -> anyhow::Result<()> {
    let (source, pipeline_lake) = resolve_source(&args)?;
    let lake_location = args.lake.clone().or(pipeline_lake).ok_or_else(|| {
        UsageError("--lake is required (or a pipeline file with [lake] path)".into())
    })?;
    let lake = Lake::open(&lake_location)?;
    let options = args.memory.options();
    let summary = crate::lease::writing(&lake, "churn ingest", async |lake| {
        churn_ingest::ingest(lake, &source, &options)
            .await
            .with_context(|| format!("ingesting {} into {}", source.location, lake.display()))
    })
    .await?;
    crate::output::emit(json, &summary, || human(&summary))
}

/// Readable account of an ingest.
pub fn human(s: &IngestSummary) -> String {
    let mut text = format!(
        "Ingested {} from {} into {} (batch {}):\n",
        s.table, s.source, s.lake, s.batch_id
    );
    text.push_str(&format!(
        "  rows read   {:>10}\n  accepted    {:>10}\n",
        s.rows_read, s.accepted
    ));
    let reasons: Vec<String> = s
        .rejected_by_reason
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    text.push_str(&format!("  rejected    {:>10}", s.rejected));
    if !reasons.is_empty() {
        text.push_str(&format!(
            "  ({}) -> {}",
            reasons.join(", "),
            s.quarantine_files.first().map(String::as_str).unwrap_or("")
        ));
    }
    text.push_str(&format!("\n  duplicates  {:>10}\n", s.duplicates));
    if s.repaired_invalid_text > 0 {
        text.push_str(&format!(
            "  repaired    {:>10}  text values with invalid bytes (replaced by U+FFFD)\n",
            s.repaired_invalid_text
        ));
    }
    let extra: Vec<&str> = s
        .files
        .iter()
        .flat_map(|f| f.extra_columns.iter().map(String::as_str))
        .collect();
    if !extra.is_empty() {
        text.push_str(&format!(
            "  extra columns not in the contract: {}\n",
            extra.join(", ")
        ));
    }
    text.push_str(&format!(
        "  {} data file(s) in {} partition(s); manifest {}; {:.2} s ({:.0} rows/s)\n",
        s.data_files.len(),
        s.partitions,
        s.manifest,
        s.duration_ms as f64 / 1000.0,
        s.rows_per_second
    ));
    text
}
