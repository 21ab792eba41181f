//! What can stop a benchmark: a child process that cannot start or fails, output that is not
//! what the child should print, the working folder, or generating the store.

use churn_error::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("starting {command}: {source}")]
    Start {
        command: String,
        source: std::io::Error,
    },
    #[error("waiting for {command}: {source}")]
    Wait {
        command: String,
        source: std::io::Error,
    },
    #[error("{command} failed (status {status}); output: {stdout}")]
    Failed {
        command: String,
        status: i32,
        stdout: String,
    },
    #[error("reading {what}: {source}")]
    Output {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("reading {what}: {text:?} is not a count")]
    Count { what: &'static str, text: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("generating the benchmark store: {0}")]
    Synth(#[from] churn_synth::SynthError),
}

impl BenchError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            BenchError::Synth(e) => e.kind(),
            _ => ErrorKind::Internal,
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> BenchError {
        BenchError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
