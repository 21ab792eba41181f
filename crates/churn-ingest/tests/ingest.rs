//! Ingest behaviour on real files: dirt handling reconciled with the generator's manifest,
//! idempotence, crash recovery, encodings, formats and object stores.

use std::path::{Path, PathBuf};

use arrow::array::{ArrayRef, AsArray};
use arrow::datatypes::DataType;
use arrow::datatypes::{Float64Type, Int64Type};
use arrow::record_batch::RecordBatch;
use churn_core::Lake;
use churn_core::session::{SessionOptions, lake_session};
use churn_ingest::{IngestError, IngestOptions, SourceConfig, SourceSpec, ingest};
use churn_synth::OutputFormat;
use churn_test_kit::lake::{Store, new_lake};
use churn_test_kit::repo_root;

fn source(table: &str, path: &Path) -> SourceSpec {
    SourceSpec {
        table: table.into(),
        path: path.display().to_string(),
        ..Default::default()
    }
}

fn config(spec: SourceSpec) -> SourceConfig {
    spec.validate().unwrap()
}

/// Text values of a column (string views and dictionaries included).
fn strings(column: &ArrayRef) -> Vec<String> {
    let text = arrow::compute::cast(column, &DataType::Utf8).unwrap();
    text.as_string::<i32>()
        .iter()
        .map(|v| v.unwrap_or_default().to_string())
        .collect()
}

async fn query(lake: &Lake, sql: &str) -> Vec<RecordBatch> {
    let (ctx, _) = lake_session(lake, &SessionOptions::default())
        .await
        .unwrap();
    ctx.sql(sql).await.unwrap().collect().await.unwrap()
}

async fn count(lake: &Lake, sql: &str) -> i64 {
    let batches = query(lake, sql).await;
    batches[0].column(0).as_primitive::<Int64Type>().value(0)
}

/// (transaction_id, text of every other column) for every lake row, sorted.
async fn transaction_rows(lake: &Lake) -> Vec<String> {
    let batches = query(
        lake,
        "SELECT concat_ws('|', transaction_id, customer_id, CAST(ts AS VARCHAR), CAST(amount AS VARCHAR), \
         coalesce(CAST(quantity AS VARCHAR), ''), coalesce(product_category, ''), coalesce(store_id, ''), \
         coalesce(channel, ''), coalesce(CAST(discount AS VARCHAR), ''), CAST(is_return AS VARCHAR), CAST(date AS VARCHAR)) \
         FROM transactions ORDER BY transaction_id",
    )
    .await;
    batches.iter().flat_map(|b| strings(b.column(0))).collect()
}

