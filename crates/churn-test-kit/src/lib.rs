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

/// Copies the folder `from` into `to`, recursively (a private copy of a shared lake).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
