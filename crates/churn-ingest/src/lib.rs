//! Batch ingest: reads a source (CSV, NDJSON or Parquet; UTF-8 or GB18030; a file, folder,
//! glob or URL), validates every row against the input contract, quarantines what cannot be
//! used with the reason, drops duplicates, and commits the rest atomically into the lake's
//! date partitions. The counts always add up: read = accepted + rejected + duplicates.

pub mod block;
pub mod config;
pub mod dedup;
pub mod error;
pub mod existing;
pub mod partition;
pub mod reader;
pub mod rows;
pub mod runs;
pub mod text;
pub mod upsert;
pub mod value;

mod driver;

pub use config::{
    DEFAULT_BUFFER_ROWS, DEFAULT_MAX_REJECT_RATIO, DEFAULT_RUN_MEMORY_MIB, Encoding, Format,
    SourceConfig, SourceSpec,
};
pub use driver::{CommitWith, FileSummary, IngestOptions, IngestSummary, ingest, ingest_files};
pub use error::{IngestError, Result};
pub use reader::{InputFile, resolve_inputs};
