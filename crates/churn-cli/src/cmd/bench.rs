//! `churn bench`: benchmarks that print figures side by side with a reference tool run on
//! the same input in the same run. Figures only, never pass/fail.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use churn_synth::{GenerateOptions, OutputFormat};
use serde::Serialize;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// CSV → lake throughput and peak memory of `churn ingest`, against DuckDB's
    /// `COPY (SELECT * FROM read_csv(...)) TO ... (FORMAT parquet)` on the same file.
    Ingest(IngestArgs),
}

#[derive(Debug, clap::Args)]
struct IngestArgs {
    /// Customers in the generated store (about ten transactions each over two years).
    #[arg(long, default_value_t = 1_000_000)]
    customers: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Working folder for the generated store and the outputs (kept for reuse).
    #[arg(long, default_value = "target/bench")]
    work: PathBuf,
    /// Python interpreter with the `duckdb` package (pip install duckdb).
    #[arg(long, default_value = "python3")]
    python: String,
    /// Rows held in memory by the ingest before spilling a sorted run.
    #[arg(long, default_value_t = churn_ingest::DEFAULT_BUFFER_ROWS)]
    buffer_rows: usize,
}

/// Wall time, peak memory and output of one measured child process.
#[derive(Debug, Serialize)]
struct Measured {
    tool: String,
    wall_seconds: f64,
    peak_rss_mib: f64,
    rows: u64,
    rows_per_second: f64,
}

/// Runs a command to completion and measures its wall time and peak resident memory.
fn measure(cmd: &mut Command) -> anyhow::Result<(f64, f64, String)> {
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut stdout)?;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for the child we spawned and reaps it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed().as_secs_f64();
    if rc < 0 {
        bail!("waiting for {cmd:?}: {}", std::io::Error::last_os_error());
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("{cmd:?} failed (status {status}); output: {stdout}");
    }
    Ok((wall, usage.ru_maxrss as f64 / 1024.0, stdout))
}

const DUCKDB_SCRIPT: &str = r#"
import sys, duckdb
con = duckdb.connect()
src, dst = sys.argv[1], sys.argv[2]
con.execute(f"COPY (SELECT * FROM read_csv('{src}')) TO '{dst}' (FORMAT parquet)")
print(con.execute(f"SELECT count(*) FROM read_parquet('{dst}')").fetchone()[0])
"#;

fn ensure_store(args: &IngestArgs) -> anyhow::Result<PathBuf> {
    let dir = args
        .work
        .join(format!("store-{}-{}", args.customers, args.seed));
    if dir.join("ground_truth.csv").exists() {
        return Ok(dir);
    }
    eprintln!(
        "generating a {}-customer store into {} ...",
        args.customers,
        dir.display()
    );
    let started = Instant::now();
    let summary = churn_synth::generate(&GenerateOptions {
        customers: args.customers,
        seed: args.seed,
        start: chrono::NaiveDate::from_ymd_opt(2024, 11, 1).expect("valid date"),
        days: 730,
        format: OutputFormat::Csv,
        mess: false,
        chinese_export: false,
        out: dir.clone(),
    })?;
    eprintln!(
        "generated {} transactions in {:.1} s",
        summary.transactions,
        started.elapsed().as_secs_f64()
    );
    Ok(dir)
}

fn remove(path: &Path) -> anyhow::Result<()> {
    if path.is_dir() {
        std::fs::remove_dir_all(path)?;
    } else if path.exists() {
        std::fs::remove_file(path)?;
    }
    Ok(())
}

async fn bench_ingest(args: IngestArgs, json: bool) -> anyhow::Result<()> {
    let store = ensure_store(&args)?;
    let csv = store.join("transactions.csv");
    let csv_mib = std::fs::metadata(&csv)?.len() as f64 / (1024.0 * 1024.0);

    let lake = args.work.join("lake");
    remove(&lake)?;
    let exe = std::env::current_exe()?;
    let (wall, rss, out) = measure(
        Command::new(&exe)
            .args([
                "ingest",
                "--json",
                "--table",
                "transactions",
                "--buffer-rows",
            ])
            .arg(args.buffer_rows.to_string())
            .arg("--lake")
            .arg(&lake)
            .arg("--source")
            .arg(&csv),
    )?;
    let summary: serde_json::Value =
        serde_json::from_str(&out).context("reading the ingest summary")?;
    let rows = summary["rows_read"].as_u64().unwrap_or(0);
    let ours = Measured {
        tool: "churn ingest (validate, dedup, partition by date)".into(),
        wall_seconds: wall,
        peak_rss_mib: rss,
        rows,
        rows_per_second: rows as f64 / wall,
    };

    let duck_out = args.work.join("duckdb.parquet");
    remove(&duck_out)?;
    let probe = Command::new(&args.python)
        .args(["-c", "import duckdb"])
        .status();
    let duck = match probe {
        Ok(s) if s.success() => {
            let (wall, rss, out) = measure(
                Command::new(&args.python)
                    .args(["-c", DUCKDB_SCRIPT])
                    .arg(&csv)
                    .arg(&duck_out),
            )?;
            let rows: u64 = out.trim().parse().unwrap_or(0);
            Some(Measured {
                tool: "duckdb COPY read_csv -> parquet".into(),
                wall_seconds: wall,
                peak_rss_mib: rss,
                rows,
                rows_per_second: rows as f64 / wall,
            })
        }
        _ => {
            eprintln!(
                "DuckDB is not available ({} -c 'import duckdb' failed; pip install duckdb); printing our figures only",
                args.python
            );
            None
        }
    };
    let ratio = duck
        .as_ref()
        .map(|d| ours.rows_per_second / d.rows_per_second);
    if json {
        println!(
            "{}",
            serde_json::json!({"kind": "bench_ingest", "csv_mib": csv_mib, "customers": args.customers, "churn": ours, "duckdb": duck, "throughput_ratio_churn_over_duckdb": ratio})
        );
        return Ok(());
    }
    println!(
        "ingest benchmark: {} customers, {:.0} MiB CSV, {} rows",
        args.customers, csv_mib, rows
    );
    println!(
        "{:<52} {:>9} {:>12} {:>10}",
        "tool", "wall s", "rows/s", "peak MiB"
    );
    for m in std::iter::once(&ours).chain(duck.as_ref()) {
        println!(
            "{:<52} {:>9.2} {:>12.0} {:>10.0}",
            m.tool, m.wall_seconds, m.rows_per_second, m.peak_rss_mib
        );
    }
    if let Some(r) = ratio {
        println!("throughput ratio churn / duckdb: {r:.2}");
    }
    Ok(())
}

pub async fn run(args: Args, json: bool) -> anyhow::Result<()> {
    match args.what {
        What::Ingest(a) => bench_ingest(a, json).await,
    }
}
