//! The micro-batch loop: poll every source's landing prefix, take the files that are complete
//! and not yet taken, and ingest them in bounded batches through the same ingest as
//! `churn ingest` (validation, quarantine, dedup, atomic commit), each batch carrying its
//! checkpoint record in its commit. The lake's writer lease is held per batch, not for the
//! life of the service, so that the nightly run and other writers get their turn.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use churn_activate::{
    Activation, LiveRulesSummary, LiveScoreSummary, LiveScorer, fire_live_rules, refresh_history,
    touched_customers,
};
use churn_core::commit::{CommitPlan, commit, job_id, staging_dir};
use churn_core::{CoreError, Lake, LeaseOptions, Table, WriterLease};
use churn_features::{EventHistory, FeatureOptions};
use churn_ingest::{
    CommitWith, IngestError, IngestOptions, IngestSummary, InputFile, SourceConfig, ingest_files,
};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{CheckpointRecord, Checkpoints, FileOutcome, record_path};
use crate::config::StreamOptions;
use crate::error::{Result, StreamError};

/// A source the stream watches: its name in the pipeline file and its checked definition
/// (its location is the landing folder or prefix).
#[derive(Debug, Clone)]
pub struct StreamSource {
    pub name: String,
    pub config: SourceConfig,
}

/// How long the service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Take what has landed and is complete, then return (for cron and tests). Files still
    /// being written get one settle period to finish.
    Once,
    /// Poll until `stop` is set (SIGTERM, SIGINT); the batch under way is finished first.
    UntilStopped,
}

/// One micro-batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchSummary {
    pub source: String,
    pub batch_id: String,
    pub files: usize,
    pub bytes: u64,
    /// `committed`; `rejected` (too many rejected rows: all in quarantine); or `failed` (the
    /// batch's files could not be read as a whole; see `failed_files`).
    pub status: String,
    pub rows_read: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub duplicates: u64,
    /// Valid rows not added because the batch was rejected (they stay in the landed files;
    /// see `FileOutcome::Rejected`). rows_read = accepted + rejected + duplicates + held_back.
    pub held_back: u64,
    /// (file, why) for files that could not be read as a whole.
    pub failed_files: Vec<(String, String)>,
    /// From the oldest file's last change to the batch's commit: how far the lake lagged
    /// behind the landing folder.
    pub lag_ms: u64,
    pub duration_ms: u64,
    /// The live scores of the customers the batch touched (see `churn_activate::live`).
    #[serde(default)]
    pub live: Option<LiveScoreSummary>,
    /// From the oldest file's last change to the live scores written.
    #[serde(default)]
    pub live_lag_ms: Option<u64>,
    /// What the live rules did for the batch's customers.
    #[serde(default)]
    pub live_rules: Option<LiveRulesSummary>,
    /// Why the batch got no live scores although it added rows (the rows are in the lake).
    #[serde(default)]
    pub live_error: Option<String>,
}

/// What a stream did until it returned.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StreamSummary {
    pub kind: String,
    pub lake: String,
    pub polls: u64,
    pub batches: u64,
    pub files_taken: u64,
    pub rows_read: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub held_back: u64,
    pub failed_files: u64,
    /// Customers given a live score.
    pub live_scored: u64,
    /// Actions of the live rules.
    pub live_actions: u64,
    /// Polls at which another writer held the lake (the batch waited for the next poll).
    pub busy_polls: u64,
    /// Files seen but not taken because they were still changing when the stream returned.
    pub still_changing: Vec<String>,
    /// The last batches (at most 100), oldest first.
    pub recent_batches: Vec<BatchSummary>,
    /// `once` or `stopped`.
    pub ended: String,
    pub duration_ms: u64,
}

const RECENT_BATCHES: usize = 100;

/// A landed file's size and modification time at the previous poll.
type Seen = HashMap<String, (u64, chrono::DateTime<chrono::Utc>)>;

/// The stream over one lake.
pub struct Stream {
    lake: Lake,
    sources: Vec<StreamSource>,
    options: StreamOptions,
    lease: LeaseOptions,
    ingest: IngestOptions,
    checkpoints: Vec<Checkpoints>,
    seen: Vec<Seen>,
    summary: StreamSummary,
    live: Option<Live>,
}

