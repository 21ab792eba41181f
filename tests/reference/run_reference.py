#!/usr/bin/env python3
"""Run the DuckDB reference implementation of the churn feature / label contract.

Usage:
    python run_reference.py --input DIR --as-of YYYY-MM-DD [--lookback-days 365]
        [--horizon-days 90] --out OUT.csv [--what features|labels] [--lake]

Without --lake, DIR holds transactions.csv, customers.csv, campaign_events.csv (UTF-8, header row,
ts as 'YYYY-MM-DD HH:MM:SS' local time). With --lake, DIR is a Parquet lake:
    DIR/transactions/date=*/*.parquet      (ts TIMESTAMP WITH TIME ZONE, UTC)
    DIR/customers/*.parquet
    DIR/campaign_events/date=*/*.parquet   (ts TIMESTAMP WITH TIME ZONE, UTC)
and lake timestamps are converted to naive store-local time with `ts AT TIME ZONE <tz>` (--tz, default UTC).

Writes the result as CSV with a header (DuckDB's CSV writer, which prints doubles with full
round-trip precision) and prints the row count and query wall time to stderr.
"""
import argparse
import datetime as dt
import os
import sys
import time

import duckdb

HERE = os.path.dirname(os.path.abspath(__file__))


def sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def define_csv_views(con, d):
    tx = os.path.join(d, "transactions.csv")
    cu = os.path.join(d, "customers.csv")
    ce = os.path.join(d, "campaign_events.csv")
    con.execute(f"""
        CREATE VIEW transactions AS
        SELECT * FROM read_csv({sql_str(tx)}, header = true, auto_detect = false, delim = ',', quote = '"',
            timestampformat = '%Y-%m-%d %H:%M:%S',
            columns = {{
                'transaction_id': 'VARCHAR', 'customer_id': 'VARCHAR', 'ts': 'TIMESTAMP',
                'amount': 'DOUBLE', 'quantity': 'DOUBLE', 'product_category': 'VARCHAR',
                'store_id': 'VARCHAR', 'channel': 'VARCHAR', 'discount': 'DOUBLE', 'is_return': 'BOOLEAN'
            }})
    """)
    con.execute(f"""
        CREATE VIEW customers AS
        SELECT * FROM read_csv({sql_str(cu)}, header = true, auto_detect = false, delim = ',', quote = '"',
            dateformat = '%Y-%m-%d',
            columns = {{
                'customer_id': 'VARCHAR', 'signup_date': 'DATE', 'birthday': 'DATE', 'tier': 'VARCHAR',
                'referrer_id': 'VARCHAR', 'email': 'VARCHAR', 'phone': 'VARCHAR', 'marketing_opt_in': 'BOOLEAN'
            }})
    """)
    con.execute(f"""
        CREATE VIEW campaign_events AS
        SELECT * FROM read_csv({sql_str(ce)}, header = true, auto_detect = false, delim = ',', quote = '"',
            timestampformat = '%Y-%m-%d %H:%M:%S',
            columns = {{
                'customer_id': 'VARCHAR', 'campaign_id': 'VARCHAR', 'ts': 'TIMESTAMP', 'event': 'VARCHAR'
            }})
    """)


def define_lake_views(con, d, tz):
    tx = os.path.join(d, "transactions", "date=*", "*.parquet")
    cu = os.path.join(d, "customers", "*.parquet")
    ce = os.path.join(d, "campaign_events", "date=*", "*.parquet")
    # Lake ts is TIMESTAMPTZ (UTC instant); `AT TIME ZONE tz` yields the naive local wall-clock time.
    # Only the canonical columns are exposed (the hive `date` column and any extras are dropped).
    con.execute(f"""
        CREATE VIEW transactions AS
        SELECT
            CAST(transaction_id AS VARCHAR)   AS transaction_id,
            CAST(customer_id AS VARCHAR)      AS customer_id,
            CAST(ts AS TIMESTAMPTZ) AT TIME ZONE {sql_str(tz)} AS ts,
            CAST(amount AS DOUBLE)            AS amount,
            CAST(quantity AS DOUBLE)          AS quantity,
            CAST(product_category AS VARCHAR) AS product_category,
            CAST(store_id AS VARCHAR)         AS store_id,
            CAST(channel AS VARCHAR)          AS channel,
            CAST(discount AS DOUBLE)          AS discount,
            CAST(is_return AS BOOLEAN)        AS is_return
        FROM read_parquet({sql_str(tx)}, hive_partitioning = true, union_by_name = true)
    """)
    con.execute(f"""
        CREATE VIEW customers AS
        SELECT
            CAST(customer_id AS VARCHAR)      AS customer_id,
            CAST(signup_date AS DATE)         AS signup_date,
            CAST(birthday AS DATE)            AS birthday,
            CAST(tier AS VARCHAR)             AS tier,
            CAST(referrer_id AS VARCHAR)      AS referrer_id,
            CAST(email AS VARCHAR)            AS email,
            CAST(phone AS VARCHAR)            AS phone,
            CAST(marketing_opt_in AS BOOLEAN) AS marketing_opt_in
        FROM read_parquet({sql_str(cu)}, union_by_name = true)
    """)
    con.execute(f"""
        CREATE VIEW campaign_events AS
        SELECT
            CAST(customer_id AS VARCHAR) AS customer_id,
            CAST(campaign_id AS VARCHAR) AS campaign_id,
            CAST(ts AS TIMESTAMPTZ) AT TIME ZONE {sql_str(tz)} AS ts,
            CAST(event AS VARCHAR)       AS event
        FROM read_parquet({sql_str(ce)}, hive_partitioning = true, union_by_name = true)
    """)


def load_sql(name):
    with open(os.path.join(HERE, name), encoding="utf-8") as f:
        sql = f.read().strip()
    return sql[:-1].rstrip() if sql.endswith(";") else sql


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", required=True, help="CSV directory, or Parquet lake root with --lake")
    ap.add_argument("--as-of", required=True, type=dt.date.fromisoformat)
    ap.add_argument("--lookback-days", type=int, default=365)
    ap.add_argument("--horizon-days", type=int, default=90)
    ap.add_argument("--out", required=True)
    ap.add_argument("--what", choices=["features", "labels"], default="features")
    ap.add_argument("--lake", action="store_true")
    ap.add_argument("--tz", default="UTC", help="store time zone for lake timestamps (default UTC)")
    args = ap.parse_args(argv)

    con = duckdb.connect()
    # Keep any implicit TIMESTAMP <-> TIMESTAMPTZ conversion deterministic.
    con.execute("SET TimeZone = 'UTC'")
    if args.lake:
        define_lake_views(con, args.input, args.tz)
    else:
        define_csv_views(con, args.input)

    if args.what == "features":
        sql = load_sql("features.duckdb.sql")
        params = {"as_of": args.as_of, "lookback_days": args.lookback_days}
    else:
        sql = load_sql("labels.duckdb.sql")
        params = {"as_of": args.as_of, "lookback_days": args.lookback_days,
                  "horizon_days": args.horizon_days}

    t0 = time.perf_counter()
    con.execute(f"CREATE TEMP TABLE result AS {sql}", params)
    elapsed = time.perf_counter() - t0

    # CTAS does not guarantee row order; re-apply the contract's ordering on output.
    con.execute(f"COPY (SELECT * FROM result ORDER BY customer_id) TO {sql_str(args.out)} "
                f"(FORMAT csv, HEADER true)")
    n = con.execute("SELECT count(*) FROM result").fetchone()[0]
    print(f"{args.what}: as_of={args.as_of} rows={n} query_wall_time={elapsed:.3f}s -> {args.out}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