#[tokio::test]
async fn every_kind_of_injected_dirt_is_handled_and_counts_reconcile_with_the_manifest() {
    let (dir, generated) = Store::new(400, 11).mess().generate();
    let m = generated.mess.clone().unwrap();
    // The generator injected every kind at least once, or the test would prove nothing.
    for (kind, n) in [
        ("duplicates", m.duplicate_rows),
        ("malformed timestamps", m.malformed_timestamps),
        ("mixed timestamps", m.mixed_format_timestamps),
        ("non-numeric amounts", m.non_numeric_amounts),
        ("missing ids", m.missing_customer_ids),
        ("quoted delimiters", m.quoted_delimiters),
        ("stray quotes", m.stray_quotes),
        ("invalid utf-8", m.invalid_utf8),
    ] {
        assert!(n > 0, "no {kind} injected");
    }
    let (_l, lake) = new_lake();
    let csv = dir.path().join("transactions.csv");
    let summary = ingest(
        &lake,
        &config(source("transactions", &csv)),
        &IngestOptions::default(),
    )
    .await
    .unwrap();

    // Unrecoverable rows: quarantined with the right reason. Recoverable dirt: no row lost.
    assert_eq!(summary.rows_read, m.data_lines);
    assert_eq!(summary.rejected, m.expected_rejected);
    assert_eq!(summary.rejected_by_reason, m.expected_rejected_by_reason);
    assert_eq!(summary.duplicates, m.expected_duplicates);
    assert_eq!(summary.accepted, m.expected_accepted);
    assert_eq!(
        summary.rows_read,
        summary.accepted + summary.rejected + summary.duplicates
    );
    assert_eq!(summary.repaired_invalid_text, m.invalid_utf8);
    assert!(summary.files[0].had_bom);
    assert_eq!(summary.files[0].extra_columns, m.extra_columns);

    assert_eq!(
        count(&lake, "SELECT count(*) FROM transactions").await as u64,
        m.expected_accepted
    );
    assert_eq!(
        count(&lake, "SELECT count(*) FROM quarantine_transactions").await as u64,
        m.expected_rejected
    );
    // Clean rows = the ones no dirt touched; with the recoverable ones they make the lake.
    let recovered = count(
        &lake,
        "SELECT count(*) FROM transactions WHERE product_category LIKE '12\" %'",
    )
    .await as u64;
    assert_eq!(recovered, m.stray_quotes);
    let quoted = count(
        &lake,
        "SELECT count(*) FROM transactions WHERE product_category LIKE '%, assorted'",
    )
    .await as u64;
    assert_eq!(quoted, m.quoted_delimiters);
    let repaired = count(
        &lake,
        "SELECT count(*) FROM transactions WHERE strpos(product_category, '\u{FFFD}') > 0",
    )
    .await as u64;
    assert_eq!(repaired, m.invalid_utf8);

    // Each quarantined row is the file's line, byte for byte, at the line number it names.
    let raw = std::fs::read(&csv).unwrap();
    let lines: Vec<&[u8]> = raw.split(|b| *b == b'\n').collect();
    let rows = query(&lake, "SELECT line_number, raw_bytes, reason_code, reason, source_file FROM quarantine_transactions").await;
    for b in &rows {
        let numbers = b.column(0).as_primitive::<arrow::datatypes::UInt64Type>();
        let bytes = arrow::compute::cast(b.column(1), &DataType::Binary).unwrap();
        let bytes = bytes.as_binary::<i32>();
        let reasons = strings(b.column(3));
        for (i, reason) in reasons.iter().enumerate() {
            let line = numbers.value(i) as usize;
            assert_eq!(bytes.value(i), lines[line - 1], "line {line}");
            assert!(reason.contains(&format!("line {line}")), "{reason}");
            assert!(reason.contains("column "), "{reason}");
        }
    }
}

#[tokio::test]
async fn mixed_timestamp_forms_mean_the_same_instants_as_the_clean_file() {
    // Same seed with and without dirt: the generator writes the same transactions.
    let (clean_dir, _) = Store::new(150, 5).generate();
    let (messy_dir, _) = Store::new(150, 5).mess().generate();
    let (_a, clean) = new_lake();
    let (_b, messy) = new_lake();
    ingest(
        &clean,
        &config(source(
            "transactions",
            &clean_dir.path().join("transactions.csv"),
        )),
        &IngestOptions::default(),
    )
    .await
    .unwrap();
    ingest(
        &messy,
        &config(source(
            "transactions",
            &messy_dir.path().join("transactions.csv"),
        )),
        &IngestOptions::default(),
    )
    .await
    .unwrap();
    let sql = "SELECT transaction_id, CAST(ts AS VARCHAR) AS t FROM transactions";
    let (ctx, _) = lake_session(&clean, &SessionOptions::default())
        .await
        .unwrap();
    let clean_ts = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let mut clean_map = std::collections::HashMap::new();
    for b in &clean_ts {
        clean_map.extend(strings(b.column(0)).into_iter().zip(strings(b.column(1))));
    }
    let mut compared = 0;
    for b in query(&messy, sql).await {
        for (id, ts) in strings(b.column(0)).into_iter().zip(strings(b.column(1))) {
            assert_eq!(clean_map.get(&id), Some(&ts), "{id}");
            compared += 1;
        }
    }
    assert!(compared > 1000);
}

