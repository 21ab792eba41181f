//! Errors of the stream: a bad `[stream]` section, a checkpoint that cannot be read, or the
//! ingest or lake error that stopped a micro-batch.

use churn_core::{CoreError, ErrorKind};
use churn_ingest::IngestError;

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("invalid [stream] section:\n  - {}", .problems.join("\n  - "))]
    InvalidConfig { problems: Vec<String> },

    #[error("checkpoint {path} is not readable: {reason}")]
    Checkpoint { path: String, reason: String },

    #[error("source {source_name}: {error}")]
    Ingest {
        source_name: String,
        #[source]
        error: Box<IngestError>,
    },

    #[error(transparent)]
    Core(#[from] CoreError),
}

impl StreamError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StreamError::InvalidConfig { .. } => ErrorKind::Config,
            StreamError::Checkpoint { .. } => ErrorKind::Data,
            StreamError::Ingest { error, .. } => error.kind(),
            StreamError::Core(e) => e.kind(),
        }
    }
}

pub type Result<T, E = StreamError> = std::result::Result<T, E>;
