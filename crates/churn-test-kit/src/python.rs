//! Python and DuckDB, the independent tools tests check churn's outputs with. `tests/run.sh`
//! installs them in a virtual environment and names its interpreter in `CHURN_PYTHON`.

use std::ffi::OsStr;
use std::process::Command;

/// The Python interpreter with DuckDB (and moto): `CHURN_PYTHON`, else `python3`.
pub fn python() -> String {
    std::env::var("CHURN_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Runs `python ARGS`, which must succeed; returns its standard output.
pub fn python_stdout<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = Command::new(python())
        .args(args)
        .output()
        .expect("python runs (CHURN_PYTHON, set by tests/run.sh)");
    assert!(
        out.status.success(),
        "Python failed (run the tests with tests/run.sh, which installs DuckDB): {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every row DuckDB returns for `sql`, as Python prints the list of tuples
/// (`[(1, 'a'), (2, None)]`).
pub fn duckdb_fetchall(sql: &str) -> String {
    let script = "import sys, duckdb\nprint(duckdb.sql(sys.argv[1]).fetchall())";
    python_stdout(["-c", script, sql]).trim().to_string()
}

/// The first row DuckDB returns for `sql`, one text per column.
pub fn duckdb_row(sql: &str) -> Vec<String> {
    let script = "import sys, duckdb\nrow = duckdb.sql(sys.argv[1]).fetchone()\nprint('\\t'.join(str(v) for v in row))";
    python_stdout(["-c", script, sql])
        .trim()
        .split('\t')
        .map(str::to_string)
        .collect()
}

/// Asserts that each folder's Parquet files (recursively) hold the same rows in lake
/// `expected` as in lake `actual`, read by DuckDB: rows in any order, doubles equal to 1e-9
/// relative, the `ignored` columns left out. Returns how many folders were compared.
pub fn assert_same_lake_tables(
    expected: &std::path::Path,
    actual: &std::path::Path,
    folders: &[String],
    ignored: &[&str],
) -> usize {
    let script = r#"
import sys, glob, json, duckdb, pandas
expected, actual, folders, ignored = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
def read(root, folder):
    files = sorted(glob.glob(f"{root}/{folder}/**/*.parquet", recursive=True))
    assert files, f"no Parquet files under {root}/{folder}"
    frame = duckdb.sql(f"SELECT * FROM read_parquet({files!r}, hive_partitioning=false)").df()
    frame = frame.drop(columns=[c for c in ignored if c in frame.columns])
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)
for folder in folders:
    pandas.testing.assert_frame_equal(read(expected, folder), read(actual, folder),
                                      check_exact=False, rtol=1e-9, obj=folder)
print(len(folders))
"#;
    let folders = serde_json::to_string(folders).expect("folder names serialise");
    let ignored = serde_json::to_string(ignored).expect("column names serialise");
    let compared = python_stdout([
        "-c",
        script,
        expected.to_str().expect("UTF-8 path"),
        actual.to_str().expect("UTF-8 path"),
        &folders,
        &ignored,
    ]);
    compared.trim().parse().expect("the script prints a count")
}
