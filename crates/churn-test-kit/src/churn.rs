//! The `churn` binary as a test runs it: plain runs, runs that must succeed, their JSON
//! summaries, and the common ways of filling a lake through it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::{repo_root, s};

/// The `churn` binary of the crate under test.
#[derive(Debug, Clone, Copy)]
pub struct Churn {
    bin: &'static str,
}

impl Churn {
    /// `bin` is `env!("CARGO_BIN_EXE_churn")`, which only the churn-cli crate's tests have.
    pub const fn new(bin: &'static str) -> Churn {
        Churn { bin }
    }

    /// A command for the binary, to add arguments and environment to. Tests that share a lake
    /// run at once, so a writer waits for the lake's other writer (up to 15 minutes) instead
    /// of exiting with code 75; a test of that refusal passes `--wait-secs 0`.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(self.bin);
        cmd.env("CHURN_WAIT_SECS", "900");
        cmd
    }

    /// Runs `churn ARGS` to completion, whatever its exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("churn runs")
    }

    /// Runs `churn ARGS`, which must succeed; returns its output.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "churn {args:?} failed: {}",
            stderr(&out)
        );
        out
    }

    /// Runs `churn ARGS` (which should include `--json`), which must succeed and print one
    /// JSON object; returns it.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        json_of(&self.run(args))
    }

    /// `churn generate --json --out OUT ARGS`: a generated store; returns its summary.
    pub fn generate(&self, out: &Path, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["generate", "--json", "--out", s(out)];
        all.extend_from_slice(args);
        self.json(&all)
    }

    /// `churn ingest --json` of one source into `lake`, with extra `args`; returns the
    /// ingest summary.
    pub fn ingest(
        &self,
        lake: &Path,
        table: &str,
        source: &Path,
        args: &[&str],
    ) -> serde_json::Value {
        let mut all = vec![
            "ingest",
            "--json",
            "--lake",
            s(lake),
            "--table",
            table,
            "--source",
            s(source),
        ];
        all.extend_from_slice(args);
        self.json(&all)
    }

    /// `churn sql --format csv` of `query` over `lake`, which must succeed: the CSV text.
    pub fn sql_csv(&self, lake: &Path, query: &str) -> Vec<u8> {
        self.ok(&["sql", "--lake", s(lake), "--format", "csv", query])
            .stdout
    }

    /// The demo store's three tables (`data/demo`) ingested in UTC into `DIR/lake`.
    pub fn demo_lake(&self, dir: &Path) -> PathBuf {
        let lake = dir.join("lake");
        for table in ["transactions", "customers", "campaign_events"] {
            let source = repo_root().join(format!("data/demo/{table}.csv"));
            self.ingest(&lake, table, &source, &["--timezone", "UTC"]);
        }
        lake
    }
}

/// The JSON object a successful `--json` run printed.
pub fn json_of(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "stderr: {}", stderr(out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {}", stdout(out)))
}

/// A run's standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A run's standard output as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}
