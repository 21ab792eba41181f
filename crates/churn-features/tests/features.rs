//! Feature snapshots and labels: hand-computed goldens per SQL file, an independent DuckDB
//! reference on the demo store, no leakage, bounded memory, and clear errors for bad files.

use std::collections::HashMap;
use std::path::Path;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use chrono::NaiveDate;
use churn_core::Lake;
use churn_core::session::{SessionOptions, lake_session};
use churn_features::{FeatureError, FeatureFile, FeatureOptions, build_features, build_labels};
use churn_test_kit::lake::{Store, lake_from};
use churn_test_kit::{python_stdout, repo_root, s};
use tempfile::TempDir;

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn options(files: Vec<FeatureFile>) -> FeatureOptions {
    FeatureOptions {
        lookback_days: 365,
        session: SessionOptions::default(),
        files,
    }
}

fn built_in() -> FeatureOptions {
    options(FeatureFile::built_in().unwrap())
}

/// Text of every cell (null → empty), by column name, for the rows of a query.
async fn table(lake: &Lake, sql: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let (ctx, _) = lake_session(lake, &SessionOptions::default())
        .await
        .unwrap();
    let df = ctx.sql(sql).await.unwrap();
    let names: Vec<String> = df
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let batches: Vec<RecordBatch> = df.collect().await.unwrap();
    (names, text_rows(&batches))
}

/// Text of every cell (null → empty) of some batches, row by row.
fn text_rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for b in batches {
        let columns: Vec<ArrayRef> = b
            .columns()
            .iter()
            .map(|c| arrow::compute::cast(c, &DataType::Utf8).unwrap())
            .collect();
        for i in 0..b.num_rows() {
            rows.push(
                columns
                    .iter()
                    .map(|c| {
                        let s = c.as_string::<i32>();
                        if s.is_null(i) {
                            String::new()
                        } else {
                            s.value(i).to_string()
                        }
                    })
                    .collect(),
            );
        }
    }
    rows
}

/// Rows of a CSV file keyed by customer_id, as column → text.
fn read_csv(path: &Path) -> HashMap<String, HashMap<String, String>> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            let row: HashMap<String, String> = header
                .iter()
                .cloned()
                .zip(r.iter().map(str::to_string))
                .collect();
            (row["customer_id"].clone(), row)
        })
        .collect()
}

/// Equal as numbers within 1e-9 relative (exact for integers), or as text.
fn same_value(ours: &str, expected: &str) -> bool {
    if ours == expected {
        return true;
    }
    match (ours.parse::<f64>(), expected.parse::<f64>()) {
        (Ok(a), Ok(b)) => (a - b).abs() <= 1e-9 * b.abs().max(1.0),
        _ => false,
    }
}

/// Compares our snapshot with expected rows on the expected file's columns.
async fn assert_snapshot_matches(
    lake: &Lake,
    as_of: &str,
    expected: &HashMap<String, HashMap<String, String>>,
    what: &str,
) {
    let (names, rows) = table(
        lake,
        &format!("SELECT * FROM features WHERE as_of = DATE '{as_of}' ORDER BY customer_id"),
    )
    .await;
    assert_eq!(rows.len(), expected.len(), "{what}: population size");
    let columns: Vec<&String> = expected.values().next().unwrap().keys().collect();
    let mut compared = 0;
    for row in &rows {
        let ours: HashMap<&String, &String> = names.iter().zip(row).collect();
        let id = ours[&"customer_id".to_string()];
        let want = expected
            .get(id)
            .unwrap_or_else(|| panic!("{what}: {id} is not in the expected population"));
        for column in &columns {
            let have = ours
                .get(column)
                .unwrap_or_else(|| panic!("{what}: we have no column {column}"));
            assert!(
                same_value(have, &want[*column]),
                "{what}: {id}.{column}: ours {have:?}, expected {:?}",
                want[*column]
            );
            compared += 1;
        }
    }
    assert!(compared > 0);
}

/// Same columns, rows and values; floating-point sums may differ in the last digits because
/// their order of addition depends on how the data is split.
fn assert_same_tables(a: &(Vec<String>, Vec<Vec<String>>), b: &(Vec<String>, Vec<Vec<String>>)) {
    assert_eq!(a.0, b.0);
    assert_eq!(a.1.len(), b.1.len());
    for (ra, rb) in a.1.iter().zip(&b.1) {
        for ((name, va), vb) in a.0.iter().zip(ra).zip(rb) {
            assert!(same_value(va, vb), "{} {name}: {va:?} vs {vb:?}", ra[0]);
        }
    }
}

#[tokio::test]
async fn each_feature_file_matches_its_hand_computed_golden_file() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture");
    let (_tmp, lake) = lake_from(&fixture).await;
    let summary = build_features(&lake, &[date("2024-07-01")], &built_in())
        .await
        .unwrap();
    assert_eq!(summary.snapshots[0].customers, 3);
    for file in FeatureFile::built_in().unwrap() {
        let golden = fixture.join(format!("expected/{}.csv", file.name));
        assert!(golden.exists(), "no golden file for {}", file.name);
        let expected = read_csv(&golden);
        // The golden file covers exactly the file's documented columns.
        let golden_columns = expected.values().next().unwrap().len() - 1;
        assert_eq!(golden_columns, file.columns.len(), "{}", file.name);
        assert_snapshot_matches(&lake, "2024-07-01", &expected, &file.name).await;
    }
}

