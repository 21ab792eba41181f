//! Errors of training, evaluation and the registry; each names the model file, snapshot,
//! feature or value at fault, and says whether the user's configuration or data is to blame.

use std::path::PathBuf;

use churn_core::CoreError;
use churn_features::FeatureError;

use crate::btyd::BtydError;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read model file {path}: {source}")]
    ReadSpec {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("model file {path}:\n  {}", problems.join("\n  "))]
    InvalidSpec { path: String, problems: Vec<String> },

    #[error(
        "test snapshot {as_of}: its {horizon_days}-day labels need transactions through {needs_through}, but the lake ends on {lake_ends}; the newest --as-of this lake can test is {newest}"
    )]
    TestLabelsNotObservable {
        as_of: chrono::NaiveDate,
        horizon_days: u32,
        needs_through: chrono::NaiveDate,
        lake_ends: chrono::NaiveDate,
        newest: chrono::NaiveDate,
    },

    #[error(
        "snapshot {as_of} is before the lake's first transaction day {lake_starts}: {what} has no history to learn from; use fewer [training] snapshots, a smaller every_days or a later --as-of"
    )]
    SnapshotBeforeData {
        as_of: chrono::NaiveDate,
        lake_starts: chrono::NaiveDate,
        what: &'static str,
    },

    #[error(
        "{slice} ({snapshots}) has {positives} churners and {negatives} non-churners; at least {needed} of each are needed to {purpose}"
    )]
    TooFewOfAClass {
        slice: &'static str,
        snapshots: String,
        positives: usize,
        negatives: usize,
        needed: usize,
        purpose: &'static str,
    },

    #[error("feature {feature:?} is selected by the model but {problem}")]
    FeatureMismatch { feature: String, problem: String },

    #[error(
        "feature {feature:?} of snapshot {as_of} has type {data_type}, which a model cannot use"
    )]
    UnsupportedFeatureType {
        feature: String,
        as_of: chrono::NaiveDate,
        data_type: String,
    },

    #[error("{algorithm} training failed: {reason}")]
    Training {
        algorithm: &'static str,
        reason: String,
    },

    #[error("no model {name:?} in {registry}")]
    UnknownModel { name: String, registry: String },

    #[error("model {name:?} has no version {version:?} (versions: {known})")]
    UnknownVersion {
        name: String,
        version: String,
        known: String,
    },

    #[error("registry entry {path} is unreadable: {reason}")]
    BadRegistryEntry { path: String, reason: String },

    #[error("buy-till-you-die model for snapshot {as_of}: {source}")]
    Btyd {
        as_of: chrono::NaiveDate,
        #[source]
        source: BtydError,
    },

    #[error(transparent)]
    Feature(#[from] FeatureError),

    #[error("query engine error: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),

    #[error(transparent)]
    Core(#[from] CoreError),
}

impl ModelError {
    /// Problems with the model file or the command's arguments.
    pub fn is_config_error(&self) -> bool {
        match self {
            ModelError::ReadSpec { .. }
            | ModelError::InvalidSpec { .. }
            | ModelError::FeatureMismatch { .. }
            | ModelError::UnknownModel { .. }
            | ModelError::UnknownVersion { .. } => true,
            ModelError::Feature(e) => e.is_config_error(),
            _ => false,
        }
    }

    /// The lake's data cannot support what was asked (too little history, too few churners).
    pub fn is_data_error(&self) -> bool {
        match self {
            ModelError::TestLabelsNotObservable { .. }
            | ModelError::SnapshotBeforeData { .. }
            | ModelError::TooFewOfAClass { .. }
            | ModelError::UnsupportedFeatureType { .. }
            | ModelError::BadRegistryEntry { .. }
            | ModelError::Btyd { .. } => true,
            ModelError::Feature(e) => e.is_data_error(),
            _ => false,
        }
    }
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
