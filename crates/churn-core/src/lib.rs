//! Shared foundation of churn: the input contract (table schemas), the lake (where and how
//! data is stored, on a local path or an object store) and the DataFusion session that sees
//! every lake table. Every other crate builds on these so that paths, schemas and partition
//! rules are defined once.

pub mod commit;
pub mod committed;
pub mod constant_row;
pub mod count_distinct_text;
pub mod engine;
pub mod error;
pub mod lake;
pub mod lease;
pub mod memory;
pub mod parquet_io;
pub mod session;
pub mod sql_functions;
pub mod table;

pub use engine::Engine;
pub use error::{CoreError, ErrorKind, Result, datafusion_error_kind};
pub use lake::{Lake, LakeSettings};
pub use lease::{LeaseOptions, WriterLease};
pub use table::{ColumnKind, ColumnSpec, Table};