/// Live scoring after each batch: the feature files, and the scorer of the newest nightly
/// scores (read again when a newer night appears).
struct Live {
    features: FeatureOptions,
    /// The activation file, whose `live = true` rules run after each batch.
    rules: Option<Activation>,
    scorer: Option<LiveScorer>,
    /// Every customer's rows, read from the lake when the service starts (or at the first live
    /// score) and kept up to date after it, so that each batch's live scores read only its
    /// customers' rows.
    history: EventHistory,
    /// Whether "no nightly scores yet" was said already.
    said_no_scores: bool,
}

/// What one poll of one source found.
struct Landing {
    /// Complete and not yet taken, sorted by path.
    ready: Vec<InputFile>,
    /// Not yet taken and still changing.
    changing: Vec<InputFile>,
}

impl Stream {
    pub fn new(
        lake: Lake,
        sources: Vec<StreamSource>,
        options: StreamOptions,
        lease: LeaseOptions,
        ingest: IngestOptions,
        features: FeatureOptions,
        rules: Option<Activation>,
    ) -> Stream {
        let checkpoints = sources.iter().map(|s| Checkpoints::new(&s.name)).collect();
        let seen = sources.iter().map(|_| Seen::new()).collect();
        let summary = StreamSummary {
            kind: "stream".into(),
            lake: lake.display(),
            ..Default::default()
        };
        let live = options.live_scores.then_some(Live {
            features,
            rules,
            scorer: None,
            history: EventHistory::new(),
            said_no_scores: false,
        });
        Stream {
            lake,
            sources,
            options,
            lease,
            ingest,
            checkpoints,
            seen,
            summary,
            live,
        }
    }

    /// Runs the stream in `mode` until it is done or `stop` is set.
    pub async fn run(mut self, mode: Mode, stop: Arc<AtomicBool>) -> Result<StreamSummary> {
        let started = Instant::now();
        for checkpoints in &mut self.checkpoints {
            checkpoints.refresh(&self.lake).await?;
        }
        tracing::info!(lake = %self.lake.display(), sources = self.sources.len(), interval_secs = self.options.interval.as_secs(), "stream started");
        self.catch_up_live().await?;
        if mode == Mode::UntilStopped {
            self.read_history_ahead().await;
        }
        let mut settled_once = false;
        loop {
            if stop.load(Ordering::SeqCst) {
                self.summary.ended = "stopped".into();
                break;
            }
            let (took, changing) = match self.poll(mode, &stop).await {
                Ok(found) => found,
                Err(e) if mode == Mode::UntilStopped => {
                    tracing::error!(error = %error_chain(&e), "micro-batch failed; retrying at the next poll");
                    (false, Vec::new())
                }
                Err(e) => return Err(e),
            };
            if mode == Mode::Once {
                if took {
                    continue;
                }
                if !changing.is_empty() && !settled_once {
                    settled_once = true;
                    sleep_unless_stopped(self.options.settle, &stop).await;
                    continue;
                }
                self.summary.still_changing = changing;
                self.summary.ended = "once".into();
                break;
            }
            sleep_unless_stopped(self.options.interval, &stop).await;
        }
        self.summary.duration_ms = started.elapsed().as_millis() as u64;
        tracing::info!(
            batches = self.summary.batches,
            files = self.summary.files_taken,
            rows = self.summary.rows_read,
            "stream ended"
        );
        Ok(self.summary)
    }