#[tokio::test]
async fn purchase_days_365d_counts_the_distinct_purchase_days_of_the_last_365_days_only() {
    // D = 2024-07-01. C1 bought 533 days before D, 366 days before D (outside the window),
    // 365 days before D (its first day, inside), twice on one day 113 days before D (one
    // purchase day) and had a refund 61 days before D (no purchase day): 2 of its 4 distinct
    // purchase days are in the window. C2 bought the day before D and on D (not before D): 1.
    let rows = [
        "T1,C1,2023-01-15 09:00:00,10.00,1,Dairy,S1,store,0,false",
        "T2,C1,2023-07-01 09:00:00,10.00,1,Dairy,S1,store,0,false",
        "T3,C1,2023-07-02 09:00:00,10.00,1,Dairy,S1,store,0,false",
        "T4,C1,2024-03-10 09:00:00,10.00,1,Dairy,S1,store,0,false",
        "T5,C1,2024-03-10 18:00:00,4.00,1,Dairy,S1,store,0,false",
        "T6,C1,2024-05-01 09:00:00,-4.00,1,Dairy,S1,store,0,true",
        "T7,C2,2024-06-30 09:00:00,12.00,1,Dairy,S1,store,0,false",
        "T8,C2,2024-07-01 09:00:00,12.00,1,Dairy,S1,store,0,false",
    ];
    let (_tmp, lake) = lake_of_transactions(&rows).await;
    build_features(&lake, &[date("2024-07-01")], &built_in())
        .await
        .unwrap();
    let (_, rows) = table(
        &lake,
        "SELECT customer_id, purchase_days_365d, btyd_frequency FROM features ORDER BY customer_id",
    )
    .await;
    assert_eq!(rows, [["C1", "2", "3"], ["C2", "1", "0"]]);
}

/// The independent DuckDB computation of the contract (`tests/reference` at the repository
/// root, shared with `churn bench features`) on the demo CSVs, written to `out`.
fn run_reference(what: &str, as_of: &str, out: &Path) {
    python_stdout([
        s(&repo_root().join("tests/reference/run_reference.py")),
        "--input",
        s(&repo_root().join("data/demo")),
        "--as-of",
        as_of,
        "--what",
        what,
        "--out",
        s(out),
    ]);
}

/// The reference's rows, keyed by customer.
fn reference(what: &str, as_of: &str, out: &Path) -> HashMap<String, HashMap<String, String>> {
    run_reference(what, as_of, out);
    read_csv(out)
}

#[test]
fn the_duckdb_reference_agrees_with_a_plain_python_reading_of_the_contract() {
    // Every column of every row (the BTYD summaries with the age to D - 1 included) and the
    // population size, recomputed by check_reference.py with the standard library alone.
    let dir = tempfile::tempdir().unwrap();
    for as_of in ["2025-12-15", "2026-06-01"] {
        let features = dir.path().join(format!("features-{as_of}.csv"));
        let labels = dir.path().join(format!("labels-{as_of}.csv"));
        run_reference("features", as_of, &features);
        run_reference("labels", as_of, &labels);
        let report = python_stdout([
            s(&repo_root().join("tests/reference/check_reference.py")),
            "--input",
            s(&repo_root().join("data/demo")),
            "--as-of",
            as_of,
            "--features",
            s(&features),
            "--labels",
            s(&labels),
        ]);
        assert_eq!(
            report.matches(" 0 mismatching cells").count(),
            2,
            "{report}"
        );
    }
}

#[tokio::test]
async fn demo_store_features_and_labels_agree_with_an_independent_duckdb_computation() {
    let (tmp, lake) = lake_from(&repo_root().join("data/demo")).await;
    for as_of in ["2025-12-15", "2026-06-01"] {
        build_features(&lake, &[date(as_of)], &built_in())
            .await
            .unwrap();
        let expected = reference(
            "features",
            as_of,
            &tmp.path().join(format!("features-{as_of}.csv")),
        );
        assert!(expected.len() > 1000);
        assert_snapshot_matches(&lake, as_of, &expected, &format!("features {as_of}")).await;

        build_labels(&lake, &[date(as_of)], 90, 365, &SessionOptions::default())
            .await
            .unwrap();
        let expected = reference(
            "labels",
            as_of,
            &tmp.path().join(format!("labels-{as_of}.csv")),
        );
        let (names, rows) = table(&lake, &format!("SELECT customer_id, churned, next_purchase_date FROM labels WHERE as_of = DATE '{as_of}'")).await;
        assert_eq!(rows.len(), expected.len());
        for row in rows {
            let want = &expected[&row[0]];
            for (name, have) in names.iter().zip(&row) {
                assert_eq!(have, &want[name], "labels {as_of} {} {name}", row[0]);
            }
        }
    }
}

