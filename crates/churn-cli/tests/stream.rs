//! `churn stream`: files landing in a source's folder are taken exactly once, through the
//! same validation, quarantine and dedup as `churn ingest` (the lake equals one batch ingest
//! of the same rows), a file still being written is left alone, kill -9 at any moment loses
//! and doubles nothing, SIGTERM ends the service cleanly, and other writers get the lake
//! between its micro-batches.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use churn_test_kit::{Churn, json_of, s, stderr};

const CHURN: Churn = Churn::new(env!("CARGO_BIN_EXE_churn"));

/// A generated store with dirt (bad rows, duplicates) and its transactions as
/// (header, data lines).
fn messy_transactions(dir: &Path, customers: &str) -> (PathBuf, Vec<u8>, Vec<Vec<u8>>) {
    let store = dir.join("store");
    CHURN.generate(
        &store,
        &[
            "--customers",
            customers,
            "--seed",
            "3",
            "--days",
            "200",
            "--mess",
        ],
    );
    let csv = store.join("transactions.csv");
    let bytes = std::fs::read(&csv).unwrap();
    let mut lines = bytes.split(|b| *b == b'\n').map(<[u8]>::to_vec);
    let header = lines.next().unwrap();
    let body = lines.filter(|l| !l.is_empty()).collect();
    (csv, header, body)
}

/// Writes `lines` into `n` landing files till-00.csv … in order, each with the header.
fn land_in_chunks(landing: &Path, header: &[u8], lines: &[Vec<u8>], n: usize) {
    std::fs::create_dir_all(landing).unwrap();
    for (i, chunk) in lines.chunks(lines.len().div_ceil(n)).enumerate() {
        write_file(&landing.join(format!("till-{i:02}.csv")), header, chunk);
    }
}

fn write_file(path: &Path, header: &[u8], lines: &[Vec<u8>]) {
    let mut text = header.to_vec();
    for line in lines {
        text.push(b'\n');
        text.extend_from_slice(line);
    }
    text.push(b'\n');
    std::fs::write(path, text).unwrap();
}

fn pipeline(dir: &Path, landing: &Path, stream: &str) -> PathBuf {
    let path = dir.join("stream.toml");
    std::fs::write(
        &path,
        format!(
            "[lake]\npath = \"lake\"\ntimezone = \"UTC\"\n\n[sources.tills]\ntable = \"transactions\"\npath = \"{}\"\n\n[stream]\n{stream}\n",
            landing.display()
        ),
    )
    .unwrap();
    path
}

fn stream_once(pipeline: &Path) -> serde_json::Value {
    CHURN.json(&["stream", s(pipeline), "--once", "--json"])
}

/// Every transaction row of a lake, in id order, as CSV lines.
fn lake_rows(lake: &Path) -> Vec<String> {
    let csv = CHURN.sql_csv(lake, "SELECT * FROM transactions ORDER BY transaction_id");
    String::from_utf8_lossy(&csv)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The quarantined rows of a lake as a multiset of (reason code, raw line): line numbers and
/// batch ids depend on how the rows were cut into files and batches, the rows do not.
fn quarantine(lake: &Path) -> BTreeMap<(String, String), usize> {
    let csv = CHURN.sql_csv(
        lake,
        "SELECT reason_code, raw_line FROM quarantine_transactions",
    );
    let mut rows = BTreeMap::new();
    let mut reader = csv::Reader::from_reader(csv.as_slice());
    for record in reader.records() {
        let record = record.unwrap();
        *rows
            .entry((record[0].to_string(), record[1].to_string()))
            .or_insert(0) += 1;
    }
    rows
}

/// A reference lake: the whole transactions file in one `churn ingest`.
fn batch_ingested(dir: &Path, csv: &Path) -> PathBuf {
    let lake = dir.join("reference-lake");
    CHURN.ok(&[
        "ingest",
        "--lake",
        s(&lake),
        "--table",
        "transactions",
        "--source",
        s(csv),
        "--timezone",
        "UTC",
    ]);
    lake
}

/// Every checkpoint record's files, as (file name, outcome).
fn taken_files(lake: &Path) -> Vec<(String, String)> {
    let dir = lake.join("_checkpoints/tills");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
        for file in record["files"].as_array().unwrap() {
            let location = file["location"].as_str().unwrap();
            let name = Path::new(location).file_name().unwrap().to_str().unwrap();
            files.push((
                name.to_string(),
                file["outcome"].as_str().unwrap().to_string(),
            ));
        }
    }
    files.sort();
    files
}

/// How many landing files the lake's checkpoints record as taken (none before the first).
fn taken_count(lake: &Path) -> u64 {
    if !lake.join("_checkpoints/tills").exists() {
        return 0;
    }
    taken_files(lake).len() as u64
}

