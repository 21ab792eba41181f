//! `churn features`: build point-in-time feature snapshots, or list the feature catalogue.

use std::path::PathBuf;

use anyhow::Context;
use churn_core::Lake;
use churn_core::session::SessionOptions;
use churn_features::{FeatureFile, FeatureOptions, as_of_dates};

use crate::exit::UsageError;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Lake root: a local path or a URL.
    #[arg(long, required_unless_present = "list")]
    lake: Option<String>,
    /// Snapshot date(s): YYYY-MM-DD, a list (a,b,c) or a range (from..to, with --every).
    #[arg(long, required_unless_present = "list")]
    as_of: Option<String>,
    /// Step of a date range: 30d, 2w, ...
    #[arg(long)]
    every: Option<String>,
    /// Population window: customers with a purchase in the last N days before the snapshot.
    #[arg(long, default_value_t = churn_features::DEFAULT_LOOKBACK_DAYS)]
    lookback_days: u32,
    /// Folder of feature SQL files; default pipelines/features when it exists, else the
    /// built-in files.
    #[arg(long)]
    features_dir: Option<PathBuf>,
    /// Memory budget of the query engine (e.g. 2GiB, 512MiB); beyond it, work spills to disk.
    #[arg(long, value_parser = super::parse_bytes)]
    memory_limit: Option<usize>,
    #[command(flatten)]
    engine: super::EngineArg,
    /// Print the feature catalogue (name, type, description, source file) and exit.
    #[arg(long)]
    list: bool,
}

/// The feature files to use: an explicit folder, the repository's folder, or the built-ins.
pub fn feature_files(dir: Option<&PathBuf>) -> anyhow::Result<Vec<FeatureFile>> {
    let default = PathBuf::from("pipelines/features");
    Ok(match dir {
        Some(d) => FeatureFile::load_dir(d)?,
        None if default.is_dir() => FeatureFile::load_dir(&default)?,
        None => FeatureFile::built_in()?,
    })
}

pub async fn run(args: Args, json: bool) -> anyhow::Result<()> {
    let files = feature_files(args.features_dir.as_ref())?;
    if args.list {
        let entries = churn_features::catalogue(&files).await?;
        return crate::output::emit(
            json,
            &serde_json::json!({"kind": "feature_catalogue", "features": entries}),
            || {
                let mut text = format!(
                    "{:<26} {:<22} {:<28} {}\n",
                    "name", "type", "source", "description"
                );
                for e in &entries {
                    text.push_str(&format!(
                        "{:<26} {:<22} {:<28} {}\n",
                        e.name, e.data_type, e.source, e.description
                    ));
                }
                text
            },
        );
    }
    let (Some(lake), Some(as_of)) = (&args.lake, &args.as_of) else {
        return Err(UsageError("--lake and --as-of are required".into()).into());
    };
    let dates = as_of_dates(as_of, args.every.as_deref())?;
    let lake = Lake::open(lake)?;
    let options = FeatureOptions {
        lookback_days: args.lookback_days,
        session: SessionOptions::with_memory_limit(args.memory_limit).on(args.engine.engine),
        files,
    };
    let summary = crate::lease::writing(&lake, "churn features", async |lake| {
        churn_features::build_features(lake, &dates, &options)
            .await
            .with_context(|| format!("building features in {}", lake.display()))
    })
    .await?;
    crate::output::emit(json, &summary, || {
        let mut text = format!(
            "Built {} feature snapshot(s) in {} in {:.2} s:\n",
            summary.snapshots.len(),
            summary.lake,
            summary.duration_ms as f64 / 1000.0
        );
        for s in &summary.snapshots {
            text.push_str(&format!(
                "  as of {}: {} customers x {} columns -> {}\n",
                s.as_of, s.customers, s.columns, s.output
            ));
            for skipped in &s.files_skipped {
                text.push_str(&format!("    skipped {skipped}\n"));
            }
        }
        text
    })
}