#[tokio::test]
async fn ingesting_the_same_file_twice_adds_nothing() {
    let (dir, generated) = Store::new(120, 3).generate();
    let (_l, lake) = new_lake();
    let cfg = config(source("transactions", &dir.path().join("transactions.csv")));
    let first = ingest(&lake, &cfg, &IngestOptions::default())
        .await
        .unwrap();
    assert_eq!(first.accepted, generated.transactions);
    let second = ingest(&lake, &cfg, &IngestOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (second.accepted, second.duplicates),
        (0, generated.transactions)
    );
    assert_eq!(
        count(&lake, "SELECT count(*) FROM transactions").await as u64,
        generated.transactions
    );
}

/// A CSV text's header line and its data lines.
fn header_and_rows(text: &str) -> (&str, Vec<&str>) {
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    (header, lines.collect())
}

#[tokio::test]
async fn a_file_overlapping_the_lake_on_some_days_adds_only_the_rows_the_lake_lacks() {
    let (dir, generated) = Store::new(150, 5).generate();
    let text = std::fs::read_to_string(dir.path().join("transactions.csv")).unwrap();
    let (header, mut rows) = header_and_rows(&text);
    // In time order, so that the two files share some days and each has days of its own.
    let ts_column = header.split(',').position(|c| c == "ts").unwrap();
    rows.sort_by_key(|row| row.split(',').nth(ts_column).unwrap().to_string());
    let n = rows.len();
    let write = |name: &str, part: &[&str]| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{header}\n{}\n", part.join("\n"))).unwrap();
        path
    };
    let older = write("older.csv", &rows[..n * 2 / 3]);
    let newer = write("newer.csv", &rows[n / 3..]);
    let (_l, lake) = new_lake();
    let options = IngestOptions::default();
    let first = ingest(&lake, &config(source("transactions", &older)), &options)
        .await
        .unwrap();
    assert_eq!(first.accepted, (n * 2 / 3) as u64);
    let second = ingest(&lake, &config(source("transactions", &newer)), &options)
        .await
        .unwrap();
    let overlap = (n * 2 / 3 - n / 3) as u64;
    assert_eq!(
        (second.accepted, second.duplicates),
        ((n - n * 2 / 3) as u64, overlap)
    );
    assert_eq!(
        count(
            &lake,
            "SELECT count(DISTINCT transaction_id) FROM transactions"
        )
        .await,
        generated.transactions as i64
    );
    assert_eq!(
        count(&lake, "SELECT count(*) FROM transactions").await,
        generated.transactions as i64
    );
}

#[tokio::test]
async fn overlapping_files_in_a_folder_are_deduplicated() {
    let (dir, generated) = Store::new(120, 4).generate();
    let text = std::fs::read_to_string(dir.path().join("transactions.csv")).unwrap();
    let (header, rows) = header_and_rows(&text);
    let n = rows.len();
    let folder = dir.path().join("exports");
    std::fs::create_dir(&folder).unwrap();
    let write = |name: &str, part: &[&str]| {
        std::fs::write(
            folder.join(name),
            format!("{header}\n{}\n", part.join("\n")),
        )
        .unwrap()
    };
    write("day1.csv", &rows[..n * 2 / 3]);
    write("day2.csv", &rows[n / 3..]);
    let (_l, lake) = new_lake();
    let summary = ingest(
        &lake,
        &config(source("transactions", &folder)),
        &IngestOptions::default(),
    )
    .await
    .unwrap();
    let overlap = (n * 2 / 3 - n / 3) as u64;
    assert_eq!(summary.files.len(), 2);
    assert_eq!(summary.accepted, generated.transactions);
    assert_eq!(summary.duplicates, overlap);
    assert_eq!(
        count(
            &lake,
            "SELECT count(DISTINCT transaction_id) FROM transactions"
        )
        .await,
        count(&lake, "SELECT count(*) FROM transactions").await
    );
}

