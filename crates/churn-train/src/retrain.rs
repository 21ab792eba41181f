//! Whether `churn run` trains a model again or reuses its newest version: train when the
//! registry has no version, when the model file now trains differently, when the newest
//! version is `retrain_every_days` old (in run dates), or when an input feature drifted past
//! `retrain_when_psi_above` (population stability between the version's newest training
//! snapshot and the run's snapshot); otherwise reuse. A re-run of a date therefore reuses the
//! model it trained the first time, and its scores and exports come out the same.

use chrono::NaiveDate;
use churn_core::Lake;
use churn_features::{FeatureOptions, ensure_snapshot};
use churn_model::ModelSpec;
use churn_model::drift::population_stability;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::frames::read_features;
use crate::registry::{self, Stored};

/// One input feature's population stability index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeaturePsi {
    pub feature: String,
    pub psi: f64,
}

/// How far the run's snapshot moved from the model's newest training snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDrift {
    pub reference_as_of: String,
    pub as_of: String,
    /// Every input feature found in both snapshots, largest index first.
    pub features: Vec<FeaturePsi>,
}

impl FeatureDrift {
    pub fn largest(&self) -> Option<&FeaturePsi> {
        self.features.first()
    }
}

/// What to do with a model in a run, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrainDecision {
    /// Train a new version (`true`) or reuse `version`.
    pub train: bool,
    /// The newest registered version, if any.
    pub version: Option<u32>,
    pub reason: String,
    /// The drift measured, when the model file asks for it and a version exists.
    pub drift: Option<FeatureDrift>,
}

/// Decides whether the run of `run_date` trains `spec` again.
pub async fn decide(
    lake: &Lake,
    spec: &ModelSpec,
    run_date: NaiveDate,
    features: &FeatureOptions,
) -> Result<RetrainDecision> {
    let stored = match registry::read(lake, &spec.name, None).await {
        Ok(stored) => stored,
        Err(TrainError::UnknownModel { .. }) => {
            return Ok(RetrainDecision {
                train: true,
                version: None,
                reason: format!("no version of {} is registered yet", spec.name),
                drift: None,
            });
        }
        Err(e) => return Err(e),
    };
    let version = Some(stored.version);
    let decision = |train: bool, reason: String, drift: Option<FeatureDrift>| RetrainDecision {
        train,
        version,
        reason,
        drift,
    };
    if !spec.trains_like(&stored.artifact.spec) {
        return Ok(decision(
            true,
            format!(
                "the model file differs from the one version {} was trained with",
                stored.version
            ),
            None,
        ));
    }
    let trained_for = trained_for(&stored)?;
    let age_days = (run_date - trained_for).num_days();
    if let Some(every) = spec.retrain.every_days
        && age_days >= every as i64
    {
        return Ok(decision(
            true,
            format!(
                "version {} was trained for {trained_for}, {age_days} days before this run (retrain_every_days = {every})",
                stored.version
            ),
            None,
        ));
    }
    let Some(limit) = spec.retrain.psi_above else {
        let reason = match spec.retrain.every_days {
            Some(every) => format!(
                "version {} was trained for {trained_for}, {age_days} days before this run (retrain_every_days = {every})",
                stored.version
            ),
            None => format!(
                "version {} is reused: the model file sets neither retrain_every_days nor retrain_when_psi_above",
                stored.version
            ),
        };
        return Ok(decision(false, reason, None));
    };
    let drift = feature_drift(lake, &stored, run_date, features).await?;
    let (train, reason) = match drift.largest() {
        Some(top) if top.psi > limit => (
            true,
            format!(
                "feature {} moved by PSI {:.3} since {} (retrain_when_psi_above = {limit})",
                top.feature, top.psi, drift.reference_as_of
            ),
        ),
        Some(top) => (
            false,
            format!(
                "version {} is reused: the largest feature drift since {} is PSI {:.3} ({}), not above {limit}",
                stored.version, drift.reference_as_of, top.psi, top.feature
            ),
        ),
        None => (
            false,
            format!(
                "version {} is reused: no input feature is in both snapshots to compare",
                stored.version
            ),
        ),
    };
    Ok(decision(train, reason, Some(drift)))
}

/// The run date a version was trained for: its test snapshot plus the horizon.
fn trained_for(stored: &Stored) -> Result<NaiveDate> {
    let test: NaiveDate =
        stored
            .manifest
            .as_of
            .parse()
            .map_err(|_| TrainError::BadRegistryEntry {
                path: format!("{}@{}", stored.manifest.name, stored.version),
                reason: format!("test date {:?} is not a date", stored.manifest.as_of),
            })?;
    Ok(test + chrono::Duration::days(stored.manifest.horizon_days as i64))
}

/// The PSI of every input feature of `stored` between the newest snapshot it learned from
/// (training or calibration) and the snapshot of `as_of` (built if the lake lacks it).
pub async fn feature_drift(
    lake: &Lake,
    stored: &Stored,
    as_of: NaiveDate,
    features: &FeatureOptions,
) -> Result<FeatureDrift> {
    let manifest = &stored.manifest;
    // The snapshots the registered model learned from: the learner's and the calibrator's.
    let (training, calibration) = match &manifest.scoring_fit {
        Some(fit) => (&fit.training, &fit.calibration),
        None => (
            &manifest.snapshots.training,
            &manifest.snapshots.calibration,
        ),
    };
    let reference = training
        .snapshots
        .iter()
        .chain(calibration.iter().flat_map(|c| &c.snapshots))
        .filter_map(|d| d.parse::<NaiveDate>().ok())
        .max()
        .ok_or_else(|| TrainError::BadRegistryEntry {
            path: format!("{}@{}", manifest.name, stored.version),
            reason: "the manifest lists no training snapshot".into(),
        })?;
    ensure_snapshot(lake, as_of, features).await?;
    let before = read_features(lake, reference, &features.session)
        .await?
        .frame;
    let now = read_features(lake, as_of, &features.session).await?.frame;
    let mut psi: Vec<FeaturePsi> = manifest
        .features
        .iter()
        .filter_map(|name| {
            let index = population_stability(before.columns.get(name)?, now.columns.get(name)?)?;
            Some(FeaturePsi {
                feature: name.clone(),
                psi: index,
            })
        })
        .collect();
    psi.sort_by(|a, b| b.psi.total_cmp(&a.psi).then(a.feature.cmp(&b.feature)));
    Ok(FeatureDrift {
        reference_as_of: reference.to_string(),
        as_of: as_of.to_string(),
        features: psi,
    })
}
