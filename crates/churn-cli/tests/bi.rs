//! BI readability: DuckDB reads the lake directly and agrees with the source files.

use churn_test_kit::{Churn, duckdb_row, s};

const CHURN: Churn = Churn::new(env!("CARGO_BIN_EXE_churn"));

#[test]
fn duckdb_reads_the_hive_partitioned_lake_and_agrees_with_the_clean_source() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let lake = dir.path().join("lake");
    CHURN.generate(&store, &["--customers", "200", "--seed", "21"]);
    for table in ["transactions", "customers"] {
        let source = store.join(format!("{table}.csv"));
        CHURN.ingest(&lake, table, &source, &[]);
    }

    let source = duckdb_row(&format!(
        "SELECT count(*), round(sum(amount), 2), count(DISTINCT CAST(ts AS DATE)) FROM read_csv('{}')",
        s(&store.join("transactions.csv"))
    ));
    let from_lake = duckdb_row(&format!(
        "SELECT count(*), round(sum(amount), 2), count(DISTINCT date) FROM read_parquet('{}/transactions/*/*.parquet', hive_partitioning = true)",
        s(&lake)
    ));
    assert_eq!(source, from_lake);
    assert!(source[0].parse::<u64>().unwrap() > 1000);

    // The partition column is a date, and every row sits in its own date's folder.
    let mismatched = duckdb_row(&format!(
        "SELECT count(*) FROM read_parquet('{}/transactions/*/*.parquet', hive_partitioning = true) WHERE CAST(ts AT TIME ZONE 'UTC' AS DATE) <> date",
        s(&lake)
    ));
    assert_eq!(mismatched, ["0"]);
    let customers = duckdb_row(&format!(
        "SELECT count(*) FROM read_parquet('{}/customers/*.parquet')",
        s(&lake)
    ));
    let source_customers = duckdb_row(&format!(
        "SELECT count(*) FROM read_csv('{}')",
        s(&store.join("customers.csv"))
    ));
    assert_eq!(customers, source_customers);
}
