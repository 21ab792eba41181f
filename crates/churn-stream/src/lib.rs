//! Micro-batch ingest for `churn stream`: each source's location is a landing folder or
//! object-store prefix that shops drop files into all day. The stream polls them, takes every
//! complete file exactly once (a checkpoint record committed with the batch's rows says what
//! was taken), and loads them through the same ingest as `churn ingest` in bounded batches.

pub mod checkpoint;
pub mod config;
pub mod error;
pub mod service;
pub mod status;

pub use checkpoint::{CHECKPOINTS_DIR, CheckpointRecord, FileOutcome, TakenFile};
pub use config::{RawStreamSection, StreamOptions};
pub use error::{Result, StreamError};
pub use service::{BatchSummary, Mode, Stream, StreamSource, StreamSummary};
pub use status::{SourceStatus, StreamStatus, status};
