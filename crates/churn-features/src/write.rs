//! Writing a query result as the one file of a Hive partition (`features/as_of=D/`),
//! atomically: staged, then moved in place of whatever the partition held before, so a re-run
//! for the same date replaces rather than duplicates.

use churn_core::Lake;
use churn_core::commit::{CommitPlan, commit, staging_dir};
use churn_core::parquet_io::object_writer;
use datafusion::prelude::DataFrame;
use futures::StreamExt;

use crate::error::{FeatureError, Result};

/// Where a partition was written and how many rows it holds.
pub struct Written {
    pub path: String,
    pub rows: u64,
}

pub use churn_core::commit::job_id;

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

/// Streams `df` into `<folder>/part-<job>.parquet`, replacing the folder's previous files,
/// and records `manifest` under `_runs/<job>.json`. Everything else the job left in its
/// staging folder is removed by the commit.
pub async fn write_partition(
    lake: &Lake,
    df: DataFrame,
    folder: &str,
    job: &str,
    manifest: serde_json::Value,
) -> Result<Written> {
    let file = format!("{folder}/part-{job}.parquet");
    let staged = format!("{}/{file}", staging_dir(job));
    let rows = write_parquet(lake, df, &staged).await?;
    let deletes = lake
        .list(folder)
        .await?
        .iter()
        .map(|m| lake.relative(&m.location))
        .collect();
    let mut manifest = manifest;
    manifest["rows"] = rows.into();
    manifest["file"] = file.clone().into();
    let plan = CommitPlan {
        batch_id: job.to_string(),
        moves: vec![(staged, file.clone())],
        deletes,
        manifest_path: format!("_runs/{job}.json"),
        manifest,
    };
    commit(lake, &plan, None).await?;
    Ok(Written { path: file, rows })
}
