//! Object storage for real: a local S3-compatible HTTP server (moto, started by the test)
//! holds both the source files and the lake, and the same CLI commands work against it.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use churn_test_kit::{Churn, python, s};

const CHURN: Churn = Churn::new(env!("CARGO_BIN_EXE_churn"));

/// A moto S3 server on a free local port, stopped on drop.
struct S3Server {
    child: Child,
    endpoint: String,
    /// Moto's log lines so far (its requests and any error), for failure messages.
    output: Arc<Mutex<Vec<String>>>,
}

/// The port moto prints in its `Running on http://127.0.0.1:PORT` line, waited for up to 30 s;
/// its stderr is read to the end on a thread of its own (so a full pipe never blocks moto)
/// into `output`.
fn listening_port(stderr: ChildStderr, output: Arc<Mutex<Vec<String>>>) -> Option<u16> {
    const RUNNING_ON: &str = "Running on http://127.0.0.1:";
    let (port_tx, port_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some((_, rest)) = line.split_once(RUNNING_ON) {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                let _ = port_tx.send(digits.parse::<u16>().ok());
            }
            output.lock().unwrap().push(line);
        }
    });
    port_rx.recv_timeout(Duration::from_secs(30)).ok().flatten()
}

impl S3Server {
    /// A server with an empty bucket `shop`.
    fn with_shop_bucket() -> S3Server {
        let server = S3Server::start();
        server.boto("s3.create_bucket(Bucket='shop')", &[]);
        server
    }

