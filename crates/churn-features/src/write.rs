//! Writing a query result as the one file of a Hive partition (`features/as_of=D/`),
//! atomically: staged, then moved in place of whatever the partition held before, so a re-run
//! for the same date replaces rather than duplicates.

use churn_core::commit::{CommitPlan, commit, staging_dir};
use churn_core::parquet_io::object_writer;
use churn_core::{CoreError, Lake};
use datafusion::prelude::DataFrame;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::error::{FeatureError, Result};

/// Where a partition was written and how many rows it holds.
pub struct Written {
    pub path: String,
    pub rows: u64,
}

pub use churn_core::commit::job_id;

/// The run manifest of a partition write (`_runs/<job>.json`): what was written, for which
/// date, with the values specific to its kind (a snapshot's lookback, a fit's parameters, a
/// score's model) under their own keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionManifest {
    /// `features`, `labels`, `btyd`, `score`, `segment` or `triggers`.
    pub kind: String,
    /// The partition's as-of date, `YYYY-MM-DD`.
    pub as_of: String,
    /// Rows written (set at commit, [`StagedPartition::commit`]).
    #[serde(default)]
    pub rows: u64,
    /// The written file, relative to the lake root (set at commit).
    #[serde(default)]
    pub file: String,
    /// The kind's own values, stored beside the shared keys.
    #[serde(flatten)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl PartitionManifest {
    /// A manifest of `kind` for `as_of`, without details yet.
    pub fn new(kind: &str, as_of: chrono::NaiveDate) -> Self {
        PartitionManifest {
            kind: kind.to_string(),
            as_of: as_of.to_string(),
            rows: 0,
            file: String::new(),
            details: serde_json::Map::new(),
        }
    }

    /// Adds the kind-specific value `key`.
    pub fn with(mut self, key: &str, value: impl Serialize) -> Self {
        // Plain numbers, strings and derived-Serialize structs cannot fail to serialise.
        let value = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        self.details.insert(key.to_string(), value);
        self
    }
}

/// Streams a query result into one Parquet object; returns the row count.
pub async fn write_parquet(lake: &Lake, df: DataFrame, rel: &str) -> Result<u64> {
    let schema = df.schema().as_arrow().clone();
    let mut stream = df.execute_stream().await?;
    let parquet_error =
        |e: datafusion::parquet::errors::ParquetError| FeatureError::DataFusion(e.into());
    let mut writer = object_writer(
        lake.store().clone(),
        lake.path(rel),
        schema.into(),
        churn_core::lake::writer_properties(),
    )
    .map_err(parquet_error)?;
    let mut rows = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        rows += batch.num_rows() as u64;
        writer.write(&batch).await.map_err(parquet_error)?;
    }
    writer.close().await.map_err(parquet_error)?;
    Ok(rows)
}

/// A partition's file written to staging and not yet in place: what [`stage_partition`]
/// gives, so that its caller can check the rows before [`StagedPartition::commit`] makes them
/// visible.
pub struct StagedPartition {
    folder: String,
    job: String,
    /// The file's final path, relative to the lake root.
    file: String,
    staged: String,
    /// Rows written.
    pub rows: u64,
}

/// Streams `df` into the staging folder of `job`, as the file that will become
/// `<folder>/part-<job>.parquet` at commit.
pub async fn stage_partition(
    lake: &Lake,
    df: DataFrame,
    folder: &str,
    job: &str,
) -> Result<StagedPartition> {
    let file = format!("{folder}/part-{job}.parquet");
    let staged = format!("{}/{file}", staging_dir(job));
    let rows = write_parquet(lake, df, &staged).await?;
    Ok(StagedPartition {
        folder: folder.to_string(),
        job: job.to_string(),
        file,
        staged,
        rows,
    })
}

impl StagedPartition {
    /// Moves the staged file in place of the folder's previous files and records `manifest`
    /// (with its rows and file filled in) under `_runs/<job>.json`. Everything else the job
    /// left in its staging folder is removed by the commit.
    pub async fn commit(self, lake: &Lake, mut manifest: PartitionManifest) -> Result<Written> {
        let deletes = lake
            .list(&self.folder)
            .await?
            .iter()
            .map(|m| lake.relative(&m.location))
            .collect();
        manifest.rows = self.rows;
        manifest.file = self.file.clone();
        let manifest_path = format!("_runs/{}.json", self.job);
        let manifest = serde_json::to_value(&manifest).map_err(|source| CoreError::Json {
            path: manifest_path.clone(),
            source,
        })?;
        let plan = CommitPlan {
            batch_id: self.job,
            moves: vec![(self.staged, self.file.clone())],
            deletes,
            manifest_path,
            manifest,
        };
        commit(lake, &plan, None).await?;
        Ok(Written {
            path: self.file,
            rows: self.rows,
        })
    }
}

/// Streams `df` into `<folder>/part-<job>.parquet`, replacing the folder's previous files,
/// and records `manifest` under `_runs/<job>.json`: [`stage_partition`], then
/// [`StagedPartition::commit`].
pub async fn write_partition(
    lake: &Lake,
    df: DataFrame,
    folder: &str,
    job: &str,
    manifest: PartitionManifest,
) -> Result<Written> {
    stage_partition(lake, df, folder, job)
        .await?
        .commit(lake, manifest)
        .await
}
