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
