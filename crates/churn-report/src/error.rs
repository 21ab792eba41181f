//! Errors of the marts and the report, each with its kind: a mart whose SQL fails names the
//! mart; everything else is an error of the crates below.

use churn_core::{CoreError, ErrorKind, datafusion_error_kind};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("mart {mart}: {source}")]
    Mart {
        mart: String,
        #[source]
        source: datafusion::error::DataFusionError,
    },

    #[error("drawing chart {chart}: {reason}")]
    Chart { chart: String, reason: String },

    #[error("a campaign window of {0} days reaches beyond the calendar")]
    WindowTooLong(u32),

    #[error("{0}")]
    Feature(#[from] churn_features::FeatureError),

    #[error("{0}")]
    Activate(#[from] churn_activate::ActivateError),

    #[error("model registry: {0}")]
    Train(#[from] churn_train::TrainError),

    #[error("lake: {0}")]
    Core(#[from] CoreError),

    #[error("query engine error: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
}

impl ReportError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ReportError::Mart { source, .. } => datafusion_error_kind(source),
            ReportError::Chart { .. } => ErrorKind::Internal,
            ReportError::WindowTooLong(_) => ErrorKind::Config,
            ReportError::Feature(e) => e.kind(),
            ReportError::Activate(e) => e.kind(),
            ReportError::Train(e) => e.kind(),
            ReportError::Core(e) => e.kind(),
            ReportError::DataFusion(e) => datafusion_error_kind(e),
        }
    }
}

impl From<arrow::error::ArrowError> for ReportError {
    fn from(e: arrow::error::ArrowError) -> Self {
        ReportError::DataFusion(e.into())
    }
}

pub type Result<T, E = ReportError> = std::result::Result<T, E>;