/// Appends lines to a copy of a CSV file.
fn append(from: &Path, to: &Path, lines: &[&str]) {
    let mut text = std::fs::read_to_string(from).unwrap();
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    std::fs::write(to, text).unwrap();
}

#[tokio::test]
async fn events_at_or_after_the_as_of_date_change_no_feature() {
    let demo = repo_root().join("data/demo");
    let as_of = "2026-03-01";
    let future = tempfile::tempdir().unwrap();
    // Purchases, refunds and campaign answers at D and later, for existing and new customers.
    append(
        &demo.join("transactions.csv"),
        &future.path().join("transactions.csv"),
        &[
            "F1,C0000001,2026-03-01 00:00:00,500.00,9,Electronics,WEB,online,50.00,false",
            "F2,C0000002,2026-03-01 12:00:00,-80.00,1,Dairy,S01,store,0.00,true",
            "F3,C0000003,2026-04-15 10:00:00,42.00,2,Pet,S02,store,0.00,false",
            "F4,C9999999,2026-03-02 10:00:00,10.00,1,Pet,S02,store,0.00,false",
            "F5,C0000010,2026-10-30 10:00:00,25.00,1,Bakery,S03,store,0.00,true",
        ],
    );
    append(
        &demo.join("campaign_events.csv"),
        &future.path().join("campaign_events.csv"),
        &[
            "C0000001,CMP-FUTURE,2026-03-01 00:00:00,sent",
            "C0000001,CMP-FUTURE,2026-03-01 08:00:00,redeemed",
            "C0000002,CMP-FUTURE,2026-05-01 08:00:00,opened",
        ],
    );
    std::fs::copy(
        demo.join("customers.csv"),
        future.path().join("customers.csv"),
    )
    .unwrap();

    let (_a, plain) = lake_from(&demo).await;
    let (_b, with_future) = lake_from(future.path()).await;
    build_features(&plain, &[date(as_of)], &built_in())
        .await
        .unwrap();
    build_features(&with_future, &[date(as_of)], &built_in())
        .await
        .unwrap();
    let sql = format!("SELECT * FROM features WHERE as_of = DATE '{as_of}' ORDER BY customer_id");
    let (a, b) = (table(&plain, &sql).await, table(&with_future, &sql).await);
    assert!(a.1.len() > 1000);
    assert_same_tables(&a, &b);
}

#[tokio::test]
async fn a_memory_limit_below_the_data_size_spills_and_gives_the_same_snapshot() {
    let (store, _) = Store::new(35000, 3).days(730).generate();
    let (_t, lake) = lake_from(store.path()).await;
    // The transactions alone, as the query engine holds them in memory.
    let (ctx, _) = lake_session(&lake, &SessionOptions::default())
        .await
        .unwrap();
    let batches = ctx
        .sql("SELECT * FROM transactions")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let in_memory: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
    // Read as plain strings (as every session reads text) the transactions take about 66 MB.
    let limit = 24 << 20;
    assert!(
        in_memory > 2 * limit,
        "the limit must sit well below the data ({in_memory} bytes)"
    );
    eprintln!("transactions in memory: {in_memory} bytes, limit {limit} bytes");
    let as_of = "2025-03-01";
    build_features(&lake, &[date(as_of)], &built_in())
        .await
        .unwrap();
    let sql = format!("SELECT * FROM features WHERE as_of = DATE '{as_of}' ORDER BY customer_id");
    let unlimited = table(&lake, &sql).await;
    let limited = FeatureOptions {
        session: SessionOptions::with_memory_limit(Some(limit)),
        ..built_in()
    };
    build_features(&lake, &[date(as_of)], &limited)
        .await
        .unwrap();
    assert_same_tables(&table(&lake, &sql).await, &unlimited);
    // Re-running a date replaces the snapshot rather than adding to it.
    assert_eq!(
        lake.list_parquet(&format!("features/as_of={as_of}"))
            .await
            .unwrap()
            .len(),
        1
    );
}

fn user_dir(extra: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, sql) in churn_features::sqlfile::BUILT_IN {
        std::fs::write(dir.path().join(format!("{name}.sql")), sql).unwrap();
    }
    for (name, sql) in extra {
        std::fs::write(dir.path().join(name), sql).unwrap();
    }
    dir
}

const HEADER: &str =
    "-- A user feature.\n-- grain: one row per customer (customer_id)\n-- columns:\n";

