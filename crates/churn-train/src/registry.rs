//! The model registry: `<lake>/_models/<name>/<version>/` holds the artifact (everything
//! needed to score: spec, preprocessing, fitted model, calibration), the training manifest,
//! the metrics, and the test snapshot's scores with explanations. Versions count up from 1.
//! `manifest.json` is written last, so a version without it is an unfinished write and is
//! not listed.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use bytes::Bytes;
use churn_core::Lake;
use churn_model::artifact::{ARTIFACT_SCHEMA_VERSION, Artifact};
use churn_model::backtest::SliceSummary;
use churn_model::dataset::Frame;
use churn_model::explain::ReasonTexts;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::train::TrainReport;

const ROOT: &str = "_models";

/// The snapshots a version was trained, calibrated and tested on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestSnapshots {
    pub training: SliceSummary,
    pub calibration: Option<SliceSummary>,
    pub test: SliceSummary,
}

/// The snapshots of the fit that scores: the backtest's spec refitted on the newest labelled
/// snapshots, the test snapshot included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoringFit {
    pub training: SliceSummary,
    pub calibration: Option<SliceSummary>,
}

/// `manifest.json`: how a version was made (written last: its presence marks a finished
/// version).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingManifest {
    pub name: String,
    pub version: u32,
    pub algorithm: String,
    /// The test snapshot.
    pub as_of: String,
    pub horizon_days: u32,
    pub seed: u64,
    /// The backtest's snapshots (its model is `backtest_artifact.json` when a scoring fit
    /// followed).
    pub snapshots: ManifestSnapshots,
    /// The refit that `artifact.json` holds; absent with `--backtest-only`, when
    /// `artifact.json` is the backtested model itself.
    #[serde(default)]
    pub scoring_fit: Option<ScoringFit>,
    /// A stable hash of the rows the model saw (ids, dates, labels, input values).
    pub data_fingerprint: String,
    pub code_version: String,
    pub features: Vec<String>,
    pub skipped_features: Vec<String>,
    /// RFC 3339, UTC.
    pub trained_at: String,
}

/// A model name with its finished versions, oldest first.
#[derive(Debug, Clone, Serialize)]
pub struct ModelVersions {
    pub name: String,
    pub versions: Vec<u32>,
}

fn version_dir(name: &str, version: u32) -> String {
    format!("{ROOT}/{name}/{version}")
}

/// Every model in the registry with its finished versions.
pub async fn list(lake: &Lake) -> Result<Vec<ModelVersions>> {
    let mut found: std::collections::BTreeMap<String, Vec<u32>> = Default::default();
    for meta in lake.list(ROOT).await? {
        let rel = lake.relative(&meta.location);
        let parts: Vec<&str> = rel.split('/').collect();
        if let [_, name, version, "manifest.json"] = parts[..]
            && let Ok(v) = version.parse::<u32>()
        {
            found.entry(name.to_string()).or_default().push(v);
        }
    }
    Ok(found
        .into_iter()
        .map(|(name, mut versions)| {
            versions.sort_unstable();
            ModelVersions { name, versions }
        })
        .collect())
}

/// The versions of one model (empty when it has none).
pub async fn versions(lake: &Lake, name: &str) -> Result<Vec<u32>> {
    Ok(list(lake)
        .await?
        .into_iter()
        .find(|m| m.name == name)
        .map(|m| m.versions)
        .unwrap_or_default())
}

/// The version number the next training of `name` gets: one above the newest finished
/// version. What an interrupted write left in that folder (never listed: it has no manifest)
/// is removed first, so a crash does not burn a number and a re-run registers the version
/// an uninterrupted run would have. Called under the writer lease, so nobody else writes
/// there.
pub async fn next_version(lake: &Lake, name: &str) -> Result<u32> {
    let next = versions(lake, name).await?.last().map_or(1, |v| v + 1);
    let dir = version_dir(name, next);
    for meta in lake.list(&dir).await? {
        lake.delete(&meta.location).await?;
    }
    // A file whose write was cut short is not listed; the version is written again whole,
    // so such a file is only litter.
    if let Err(error) = lake.remove_interrupted_uploads(&dir).await {
        tracing::warn!(folder = %dir, %error, "could not remove an interrupted write's file");
    }
    Ok(next)
}

