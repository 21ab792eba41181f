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
    /// Wall time and peak memory of one feature snapshot of the benchmark lake, against
    /// DuckDB computing the contract's required columns from the same Parquet lake.
    Features(FeaturesArgs),
}

/// The generated store a benchmark runs on, and the reference tool.
#[derive(Debug, clap::Args)]
struct StoreArgs {
    /// Customers in the generated store (about sixteen transactions each over two years).
    #[arg(long, default_value_t = 1_000_000)]
    customers: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Working folder for the generated store, lake and outputs (kept for reuse).
    #[arg(long, default_value = "target/bench")]
    work: PathBuf,
    /// Python interpreter with the `duckdb` package (pip install duckdb).
    #[arg(long, default_value = "python3")]
    python: String,
}

#[derive(Debug, clap::Args)]
struct FeaturesArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Snapshot date (the generated store spans 2024-11-01 to 2026-10-31).
    #[arg(long, default_value = "2026-06-01")]
    as_of: String,
    /// Memory budget for churn's query engine (e.g. 2GiB).
    #[arg(long)]
    memory_limit: Option<String>,
}

/// The DuckDB reference of the feature contract, shipped so the benchmark runs anywhere.
const REFERENCE_FILES: &[(&str, &str)] = &[
    (
        "run_reference.py",
        include_str!("../../../churn-features/tests/reference/run_reference.py"),
    ),
    (
        "features.duckdb.sql",
        include_str!("../../../churn-features/tests/reference/features.duckdb.sql"),
    ),
    (
        "labels.duckdb.sql",
        include_str!("../../../churn-features/tests/reference/labels.duckdb.sql"),
    ),
];

