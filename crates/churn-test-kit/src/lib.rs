//! Helpers shared by the workspace's tests, so that each test binary states its behaviour
//! instead of re-deriving how to run the `churn` binary, find Python and DuckDB, locate the
//! repository or build a store. A dev-dependency only: no library crate depends on it.
//!
//! Running the binary needs its path, which Cargo gives only to the tests of the crate that
//! builds it: `const CHURN: Churn = Churn::new(env!("CARGO_BIN_EXE_churn"));`.

mod churn;
#[cfg(feature = "lake")]
pub mod lake;
mod python;
mod sf;

use std::path::{Path, PathBuf};

pub use churn::{Churn, json_of, stderr, stdout};
pub use python::{duckdb_fetchall, duckdb_row, python, python_stdout};
pub use sf::{assert_3sf, assert_fit_3sf};

/// The repository's root folder (where `data/`, `models/`, `pipelines/` and `tests/` are).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the test kit sits two folders below the repository root")
}

/// A path as the `&str` a command-line argument list wants (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}