fn assert_counts_add_up(summary: &serde_json::Value) {
    let n = |k: &str| summary[k].as_u64().unwrap();
    assert_eq!(
        n("rows_read"),
        n("accepted") + n("rejected") + n("duplicates") + n("held_back"),
        "{summary}"
    );
}

#[test]
fn stream_once_takes_every_landed_file_once_and_the_lake_equals_one_batch_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let (csv, header, lines) = messy_transactions(dir.path(), "300");
    let landing = dir.path().join("landing");
    land_in_chunks(&landing, &header, &lines, 10);
    // Still being copied under a temporary name, and a file that is not transactions at all.
    write_file(&landing.join("till-10.csv.tmp"), &header, &[]);
    std::fs::write(landing.join("prices.csv"), "sku,price\nA,1\n").unwrap();
    let file = pipeline(dir.path(), &landing, "max_batch_files = 3\nsettle_secs = 0");
    let lake = dir.path().join("lake");

    let first = stream_once(&file);
    assert_counts_add_up(&first);
    assert_eq!(first["files_taken"], 11, "{first}");
    assert_eq!(first["failed_files"], 1, "{first}");
    assert_eq!(first["rows_read"], lines.len() as u64, "{first}");
    // Batches of at most three files in name order: prices.csv, till-00 and till-01 first;
    // prices.csv cannot be read, so that batch is retaken file by file (3 batches), then
    // till-02..04, till-05..07 and till-08..09.
    assert_eq!(first["batches"], 6, "{first}");

    let reference = batch_ingested(dir.path(), &csv);
    assert_eq!(lake_rows(&lake), lake_rows(&reference));
    let quarantined = quarantine(&lake);
    assert!(!quarantined.is_empty(), "the messy store has bad rows");
    assert_eq!(quarantined, quarantine(&reference));

    // Nothing is taken twice.
    let again = stream_once(&file);
    assert_eq!(again["files_taken"], 0, "{again}");
    let mut expected: Vec<(String, String)> = (0..10)
        .map(|i| (format!("till-{i:02}.csv"), "ingested".to_string()))
        .collect();
    expected.push(("prices.csv".into(), "failed".into()));
    expected.sort();
    assert_eq!(taken_files(&lake), expected);

    let status = CHURN.json(&["stream", "status", s(&file), "--json"]);
    let tills = &status["sources"][0];
    assert_eq!(tills["taken_files"], 11, "{status}");
    assert_eq!(tills["waiting_files"], 0, "{status}");
    let failed = tills["failed_files"][0]["error"].as_str().unwrap();
    assert!(
        failed.contains("prices.csv") && failed.contains("missing required column"),
        "{failed}"
    );

    // The copy finishes under its real name; it is taken, and only it.
    let late: Vec<Vec<u8>> = vec![b"T-LATE-1,C-LATE,2026-06-01 10:00:00,12.50".to_vec()];
    let header_4 = b"transaction_id,customer_id,ts,amount".to_vec();
    write_file(&landing.join("till-10.csv"), &header_4, &late);
    std::fs::remove_file(landing.join("till-10.csv.tmp")).unwrap();
    let last = stream_once(&file);
    assert_eq!(
        (last["files_taken"].as_u64(), last["accepted"].as_u64()),
        (Some(1), Some(1)),
        "{last}"
    );
    assert_eq!(lake_rows(&lake).len(), lake_rows(&reference).len() + 1);
}

#[test]
fn a_file_still_being_written_is_not_taken_until_it_stops_changing() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    std::fs::create_dir_all(&landing).unwrap();
    let growing = landing.join("growing.csv");
    std::fs::write(&growing, "transaction_id,customer_id,ts,amount\n").unwrap();
    let file = pipeline(dir.path(), &landing, "settle_secs = 1");

    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (writing, growing) = (writing.clone(), growing.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut n = 0;
            while writing.load(Ordering::SeqCst) {
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&growing)
                    .unwrap();
                writeln!(f, "T{n:05},C{:03},2026-05-01 09:00:00,{n}.00", n % 7).unwrap();
                n += 1;
                std::thread::sleep(Duration::from_millis(150));
            }
            n
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let during = stream_once(&file);
    writing.store(false, Ordering::SeqCst);
    let written = writer.join().unwrap();
    assert_eq!(during["files_taken"], 0, "{during}");
    let changing = during["still_changing"].as_array().unwrap();
    assert!(
        changing[0].as_str().unwrap().ends_with("growing.csv"),
        "{during}"
    );

    // Once it has not changed for the settle time, all of it is taken.
    std::thread::sleep(Duration::from_millis(1200));
    let after = stream_once(&file);
    assert_eq!(after["files_taken"], 1, "{after}");
    assert_eq!(after["accepted"], written, "{after}");
}

