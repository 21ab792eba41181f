//! BI readability: DuckDB reads the lake directly and agrees with the source files.

use std::path::Path;
use std::process::Command;

fn python() -> String {
    std::env::var("CHURN_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Runs DuckDB (Python package) on a query and returns the first row as text.
fn duckdb(sql: &str) -> Vec<String> {
    let script = "import sys, duckdb\nrow = duckdb.sql(sys.argv[1]).fetchone()\nprint('\\t'.join(str(v) for v in row))";
    let out = Command::new(python())
        .args(["-c", script, sql])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "DuckDB failed (run the tests with tests/run.sh, which installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .split('\t')
        .map(str::to_string)
        .collect()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn duckdb_reads_the_hive_partitioned_lake_and_agrees_with_the_clean_source() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let lake = dir.path().join("lake");
    let churn = env!("CARGO_BIN_EXE_churn");
    let ok = |args: &[&str]| {
        let out = Command::new(churn).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ok(&[
        "generate",
        "--customers",
        "200",
        "--seed",
        "21",
        "--out",
        s(&store),
    ]);
    ok(&[
        "ingest",
        "--lake",
        s(&lake),
        "--table",
        "transactions",
        "--source",
        s(&store.join("transactions.csv")),
    ]);
    ok(&[
        "ingest",
        "--lake",
        s(&lake),
        "--table",
        "customers",
        "--source",
        s(&store.join("customers.csv")),
    ]);

    let source = duckdb(&format!(
        "SELECT count(*), round(sum(amount), 2), count(DISTINCT CAST(ts AS DATE)) FROM read_csv('{}')",
        s(&store.join("transactions.csv"))
    ));
    let from_lake = duckdb(&format!(
        "SELECT count(*), round(sum(amount), 2), count(DISTINCT date) FROM read_parquet('{}/transactions/*/*.parquet', hive_partitioning = true)",
        s(&lake)
    ));
    assert_eq!(source, from_lake);
    assert!(source[0].parse::<u64>().unwrap() > 1000);

    // The partition column is a date, and every row sits in its own date's folder.
    let mismatched = duckdb(&format!(
        "SELECT count(*) FROM read_parquet('{}/transactions/*/*.parquet', hive_partitioning = true) WHERE CAST(ts AT TIME ZONE 'UTC' AS DATE) <> date",
        s(&lake)
    ));
    assert_eq!(mismatched, ["0"]);
    let customers = duckdb(&format!(
        "SELECT count(*) FROM read_parquet('{}/customers/*.parquet')",
        s(&lake)
    ));
    let source_customers = duckdb(&format!(
        "SELECT count(*) FROM read_csv('{}')",
        s(&store.join("customers.csv"))
    ));
    assert_eq!(customers, source_customers);
}
