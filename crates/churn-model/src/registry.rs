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
use serde::{Deserialize, Serialize};

use crate::calibrate::Calibrator;
use crate::classifier::Classifier;
use crate::dataset::{Frame, Preprocessor};
use crate::error::{ModelError, Result};
use crate::explain::{Explanation, REASONS};
use crate::spec::ModelSpec;

/// Bumped whenever the artifact's layout changes incompatibly.
pub const ARTIFACT_SCHEMA_VERSION: u32 = 1;

const ROOT: &str = "_models";

/// A trained model, as data. Serialised deterministically: the same data and seed give the
/// same bytes.
#[derive(Serialize, Deserialize)]
pub struct Artifact {
    pub schema_version: u32,
    pub name: String,
    pub spec: ModelSpec,
    pub preprocessor: Preprocessor,
    pub classifier: Classifier,
    pub calibrator: Calibrator,
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

/// The version number the next training of `name` gets. Counts unfinished writes too, so a
/// crashed write's folder is never reused.
pub async fn next_version(lake: &Lake, name: &str) -> Result<u32> {
    let mut highest = 0;
    for meta in lake.list(&format!("{ROOT}/{name}")).await? {
        let rel = lake.relative(&meta.location);
        if let Some(v) = rel.split('/').nth(2).and_then(|v| v.parse::<u32>().ok()) {
            highest = highest.max(v);
        }
    }
    Ok(highest + 1)
}

fn json_bytes<T: Serialize>(value: &T) -> Bytes {
    let mut bytes = serde_json::to_vec_pretty(value).expect("registry values serialise");
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// The test snapshot's calibrated scores, labels and reasons as a record batch.
fn scores_batch(frame: &Frame, scores: &[f64], explanations: &[Explanation]) -> RecordBatch {
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
    for (direction, pick) in [("up", true), ("down", false)] {
        for k in 0..REASONS {
            fields.push(Field::new(
                format!("reason_{direction}_{}", k + 1),
                DataType::Utf8,
                true,
            ));
            let texts: StringArray = explanations
                .iter()
                .map(|e| {
                    let list = if pick { &e.up } else { &e.down };
                    list.get(k).map(|r| r.text.as_str())
                })
                .collect();
            columns.push(Arc::new(texts));
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("columns match fields")
}

/// What a registered version holds.
pub struct Entry<'a> {
    pub artifact: &'a Artifact,
    pub manifest: serde_json::Value,
    pub metrics: serde_json::Value,
    pub test_frame: &'a Frame,
    pub test_scores: &'a [f64],
    pub explanations: &'a [Explanation],
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
pub async fn write(lake: &Lake, version: u32, entry: Entry<'_>) -> Result<()> {
    let dir = version_dir(&entry.artifact.name, version);
    lake.put(
        &lake.path(&format!("{dir}/artifact.json")),
        json_bytes(entry.artifact),
    )
    .await?;
    lake.put(
        &lake.path(&format!("{dir}/metrics.json")),
        json_bytes(&entry.metrics),
    )
    .await?;
    let batch = scores_batch(entry.test_frame, entry.test_scores, entry.explanations);
    lake.write_parquet(&lake.path(&format!("{dir}/test_scores.parquet")), &[batch])
        .await?;
    let mut manifest = entry.manifest;
    manifest["version"] = version.into();
    lake.put(
        &lake.path(&format!("{dir}/manifest.json")),
        json_bytes(&manifest),
    )
    .await?;
    Ok(())
}

/// A registered version read back.
pub struct Stored {
    pub version: u32,
    pub artifact: Artifact,
    pub manifest: serde_json::Value,
    pub metrics: serde_json::Value,
}

/// Reads `name` at `version`, or its newest version.
pub async fn read(lake: &Lake, name: &str, version: Option<u32>) -> Result<Stored> {
    let known = versions(lake, name).await?;
    let version = match version {
        None => *known.last().ok_or_else(|| ModelError::UnknownModel {
            name: name.to_string(),
            registry: format!("{}{ROOT}/", lake.display()),
        })?,
        Some(v) if known.contains(&v) => v,
        Some(v) => {
            return Err(ModelError::UnknownVersion {
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
    let artifact_value = read_json(lake, &dir, "artifact.json").await?;
    let artifact: Artifact =
        serde_json::from_value(artifact_value).map_err(|e| ModelError::BadRegistryEntry {
            path: format!("{dir}/artifact.json"),
            reason: e.to_string(),
        })?;
    if artifact.schema_version != ARTIFACT_SCHEMA_VERSION {
        return Err(ModelError::BadRegistryEntry {
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
        metrics: read_json(lake, &dir, "metrics.json").await?,
    })
}

async fn read_json(lake: &Lake, dir: &str, file: &str) -> Result<serde_json::Value> {
    let bytes = lake.get(&lake.path(&format!("{dir}/{file}"))).await?;
    serde_json::from_slice(&bytes).map_err(|e| ModelError::BadRegistryEntry {
        path: format!("{dir}/{file}"),
        reason: e.to_string(),
    })
}
