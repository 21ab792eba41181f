//! Errors of feature and label building; each names the file, date or value at fault.

use std::path::PathBuf;

use churn_core::{CoreError, ErrorKind, datafusion_error_kind};

#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error("cannot read feature file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("feature file {file}: {problem}")]
    InvalidFile { file: String, problem: String },

    #[error("feature file {file} does not run: {source}")]
    Query {
        file: String,
        #[source]
        source: datafusion::error::DataFusionError,
    },

    #[error("feature files {first} and {second} both define column {column:?}")]
    ColumnClash {
        column: String,
        first: String,
        second: String,
    },

    #[error("no feature files in {0}")]
    NoFeatureFiles(PathBuf),

    #[error("the lake has no transactions yet; ingest some first")]
    NoTransactions,

    #[error(
        "labels for {as_of} with a {horizon_days}-day horizon need transactions through {needs_through}, but the lake's last transaction day is {lake_ends}"
    )]
    LabelsNotObservable {
        as_of: chrono::NaiveDate,
        horizon_days: u32,
        needs_through: chrono::NaiveDate,
        lake_ends: chrono::NaiveDate,
    },

    #[error("lake file {file} cannot be held in memory: {problem}")]
    LakeFile { file: String, problem: String },

    #[error("invalid as-of dates {spec:?}: {reason}")]
    InvalidDates { spec: String, reason: String },

    #[error("query engine error: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),

    #[error(transparent)]
    Core(#[from] CoreError),
}

impl FeatureError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            FeatureError::Read { .. }
            | FeatureError::InvalidFile { .. }
            | FeatureError::Query { .. }
            | FeatureError::ColumnClash { .. }
            | FeatureError::NoFeatureFiles(_)
            | FeatureError::InvalidDates { .. } => ErrorKind::Config,
            FeatureError::NoTransactions
            | FeatureError::LabelsNotObservable { .. }
            | FeatureError::LakeFile { .. } => ErrorKind::Data,
            FeatureError::DataFusion(e) => datafusion_error_kind(e),
            FeatureError::Core(e) => e.kind(),
        }
    }
}

pub type Result<T, E = FeatureError> = std::result::Result<T, E>;
