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
pub use python::{assert_same_lake_tables, duckdb_fetchall, duckdb_row, python, python_stdout};
pub use sf::{assert_3sf, assert_fit_3sf};

/// The repository's root folder (where `data/`, `models/`, `pipelines/` and `tests/` are).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the test kit sits two folders below the repository root")
}

/// Whether a server listens on local `port` (a port the test found free and gave to a server
/// it started). A successful connect alone is not proof: a connect to a free port of the
/// ephemeral range can, rarely, pick that same port as its source and connect to itself, so
/// that connection does not count. Nor does this check close the window between the test
/// finding the port free and the server binding it, in which anything may take it: a server
/// that can pick its own port and say which (moto in the S3 tests) should be left to.
pub fn listens_on(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port))
        .and_then(|stream| stream.local_addr())
        .is_ok_and(|local| local.port() != port)
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

/// Every file under `dir` (recursively) except manifests, as (path with the writing job's id
/// cut out of `part-<job>.parquet`, bytes), sorted: what a re-run must reproduce exactly.
pub fn output_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            if path.is_dir() {
                stack.push(path);
            } else if !name.ends_with("manifest.json") {
                let job_free = match name.strip_prefix("part-") {
                    Some(_) => "part.parquet".to_string(),
                    None => name,
                };
                let folder = folder.strip_prefix(dir).unwrap().display().to_string();
                files.push((
                    format!("{folder}/{job_free}"),
                    std::fs::read(&path).unwrap(),
                ));
            }
        }
    }
    files.sort();
    files
}

/// The folders of the tables a run derives (features to campaign assignments) and of every
/// mart in `lake`, for [`assert_same_lake_tables`].
pub fn derived_table_folders(lake: &Path) -> Vec<String> {
    let mut folders: Vec<String> = [
        "features",
        "labels",
        "scores",
        "segments",
        "triggers",
        "campaign_assignments",
    ]
    .map(String::from)
    .to_vec();
    let marts = std::fs::read_dir(lake.join("marts")).expect("the lake has marts");
    folders.extend(marts.map(|m| format!("marts/{}", m.unwrap().file_name().to_string_lossy())));
    folders
}