#[tokio::test]
async fn later_copies_within_a_batch_are_left_out_across_runs_and_counted_in_their_own_file() {
    let folder = tempfile::tempdir().unwrap();
    let header = "transaction_id,customer_id,ts,amount";
    let write = |name: &str, rows: &[&str]| {
        std::fs::write(
            folder.path().join(name),
            format!("{header}\n{}\n", rows.join("\n")),
        )
        .unwrap()
    };
    // T1 and T2 come again later with other days and amounts (the first copy wins); a.csv's
    // rows are spilled in a run of their own before b.csv's and c.csv's arrive.
    write(
        "a.csv",
        &[
            "T1,C1,2025-03-01 10:00:00,1.00",
            "T2,C1,2025-03-02 10:00:00,2.00",
        ],
    );
    write(
        "b.csv",
        &[
            "T1,C2,2025-03-02 11:00:00,9.00",
            "T3,C2,2025-03-03 10:00:00,3.00",
        ],
    );
    write(
        "c.csv",
        &[
            "T2,C3,2025-03-01 12:00:00,8.00",
            "T3,C3,2025-03-03 10:00:00,3.00",
            "T4,C3,2025-03-04 10:00:00,4.00",
        ],
    );
    let (_l, lake) = new_lake();
    let options = IngestOptions {
        buffer_rows: 2,
        run_memory_bytes: 0,
        ..Default::default()
    };
    let s = ingest(
        &lake,
        &config(source("transactions", folder.path())),
        &options,
    )
    .await
    .unwrap();
    assert!(s.spilled_runs >= 2, "{} runs", s.spilled_runs);
    let per_file: Vec<(u64, u64, u64)> = s
        .files
        .iter()
        .map(|f| (f.rows_read, f.accepted, f.duplicates))
        .collect();
    assert_eq!(per_file, vec![(2, 2, 0), (2, 1, 1), (3, 1, 2)]);
    assert_eq!((s.rows_read, s.accepted, s.duplicates), (7, 4, 3));
    let batches = query(
        &lake,
        "SELECT concat_ws('|', transaction_id, customer_id, CAST(amount AS VARCHAR), CAST(date AS VARCHAR)) \
         FROM transactions ORDER BY transaction_id",
    )
    .await;
    let rows: Vec<String> = batches.iter().flat_map(|b| strings(b.column(0))).collect();
    assert_eq!(
        rows,
        vec![
            "T1|C1|1.0|2025-03-01",
            "T2|C1|2.0|2025-03-02",
            "T3|C2|3.0|2025-03-03",
            "T4|C3|4.0|2025-03-04",
        ]
    );
}