#[derive(Debug, clap::Args)]
struct IngestArgs {
    #[command(flatten)]
    store: StoreArgs,
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
con.execute("SET enable_progress_bar = false")
src, dst = sys.argv[1], sys.argv[2]
con.execute(f"COPY (SELECT * FROM read_csv('{src}')) TO '{dst}' (FORMAT parquet)")
print(con.execute(f"SELECT count(*) FROM read_parquet('{dst}')").fetchone()[0])
"#;

fn ensure_store(work: &Path, customers: u64, seed: u64) -> anyhow::Result<PathBuf> {
    let dir = work.join(format!("store-{customers}-{seed}"));
    if dir.join("ground_truth.csv").exists() {
        return Ok(dir);
    }
    eprintln!(
        "generating a {customers}-customer store into {} ...",
        dir.display()
    );
    let started = Instant::now();
    let summary = churn_synth::generate(&GenerateOptions {
        customers,
        seed,
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
    let store = ensure_store(&args.store.work, args.store.customers, args.store.seed)?;
    let csv = store.join("transactions.csv");
    let csv_mib = std::fs::metadata(&csv)?.len() as f64 / (1024.0 * 1024.0);

    let lake = args
        .store
        .work
        .join(format!("lake-{}-{}", args.store.customers, args.store.seed));
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

    let duck_out = args.store.work.join("duckdb.parquet");
    remove(&duck_out)?;
    let probe = Command::new(&args.store.python)
        .args(["-c", "import duckdb"])
        .status();
    let duck = match probe {
        Ok(s) if s.success() => {
            let (wall, rss, out) = measure(
                Command::new(&args.store.python)
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
                args.store.python
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
            serde_json::json!({"kind": "bench_ingest", "csv_mib": csv_mib, "customers": args.store.customers, "churn": ours, "duckdb": duck, "throughput_ratio_churn_over_duckdb": ratio})
        );
        return Ok(());
    }
    println!(
        "ingest benchmark: {} customers, {:.0} MiB CSV, {} rows",
        args.store.customers, csv_mib, rows
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

fn has_duckdb(python: &str) -> bool {
    Command::new(python)
        .args(["-c", "import duckdb"])
        .status()
        .is_ok_and(|s| s.success())
}

async fn bench_features(args: FeaturesArgs, json: bool) -> anyhow::Result<()> {
    let lake = args
        .store
        .work
        .join(format!("lake-{}-{}", args.store.customers, args.store.seed));
    let exe = std::env::current_exe()?;
    for table in ["transactions", "customers", "campaign_events"] {
        if lake.join(table).is_dir() {
            continue;
        }
        let store = ensure_store(&args.store.work, args.store.customers, args.store.seed)?;
        eprintln!("ingesting {table} into {} ...", lake.display());
        let status = Command::new(&exe)
            .args(["ingest", "--table", table, "--lake"])
            .arg(&lake)
            .arg("--source")
            .arg(store.join(format!("{table}.csv")))
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("ingesting {table} failed");
        }
    }
    let mut cmd = Command::new(&exe);
    cmd.args(["features", "--json", "--as-of", &args.as_of, "--lake"])
        .arg(&lake);
    if let Some(limit) = &args.memory_limit {
        cmd.args(["--memory-limit", limit]);
    }
    let (wall, rss, out) = measure(&mut cmd)?;
    let summary: serde_json::Value =
        serde_json::from_str(&out).context("reading the features summary")?;
    let rows = summary["snapshots"][0]["customers"].as_u64().unwrap_or(0);
    let ours = Measured {
        tool: "churn features (all built-in feature files)".into(),
        wall_seconds: wall,
        peak_rss_mib: rss,
        rows,
        rows_per_second: rows as f64 / wall,
    };

    let duck = if has_duckdb(&args.store.python) {
        let dir = args.store.work.join("duckdb-reference");
        std::fs::create_dir_all(&dir)?;
        for (name, text) in REFERENCE_FILES {
            std::fs::write(dir.join(name), text)?;
        }
        let out_csv = args.store.work.join("duckdb-features.csv");
        let (wall, rss, _) = measure(
            Command::new(&args.store.python)
                .arg(dir.join("run_reference.py"))
                .args([
                    "--lake",
                    "--what",
                    "features",
                    "--as-of",
                    &args.as_of,
                    "--input",
                ])
                .arg(&lake)
                .arg("--out")
                .arg(&out_csv),
        )?;
        let rows = std::fs::read_to_string(&out_csv)?
            .lines()
            .count()
            .saturating_sub(1) as u64;
        Some(Measured {
            tool: "duckdb reference SQL (required columns, exact decimal sums, CSV out)".into(),
            wall_seconds: wall,
            peak_rss_mib: rss,
            rows,
            rows_per_second: rows as f64 / wall,
        })
    } else {
        eprintln!(
            "DuckDB is not available ({} -c 'import duckdb' failed); printing our figures only",
            args.store.python
        );
        None
    };
    let ratio = duck.as_ref().map(|d| d.wall_seconds / ours.wall_seconds);
    if json {
        println!(
            "{}",
            serde_json::json!({"kind": "bench_features", "as_of": args.as_of, "churn": ours, "duckdb": duck, "speedup_churn_over_duckdb": ratio})
        );
        return Ok(());
    }
    println!(
        "features benchmark: {} customers in the store, snapshot {}, {} customers in the population",
        args.store.customers, args.as_of, rows
    );
    println!("{:<70} {:>9} {:>10}", "tool", "wall s", "peak MiB");
    for m in std::iter::once(&ours).chain(duck.as_ref()) {
        println!(
            "{:<70} {:>9.2} {:>10.0}",
            m.tool, m.wall_seconds, m.peak_rss_mib
        );
    }
    if let Some(r) = ratio {
        println!("speed-up churn over duckdb (wall time ratio): {r:.2}");
    }
    Ok(())
}

pub async fn run(args: Args, json: bool) -> anyhow::Result<()> {
    match args.what {
        What::Ingest(a) => bench_ingest(a, json).await,
        What::Features(a) => bench_features(a, json).await,
    }
}
