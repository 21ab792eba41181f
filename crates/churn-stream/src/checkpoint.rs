//! Which landed files a source has taken. Each micro-batch writes one immutable record,
//! `<lake>/_checkpoints/<source>/<batch_id>.json`, and commits it in the same commit plan as
//! the batch's rows (see `churn_core::commit`): a crash before the plan leaves neither, a
//! crash after it leaves a plan the next writer finishes with both. So a file is never lost
//! and never taken twice. Records are only ever added (object stores have no rename or
//! append); [`Checkpoints::compact`] folds many into one.

use std::collections::{BTreeMap, HashMap};

use churn_core::Lake;
use churn_ingest::InputFile;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StreamError};

pub const CHECKPOINTS_DIR: &str = "_checkpoints";
/// Records of a source above which the stream folds them into one.
const COMPACT_ABOVE_RECORDS: usize = 500;

/// What became of a taken file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileOutcome {
    /// It went through ingest: each row is in the lake, in quarantine with its reason, or
    /// counted as a duplicate. The batch's manifest (`_runs/<batch_id>.json`) has the counts,
    /// and status `rejected` if the batch had more rejected rows than the source allows (then
    /// all its rows are in quarantine).
    Ingested,
    /// Its batch had more rejected rows than the source's `max_reject_ratio` allows: the
    /// rejected rows are in quarantine and the others were not added. Fix the source's
    /// definition and load the file with `churn ingest` (rows already in the lake are
    /// dropped as duplicates).
    Rejected,
    /// The file as a whole could not be read (no header, missing required columns, not
    /// parseable); `error` says why. Taken again only when it is replaced.
    Failed,
}

/// One landed file as taken: where, which version, and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TakenFile {
    /// The file as the source names it: a local path or a URL.
    pub location: String,
    pub size: u64,
    pub e_tag: Option<String>,
    pub last_modified: chrono::DateTime<chrono::Utc>,
    pub outcome: FileOutcome,
    pub error: Option<String>,
}

impl TakenFile {
    pub fn new(input: &InputFile, outcome: FileOutcome, error: Option<String>) -> TakenFile {
        TakenFile {
            location: input.display.clone(),
            size: input.size,
            e_tag: input.e_tag.clone(),
            last_modified: input.last_modified,
            outcome,
            error,
        }
    }

    /// Whether `input` is this version of the file: same size and the same entity tag
    /// (or modification time, where the store gives no tag).
    fn is_version_of(&self, input: &InputFile) -> bool {
        self.size == input.size
            && match (&self.e_tag, &input.e_tag) {
                (Some(a), Some(b)) => a == b,
                _ => self.last_modified == input.last_modified,
            }
    }
}

/// One record: the files one micro-batch took, committed with its rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointRecord {
    pub source: String,
    /// The batch whose commit carried this record (its ingest manifest is
    /// `_runs/<batch_id>.json`); for a folded record, the newest batch folded in.
    pub batch_id: String,
    pub taken_at: chrono::DateTime<chrono::Utc>,
    pub files: Vec<TakenFile>,
}

impl CheckpointRecord {
    /// The record of `files` taken by batch `batch_id`, now.
    pub fn new(
        source: &str,
        batch_id: &str,
        files: &[InputFile],
        outcome: FileOutcome,
        error: Option<String>,
    ) -> CheckpointRecord {
        CheckpointRecord {
            source: source.to_string(),
            batch_id: batch_id.to_string(),
            taken_at: chrono::Utc::now(),
            files: files
                .iter()
                .map(|f| TakenFile::new(f, outcome, error.clone()))
                .collect(),
        }
    }
}

impl CheckpointRecord {
    /// The record as the batch's commit carries it: its files `Rejected` when the batch
    /// had more rejected rows than the source allows.
    pub fn as_committed(mut self, summary: &churn_ingest::IngestSummary) -> CheckpointRecord {
        if summary.status == "rejected" {
            for file in &mut self.files {
                file.outcome = FileOutcome::Rejected;
            }
        }
        self
    }
}

