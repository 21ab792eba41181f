//! `churn stream status`: for each watched source, what has been taken (and what failed or
//! was rejected), the newest batch, and what is waiting in the landing prefix now: how many
//! files and bytes, and how long the oldest has waited (the stream's lag); and the live
//! scores: how many batches have them and when the newest were written. Reads only; it
//! never takes the writer lease.

use churn_core::Lake;
use serde::Serialize;

use crate::checkpoint::{Checkpoints, FileOutcome, TakenFile};
use crate::config::StreamOptions;
use crate::error::Result;
use crate::service::StreamSource;

#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    pub source: String,
    /// The landing folder or prefix.
    pub location: String,
    /// File versions taken so far, of every outcome.
    pub taken_files: usize,
    /// Files that could not be read as a whole, with the reason.
    pub failed_files: Vec<TakenFile>,
    /// Files whose batch had too many rejected rows.
    pub rejected_files: Vec<TakenFile>,
    pub last_batch_id: Option<String>,
    pub last_taken_at: Option<String>,
    /// Files in the landing prefix not taken yet (ignored names excluded).
    pub waiting_files: usize,
    pub waiting_bytes: u64,
    /// Seconds since the oldest waiting file last changed: how far the lake lags behind.
    pub lag_secs: Option<f64>,
    /// Whether the last batch has its live scores (false: the stream stopped between the
    /// batch's commit and its live scores, which it gives them when it starts again).
    pub last_batch_live_scored: Option<bool>,
}

/// The live scores in the lake.
#[derive(Debug, Clone, Serialize)]
pub struct LiveStatus {
    /// Batches with a live scores file.
    pub batches: usize,
    /// When the newest live scores file was written.
    pub newest_written_at: Option<String>,
    pub newest_file: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StreamStatus {
    pub kind: String,
    pub lake: String,
    pub sources: Vec<SourceStatus>,
    pub live_scores: LiveStatus,
}

/// The status of every source of the stream.
pub async fn status(
    lake: &Lake,
    sources: &[StreamSource],
    options: &StreamOptions,
) -> Result<StreamStatus> {
    let now = chrono::Utc::now();
    let live_files = lake.list(churn_activate::live::LIVE_FOLDER).await?;
    let newest = live_files.iter().max_by_key(|m| m.last_modified);
    let live_scores = LiveStatus {
        batches: live_files.len(),
        newest_written_at: newest.map(|m| {
            m.last_modified
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        }),
        newest_file: newest.map(|m| lake.relative(&m.location)),
    };
    let live_scored = |batch_id: &str| {
        let file = format!("/part-{batch_id}.parquet");
        live_files
            .iter()
            .any(|m| lake.relative(&m.location).ends_with(&file))
    };
    let mut out = Vec::new();
    for source in sources {
        let mut checkpoints = Checkpoints::new(&source.name);
        checkpoints.refresh(lake).await?;
        let listed = crate::service::landed_files(source).await?;
        let waiting: Vec<_> = listed
            .into_iter()
            .filter(|f| {
                !options.ignore.is_match(f.path.filename().unwrap_or(""))
                    && !checkpoints.has_taken(f)
            })
            .collect();
        let with_outcome = |outcome| {
            let mut files: Vec<TakenFile> = checkpoints
                .files()
                .filter(|f| f.outcome == outcome)
                .cloned()
                .collect();
            files.sort_by(|a, b| a.location.cmp(&b.location));
            files
        };
        out.push(SourceStatus {
            source: source.name.clone(),
            location: source.config.location.clone(),
            taken_files: checkpoints.files().count(),
            failed_files: with_outcome(FileOutcome::Failed),
            rejected_files: with_outcome(FileOutcome::Rejected),
            last_batch_id: checkpoints.last().map(|r| r.batch_id.clone()),
            last_taken_at: checkpoints.last().map(|r| {
                r.taken_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            }),
            waiting_files: waiting.len(),
            waiting_bytes: waiting.iter().map(|f| f.size).sum(),
            lag_secs: waiting
                .iter()
                .map(|f| f.last_modified)
                .min()
                .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0),
            last_batch_live_scored: checkpoints.last().map(|r| live_scored(&r.batch_id)),
        });
    }
    Ok(StreamStatus {
        kind: "stream_status".into(),
        lake: lake.display(),
        sources: out,
        live_scores,
    })
}