fn json_bytes<T: Serialize>(path: &str, value: &T) -> Result<Bytes> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| TrainError::BadRegistryEntry {
        path: path.to_string(),
        reason: format!("cannot serialise: {e}"),
    })?;
    bytes.push(b'\n');
    Ok(Bytes::from(bytes))
}

/// The test snapshot's calibrated scores, labels and reasons as a record batch.
fn scores_batch(frame: &Frame, scores: &[f64], reasons: &ReasonTexts) -> Result<RecordBatch> {
    let mut fields = vec![
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("churn_probability", DataType::Float64, false),
        Field::new("churned", DataType::Float64, false),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(&frame.customer_ids)),
        Arc::new(Float64Array::from(scores.to_vec())),
        Arc::new(Float64Array::from(frame.churned.clone())),
    ];
    for (direction, texts) in [("up", &reasons.up), ("down", &reasons.down)] {
        for (k, texts) in texts.iter().enumerate() {
            fields.push(Field::new(
                format!("reason_{direction}_{}", k + 1),
                DataType::Utf8,
                true,
            ));
            columns.push(Arc::new(texts.iter().collect::<StringArray>()));
        }
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(datafusion::error::DataFusionError::from)?)
}

/// What a registered version holds.
pub struct Entry<'a> {
    /// The model to score with.
    pub artifact: &'a Artifact,
    /// The backtested model, when `artifact` is a refit of it.
    pub backtest_artifact: Option<&'a Artifact>,
    pub manifest: &'a TrainingManifest,
    pub report: &'a TrainReport,
    pub test_frame: &'a Frame,
    pub test_scores: &'a [f64],
    pub reasons: &'a ReasonTexts,
}

/// Where a version lives, as a path or URL a user can open.
pub fn version_path(lake: &Lake, name: &str, version: u32) -> String {
    format!(
        "{}/{}/",
        lake.display().trim_end_matches('/'),
        version_dir(name, version)
    )
}

/// Writes a version: artifact, metrics, test scores, then the manifest.
pub async fn write(lake: &Lake, entry: Entry<'_>) -> Result<()> {
    let dir = version_dir(&entry.manifest.name, entry.manifest.version);
    let put_json = async |file: &str, bytes: Result<Bytes>| -> Result<()> {
        lake.put(&lake.path(&format!("{dir}/{file}")), bytes?)
            .await?;
        Ok(())
    };
    put_json("artifact.json", json_bytes(&dir, entry.artifact)).await?;
    if let Some(backtested) = entry.backtest_artifact {
        put_json("backtest_artifact.json", json_bytes(&dir, backtested)).await?;
    }
    put_json("metrics.json", json_bytes(&dir, entry.report)).await?;
    let batch = scores_batch(entry.test_frame, entry.test_scores, entry.reasons)?;
    lake.write_parquet(
        &lake.path(&test_scores_path(
            &entry.manifest.name,
            entry.manifest.version,
        )),
        &[batch],
    )
    .await?;
    put_json("manifest.json", json_bytes(&dir, entry.manifest)).await
}

/// A registered version read back.
pub struct Stored {
    pub version: u32,
    pub artifact: Artifact,
    pub manifest: TrainingManifest,
    pub report: TrainReport,
}

/// Parses `NAME` or `NAME@VERSION`.
pub fn parse_reference(reference: &str) -> Result<(String, Option<u32>)> {
    match reference.split_once('@') {
        None => Ok((reference.to_string(), None)),
        Some((name, version)) => version
            .parse::<u32>()
            .map(|v| (name.to_string(), Some(v)))
            .map_err(|_| TrainError::InvalidModelReference(reference.to_string())),
    }
}