/// Path of a record, relative to the lake root.
pub fn record_path(source: &str, batch_id: &str) -> String {
    format!("{CHECKPOINTS_DIR}/{source}/{batch_id}.json")
}

/// The taken files of one source, as read from its records.
#[derive(Debug, Default)]
pub struct Checkpoints {
    source: String,
    /// Record files already read (relative paths), so a reload reads only new ones.
    read: BTreeMap<String, ()>,
    /// location → every version taken.
    taken: HashMap<String, Vec<TakenFile>>,
    /// The newest record read.
    last: Option<CheckpointRecord>,
}

impl Checkpoints {
    pub fn new(source: &str) -> Checkpoints {
        Checkpoints {
            source: source.to_string(),
            ..Default::default()
        }
    }

    /// Reads the records written since the last call (all of them the first time). Called
    /// under the writer lease before each batch, so records of another process count too.
    pub async fn refresh(&mut self, lake: &Lake) -> Result<()> {
        let dir = format!("{CHECKPOINTS_DIR}/{}/", self.source);
        for meta in lake.list(&dir).await? {
            let rel = lake.relative(&meta.location);
            if !rel.ends_with(".json") || self.read.contains_key(&rel) {
                continue;
            }
            let record: CheckpointRecord =
                lake.read_json(&meta.location)
                    .await
                    .map_err(|e| StreamError::Checkpoint {
                        path: lake.folder_url(&rel),
                        reason: e.to_string(),
                    })?;
            self.add(record);
            self.read.insert(rel, ());
        }
        Ok(())
    }

    /// Counts `record` as committed.
    pub fn add(&mut self, record: CheckpointRecord) {
        for file in &record.files {
            let versions = self.taken.entry(file.location.clone()).or_default();
            if !versions.contains(file) {
                versions.push(file.clone());
            }
        }
        if self
            .last
            .as_ref()
            .is_none_or(|last| record.taken_at >= last.taken_at)
        {
            self.last = Some(CheckpointRecord {
                files: Vec::new(),
                ..record
            });
        }
    }

    /// Whether this version of the file was already taken.
    pub fn has_taken(&self, input: &InputFile) -> bool {
        self.taken
            .get(&input.display)
            .is_some_and(|versions| versions.iter().any(|v| v.is_version_of(input)))
    }

    /// Every taken file version, by location.
    pub fn files(&self) -> impl Iterator<Item = &TakenFile> {
        self.taken.values().flatten()
    }

    /// The newest record (without its file list).
    pub fn last(&self) -> Option<&CheckpointRecord> {
        self.last.as_ref()
    }

    /// Folds the records into one when there are many, so that a restart reads a few files
    /// instead of thousands. The folded record is written before the old ones are deleted;
    /// a crash in between leaves both, which read back as the same set.
    pub async fn compact(&mut self, lake: &Lake) -> Result<()> {
        if self.read.len() <= COMPACT_ABOVE_RECORDS {
            return Ok(());
        }
        let Some(last) = self.last.clone() else {
            return Ok(());
        };
        let mut files: Vec<TakenFile> = self.files().cloned().collect();
        files.sort_by(|a, b| (&a.location, a.last_modified).cmp(&(&b.location, b.last_modified)));
        let folded = CheckpointRecord { files, ..last };
        let rel = format!(
            "{CHECKPOINTS_DIR}/{}/{}-folded.json",
            self.source, folded.batch_id
        );
        lake.ensure_writable()?;
        lake.write_json(&lake.path(&rel), &folded).await?;
        let old: Vec<String> = self.read.keys().filter(|k| **k != rel).cloned().collect();
        for path in old {
            lake.delete(&lake.path(&path)).await?;
            self.read.remove(&path);
        }
        self.read.insert(rel, ());
        tracing::info!(source = %self.source, files = self.taken.len(), "checkpoints folded");
        Ok(())
    }
}
