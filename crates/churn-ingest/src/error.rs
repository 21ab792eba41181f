//! Errors of ingest. Row-level problems are not errors (they go to quarantine); these are
//! the problems that stop a run: bad configuration, unreadable sources, a lake that fails.

use churn_core::{CoreError, ErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("invalid source configuration:\n  - {}", .problems.join("\n  - "))]
    InvalidConfig { problems: Vec<String> },

    #[error("no input files found at {location:?}")]
    NoInputFiles { location: String },

    #[error(
        "{file}: missing required column(s) {missing:?}; the header has {found:?} (map source columns with --map canonical=source_column)"
    )]
    MissingColumns {
        file: String,
        missing: Vec<String>,
        found: Vec<String>,
    },

    #[error(
        "{file}: mapped source column {source_column:?} (for {canonical}) is not in the header {found:?}"
    )]
    MappedColumnAbsent {
        file: String,
        canonical: String,
        source_column: String,
        found: Vec<String>,
    },

    #[error("{file}: the file is empty (no header line)")]
    EmptyFile { file: String },

    #[error("{file}: cannot read: {reason}")]
    Unreadable { file: String, reason: String },

    #[error(
        "rejected {rejected} of {rows_read} rows ({ratio:.2}%), over the limit of {limit:.2}%; nothing was added to the lake. Reasons: {reasons}. Rejected rows are in {quarantine}"
    )]
    RejectRatioExceeded {
        rejected: u64,
        rows_read: u64,
        ratio: f64,
        limit: f64,
        reasons: String,
        quarantine: String,
    },

    #[error(transparent)]
    Core(#[from] CoreError),

    #[error("arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    #[error("spilled run {path}: {reason}")]
    Run { path: String, reason: String },

    #[error("parquet error in {path}: {source}")]
    Parquet {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
}

impl IngestError {
    /// The input file a whole-file problem is about (a header without the required columns,
    /// an empty or unreadable file); `None` for problems of the run or the lake.
    pub fn file(&self) -> Option<&str> {
        match self {
            IngestError::MissingColumns { file, .. }
            | IngestError::MappedColumnAbsent { file, .. }
            | IngestError::EmptyFile { file }
            | IngestError::Unreadable { file, .. } => Some(file),
            _ => None,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            IngestError::InvalidConfig { .. }
            | IngestError::NoInputFiles { .. }
            | IngestError::MissingColumns { .. }
            | IngestError::MappedColumnAbsent { .. } => ErrorKind::Config,
            IngestError::RejectRatioExceeded { .. }
            | IngestError::EmptyFile { .. }
            | IngestError::Unreadable { .. } => ErrorKind::Data,
            IngestError::Core(e) => e.kind(),
            _ => ErrorKind::Internal,
        }
    }
}

/// A background task of the ingest that panicked or was cancelled: an internal error, carried
/// as Arrow's external error as before.
impl From<tokio::task::JoinError> for IngestError {
    fn from(e: tokio::task::JoinError) -> Self {
        IngestError::Arrow(arrow::error::ArrowError::ExternalError(Box::new(e)))
    }
}

pub type Result<T, E = IngestError> = std::result::Result<T, E>;