/// Reads `name` at `version`, or its newest version.
pub async fn read(lake: &Lake, name: &str, version: Option<u32>) -> Result<Stored> {
    let known = versions(lake, name).await?;
    let version = match version {
        None => *known.last().ok_or_else(|| TrainError::UnknownModel {
            name: name.to_string(),
            registry: format!("{}/{ROOT}/", lake.display().trim_end_matches('/')),
        })?,
        Some(v) if known.contains(&v) => v,
        Some(v) => {
            return Err(TrainError::UnknownVersion {
                name: name.to_string(),
                version: v.to_string(),
                known: if known.is_empty() {
                    "none".into()
                } else {
                    known
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            });
        }
    };
    let dir = version_dir(name, version);
    let artifact: Artifact = read_json(lake, &dir, "artifact.json").await?;
    if artifact.schema_version != ARTIFACT_SCHEMA_VERSION {
        return Err(TrainError::BadRegistryEntry {
            path: format!("{dir}/artifact.json"),
            reason: format!(
                "artifact schema version {} is not the {ARTIFACT_SCHEMA_VERSION} this churn reads",
                artifact.schema_version
            ),
        });
    }
    Ok(Stored {
        version,
        artifact,
        manifest: read_json(lake, &dir, "manifest.json").await?,
        report: read_json(lake, &dir, "metrics.json").await?,
    })
}

/// The manifest and metrics of a finished version, without its artifact: what a report over
/// every version needs.
pub async fn read_summary(
    lake: &Lake,
    name: &str,
    version: u32,
) -> Result<(TrainingManifest, TrainReport)> {
    let dir = version_dir(name, version);
    Ok((
        read_json(lake, &dir, "manifest.json").await?,
        read_json(lake, &dir, "metrics.json").await?,
    ))
}

/// Where a version's test-snapshot scores are, relative to the lake root.
pub fn test_scores_path(name: &str, version: u32) -> String {
    format!("{}/test_scores.parquet", version_dir(name, version))
}

async fn read_json<T: DeserializeOwned>(lake: &Lake, dir: &str, file: &str) -> Result<T> {
    let bytes = lake.get(&lake.path(&format!("{dir}/{file}"))).await?;
    serde_json::from_slice(&bytes).map_err(|e| TrainError::BadRegistryEntry {
        path: format!("{dir}/{file}"),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unfinished_version_is_cleared_and_its_number_taken_again() {
        let lake = Lake::open("memory://registry-test").unwrap();
        let put = async |rel: &str| {
            lake.put(&lake.path(rel), Bytes::from_static(b"{}"))
                .await
                .unwrap();
        };
        assert_eq!(next_version(&lake, "m").await.unwrap(), 1);
        // Version 1 finished (it has its manifest); version 2 was interrupted before it.
        put("_models/m/1/artifact.json").await;
        put("_models/m/1/manifest.json").await;
        put("_models/m/2/artifact.json").await;
        put("_models/m/2/metrics.json").await;
        assert_eq!(versions(&lake, "m").await.unwrap(), vec![1]);
        assert_eq!(next_version(&lake, "m").await.unwrap(), 2);
        assert!(lake.list("_models/m/2").await.unwrap().is_empty());
        assert_eq!(lake.list("_models/m/1").await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_write_cut_short_in_an_unfinished_version_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
        // Version 1 was being registered when its process was killed: metrics written, the
        // artifact's upload under way (the local store's `NAME#N`), no manifest.
        lake.put(
            &lake.path("_models/m/1/metrics.json"),
            Bytes::from_static(b"{}"),
        )
        .await
        .unwrap();
        let version = dir.path().join("_models/m/1");
        std::fs::write(version.join("artifact.json#1"), b"{\"half").unwrap();
        assert_eq!(next_version(&lake, "m").await.unwrap(), 1);
        assert_eq!(std::fs::read_dir(&version).unwrap().count(), 0);
    }
}