    /// One poll of every source: takes the ready files in batches. Returns whether any file
    /// was taken and the files still changing.
    async fn poll(&mut self, mode: Mode, stop: &AtomicBool) -> Result<(bool, Vec<String>)> {
        self.summary.polls += 1;
        let mut took = false;
        let mut changing = Vec::new();
        for i in 0..self.sources.len() {
            let landing = self.look(i).await?;
            changing.extend(landing.changing.iter().map(|f| f.display.clone()));
            for batch in batches(landing.ready, &self.options) {
                if stop.load(Ordering::SeqCst) {
                    return Ok((took, changing));
                }
                match self.take(i, batch).await {
                    Ok(taken) => took |= taken,
                    Err(StreamError::Core(CoreError::LakeBusy { .. }))
                        if mode == Mode::UntilStopped =>
                    {
                        self.summary.busy_polls += 1;
                        tracing::info!(source = %self.sources[i].name, "another writer holds the lake; the batch waits for the next poll");
                        return Ok((took, changing));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok((took, changing))
    }

    /// Lists source `i`'s landing prefix and sorts its files into ready and still changing.
    async fn look(&mut self, i: usize) -> Result<Landing> {
        let listed = landed_files(&self.sources[i]).await?;
        let now = chrono::Utc::now();
        let settle = chrono::Duration::from_std(self.options.settle).unwrap_or_default();
        let previous = std::mem::take(&mut self.seen[i]);
        let mut landing = Landing {
            ready: Vec::new(),
            changing: Vec::new(),
        };
        for file in listed {
            let name = file.path.filename().unwrap_or("");
            if self.options.ignore.is_match(name) || self.checkpoints[i].has_taken(&file) {
                continue;
            }
            let key = file.display.clone();
            let unchanged = previous.get(&key) == Some(&(file.size, file.last_modified));
            self.seen[i].insert(key, (file.size, file.last_modified));
            if unchanged || now - file.last_modified >= settle {
                landing.ready.push(file);
            } else {
                landing.changing.push(file);
            }
        }
        Ok(landing)
    }

    /// Takes one batch of source `i` under the writer lease. Returns whether any file was
    /// taken (none when another process took them first).
    async fn take(&mut self, i: usize, batch: Vec<InputFile>) -> Result<bool> {
        let lease = WriterLease::acquire(&self.lake, &self.lease).await?;
        let lake = self.lake.under_lease(&lease);
        let result = self.take_under_lease(&lake, i, batch).await;
        let released = lease.release().await;
        let taken = result?;
        released?;
        Ok(taken)
    }

    async fn take_under_lease(
        &mut self,
        lake: &Lake,
        i: usize,
        mut batch: Vec<InputFile>,
    ) -> Result<bool> {
        // An interrupted batch's commit is finished first: its checkpoint record may be
        // among the moves still to apply, and would otherwise be read too late.
        churn_core::commit::recover(lake).await?;
        self.checkpoints[i].refresh(lake).await?;
        batch.retain(|f| !self.checkpoints[i].has_taken(f));
        if batch.is_empty() {
            return Ok(false);
        }
        match self.ingest_batch(lake, i, &batch).await {
            Err(StreamError::Ingest { error, .. }) if batch.len() > 1 && error.file().is_some() => {
                // One unreadable file must not hold back the others: take them one by one.
                tracing::warn!(source = %self.sources[i].name, error = %error, "a file of the batch is unreadable; taking the batch's files one at a time");
                for file in batch {
                    self.take_under_lease_one(lake, i, file).await?;
                }
                Ok(true)
            }
            Err(StreamError::Ingest { error, .. })
                if error.file().is_some_and(|f| f == batch[0].display) =>
            {
                self.record_failed(lake, i, &batch[0], &error).await?;
                Ok(true)
            }
            Err(e) => Err(e),
            Ok(()) => Ok(true),
        }
    }

    async fn take_under_lease_one(&mut self, lake: &Lake, i: usize, file: InputFile) -> Result<()> {
        match self
            .ingest_batch(lake, i, std::slice::from_ref(&file))
            .await
        {
            Err(StreamError::Ingest { error, .. })
                if error.file().is_some_and(|f| f == file.display) =>
            {
                self.record_failed(lake, i, &file, &error).await
            }
            other => other,
        }
    }

    /// Ingests `files` as one batch whose commit carries their checkpoint record.
    async fn ingest_batch(&mut self, lake: &Lake, i: usize, files: &[InputFile]) -> Result<()> {
        let started = Instant::now();
        let source = &self.sources[i];
        let batch_id = job_id("stream", &source.name);
        let record =
            CheckpointRecord::new(&source.name, &batch_id, files, FileOutcome::Ingested, None);
        let record_file = record_path(&source.name, &batch_id);
        let committed_record = record.clone();
        let options = IngestOptions {
            batch_id: Some(batch_id.clone()),
            commit_with: Some(CommitWith(Arc::new(move |summary: &IngestSummary| {
                let record = committed_record.clone().as_committed(summary);
                let json = serde_json::to_vec_pretty(&record).expect("a record serialises");
                vec![(record_file.clone(), json.into())]
            }))),
            ..self.ingest.clone()
        };
        let summary = match ingest_files(lake, &source.config, files, &options).await {
            Ok(summary) => summary,
            Err(IngestError::RejectRatioExceeded { .. }) => {
                let manifest = lake.path(&format!("_runs/{batch_id}.json"));
                let summary: IngestSummary = lake.read_json(&manifest).await?;
                tracing::error!(source = %source.name, batch_id = %batch_id, rejected = summary.rejected, rows_read = summary.rows_read, "too many rejected rows: the batch's files are recorded as rejected and nothing was added but the quarantine");
                summary
            }
            Err(error) => {
                return Err(StreamError::Ingest {
                    source_name: source.name.clone(),
                    error: Box::new(error),
                });
            }
        };
        let rejected_batch = summary.status == "rejected";
        let summary_lag_ms = lag_ms(files);
        self.checkpoints[i].add(record.as_committed(&summary));
        let lives = matches!(
            source.config.table,
            Table::Transactions | Table::CampaignEvents
        ) && !rejected_batch
            && summary.accepted > 0;
        let ((live, live_rules), live_error) = if lives {
            match self.score_live(lake, &batch_id, &summary.data_files).await {
                Ok(live) => (live, None),
                Err(e) => {
                    let e = error_chain(&e);
                    tracing::error!(batch_id = %batch_id, error = %e, "live scores failed; the batch's rows are in the lake");
                    ((None, None), Some(e))
                }
            }
        } else {
            ((None, None), None)
        };
        let source = &self.sources[i];
        self.finish_batch(BatchSummary {
            source: source.name.clone(),
            batch_id,
            files: files.len(),
            bytes: files.iter().map(|f| f.size).sum(),
            status: summary.status.clone(),
            rows_read: summary.rows_read,
            accepted: if rejected_batch { 0 } else { summary.accepted },
            rejected: summary.rejected,
            duplicates: summary.duplicates,
            held_back: if rejected_batch { summary.accepted } else { 0 },
            failed_files: Vec::new(),
            lag_ms: summary_lag_ms,
            duration_ms: started.elapsed().as_millis() as u64,
            live_lag_ms: live.as_ref().map(|_| lag_ms(files)),
            live,
            live_rules,
            live_error,
        });
        Ok(())
    }

    /// Reads the lake into the customer history before the first batch lands, so that the
    /// first batch's live scores take no longer than the next ones'. Only once the lake has
    /// nightly scores (live scores start then); a failure here is retried by the first live
    /// score.
    async fn read_history_ahead(&mut self) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        if live.scorer.is_none() {
            match LiveScorer::load(&self.lake).await {
                Ok(scorer) => live.scorer = scorer,
                Err(e) => {
                    tracing::warn!(error = %error_chain(&e), "the newest nightly scores cannot be read yet");
                    return;
                }
            }
        }
        if live.scorer.is_some()
            && let Err(e) = refresh_history(&self.lake, &mut live.history).await
        {
            tracing::warn!(error = %error_chain(&e), "the customer history cannot be read yet");
        }
    }

    /// Gives live scores to each source's newest batch when it added rows but has none: the
    /// process stopped between the batch's commit and its live scores.
    async fn catch_up_live(&mut self) -> Result<()> {
        if self.live.is_none() {
            return Ok(());
        }
        let scored: Vec<String> = self
            .lake
            .list(churn_activate::live::LIVE_FOLDER)
            .await?
            .iter()
            .map(|m| self.lake.relative(&m.location))
            .collect();
        let mut pending = Vec::new();
        for (i, source) in self.sources.iter().enumerate() {
            let Some(last) = self.checkpoints[i].last() else {
                continue;
            };
            let file = format!("/part-{}.parquet", last.batch_id);
            if !matches!(
                source.config.table,
                Table::Transactions | Table::CampaignEvents
            ) || scored.iter().any(|s| s.ends_with(&file))
            {
                continue;
            }
            let manifest = self.lake.path(&format!("_runs/{}.json", last.batch_id));
            let Ok(summary) = self.lake.read_json::<IngestSummary>(&manifest).await else {
                continue;
            };
            if summary.status == "committed" && summary.accepted > 0 {
                pending.push((summary.batch_id, summary.data_files));
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        let lease = WriterLease::acquire(&self.lake, &self.lease).await?;
        let lake = self.lake.under_lease(&lease);
        for (batch_id, data_files) in pending {
            tracing::info!(batch_id = %batch_id, "the batch was committed without its live scores (the stream stopped in between): scoring it now");
            if let Err(e) = self.score_live(&lake, &batch_id, &data_files).await {
                tracing::error!(batch_id = %batch_id, error = %error_chain(&e), "live scores failed; the batch's rows are in the lake");
            }
        }
        lease.release().await?;
        Ok(())
    }

    /// Scores again the customers in the batch's lake files and runs the live rules over
    /// them; `None` when live scores are off or the lake has no nightly scores yet. The
    /// rules' actions are written before the scores, whose file marks the batch as done.
    async fn score_live(
        &mut self,
        lake: &Lake,
        batch_id: &str,
        data_files: &[String],
    ) -> std::result::Result<
        (Option<LiveScoreSummary>, Option<LiveRulesSummary>),
        churn_activate::ActivateError,
    > {
        let Some(live) = self.live.as_mut() else {
            return Ok((None, None));
        };
        let current = match &live.scorer {
            Some(scorer) => scorer.is_current(lake).await?,
            None => false,
        };
        if !current {
            live.scorer = LiveScorer::load(lake).await?;
        }
        let Some(scorer) = &live.scorer else {
            if !live.said_no_scores {
                live.said_no_scores = true;
                tracing::info!(
                    "the lake has no nightly scores yet: live scores start after the first `churn score` (or `churn run` with a [score] step)"
                );
            }
            return Ok((None, None));
        };
        let (touched, newest_day) = touched_customers(lake, data_files).await?;
        let Some(newest_day) = newest_day else {
            return Ok((None, None));
        };
        let mut scored = scorer
            .score(
                lake,
                &mut live.history,
                &touched,
                newest_day,
                batch_id,
                &live.features,
            )
            .await?;
        let rules = match &live.rules {
            Some(activation) => {
                fire_live_rules(
                    lake,
                    activation,
                    &scored,
                    &touched,
                    batch_id,
                    scored.scored_at,
                    scored.day,
                )
                .await?
            }
            None => None,
        };
        scored.write(lake).await?;
        self.summary.live_scored += scored.summary.scored;
        self.summary.live_actions += rules.as_ref().map_or(0, |r| r.actions);
        Ok((Some(scored.summary), rules))
    }

    /// Commits a checkpoint record that marks `file` failed, with the reason, and a manifest
    /// saying so, so that it is reported rather than retried at every poll.
    async fn record_failed(
        &mut self,
        lake: &Lake,
        i: usize,
        file: &InputFile,
        error: &IngestError,
    ) -> Result<()> {
        let source = &self.sources[i];
        let batch_id = job_id("stream", &source.name);
        let record = CheckpointRecord::new(
            &source.name,
            &batch_id,
            std::slice::from_ref(file),
            FileOutcome::Failed,
            Some(error.to_string()),
        );
        let target = record_path(&source.name, &batch_id);
        let staged = format!("{}/{target}", staging_dir(&batch_id));
        lake.write_json(&lake.path(&staged), &record).await?;
        let summary = BatchSummary {
            source: source.name.clone(),
            batch_id: batch_id.clone(),
            files: 1,
            bytes: file.size,
            status: "failed".into(),
            rows_read: 0,
            accepted: 0,
            rejected: 0,
            duplicates: 0,
            held_back: 0,
            failed_files: vec![(file.display.clone(), error.to_string())],
            lag_ms: lag_ms(std::slice::from_ref(file)),
            duration_ms: 0,
            live: None,
            live_lag_ms: None,
            live_rules: None,
            live_error: None,
        };
        let plan = CommitPlan {
            batch_id: batch_id.clone(),
            moves: vec![(staged, target)],
            deletes: Vec::new(),
            manifest_path: format!("_runs/{batch_id}.json"),
            manifest: serde_json::json!({
                "kind": "stream_failed_file",
                "batch_id": batch_id,
                "source": source.name,
                "file": file.display,
                "error": error.to_string(),
            }),
        };
        commit(lake, &plan, None).await?;
        tracing::error!(source = %source.name, file = %file.display, error = %error, "file cannot be read as a whole; recorded as failed (it is taken again once replaced)");
        self.checkpoints[i].add(record);
        self.summary.failed_files += 1;
        self.finish_batch(summary);
        Ok(())
    }

    fn finish_batch(&mut self, batch: BatchSummary) {
        tracing::info!(
            source = %batch.source,
            batch_id = %batch.batch_id,
            status = %batch.status,
            files = batch.files,
            rows_read = batch.rows_read,
            accepted = batch.accepted,
            rejected = batch.rejected,
            duplicates = batch.duplicates,
            lag_ms = batch.lag_ms,
            duration_ms = batch.duration_ms,
            "micro-batch done"
        );
        let s = &mut self.summary;
        s.batches += 1;
        s.files_taken += batch.files as u64;
        s.rows_read += batch.rows_read;
        s.accepted += batch.accepted;
        s.rejected += batch.rejected;
        s.duplicates += batch.duplicates;
        s.held_back += batch.held_back;
        if s.recent_batches.len() == RECENT_BATCHES {
            s.recent_batches.remove(0);
        }
        s.recent_batches.push(batch);
    }
}

/// Every file at the source's location now (none when the folder or prefix is absent).
pub(crate) async fn landed_files(source: &StreamSource) -> Result<Vec<InputFile>> {
    match churn_ingest::resolve_inputs(&source.config).await {
        Ok(files) => Ok(files),
        Err(IngestError::NoInputFiles { .. }) => Ok(Vec::new()),
        Err(error) => Err(StreamError::Ingest {
            source_name: source.name.clone(),
            error: Box::new(error),
        }),
    }
}

/// Ready files (sorted by path) cut into batches of at most `max_batch_files` files and
/// `max_batch_bytes` bytes; a file larger than that is a batch of its own.
fn batches(ready: Vec<InputFile>, options: &StreamOptions) -> Vec<Vec<InputFile>> {
    let mut batches: Vec<Vec<InputFile>> = Vec::new();
    let mut bytes = 0u64;
    for file in ready {
        let full = batches.last().is_none_or(|b| {
            b.len() >= options.max_batch_files || bytes + file.size > options.max_batch_bytes
        });
        if full {
            batches.push(Vec::new());
            bytes = 0;
        }
        bytes += file.size;
        batches.last_mut().expect("pushed above").push(file);
    }
    batches
}

fn lag_ms(files: &[InputFile]) -> u64 {
    let oldest = files.iter().map(|f| f.last_modified).min();
    oldest.map_or(0, |t| {
        (chrono::Utc::now() - t).num_milliseconds().max(0) as u64
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Sleeps for `duration`, waking early when `stop` is set.
async fn sleep_unless_stopped(duration: Duration, stop: &AtomicBool) {
    let step = Duration::from_millis(100);
    let until = Instant::now() + duration;
    while !stop.load(Ordering::SeqCst) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        tokio::time::sleep(left.min(step)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, size: u64) -> InputFile {
        let store: Arc<dyn object_store::ObjectStore> =
            Arc::new(object_store::memory::InMemory::new());
        InputFile {
            store,
            path: name.into(),
            display: name.into(),
            format: churn_ingest::Format::Csv,
            size,
            last_modified: chrono::Utc::now(),
            e_tag: None,
            local_path: None,
        }
    }

    fn names(batches: &[Vec<InputFile>]) -> Vec<Vec<String>> {
        batches
            .iter()
            .map(|b| b.iter().map(|f| f.display.clone()).collect())
            .collect()
    }

    #[test]
    fn batches_hold_at_most_the_file_and_byte_limits() {
        let options = StreamOptions {
            max_batch_files: 2,
            max_batch_bytes: 100,
            ..Default::default()
        };
        let ready = vec![
            file("a", 10),
            file("b", 10),
            file("c", 10),
            file("d", 90),
            file("e", 500),
            file("f", 1),
        ];
        assert_eq!(
            names(&batches(ready, &options)),
            vec![vec!["a", "b"], vec!["c", "d"], vec!["e"], vec!["f"],]
        );
    }
}
