# DuckDB's side of `churn bench ingest`: CSV to one Parquet file, then the rows it holds.
# Usage: python duckdb_ingest.py SOURCE.csv OUT.parquet  (prints the row count)
import sys, duckdb
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
src, dst = sys.argv[1], sys.argv[2]
con.execute(f"COPY (SELECT * FROM read_csv('{src}')) TO '{dst}' (FORMAT parquet)")
print(con.execute(f"SELECT count(*) FROM read_parquet('{dst}')").fetchone()[0])
