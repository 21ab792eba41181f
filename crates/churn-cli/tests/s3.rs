//! Object storage for real: a local S3-compatible HTTP server (moto, started by the test)
//! holds both the source files and the lake, and the same CLI commands work against it.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use churn_test_kit::{Churn, python, s};

const CHURN: Churn = Churn::new(env!("CARGO_BIN_EXE_churn"));

/// A moto S3 server on a free local port, stopped on drop.
struct S3Server {
    child: Child,
    endpoint: String,
}

impl S3Server {
    fn start() -> S3Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(python())
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto (run the tests with tests/run.sh, which installs it)");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto did not start (is moto[server] installed? use tests/run.sh)"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
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
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
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
    let server = S3Server::start();
    server.boto("s3.create_bucket(Bucket='shop')", &[]);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let churn = |args: &[&str]| server.churn(args);
    let out = churn(&[
        "generate",
        "--customers",
        "80",
        "--seed",
        "31",
        "--days",
        "120",
        "--out",
        s(&store),
    ]);
    assert!(out.status.success());
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
    let server = S3Server::start();
    server.boto("s3.create_bucket(Bucket='shop')", &[]);
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
    let server = S3Server::start();
    server.boto("s3.create_bucket(Bucket='shop')", &[]);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let out = server.churn(&[
        "generate",
        "--customers",
        "60",
        "--seed",
        "8",
        "--days",
        "90",
        "--out",
        s(&store),
    ]);
    assert!(out.status.success());
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