#[tokio::test]
async fn a_crash_during_commit_is_seen_whole_by_readers_and_finished_by_the_next_run_without_duplicates()
 {
    let (dir, generated) = Store::new(120, 6).generate();
    let (_l, lake) = new_lake();
    let cfg = config(source("transactions", &dir.path().join("transactions.csv")));
    let crash = IngestOptions {
        crash_after_committed_files: Some(3),
        ..Default::default()
    };
    let err = ingest(&lake, &cfg, &crash).await.unwrap_err();
    assert!(
        matches!(
            err,
            IngestError::Core(churn_core::CoreError::SimulatedCrash(3))
        ),
        "{err}"
    );
    // Three partitions were moved before the "crash"...
    let moved = lake.list("transactions").await.unwrap();
    assert_eq!(moved.len(), 3, "{moved:?}");
    // ...yet a reader sees the whole commit: every partition, every row, none twice.
    assert!(lake.list_parquet("transactions").await.unwrap().len() > 3);
    assert_eq!(
        count(&lake, "SELECT count(*) FROM transactions").await as u64,
        generated.transactions
    );
    assert_eq!(
        count(
            &lake,
            "SELECT count(DISTINCT transaction_id) FROM transactions"
        )
        .await as u64,
        generated.transactions
    );

    let rerun = ingest(&lake, &cfg, &IngestOptions::default())
        .await
        .unwrap();
    assert_eq!(rerun.recovered_batches.len(), 1);
    assert_eq!(rerun.accepted, 0);
    assert_eq!(
        count(&lake, "SELECT count(*) FROM transactions").await as u64,
        generated.transactions
    );
    assert!(lake.list("_staging").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_crash_before_commit_leaves_nothing_and_the_rerun_loads_everything() {
    let (dir, generated) = Store::new(80, 8).generate();
    let (_l, lake) = new_lake();
    let cfg = config(source("transactions", &dir.path().join("transactions.csv")));
    // A crash before the commit plan: leave staging files behind by hand.
    lake.put(
        &lake.path("_staging/dead-batch/transactions/date=2024-01-01/part-dead.parquet"),
        bytes::Bytes::from_static(b"junk"),
    )
    .await
    .unwrap();
    let summary = ingest(&lake, &cfg, &IngestOptions::default())
        .await
        .unwrap();
    assert!(summary.recovered_batches.is_empty());
    assert_eq!(summary.accepted, generated.transactions);
    assert!(lake.list("_staging").await.unwrap().is_empty());
}

#[tokio::test]
async fn the_gb18030_chinese_export_gives_exactly_the_same_lake_rows_as_the_utf8_file() {
    let (dir, _) = Store::new(150, 9).chinese_export().generate();
    let (_a, utf8) = new_lake();
    let (_b, gb) = new_lake();
    ingest(
        &utf8,
        &config(source("transactions", &dir.path().join("transactions.csv"))),
        &IngestOptions::default(),
    )
    .await
    .unwrap();
    let pipeline: toml::Value =
        toml::from_str(&std::fs::read_to_string(repo_root().join("pipelines/demo.toml")).unwrap())
            .unwrap();
    let columns = pipeline["sources"]["till_export_cn"]["columns"]
        .as_table()
        .unwrap();
    let mut spec = source("transactions", &dir.path().join("transactions_gb18030.csv"));
    spec.encoding = Some("gb18030".into());
    spec.columns = columns
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let summary = ingest(&gb, &config(spec), &IngestOptions::default())
        .await
        .unwrap();
    assert_eq!(summary.rejected, 0);
    let (a, b) = (transaction_rows(&utf8).await, transaction_rows(&gb).await);
    assert!(a.len() > 1000);
    assert_eq!(a, b);
}

#[tokio::test]
async fn parquet_and_ndjson_sources_load_the_same_rows_as_csv() {
    let (csv_dir, _) = Store::new(100, 12).generate();
    let (pq_dir, _) = Store::new(100, 12).format(OutputFormat::Parquet).generate();
    let (_a, from_csv) = new_lake();
    let (_b, from_pq) = new_lake();
    let (_c, from_json) = new_lake();
    ingest(
        &from_csv,
        &config(source(
            "transactions",
            &csv_dir.path().join("transactions.csv"),
        )),
        &IngestOptions::default(),
    )
    .await
    .unwrap();
    ingest(
        &from_pq,
        &config(source(
            "transactions",
            &pq_dir.path().join("transactions.parquet"),
        )),
        &IngestOptions::default(),
    )
    .await
    .unwrap();
    // NDJSON written from the CSV, numbers as JSON numbers and flags as booleans.
    let text = std::fs::read_to_string(csv_dir.path().join("transactions.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let mut ndjson = String::new();
    for line in lines {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(line.as_bytes());
        let record = reader.records().next().unwrap().unwrap();
        let mut object = serde_json::Map::new();
        for (h, v) in header.iter().zip(record.iter()) {
            let value = match *h {
                "amount" | "discount" | "quantity" => {
                    serde_json::Value::from(v.parse::<f64>().unwrap())
                }
                "is_return" => serde_json::Value::from(v == "true"),
                _ => serde_json::Value::from(v),
            };
            object.insert(h.to_string(), value);
        }
        ndjson.push_str(&serde_json::Value::Object(object).to_string());
        ndjson.push('\n');
    }
    ndjson.push_str("{not json\n");
    let json_path = csv_dir.path().join("transactions.ndjson");
    std::fs::write(&json_path, ndjson).unwrap();
    let summary = ingest(
        &from_json,
        &config(source("transactions", &json_path)),
        &IngestOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(summary.rejected_by_reason.get("malformed_json"), Some(&1));

    let expected = transaction_rows(&from_csv).await;
    assert!(expected.len() > 500);
    for (name, lake) in [("parquet", &from_pq), ("ndjson", &from_json)] {
        let rows = transaction_rows(lake).await;
        assert_eq!(rows.len(), expected.len(), "{name}");
        if let Some((a, b)) = rows.iter().zip(&expected).find(|(a, b)| a != b) {
            panic!("{name} differs from csv: {a} vs {b}");
        }
    }
}

#[tokio::test]
async fn a_memory_lake_works_end_to_end_through_object_store() {
    let (dir, _) = Store::new(60, 13).generate();
    let lake = Lake::open("memory://ingest-test/lake").unwrap();
    let summary = ingest(
        &lake,
        &config(source("transactions", &dir.path().join("transactions.csv"))),
        &IngestOptions::default(),
    )
    .await
    .unwrap();
    // Independent sums from the source file.
    let mut reader = csv::Reader::from_path(dir.path().join("transactions.csv")).unwrap();
    let (mut rows, mut total) = (0u64, 0f64);
    for r in reader.records() {
        rows += 1;
        total += r.unwrap()[3].parse::<f64>().unwrap();
    }
    assert_eq!(summary.accepted, rows);
    let batches = query(&lake, "SELECT count(*), sum(amount) FROM transactions").await;
    assert_eq!(
        batches[0].column(0).as_primitive::<Int64Type>().value(0) as u64,
        rows
    );
    let lake_total = batches[0].column(1).as_primitive::<Float64Type>().value(0);
    assert!(
        (lake_total - total).abs() <= 1e-9 * total.abs(),
        "{lake_total} vs {total}"
    );
    assert!(!std::path::Path::new("memory:").exists());
}

#[tokio::test]
async fn too_many_rejects_add_nothing_but_keep_the_quarantine() {
    let (dir, _) = Store::new(100, 14).mess().generate();
    let (_l, lake) = new_lake();
    let mut spec = source("transactions", &dir.path().join("transactions.csv"));
    spec.max_reject_ratio = Some(0.001);
    let err = ingest(&lake, &config(spec), &IngestOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), churn_core::ErrorKind::Data);
    assert!(err.to_string().contains("nothing was added"), "{err}");
    assert!(lake.list_parquet("transactions").await.unwrap().is_empty());
    assert!(count(&lake, "SELECT count(*) FROM quarantine_transactions").await > 0);
}

#[tokio::test]
async fn a_source_without_a_required_column_is_refused_with_the_file_and_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.csv");
    std::fs::write(
        &path,
        "transaction_id,member,ts,amount\nT1,C1,2024-01-01 10:00:00,5\n",
    )
    .unwrap();
    let (_l, lake) = new_lake();
    let err = ingest(
        &lake,
        &config(source("transactions", &path)),
        &IngestOptions::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), churn_core::ErrorKind::Config);
    let text = err.to_string();
    assert!(
        text.contains("t.csv") && text.contains("customer_id") && text.contains("member"),
        "{text}"
    );
    // Mapping the column fixes it.
    let mut spec = source("transactions", &path);
    spec.columns.insert("customer_id".into(), "member".into());
    assert_eq!(
        ingest(&lake, &config(spec), &IngestOptions::default())
            .await
            .unwrap()
            .accepted,
        1
    );
}

#[tokio::test]
async fn customers_are_upserted_with_the_latest_profile_winning() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("c1.csv");
    let second = dir.path().join("c2.csv");
    std::fs::write(
        &first,
        "customer_id,tier,birthday\nC1,silver,1990-05-01\nC2,gold,1985-01-31\n",
    )
    .unwrap();
    std::fs::write(
        &second,
        "customer_id,tier\nC2,diamond\nC3,silver\nC3,gold\n",
    )
    .unwrap();
    let (_l, lake) = new_lake();
    ingest(
        &lake,
        &config(source("customers", &first)),
        &IngestOptions::default(),
    )
    .await
    .unwrap();
    let s = ingest(
        &lake,
        &config(source("customers", &second)),
        &IngestOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!((s.rows_read, s.accepted, s.duplicates), (3, 2, 1));
    let batches = query(
        &lake,
        "SELECT string_agg(customer_id || ':' || tier, ',' ORDER BY customer_id) FROM customers",
    )
    .await;
    assert_eq!(
        strings(batches[0].column(0))[0],
        "C1:silver,C2:diamond,C3:gold"
    );
    assert_eq!(lake.list_parquet("customers").await.unwrap().len(), 1);
}

#[tokio::test]
async fn local_times_are_read_in_the_source_zone_and_partitioned_by_local_date() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.csv");
    std::fs::write(&path, "transaction_id,customer_id,ts,amount\nT1,C1,2024-03-05 00:30:00,5\nT2,C1,2024-03-05T00:30:00Z,7\n").unwrap();
    let (_l, lake) = new_lake();
    let mut spec = source("transactions", &path);
    spec.timezone = Some("Asia/Shanghai".into());
    ingest(&lake, &config(spec), &IngestOptions::default())
        .await
        .unwrap();
    let batches = query(&lake, "SELECT string_agg(transaction_id || ' ' || CAST(ts AS VARCHAR) || ' ' || CAST(date AS VARCHAR), ';' ORDER BY transaction_id) FROM transactions").await;
    assert_eq!(
        strings(batches[0].column(0))[0],
        "T1 2024-03-04T16:30:00Z 2024-03-05;T2 2024-03-05T00:30:00Z 2024-03-05"
    );
    assert_eq!(
        lake.settings().await.unwrap().unwrap().timezone,
        "Asia/Shanghai"
    );
}

#[tokio::test]
async fn small_buffers_hold_or_spill_sorted_runs_and_load_exactly_the_rows_of_a_one_buffer_ingest()
{
    let (dir, generated) = Store::new(150, 15).generate();
    // Buffers are checked after each 8 MiB read of a file, so a small export is split into
    // files of 300 rows for the 250-row buffer to fill (and make a run) with each file.
    let folder = dir.path().join("parts");
    split_csv(&dir.path().join("transactions.csv"), &folder, 300);
    let cfg = config(source("transactions", &folder));
    let (_u, unspilled) = new_lake();
    let reference = ingest(&unspilled, &cfg, &IngestOptions::default())
        .await
        .unwrap();
    assert_eq!(reference.spilled_runs, 0);
    assert_eq!(reference.accepted, generated.transactions);
    let reference_rows = transaction_rows(&unspilled).await;
    assert_eq!(reference_rows.len() as u64, generated.transactions);
    let days = count(&unspilled, "SELECT count(DISTINCT date) FROM transactions").await as usize;
    let folders = |files: &[String]| -> Vec<String> {
        files
            .iter()
            .map(|f| f.rsplit_once('/').unwrap().0.to_string())
            .collect()
    };

    // Every run spilled; the first runs held and the others spilled (a run of 250-300 rows
    // takes 20-30 KiB); every run held.
    let mut runs = 0;
    for run_memory_bytes in [0, 64 << 10, IngestOptions::default().run_memory_bytes] {
        let (_s, lake) = new_lake();
        let small = IngestOptions {
            buffer_rows: 250,
            run_memory_bytes,
            ..Default::default()
        };
        let summary = ingest(&lake, &cfg, &small).await.unwrap();
        let files = summary.files.len();
        assert!(files >= 6, "{files} files");
        match run_memory_bytes {
            0 => {
                runs = summary.spilled_runs;
                assert!(runs >= files / 2 - 1, "{runs} runs from {files} files");
            }
            bytes if bytes < 1 << 20 => assert!(
                (1..runs).contains(&summary.spilled_runs),
                "{} of {runs} runs spilled",
                summary.spilled_runs
            ),
            _ => assert_eq!(summary.spilled_runs, 0),
        }
        assert_eq!(summary.accepted, generated.transactions);
        assert_eq!(
            transaction_rows(&lake).await,
            reference_rows,
            "run memory {run_memory_bytes}"
        );
        assert_eq!(summary.data_files.len(), days);
        // The same partitions (file names carry each run's batch id).
        assert_eq!(folders(&summary.data_files), folders(&reference.data_files));
        assert_eq!(lake.list_parquet("transactions").await.unwrap().len(), days);
        // No run is left in staging.
        let staged: Vec<String> = lake
            .list("_staging")
            .await
            .unwrap()
            .iter()
            .map(|meta| meta.location.to_string())
            .collect();
        assert!(staged.is_empty(), "{staged:?}");
        // Each row sits in the partition of its own date.
        assert_eq!(
            count(
                &lake,
                "SELECT count(*) FROM transactions WHERE CAST(ts AS DATE) <> date"
            )
            .await,
            0
        );
    }
}

/// Writes the data lines of a CSV file as files of `rows` lines each, with its header.
fn split_csv(csv: &Path, folder: &Path, rows: usize) {
    let text = std::fs::read_to_string(csv).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let lines: Vec<&str> = lines.collect();
    std::fs::create_dir_all(folder).unwrap();
    for (i, chunk) in lines.chunks(rows).enumerate() {
        let body = format!("{header}\n{}\n", chunk.join("\n"));
        std::fs::write(folder.join(format!("part-{i:04}.csv")), body).unwrap();
    }
}

/// (customer_id, tier) of every row of the lake's customers file, in file order.
fn customer_file_rows(lake_dir: &Path) -> Vec<(String, String)> {
    let files: Vec<PathBuf> = std::fs::read_dir(lake_dir.join("customers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&files[0]).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap();
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let ids = strings(batch.column_by_name("customer_id").unwrap());
        let tiers = strings(batch.column_by_name("tier").unwrap());
        rows.extend(ids.into_iter().zip(tiers));
    }
    rows
}

#[tokio::test]
async fn a_customers_upsert_over_many_buffers_keeps_each_last_profile_in_input_order() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("c1.csv");
    let second = dir.path().join("incoming");
    let mut old = String::from("customer_id,tier\n");
    for i in 0..100 {
        old += &format!("C{i:03},old\n");
    }
    std::fs::write(&first, old).unwrap();
    // 300 profiles of C050..C149, each customer three times, ids interleaved so that
    // profiles are superseded across batches.
    let incoming: Vec<(String, String)> = (0..300)
        .map(|r| (format!("C{:03}", 50 + (r * 37) % 100), format!("v{r}")))
        .collect();
    let mut text = String::from("customer_id,tier\n");
    for (id, tier) in &incoming {
        text += &format!("{id},{tier}\n");
    }
    // In files of 10 rows: buffers are checked after each file's read, so a 7-row buffer
    // hands the upsert one batch per file.
    std::fs::write(dir.path().join("c2.csv"), text).unwrap();
    split_csv(&dir.path().join("c2.csv"), &second, 10);

    // Independently: the lake's rows not in the input, in file order, then each incoming
    // customer's last profile, ordered by where that profile is in the input.
    let mut last_at = std::collections::HashMap::new();
    for (r, (id, _)) in incoming.iter().enumerate() {
        last_at.insert(id.clone(), r);
    }
    let mut expected: Vec<(String, String)> = (0..100)
        .map(|i| format!("C{i:03}"))
        .filter(|id| !last_at.contains_key(id))
        .map(|id| (id, "old".to_string()))
        .collect();
    let mut winners: Vec<usize> = last_at.values().copied().collect();
    winners.sort_unstable();
    expected.extend(winners.into_iter().map(|r| incoming[r].clone()));
    assert_eq!(expected.len(), 150);

    for buffer_rows in [7, IngestOptions::default().buffer_rows] {
        let lake_dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(lake_dir.path().to_str().unwrap()).unwrap();
        ingest(
            &lake,
            &config(source("customers", &first)),
            &IngestOptions::default(),
        )
        .await
        .unwrap();
        let options = IngestOptions {
            buffer_rows,
            ..Default::default()
        };
        let s = ingest(&lake, &config(source("customers", &second)), &options)
            .await
            .unwrap();
        assert_eq!(s.files.len(), 30);
        assert_eq!(
            (s.rows_read, s.accepted, s.duplicates),
            (300, 100, 200),
            "buffer_rows {buffer_rows}"
        );
        assert_eq!(
            customer_file_rows(lake_dir.path()),
            expected,
            "buffer_rows {buffer_rows}"
        );
    }
}
