//! Errors of training runs, BTYD fits and the registry: the model's own errors, the lake's and
//! the feature builder's, and the registry's, each with its kind.

use churn_core::{CoreError, ErrorKind, datafusion_error_kind};
use churn_features::FeatureError;
use churn_model::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Model(#[from] ModelError),

    #[error(transparent)]
    Feature(#[from] FeatureError),

    #[error(transparent)]
    Core(#[from] CoreError),

    #[error("query engine error: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),

    #[error("no model {name:?} in {registry}")]
    UnknownModel { name: String, registry: String },

    #[error("model {name:?} has no version {version:?} (versions: {known})")]
    UnknownVersion {
        name: String,
        version: String,
        known: String,
    },

    #[error("expected NAME or NAME@VERSION with a whole-number version, got {0:?}")]
    InvalidModelReference(String),

    #[error("registry entry {path} is unreadable: {reason}")]
    BadRegistryEntry { path: String, reason: String },

    /// A run let the test snapshot's BTYD outlooks go before the BG/NBD baseline took them:
    /// a bug, not a problem with the data.
    #[error(
        "the BTYD outlooks of the test snapshot {as_of} were let go before the BG/NBD baseline"
    )]
    MissingTestOutlooks { as_of: chrono::NaiveDate },
}

impl TrainError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            TrainError::Model(e) => e.kind(),
            TrainError::Feature(e) => e.kind(),
            TrainError::Core(e) => e.kind(),
            TrainError::DataFusion(e) => datafusion_error_kind(e),
            TrainError::UnknownModel { .. }
            | TrainError::UnknownVersion { .. }
            | TrainError::InvalidModelReference(_) => ErrorKind::Config,
            TrainError::BadRegistryEntry { .. } => ErrorKind::Data,
            TrainError::MissingTestOutlooks { .. } => ErrorKind::Internal,
        }
    }
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;