#[tokio::test]
async fn a_users_sql_file_is_joined_in_and_broken_files_are_named() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture");
    let (_tmp, lake) = lake_from(&fixture).await;
    let as_of = [date("2024-07-01")];

    let good = format!(
        "{HEADER}--   purchases_ever: purchases before D\nwith p as (select customer_id from transactions where is_purchase),\nfinal as (select customer_id, count(*) as purchases_ever from p group by customer_id)\nselect * from final\n"
    );
    let dir = user_dir(&[("mine.sql", &good)]);
    build_features(
        &lake,
        &as_of,
        &options(FeatureFile::load_dir(dir.path()).unwrap()),
    )
    .await
    .unwrap();
    let (_, rows) = table(
        &lake,
        "SELECT customer_id, purchases_ever FROM features ORDER BY customer_id",
    )
    .await;
    assert_eq!(
        rows,
        [["C1", "4"], ["C2", "1"], ["C4", "3"]].map(|r| r.map(String::from).to_vec())
    );

    let cases = [
        (
            "broken.sql",
            format!(
                "{HEADER}--   x: y\nwith final as (selec customer_id from transactions)\nselect * from final\n"
            ),
            "broken.sql",
        ),
        (
            "dupes.sql",
            format!(
                "{HEADER}--   amount: an amount\nwith final as (select customer_id, amount from transactions)\nselect * from final\n"
            ),
            "unique",
        ),
        (
            "noid.sql",
            format!(
                "{HEADER}--   n: n\nwith final as (select customer_id, 1 as n from population union all select cast(null as varchar) as customer_id, 2 as n)\nselect * from final\n"
            ),
            "non-null",
        ),
        (
            "clash.sql",
            format!(
                "{HEADER}--   recency_days: again\nwith final as (select customer_id, 1 as recency_days from population)\nselect * from final\n"
            ),
            "recency_days",
        ),
        (
            "undocumented.sql",
            format!(
                "{HEADER}--   a: a\nwith final as (select customer_id, 1 as a, 2 as b from population)\nselect * from final\n"
            ),
            "not documented",
        ),
        (
            // Fails while running (a cast the data refuses), not while planning.
            "badcast.sql",
            format!(
                "{HEADER}--   n: n\nwith final as (select customer_id, cast(customer_id as int) as n from population)\nselect * from final\n"
            ),
            "does not run",
        ),
    ];
    for (name, sql, needle) in cases {
        let dir = user_dir(&[(name, &sql)]);
        let err = build_features(
            &lake,
            &as_of,
            &options(FeatureFile::load_dir(dir.path()).unwrap()),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), churn_core::ErrorKind::Config, "{name}: {err}");
        let text = err.to_string();
        assert!(
            text.contains(name) && text.contains(needle),
            "{name}: {text}"
        );
    }
}

#[tokio::test]
async fn labels_are_refused_until_the_lake_covers_the_horizon() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture");
    let (_tmp, lake) = lake_from(&fixture).await;
    // The fixture's last transaction is on 2024-07-15.
    let err = build_labels(
        &lake,
        &[date("2024-07-01")],
        90,
        365,
        &SessionOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, FeatureError::LabelsNotObservable { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("2024-09-28") && err.to_string().contains("2024-07-15"),
        "{err}"
    );
    let summary = build_labels(
        &lake,
        &[date("2024-07-01")],
        15,
        365,
        &SessionOptions::default(),
    )
    .await
    .unwrap();
    // C1 buys at D itself, C2 on the horizon's last day, C4 never.
    assert_eq!(
        (summary.snapshots[0].customers, summary.snapshots[0].churned),
        (3, 1)
    );
    let (_, rows) = table(
        &lake,
        "SELECT customer_id, churned, next_purchase_date FROM labels ORDER BY customer_id",
    )
    .await;
    let expected = [
        ["C1", "0", "2024-07-01"],
        ["C2", "0", "2024-07-15"],
        ["C4", "1", ""],
    ];
    assert_eq!(rows, expected.map(|r| r.map(String::from).to_vec()));
}

#[tokio::test]
async fn the_catalogue_lists_every_column_with_its_type_and_file() {
    let entries = churn_features::catalogue(&FeatureFile::built_in().unwrap())
        .await
        .unwrap();
    let find = |n: &str| {
        entries
            .iter()
            .find(|e| e.name == n)
            .unwrap_or_else(|| panic!("{n} missing"))
    };
    assert_eq!(find("recency_days").data_type, "Int64");
    assert_eq!(find("monetary_30d").data_type, "Float64");
    assert_eq!(find("tier").source, "built-in:profile.sql");
    let required = [
        "recency_days",
        "tenure_days",
        "frequency_30d",
        "frequency_90d",
        "frequency_365d",
        "frequency_total",
        "monetary_30d",
        "monetary_90d",
        "monetary_365d",
        "avg_basket_365d",
        "mean_gap_days",
        "std_gap_days",
        "last_gap_days",
        "overdue_ratio",
        "spend_trend_90d",
        "returns_365d",
        "category_count_365d",
        "online_share_365d",
        "campaign_sent_90d",
        "campaign_opened_90d",
        "campaign_clicked_90d",
        "campaign_redeemed_90d",
        "days_since_last_redeem",
        "age_years",
        "tier",
        "has_referrer",
        "referrals_converted",
        "days_to_birthday",
        "btyd_frequency",
        "btyd_recency_weeks",
        "btyd_age_weeks",
    ];
    for name in required {
        assert!(!find(name).description.is_empty(), "{name}");
    }
}

