//! Errors of model files, training and scoring; each names the model file, feature, snapshot
//! or value at fault, and says whether the user's configuration or data is to blame.

use std::path::PathBuf;

pub use churn_error::ErrorKind;

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

    #[error("the features table does not fit the model:\n  - {}", problems.join("\n  - "))]
    InputsMismatch { problems: Vec<String> },

    #[error("feature {column:?} is {before} but {after}; rebuild the older snapshots")]
    ColumnKindChanged {
        column: String,
        before: String,
        after: String,
    },

    #[error("{algorithm} training failed: {reason}")]
    Training {
        algorithm: &'static str,
        reason: String,
    },

    #[error("buy-till-you-die model for snapshot {as_of}: {source}")]
    Btyd {
        as_of: chrono::NaiveDate,
        #[source]
        source: BtydError,
    },
}

impl ModelError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ModelError::ReadSpec { .. }
            | ModelError::InvalidSpec { .. }
            | ModelError::FeatureMismatch { .. }
            | ModelError::InputsMismatch { .. } => ErrorKind::Config,
            ModelError::TestLabelsNotObservable { .. }
            | ModelError::SnapshotBeforeData { .. }
            | ModelError::TooFewOfAClass { .. }
            | ModelError::ColumnKindChanged { .. }
            | ModelError::Btyd { .. } => ErrorKind::Data,
            ModelError::Training { .. } => ErrorKind::Internal,
        }
    }
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
