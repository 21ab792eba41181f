//! Errors of the core crate; each variant carries the value or path that was wrong.

pub use churn_error::ErrorKind;

/// The kind of a query-engine error: SQL that does not parse or plan is the user's to fix
/// (it comes from their query or feature file); everything else is internal.
pub fn datafusion_error_kind(error: &datafusion::error::DataFusionError) -> ErrorKind {
    use datafusion::error::DataFusionError as E;
    match error.find_root() {
        E::SQL(..) | E::Plan(_) | E::SchemaError(..) => ErrorKind::Config,
        _ => ErrorKind::Internal,
    }
}

/// Everything that can go wrong while opening or touching the lake.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("invalid lake location {location:?}: {reason}")]
    InvalidLocation { location: String, reason: String },

    #[error("object store error at {path}: {source}")]
    ObjectStore {
        path: String,
        #[source]
        source: object_store::Error,
    },

    #[error("parquet error in {path}: {source}")]
    Parquet {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },

    #[error("JSON error in {path}: {source}")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("query engine error: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),

    #[error("unknown time zone {0:?} (expected an IANA name such as \"Asia/Shanghai\" or \"UTC\")")]
    InvalidTimezone(String),

    #[error("lake {lake} uses time zone {existing}, but {requested} was requested")]
    TimezoneMismatch {
        lake: String,
        existing: String,
        requested: String,
    },

    #[error("simulated crash after {0} committed files (test hook)")]
    SimulatedCrash(usize),

    #[error("unknown table {0:?} (expected transactions, customers or campaign_events)")]
    UnknownTable(String),

    #[error(
        "lake {lake} is busy: {holder} (pid {pid} on {host}, since {since}) is writing to it; waited {waited_secs} s (pass --wait-secs to wait longer)"
    )]
    LakeBusy {
        lake: String,
        holder: String,
        host: String,
        pid: u32,
        since: String,
        waited_secs: u64,
    },

    #[error(
        "lost the writer lease of {lake} (generation {generation}) to another writer; nothing more is committed"
    )]
    LeaseLost { lake: String, generation: u64 },

    #[error("invalid engine {engine:?}: {reason}")]
    InvalidEngine { engine: String, reason: String },

    #[error("engine {engine} cannot be reached: {reason}")]
    EngineUnreachable { engine: String, reason: String },

    #[error("the Ballista {process} stopped: {reason}")]
    EngineProcess {
        process: &'static str,
        reason: String,
    },
}

impl CoreError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            CoreError::InvalidLocation { .. }
            | CoreError::InvalidTimezone(_)
            | CoreError::TimezoneMismatch { .. }
            | CoreError::UnknownTable(_)
            | CoreError::InvalidEngine { .. }
            | CoreError::EngineUnreachable { .. } => ErrorKind::Config,
            CoreError::DataFusion(e) => datafusion_error_kind(e),
            CoreError::LakeBusy { .. } | CoreError::LeaseLost { .. } => ErrorKind::Busy,
            _ => ErrorKind::Internal,
        }
    }
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;