#[tokio::test]
async fn the_snapshots_btyd_columns_equal_the_btyd_inputs_of_every_customer() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture");
    let (_tmp, lake) = lake_from(&fixture).await;
    // 06-21: the day after C1's two same-day purchases; 07-01: a purchase at 00:00 on D.
    let dates = [date("2024-06-21"), date("2024-07-01")];
    build_features(&lake, &dates, &built_in()).await.unwrap();
    for as_of in dates {
        let inputs = btyd_inputs_by_customer(&lake, as_of, &SessionOptions::default()).await;
        let (_, rows) = table(
            &lake,
            &format!(
                "SELECT customer_id, btyd_frequency, btyd_recency_weeks, btyd_age_weeks \
                 FROM features WHERE as_of = DATE '{as_of}' ORDER BY customer_id"
            ),
        )
        .await;
        assert_eq!(rows.len(), 3, "{as_of}: {rows:?}");
        for row in rows {
            let input = inputs
                .get(&row[0])
                .unwrap_or_else(|| panic!("{as_of}: no BTYD input for {}", row[0]));
            let snapshot: Vec<f64> = row[1..].iter().map(|v| v.parse().unwrap()).collect();
            let expected = [input.frequency, input.recency_weeks, input.age_weeks];
            assert_eq!(snapshot, expected, "{as_of} {}", row[0]);
        }
    }
}

#[tokio::test]
async fn features_from_the_in_memory_history_equal_the_snapshot_and_follow_the_lakes_files() {
    let (_tmp, lake) = lake_from(&repo_root().join("data/demo")).await;
    let as_of = date("2026-06-01");
    build_features(&lake, &[as_of], &built_in()).await.unwrap();
    let count = |sql: &'static str| {
        let lake = lake.clone();
        async move { table(&lake, sql).await.1[0][0].parse::<u64>().unwrap() }
    };
    let lake_rows = count("SELECT (SELECT count(*) FROM transactions) + (SELECT count(*) FROM customers) + (SELECT count(*) FROM campaign_events)").await;
    let files = |dir: &str| {
        walk(&lake_dir(&lake).join(dir))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect::<Vec<_>>()
    };
    let lake_files: usize = ["transactions", "customers", "campaign_events"]
        .iter()
        .map(|d| files(d).len())
        .sum();

    let mut history = churn_features::EventHistory::new();
    let first = history.refresh(&lake).await.unwrap();
    assert_eq!((first.files_read, first.rows_read), (lake_files, lake_rows));
    assert_eq!(history.rows(), lake_rows);
    assert_eq!(history.refresh(&lake).await.unwrap().files_read, 0);

    // Thirty customers of the snapshot, ten referrers (their referrals_converted needs the
    // events of the members they referred), and one the lake has never seen.
    let (_, picked) = table(
        &lake,
        "(SELECT customer_id FROM features ORDER BY customer_id LIMIT 30) UNION \
         (SELECT referrer_id FROM customers WHERE referrer_id IS NOT NULL ORDER BY referrer_id LIMIT 10)",
    )
    .await;
    let mut ids: Vec<String> = picked.into_iter().map(|r| r[0].clone()).collect();
    ids.push("C9999999".to_string());
    let inputs = churn_features::inputs_for(&lake, as_of, &built_in(), &ids, &history)
        .await
        .unwrap();
    let names: Vec<String> = inputs.features[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut live = text_rows(&inputs.features);
    live.sort();
    let quoted: Vec<String> = ids.iter().map(|id| format!("'{id}'")).collect();
    let (snapshot_names, snapshot) = table(
        &lake,
        &format!(
            "SELECT * FROM features WHERE as_of = DATE '{as_of}' AND customer_id IN ({}) ORDER BY customer_id",
            quoted.join(", ")
        ),
    )
    .await;
    assert!(snapshot.len() >= 30, "{}", snapshot.len());
    assert_eq!(live.len(), snapshot.len());
    for (ours, theirs) in live.iter().zip(&snapshot) {
        for (name, value) in names.iter().zip(ours) {
            let at = snapshot_names.iter().position(|n| n == name).unwrap();
            assert!(
                same_value(value, &theirs[at]),
                "{} {name}: from the history {value:?}, in the snapshot {:?}",
                ours[0],
                theirs[at]
            );
        }
    }
    let referrals = names
        .iter()
        .position(|n| n == "referrals_converted")
        .unwrap();
    assert!(
        live.iter()
            .any(|r| r[referrals] != "0" && !r[referrals].is_empty())
    );

    // A file another writer adds is read alone; one that goes away makes the table be read
    // again. The rows handed out are the lake's rows either way.
    let day_file = files("transactions").pop().unwrap();
    let copy = day_file.with_file_name("part-copy.parquet");
    std::fs::copy(&day_file, &copy).unwrap();
    let added = history.refresh(&lake).await.unwrap();
    assert_eq!((added.files_read, added.tables_reloaded), (1, 0));
    assert_eq!(history.rows(), count("SELECT (SELECT count(*) FROM transactions) + (SELECT count(*) FROM customers) + (SELECT count(*) FROM campaign_events)").await);
    std::fs::remove_file(&copy).unwrap();
    let removed = history.refresh(&lake).await.unwrap();
    assert_eq!(removed.tables_reloaded, 1);
    assert_eq!(removed.files_read, files("transactions").len());
    assert_eq!(history.rows(), lake_rows);
}

