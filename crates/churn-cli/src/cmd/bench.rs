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
    /// Training time and peak memory of each algorithm on the benchmark lake (one process
    /// per algorithm), with the test ROC AUC; next to scikit-learn's LogisticRegression and
    /// LightGBM on the same snapshots when --python has them.
    Train(TrainArgs),
}

#[derive(Debug, clap::Args)]
struct TrainArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Test snapshot (the generated store spans 2024-11-01 to 2026-10-31).
    #[arg(long, default_value = "2026-08-03")]
    as_of: String,
    /// Algorithms to train, comma-separated.
    #[arg(long, default_value = "logistic,gbdt,decision-tree,random-forest")]
    algorithms: String,
    /// Add the buy-till-you-die features (a BG/NBD and a Gamma-Gamma fit per snapshot).
    /// Off by default so that the comparison with scikit-learn and LightGBM sees the same
    /// columns.
    #[arg(long)]
    btyd: bool,
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
        include_str!("../../../../tests/reference/run_reference.py"),
    ),
    (
        "features.duckdb.sql",
        include_str!("../../../../tests/reference/features.duckdb.sql"),
    ),
    (
        "labels.duckdb.sql",
        include_str!("../../../../tests/reference/labels.duckdb.sql"),
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

/// The benchmark lake of a generated store, ingested on first use.
fn ensure_lake(store_args: &StoreArgs) -> anyhow::Result<PathBuf> {
    let lake = store_args
        .work
        .join(format!("lake-{}-{}", store_args.customers, store_args.seed));
    let exe = std::env::current_exe()?;
    for table in ["transactions", "customers", "campaign_events"] {
        if lake.join(table).is_dir() {
            continue;
        }
        let store = ensure_store(&store_args.work, store_args.customers, store_args.seed)?;
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
    Ok(lake)
}

async fn bench_features(args: FeaturesArgs, json: bool) -> anyhow::Result<()> {
    let lake = ensure_lake(&args.store)?;
    let exe = std::env::current_exe()?;
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

/// One trained algorithm's figures.
#[derive(Debug, Serialize)]
struct TrainFigures {
    tool: String,
    /// The whole `churn train` process: reading snapshots, fitting, evaluating, registering.
    wall_seconds: f64,
    /// The learner's fit alone.
    fit_seconds: f64,
    peak_rss_mib: f64,
    training_rows: u64,
    test_roc_auc: f64,
}

/// scikit-learn LogisticRegression and LightGBM on the same snapshots, read with DuckDB:
/// the same feature columns (numbers only, `tier` excluded), training median imputation with
/// missing indicators, standardisation for the logistic regression, balanced class weights.
const SKLEARN_SCRIPT: &str = r#"
import sys, time, json, duckdb, numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
import lightgbm as lgb
lake, fit_dates, test_date = sys.argv[1], sys.argv[2].split(','), sys.argv[3]
def load(dates):
    files_f = [f"{lake}/features/as_of={d}/*.parquet" for d in dates]
    files_l = [f"{lake}/labels/as_of={d}/*.parquet" for d in dates]
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    rel = con.sql(f"SELECT f.*, CAST(l.churned AS DOUBLE) AS churned_label FROM read_parquet({files_f!r}, filename = true) f JOIN read_parquet({files_l!r}, filename = true) l ON f.customer_id = l.customer_id AND regexp_extract(f.filename, 'as_of=([0-9-]+)', 1) = regexp_extract(l.filename, 'as_of=([0-9-]+)', 1)")
    skip = ('customer_id', 'churned_label', 'tier', 'filename', 'as_of')
    numeric = ('BIGINT', 'INTEGER', 'DOUBLE', 'FLOAT', 'BOOLEAN', 'SMALLINT', 'TINYINT', 'HUGEINT')
    cols = [c for c, t in zip(rel.columns, rel.types) if c not in skip and (str(t) in numeric or str(t).startswith('DECIMAL'))]
    data = rel.project(', '.join([f'CAST("{c}" AS DOUBLE) AS "{c}"' for c in cols] + ['churned_label'])).fetchnumpy()
    x = np.column_stack([np.asarray(data[c], dtype=float) for c in cols])
    return x, np.asarray(data['churned_label'], dtype=float)
x_fit, y_fit = load(fit_dates)
x_test, y_test = load([test_date])
missing = np.isnan(x_fit).any(axis=0)
median = np.nanmedian(x_fit, axis=0)
def prep(x):
    ind = np.isnan(x[:, missing]).astype(float)
    x = np.where(np.isnan(x), median, x)
    return np.hstack([x, ind])
a, b = prep(x_fit), prep(x_test)
mean, std = a.mean(axis=0), a.std(axis=0)
std[std == 0] = 1
out = []
t = time.time()
lr = LogisticRegression(C=1.0, class_weight='balanced', max_iter=200).fit((a - mean) / std, y_fit)
out.append({"tool": "scikit-learn LogisticRegression", "fit_seconds": time.time() - t, "rows": len(y_fit), "test_roc_auc": roc_auc_score(y_test, lr.predict_proba((b - mean) / std)[:, 1])})
t = time.time()
gb = lgb.LGBMClassifier(n_estimators=200, learning_rate=0.05, max_depth=4, num_leaves=15, class_weight='balanced', verbose=-1).fit(a, y_fit)
out.append({"tool": "LightGBM (200 trees, depth 4)", "fit_seconds": time.time() - t, "rows": len(y_fit), "test_roc_auc": roc_auc_score(y_test, gb.predict_proba(b)[:, 1])})
print(json.dumps(out))
"#;

fn has_python_modules(python: &str, modules: &str) -> bool {
    Command::new(python)
        .args(["-c", &format!("import {modules}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

async fn bench_train(args: TrainArgs, json: bool) -> anyhow::Result<()> {
    let lake = ensure_lake(&args.store)?;
    let exe = std::env::current_exe()?;
    let models = args.store.work.join("bench-models");
    std::fs::create_dir_all(&models)?;
    // Build the snapshots once, before the timed runs, with the first model file.
    let mut figures = Vec::new();
    let mut schedule: Option<(Vec<String>, String)> = None;
    for (k, algorithm) in args.algorithms.split(',').map(str::trim).enumerate() {
        let name = format!("bench-{algorithm}");
        let file = models.join(format!("{name}.toml"));
        std::fs::write(
            &file,
            format!(
                "name = \"{name}\"\nalgorithm = \"{algorithm}\"\n[features]\nexclude = [\"tier\"]\nbtyd = {}\n",
                args.btyd
            ),
        )?;
        let train = || {
            let mut cmd = Command::new(&exe);
            cmd.args(["train", "--json", "--as-of", &args.as_of, "--lake"])
                .arg(&lake)
                .arg("--model")
                .arg(&file);
            cmd
        };
        if k == 0 {
            eprintln!("building the feature and label snapshots of the schedule (untimed) ...");
            measure(&mut train())?;
        }
        eprintln!("training {algorithm} ...");
        let (wall, rss, out) = measure(&mut train())?;
        let report: serde_json::Value =
            serde_json::from_str(&out).context("reading the train report")?;
        if schedule.is_none() {
            let fit: Vec<String> = report["training"]["snapshots"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect();
            schedule = Some((fit, args.as_of.clone()));
        }
        figures.push(TrainFigures {
            tool: format!("churn train {algorithm}"),
            wall_seconds: wall,
            fit_seconds: report["fit_ms"].as_f64().unwrap_or(f64::NAN) / 1000.0,
            peak_rss_mib: rss,
            training_rows: report["training"]["customers"].as_u64().unwrap_or(0),
            test_roc_auc: report["model"]["roc_auc"].as_f64().unwrap_or(f64::NAN),
        });
    }
    let python = &args.store.python;
    if let Some((fit, test)) = &schedule {
        if has_python_modules(python, "duckdb, numpy, sklearn, lightgbm") {
            // The same fitting rows as churn: the training snapshots (churn holds the
            // calibration snapshot out of the fit).
            let (wall, rss, out) = measure(
                Command::new(python)
                    .args(["-c", SKLEARN_SCRIPT])
                    .arg(&lake)
                    .arg(fit.join(","))
                    .arg(test),
            )?;
            let results: Vec<serde_json::Value> =
                serde_json::from_str(&out).context("reading the scikit-learn figures")?;
            for r in results {
                figures.push(TrainFigures {
                    tool: r["tool"].as_str().unwrap_or("").to_string(),
                    wall_seconds: wall,
                    fit_seconds: r["fit_seconds"].as_f64().unwrap_or(f64::NAN),
                    peak_rss_mib: rss,
                    training_rows: r["rows"].as_u64().unwrap_or(0),
                    test_roc_auc: r["test_roc_auc"].as_f64().unwrap_or(f64::NAN),
                });
            }
        } else {
            eprintln!(
                "scikit-learn and LightGBM are not available ({python} -c 'import duckdb, numpy, sklearn, lightgbm' failed); printing our figures only"
            );
        }
    }
    if json {
        println!(
            "{}",
            serde_json::json!({"kind": "bench_train", "as_of": args.as_of, "btyd_features": args.btyd, "results": figures})
        );
        return Ok(());
    }
    println!(
        "train benchmark: {} customers in the store, test snapshot {}, btyd features {}",
        args.store.customers, args.as_of, args.btyd
    );
    println!(
        "{:<36} {:>9} {:>9} {:>10} {:>10} {:>8}",
        "tool", "wall s", "fit s", "peak MiB", "train rows", "test AUC"
    );
    for f in &figures {
        println!(
            "{:<36} {:>9.1} {:>9.1} {:>10.0} {:>10} {:>8.4}",
            f.tool, f.wall_seconds, f.fit_seconds, f.peak_rss_mib, f.training_rows, f.test_roc_auc
        );
    }
    println!(
        "(scikit-learn / LightGBM: wall and peak memory are the whole Python process, fitting both; their scores are not calibrated)"
    );
    Ok(())
}

pub async fn run(args: Args, json: bool) -> anyhow::Result<()> {
    match args.what {
        What::Ingest(a) => bench_ingest(a, json).await,
        What::Features(a) => bench_features(a, json).await,
        What::Train(a) => bench_train(a, json).await,
    }
}