#[test]
fn kill_9_at_random_moments_then_a_rerun_leaves_the_lake_of_an_uninterrupted_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (_, header, lines) = messy_transactions(dir.path(), "400");
    let landing = dir.path().join("landing");
    land_in_chunks(&landing, &header, &lines, 24);

    let uninterrupted = dir.path().join("uninterrupted");
    std::fs::create_dir_all(&uninterrupted).unwrap();
    let reference_file = pipeline(
        &uninterrupted,
        &landing,
        "max_batch_files = 2\nsettle_secs = 0",
    );
    let started = Instant::now();
    let reference = stream_once(&reference_file);
    let uninterrupted_ms = started.elapsed().as_millis() as u64;
    assert_eq!(reference["files_taken"], 24, "{reference}");
    let reference_lake = uninterrupted.join("lake");

    let file = pipeline(dir.path(), &landing, "max_batch_files = 2\nsettle_secs = 0");
    let lake = dir.path().join("lake");
    // Kill moments from before the first batch to the middle of the last ones: a linear
    // congruential walk (the same sequence every time) over a quarter of the time the files
    // still to take cost the uninterrupted run, so that kills land mid-run however fast the
    // machine is. A share of the whole run's time instead let a run that happened to be fast
    // finish the rest, and every later run had nothing left to be killed in.
    let mut x: u64 = 7;
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    for _ in 0..16 {
        x = (x * 1_103_515_245 + 12_345) % (1 << 31);
        let remaining_ms = uninterrupted_ms * (24 - taken_count(&lake)) / 24;
        let after_ms = 30 + x % (remaining_ms / 4).max(50);
        let mut child: Child = CHURN
            .command()
            .args(["stream", s(&file), "--once", "--json"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(after_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
        if Instant::now() > deadline {
            break;
        }
    }
    assert!(kills >= 4, "only {kills} runs were killed mid-way");
    let finish = stream_once(&file);
    assert_counts_add_up(&finish);

    assert_eq!(lake_rows(&lake), lake_rows(&reference_lake));
    assert_eq!(quarantine(&lake), quarantine(&reference_lake));
    let expected: Vec<(String, String)> = (0..24)
        .map(|i| (format!("till-{i:02}.csv"), "ingested".to_string()))
        .collect();
    assert_eq!(taken_files(&lake), expected, "each file taken exactly once");
}

#[test]
fn sigterm_ends_the_service_cleanly_and_other_writers_get_the_lake_between_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (csv, header, lines) = messy_transactions(dir.path(), "150");
    let landing = dir.path().join("landing");
    std::fs::create_dir_all(&landing).unwrap();
    let file = pipeline(
        dir.path(),
        &landing,
        "interval_secs = 1\nsettle_secs = 0\nmax_batch_files = 1",
    );
    let lake = dir.path().join("lake");
    let mut service = CHURN
        .command()
        .args(["stream", s(&file), "--json", "--log-format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Files land while the service runs.
    land_in_chunks(&landing, &header, &lines, 4);
    let taken = |lake: &Path| {
        let status = CHURN.json(&["stream", "status", s(&file), "--json", "--lake", s(lake)]);
        status["sources"][0]["taken_files"].as_u64().unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    while taken(&lake) < 4 {
        assert!(
            Instant::now() < deadline,
            "the service did not take the files"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Another writer gets the lake while the service keeps polling.
    let customers = csv.with_file_name("customers.csv");
    let other = CHURN.run(&[
        "ingest",
        "--lake",
        s(&lake),
        "--table",
        "customers",
        "--source",
        s(&customers),
        "--wait-secs",
        "30",
    ]);
    assert!(other.status.success(), "{}", stderr(&other));

    std::process::Command::new("kill")
        .args(["-TERM", &service.id().to_string()])
        .status()
        .unwrap();
    let started = Instant::now();
    loop {
        if service.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = service.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = json_of(&out);
    assert_eq!(summary["ended"], "stopped", "{summary}");
    assert_eq!(summary["files_taken"], 4, "{summary}");
    assert_counts_add_up(&summary);
    // Progress is logged as JSON lines with the batch's figures.
    let logs = stderr(&out);
    let batch_line = logs
        .lines()
        .find(|l| l.contains("micro-batch done"))
        .expect("a progress line per batch");
    let line: serde_json::Value = serde_json::from_str(batch_line).unwrap();
    assert!(line["fields"]["lag_ms"].is_u64(), "{line}");
    assert_eq!(
        lake_rows(&lake),
        lake_rows(&batch_ingested(dir.path(), &csv))
    );
}

#[test]
fn a_bad_stream_section_is_refused_with_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    let file = pipeline(
        dir.path(),
        &landing,
        "interval_secs = 0\nsources = [\"tils\"]\nignore = [\"[a\"]",
    );
    let out = CHURN.run(&["stream", s(&file), "--once"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let message = stderr(&out);
    for problem in ["stream.interval_secs", "stream.sources", "stream.ignore"] {
        assert!(message.contains(problem), "{problem} missing: {message}");
    }
}