#[tokio::test]
async fn sessions_scanning_the_lakes_files_use_larger_batches_or_their_budgets_batches() {
    let (_tmp, lake) = lake_from(&repo_root().join("data/demo")).await;
    let scanning = SessionOptions {
        hold_tables_max_bytes: Some(0),
        ..SessionOptions::default()
    };
    let budgeted = SessionOptions {
        hold_tables_max_bytes: Some(0),
        ..SessionOptions::with_memory_limit(Some(256 << 20))
    };
    // The demo lake fits the default budget for held tables: DataFusion's default batch.
    for (options, batch_rows) in [
        (SessionOptions::default(), 8192),
        (scanning, churn_core::session::SCAN_BATCH_ROWS),
        // A row for every 64 KiB of the budget.
        (budgeted, 4096),
    ] {
        let ctx = churn_core::session::new_session(&lake, &options)
            .await
            .unwrap();
        churn_features::snapshot::register_lake_tables(&ctx, &lake, &options)
            .await
            .unwrap();
        assert_eq!(ctx.state().config().batch_size(), batch_rows);
    }
}

#[tokio::test]
async fn snapshots_and_labels_from_the_held_lake_equal_a_scan_of_its_files_and_follow_them() {
    let (_tmp, lake) = lake_from(&repo_root().join("data/demo")).await;
    let as_of = date("2026-06-01");
    let scanning = FeatureOptions {
        session: SessionOptions {
            hold_tables_max_bytes: Some(0),
            ..SessionOptions::default()
        },
        ..built_in()
    };
    let written = |dir: String| {
        let files: Vec<_> = walk(&lake_dir(&lake).join(dir))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        std::fs::read(&files[0]).unwrap()
    };
    // Features and labels of D, from memory and from the files, byte for byte.
    let build = |options: FeatureOptions| {
        let lake = lake.clone();
        async move {
            build_features(&lake, &[as_of], &options).await.unwrap();
            build_labels(&lake, &[as_of], 90, 365, &options.session)
                .await
                .unwrap();
            (
                written(format!("features/as_of={as_of}")),
                written(format!("labels/as_of={as_of}")),
            )
        }
    };
    let held = build(built_in()).await;
    assert_eq!(build(scanning.clone()).await, held);

    // Another writer adds a file of a day before D: the held tables read it, as a scan does.
    let day_file = walk(&lake_dir(&lake).join("transactions/date=2026-05-30")).remove(0);
    let copy = day_file.with_file_name("part-copy.parquet");
    std::fs::copy(&day_file, &copy).unwrap();
    let with_copy = build(built_in()).await;
    assert_ne!(with_copy.0, held.0, "the added file changes the snapshot");
    assert_eq!(build(scanning).await, with_copy);
    // It goes away again: the table is read again from its files.
    std::fs::remove_file(&copy).unwrap();
    assert_eq!(build(built_in()).await, held);
}

/// The lake's root folder.
fn lake_dir(lake: &Lake) -> std::path::PathBuf {
    lake.root_url().to_file_path().unwrap()
}

/// Every file below `dir`, in name order.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// A lake holding `rows` (transactions CSV lines after the header) and nothing else.
async fn lake_of_transactions(rows: &[&str]) -> (TempDir, Lake) {
    let dir = tempfile::tempdir().unwrap();
    let header = "transaction_id,customer_id,ts,amount,quantity,product_category,store_id,channel,discount,is_return";
    std::fs::write(
        dir.path().join("transactions.csv"),
        format!("{header}\n{}\n", rows.join("\n")),
    )
    .unwrap();
    lake_from(dir.path()).await
}

/// The BTYD summaries of a lake holding `rows` (transactions CSV lines after the header),
/// by customer: (frequency, recency, age, monetary).
async fn btyd_summaries(
    rows: &[&str],
    as_of: NaiveDate,
    session: &SessionOptions,
) -> HashMap<String, [f64; 4]> {
    let (_tmp, lake) = lake_of_transactions(rows).await;
    summaries_by_customer(
        btyd_inputs_by_customer(&lake, as_of, session)
            .await
            .into_values(),
    )
}