    /// Starts moto on a port it picks itself (port 0), read from the address it prints once it
    /// listens: a port the test picked and freed could be taken by anything before moto binds it.
    fn start() -> S3Server {
        let mut child = Command::new(python())
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start moto (run the tests with tests/run.sh, which installs it)");
        let output = Arc::new(Mutex::new(Vec::new()));
        let port = listening_port(child.stderr.take().unwrap(), Arc::clone(&output));
        let Some(port) = port else {
            let _ = child.kill();
            panic!(
                "moto did not start (is moto[server] installed? use tests/run.sh): {}",
                output.lock().unwrap().join("\n")
            );
        };
        S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            output,
        }
    }

    fn env(&self, cmd: &mut Command) {
        cmd.env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT", &self.endpoint)
            .env("AWS_ALLOW_HTTP", "true");
    }

    /// Runs `churn ARGS` against the server.
    fn churn(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = CHURN.command();
        self.env(&mut cmd);
        cmd.args(args).output().unwrap()
    }

    /// `churn ingest --json` of transactions from `source` into `s3://shop/lake`; a lake
    /// another writer holds is refused at once.
    fn ingest_transactions(&self, source: &str) -> std::process::Output {
        self.churn(&[
            "ingest",
            "--json",
            "--wait-secs",
            "0",
            "--lake",
            "s3://shop/lake",
            "--table",
            "transactions",
            "--source",
            source,
        ])
    }

    /// Runs a boto3 snippet against the server (bucket creation, uploads).
    fn boto(&self, code: &str, args: &[&str]) {
        let script = format!(
            "import sys, boto3\ns3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test')\n{code}",
            self.endpoint
        );
        let out = Command::new(python())
            .arg("-c")
            .arg(script)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}\nmoto's last log lines:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.last_log_lines()
        );
    }

    /// The last 20 lines moto logged.
    fn last_log_lines(&self) -> String {
        let output = self.output.lock().unwrap();
        output[output.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn ingest_and_sql_work_with_source_and_lake_on_an_s3_server() {
    let server = S3Server::with_shop_bucket();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let churn = |args: &[&str]| server.churn(args);
    CHURN.generate(
        &store,
        &["--customers", "80", "--seed", "31", "--days", "120"],
    );
    server.boto(
        "s3.upload_file(sys.argv[1], 'shop', 'landing/2024/transactions.csv')",
        &[s(&store.join("transactions.csv"))],
    );

    let ingest = || server.ingest_transactions("s3://shop/landing/");
    let out = ingest();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    // Independent figures from the source file.
    let mut reader = csv::Reader::from_path(store.join("transactions.csv")).unwrap();
    let (mut rows, mut total) = (0u64, 0f64);
    for r in reader.records() {
        rows += 1;
        total += r.unwrap()[3].parse::<f64>().unwrap();
    }
    assert_eq!(summary["accepted"].as_u64(), Some(rows));

    let out = churn(&[
        "sql",
        "--lake",
        "s3://shop/lake",
        "--format",
        "csv",
        "SELECT count(*) AS n, round(sum(amount), 2) AS total FROM transactions",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("n,total\n{rows},{}\n", (total * 100.0).round() / 100.0)
    );

    // Re-ingesting from the bucket adds nothing.
    let again: serde_json::Value = serde_json::from_slice(&ingest().stdout).unwrap();
    assert_eq!(
        (again["accepted"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(rows))
    );
}

#[test]
fn the_writer_lease_holds_on_the_s3_server_and_an_expired_one_is_taken_over() {
    let server = S3Server::with_shop_bucket();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    CHURN.generate(
        &store,
        &["--customers", "40", "--seed", "8", "--days", "60"],
    );
    let ingest = || server.ingest_transactions(s(&store.join("transactions.csv")));
    // Another machine holds the lake: its lease expires in ten minutes.
    let place = "import json, time\n\
        g, expires = int(sys.argv[1]), time.time() * 1000 + float(sys.argv[2])\n\
        body = json.dumps({'generation': g, 'holder': 'churn stream', 'host': 'another-machine', 'pid': 1, 'acquired_at': '2026-12-02T00:00:00+00:00', 'expires_at_unix_ms': int(expires)})\n\
        s3.put_object(Bucket='shop', Key='lake/_lease/%020d.json' % g, Body=body)";
    server.boto(place, &["3", "600000"]);
    let out = ingest();
    assert_eq!(
        out.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("another-machine"));

    // Its lease has expired (the machine died): the next writer takes over.
    server.boto(place, &["3", "-1000"]);
    let out = ingest();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Generation 4 was created only if absent (a conditional put), and generation 3 is gone.
    server.boto(
        "keys = [o['Key'] for o in s3.list_objects_v2(Bucket='shop', Prefix='lake/_lease/')['Contents']]\n\
         assert keys == ['lake/_lease/%020d.json' % 4], keys\n\
         import json\n\
         rec = json.loads(s3.get_object(Bucket='shop', Key=keys[0])['Body'].read())\n\
         assert rec['holder'] == 'churn ingest' and rec['released'], rec",
        &[],
    );
}

#[test]
fn the_stream_takes_each_object_of_an_s3_landing_prefix_once_into_an_s3_lake() {
    let server = S3Server::with_shop_bucket();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    CHURN.generate(
        &store,
        &["--customers", "60", "--seed", "8", "--days", "90"],
    );
    // The store's transactions cut into three till files, uploaded to the landing prefix.
    let text = std::fs::read_to_string(store.join("transactions.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let body: Vec<&str> = lines.collect();
    let files: Vec<std::path::PathBuf> = body
        .chunks(body.len().div_ceil(3))
        .enumerate()
        .map(|(i, chunk)| {
            let path = dir.path().join(format!("till-{i}.csv"));
            std::fs::write(&path, format!("{header}\n{}\n", chunk.join("\n"))).unwrap();
            path
        })
        .collect();
    let upload = |path: &std::path::Path, key: &str| {
        server.boto(
            "s3.upload_file(sys.argv[1], 'shop', sys.argv[2])",
            &[s(path), key],
        )
    };
    upload(&files[0], "landing/till-0.csv");
    upload(&files[1], "landing/till-1.csv");
    let pipeline = dir.path().join("stream.toml");
    std::fs::write(
        &pipeline,
        "[lake]\npath = \"s3://shop/lake\"\ntimezone = \"UTC\"\n\n[sources.tills]\ntable = \"transactions\"\npath = \"s3://shop/landing/\"\n\n[stream]\nsettle_secs = 0\n",
    )
    .unwrap();
    let once = || {
        let out = server.churn(&["stream", s(&pipeline), "--once", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let first = once();
    assert_eq!(first["files_taken"], 2, "{first}");
    // The same bytes uploaded again are the same version (same entity tag): not taken again;
    // a new file is.
    upload(&files[0], "landing/till-0.csv");
    upload(&files[2], "landing/till-2.csv");
    let second = once();
    assert_eq!(second["files_taken"], 1, "{second}");
    assert_eq!(
        first["accepted"].as_u64().unwrap() + second["accepted"].as_u64().unwrap(),
        body.len() as u64
    );
    let out = server.churn(&[
        "sql",
        "--lake",
        "s3://shop/lake",
        "--format",
        "csv",
        "SELECT count(*) AS n FROM transactions",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("n\n{}\n", body.len())
    );
    assert!(
        server
            .churn(&["stream", s(&pipeline), "--once"])
            .status
            .success()
    );
}

/// The demo pipeline file with its lake at `lake`, its sources under `sources` (a folder or
/// an `s3://` prefix holding the three tables' CSV files) and its other files named by
/// absolute paths, so it runs from anywhere.
fn nightly_pipeline(lake: &str, sources: &str) -> String {
    let repo = churn_test_kit::repo_root();
    let demo = std::fs::read_to_string(repo.join("pipelines/demo.toml")).unwrap();
    // The Chinese till export re-ingests the same rows; the store here has none.
    let till_export = demo.find("# The same transactions as the till").unwrap();
    let features = demo.find("# Feature snapshot of the run's date").unwrap();
    let mut text = format!("{}{}", &demo[..till_export], &demo[features..]);
    for (from, to) in [
        (
            "path = \"../demo-lake\"".to_string(),
            format!("path = \"{lake}\""),
        ),
        (
            "path = \"../data/demo/".to_string(),
            format!("path = \"{sources}/"),
        ),
        (
            "dir = \"features\"".to_string(),
            format!("dir = \"{}\"", s(&repo.join("pipelines/features"))),
        ),
        (
            "rules = \"rules.toml\"".to_string(),
            format!("rules = \"{}\"", s(&repo.join("pipelines/rules.toml"))),
        ),
        (
            "\"../models/churn.toml\"".to_string(),
            format!("\"{}\"", s(&repo.join("models/churn.toml"))),
        ),
    ] {
        assert!(text.contains(&from), "pipelines/demo.toml has no {from}");
        text = text.replace(&from, &to);
    }
    text
}

#[test]
fn the_nightly_pipeline_on_an_s3_server_killed_and_resumed_writes_what_a_local_run_writes() {
    let server = S3Server::with_shop_bucket();
    let dir = tempfile::tempdir().unwrap();
    // A store ending 2026-10-31 like the demo's, shorter and smaller: the S3 server answers
    // each of the lake's daily partitions by HTTP.
    let store = dir.path().join("store");
    CHURN.generate(
        &store,
        &[
            "--customers",
            "800",
            "--seed",
            "11",
            "--start",
            "2025-09-01",
            "--days",
            "426",
        ],
    );
    for table in ["transactions", "customers", "campaign_events"] {
        let file = store.join(format!("{table}.csv"));
        let key = format!("sources/{table}.csv");
        server.boto(
            "s3.upload_file(sys.argv[1], 'shop', sys.argv[2])",
            &[s(&file), &key],
        );
    }
    let local = dir.path().join("local");
    let local_pipeline = dir.path().join("local.toml");
    std::fs::write(&local_pipeline, nightly_pipeline(s(&local), s(&store))).unwrap();
    let s3_pipeline = dir.path().join("s3.toml");
    std::fs::write(
        &s3_pipeline,
        nightly_pipeline("s3://shop/lake", "s3://shop/sources"),
    )
    .unwrap();
    let run = |pipeline: &std::path::Path| {
        let mut cmd = CHURN.command();
        server.env(&mut cmd);
        cmd.args([
            "run",
            s(pipeline),
            "--as-of",
            "2026-11-01",
            "--resume",
            "--json",
        ]);
        cmd
    };
    let run_to_the_end = |pipeline: &std::path::Path| {
        let out = run(pipeline).output().unwrap();
        assert!(out.status.success(), "{}", churn_test_kit::stderr(&out));
    };
    run_to_the_end(&local_pipeline);

    // On S3 the run is killed (-9) as soon as a commit plan is on the server, while the
    // commit's copies and deletes run: first in the transactions' ingest, then again in the
    // next run while it finishes that commit. A watcher polling the server does the killing.
    let watcher = r#"
import sys, os, signal, time, boto3
endpoint, pid = sys.argv[1], int(sys.argv[2])
s3 = boto3.client('s3', endpoint_url=endpoint, region_name='us-east-1',
                  aws_access_key_id='test', aws_secret_access_key='test')
def running():
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
deadline = time.time() + 300
while running() and time.time() < deadline:
    listed = s3.list_objects_v2(Bucket='shop', Prefix='lake/_staging/').get('Contents', [])
    if any(o['Key'].endswith('/_commit.json') for o in listed):
        os.kill(pid, signal.SIGKILL)
        print("killed")
        break
    time.sleep(0.01)
"#;
    // Readers never see a commit half applied: between the kills, a query of the S3 lake
    // counts every transaction of the local run once (DuckDB counts the local lake).
    let counts = "SELECT count(*) || ',' || count(DISTINCT transaction_id) FROM";
    let local_transactions = churn_test_kit::python_stdout([
        "-c",
        &format!(
            "import duckdb, sys; print(duckdb.sql(\"{counts} read_parquet('\" + sys.argv[1] + \"/transactions/**/*.parquet')\").fetchone()[0])"
        ),
        s(&local),
    ]);
    let transactions_read_from_s3 = || {
        let query = format!("{counts} transactions");
        let out = server.churn(&["sql", "--lake", "s3://shop/lake", "--format", "csv", &query]);
        assert!(out.status.success(), "{}", churn_test_kit::stderr(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .trim_matches('"')
            .to_string()
    };
    for moment in ["in the first commit", "while finishing it"] {
        let mut child = run(&s3_pipeline)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id().to_string();
        let killed = churn_test_kit::python_stdout(["-c", watcher, &server.endpoint, &pid]);
        assert_eq!(killed.trim(), "killed", "the run was not killed {moment}");
        assert!(!child.wait().unwrap().success());
        assert_eq!(
            transactions_read_from_s3(),
            local_transactions.trim(),
            "read after the kill {moment}"
        );
    }
    run_to_the_end(&s3_pipeline);

    // Every table, output and mart of the S3 lake, read by DuckDB from a download, equals the
    // local lake's (but the model's training time); the campaign lists are the same bytes and
    // the report is there.
    let download = r#"
import sys, os, boto3
endpoint, remote = sys.argv[1:3]
s3 = boto3.client('s3', endpoint_url=endpoint, region_name='us-east-1',
                  aws_access_key_id='test', aws_secret_access_key='test')
for page in s3.get_paginator('list_objects_v2').paginate(Bucket='shop', Prefix='lake/'):
    for o in page.get('Contents', []):
        path = os.path.join(remote, o['Key'][len('lake/'):])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        s3.download_file('shop', o['Key'], path)
"#;
    let remote = dir.path().join("remote");
    churn_test_kit::python_stdout(["-c", download, &server.endpoint, s(&remote)]);
    let mut folders: Vec<String> = ["transactions", "customers", "campaign_events"]
        .map(String::from)
        .to_vec();
    folders.extend(churn_test_kit::derived_table_folders(&local));
    assert!(folders.len() >= 19, "{folders:?}");
    churn_test_kit::assert_same_lake_tables(&local, &remote, &folders, &["trained_at"]);
    let exports = churn_test_kit::output_files(&local.join("exports"));
    assert!(
        !exports.is_empty() && exports == churn_test_kit::output_files(&remote.join("exports")),
        "the campaign exports differ"
    );
    let report = remote.join("reports/as_of=2026-11-01/index.html");
    assert!(std::fs::metadata(&report).unwrap().len() > 10_000);
}