/// Session options for each way the BTYD summaries are computed: in memory (no limit) and
/// by SQL (under a memory limit).
fn btyd_sessions() -> [(&'static str, SessionOptions); 2] {
    [
        ("in memory", SessionOptions::default()),
        ("SQL", SessionOptions::with_memory_limit(Some(1 << 30))),
    ]
}

/// (frequency, recency, age, monetary) of each of `inputs`, by customer.
fn summaries_by_customer(
    inputs: impl IntoIterator<Item = churn_features::BtydInput>,
) -> HashMap<String, [f64; 4]> {
    inputs
        .into_iter()
        .map(|i| {
            let summary = [i.frequency, i.recency_weeks, i.age_weeks, i.monetary];
            (i.customer_id, summary)
        })
        .collect()
}

/// The daily-grain BTYD summaries of every customer of `lake` at `as_of`, by customer.
async fn btyd_inputs_by_customer(
    lake: &Lake,
    as_of: NaiveDate,
    session: &SessionOptions,
) -> HashMap<String, churn_features::BtydInput> {
    churn_features::btyd_inputs(
        lake,
        as_of,
        churn_features::Grain::Day,
        session,
        churn_features::Scope::Everyone,
    )
    .await
    .unwrap()
    .into_iter()
    .map(|i| (i.customer_id.clone(), i))
    .collect()
}

/// Transactions whose BTYD summaries are worked out by hand in the tests below.
const HAND_SUMMARISED: [&str; 7] = [
    // C1: two purchases on 01-01 make one purchase day; repeat days 01-08 and 01-15;
    // a refund is no purchase.
    "T1,C1,2024-01-01 09:00:00,10.00,1,Dairy,S1,store,0,false",
    "T2,C1,2024-01-01 18:00:00,5.50,1,Dairy,S1,store,0,false",
    "T3,C1,2024-01-08 09:00:00,7.25,1,Dairy,S1,store,0,false",
    "T4,C1,2024-01-15 09:00:00,3.10,1,Dairy,S1,store,0,false",
    "T5,C1,2024-01-20 09:00:00,-3.10,1,Dairy,S1,store,0,true",
    // C2: one purchase day before 02-01, so no repeat spend then.
    "T6,C2,2024-01-10 12:00:00,12.00,1,Dairy,S1,store,0,false",
    // Purchases on D and after are not before D.
    "T7,C2,2024-02-01 00:00:00,99.00,1,Dairy,S1,store,0,false",
];

/// C3, whose days' spends of 10^14 or more do not fit beside their day in one 38-digit
/// decimal.
const LARGE_SPENDS: [&str; 3] = [
    "T8,C3,2024-01-05 09:00:00,200000000000000.00,1,Cars,S1,store,0,false",
    "T9,C3,2024-01-06 09:00:00,300000000000000.25,1,Cars,S1,store,0,false",
    "T10,C3,2024-01-07 09:00:00,100000000000000.75,1,Cars,S1,store,0,false",
];

#[tokio::test]
async fn btyd_summaries_equal_hand_computed_ones_also_with_spend_beyond_a_hundred_trillion() {
    let ordinary = HAND_SUMMARISED;
    let as_of = date("2024-02-01");
    // Age runs from the first purchase day to 01-31, the day before D.
    let c1 = [2.0, 14.0 / 7.0, 30.0 / 7.0, 5.175];
    let c2 = [0.0, 0.0, 21.0 / 7.0, 0.0];
    for (how, session) in btyd_sessions() {
        let summaries = btyd_summaries(&ordinary, as_of, &session).await;
        assert_eq!(summaries.len(), 2, "{how}");
        assert_eq!(summaries["C1"], c1, "{how}");
        assert_eq!(summaries["C2"], c2, "{how}");

        // A day's spend of 10^14 or more does not fit beside its day in one 38-digit
        // decimal (SQL's packed first spend); the first day's spend is then found another
        // way, with the same results.
        let mut with_large = ordinary.to_vec();
        with_large.extend(LARGE_SPENDS);
        let summaries = btyd_summaries(&with_large, as_of, &session).await;
        assert_eq!(summaries.len(), 3, "{how}");
        assert_eq!(summaries["C1"], c1, "{how}");
        assert_eq!(summaries["C2"], c2, "{how}");
        assert_eq!(
            summaries["C3"],
            [2.0, 2.0 / 7.0, 26.0 / 7.0, 200_000_000_000_000.5],
            "{how}"
        );
    }
}

/// The summaries `btyd_inputs_at_dates` gives at each of `dates`, by customer: (frequency,
/// recency, age, monetary).
async fn btyd_summaries_at_dates(
    lake: &Lake,
    dates: &[NaiveDate],
    session: &SessionOptions,
) -> Vec<HashMap<String, [f64; 4]>> {
    let found = churn_features::btyd_inputs_at_dates(lake, dates, session)
        .await
        .unwrap();
    dates
        .iter()
        .map(|d| summaries_by_customer(found.at(*d).unwrap()))
        .collect()
}

#[tokio::test]
async fn btyd_summaries_of_several_dates_from_one_query_equal_hand_computed_ones() {
    for (how, session) in btyd_sessions() {
        let rows = HAND_SUMMARISED;
        let (_tmp, lake) = lake_of_transactions(&rows).await;
        let dates = [date("2024-01-01"), date("2024-01-09"), date("2024-02-01")];
        let at = btyd_summaries_at_dates(&lake, &dates, &session).await;
        // On 01-01 nobody had bought before the day.
        assert!(at[0].is_empty(), "{how} {:?}", at[0]);
        // Before 01-09: C1's days 01-01 and 01-08; the calibration ends on 01-08.
        assert_eq!(at[1].len(), 1, "{how} {:?}", at[1]);
        assert_eq!(at[1]["C1"], [1.0, 1.0, 1.0, 7.25]);
        assert_eq!(at[2].len(), 2, "{how} {:?}", at[2]);
        assert_eq!(at[2]["C1"], [2.0, 14.0 / 7.0, 30.0 / 7.0, 5.175]);
        assert_eq!(at[2]["C2"], [0.0, 0.0, 21.0 / 7.0, 0.0]);

        // With a day's spend of 10^14 or more (beyond SQL's packed first spend), the same.
        let mut with_large = rows.to_vec();
        with_large.extend(LARGE_SPENDS);
        let (_tmp, lake) = lake_of_transactions(&with_large).await;
        let dates = [date("2024-01-07"), date("2024-02-01")];
        let at = btyd_summaries_at_dates(&lake, &dates, &session).await;
        assert_eq!(at[0].len(), 2, "{how} {:?}", at[0]);
        assert_eq!(at[0]["C1"], [0.0, 0.0, 5.0 / 7.0, 0.0]);
        assert_eq!(
            at[0]["C3"],
            [1.0, 1.0 / 7.0, 1.0 / 7.0, 300_000_000_000_000.25]
        );
        assert_eq!(at[1]["C1"], [2.0, 14.0 / 7.0, 30.0 / 7.0, 5.175]);
        assert_eq!(
            at[1]["C3"],
            [2.0, 2.0 / 7.0, 26.0 / 7.0, 200_000_000_000_000.5]
        );
    }
}

/// The daily-grain BTYD summaries DuckDB computes from the lake's Parquet files at `as_of`,
/// by customer: (frequency, recency, age, monetary), the published models' definitions
/// written out independently of churn's code.
fn duckdb_btyd_summaries(lake: &Lake, as_of: NaiveDate) -> HashMap<String, [f64; 4]> {
    let files = lake_dir(lake).join("transactions/*/*.parquet");
    let sql = format!(
        "WITH days AS (SELECT customer_id, date AS day, sum(CAST(amount AS DECIMAL(38, 6))) AS spend \
           FROM read_parquet('{}', hive_partitioning = true) \
           WHERE NOT is_return AND amount > 0 AND date < DATE '{as_of}' GROUP BY ALL), \
         summaries AS (SELECT customer_id, count(*) - 1 AS repeats, min(day) AS first_day, \
           max(day) AS last_day, sum(spend) - arg_min(spend, day) AS repeat_spend \
           FROM days GROUP BY customer_id) \
         SELECT customer_id, repeats, (last_day - first_day) / 7.0, \
           (DATE '{as_of}' - 1 - first_day) / 7.0, \
           CASE WHEN repeats = 0 THEN 0 ELSE CAST(repeat_spend AS DOUBLE) / repeats END \
         FROM summaries",
        s(&files)
    );
    let script = "import sys, duckdb\nfor r in duckdb.sql(sys.argv[1]).fetchall(): print('\\t'.join(str(v) for v in r))";
    python_stdout(["-c", script, &sql])
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let numbers = [1, 2, 3, 4].map(|i| fields[i].parse::<f64>().unwrap());
            (fields[0].to_string(), numbers)
        })
        .collect()
}

#[tokio::test]
async fn btyd_summaries_of_one_and_of_several_dates_equal_duckdbs_on_the_demo_store() {
    let (_tmp, lake) = lake_from(&repo_root().join("data/demo")).await;
    let dates = [date("2025-03-01"), date("2026-01-01"), date("2026-06-01")];
    let expected: Vec<_> = dates
        .iter()
        .map(|as_of| duckdb_btyd_summaries(&lake, *as_of))
        .collect();
    for (how, session) in btyd_sessions() {
        let at = btyd_summaries_at_dates(&lake, &dates, &session).await;
        for ((as_of, several), expected) in dates.into_iter().zip(at).zip(&expected) {
            let one = btyd_inputs_by_customer(&lake, as_of, &session).await;
            let one = summaries_by_customer(one.into_values());
            assert!(
                expected.len() > 100,
                "{as_of}: {} customers",
                expected.len()
            );
            for (what, found) in [("one date", &one), ("several dates", &several)] {
                assert_eq!(found.len(), expected.len(), "{how} {as_of} {what}");
                for (id, want) in expected {
                    let have = found[id];
                    // Frequency, recency and age are exact; the mean spend DuckDB divides as
                    // a double, churn as a decimal truncated to 10 places.
                    assert_eq!(have[..3], want[..3], "{how} {as_of} {what} {id}");
                    let spend_error = (have[3] - want[3]).abs();
                    assert!(
                        spend_error < 1e-10 + 1e-12 * want[3].abs(),
                        "{how} {as_of} {what} {id}: {have:?} vs {want:?}"
                    );
                }
            }
        }
    }
}
