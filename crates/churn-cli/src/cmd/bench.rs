//! `churn bench`: benchmarks that print figures side by side with a reference tool run on
//! the same input in the same run. Figures only, never pass/fail. The benchmarks themselves
//! are in `churn-bench`; this file parses their flags and prints their figures.

use std::path::PathBuf;

use churn_bench::{
    AllFigures, BtydFigures, FeaturesFigures, IngestFigures, Setup, StreamFigures, TrainResults,
};
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
    /// Fit time of each buy-till-you-die model (`churn btyd fit`, one process per model) on
    /// the benchmark lake, against lifetimes fitting the same model on DuckDB's summaries of
    /// the same lake, with both sides' parameters.
    Btyd(BtydArgs),
    /// Latency from a till file landing to its customers' live scores with `churn stream`
    /// running on a copy of the benchmark lake, file after file, and the rows per second it
    /// keeps up with when files land at once; beside the nightly `churn score` of every
    /// customer of the same lake.
    Stream(StreamArgs),
    /// Every benchmark above on one store, one after the other (ingest, features, BG/NBD and
    /// Gamma-Gamma, logistic and gbdt against scikit-learn and LightGBM, the default model
    /// with its BTYD columns, stream), then a summary: per step churn's time and peak memory,
    /// the other tool's from the same run, and the ratio.
    All(AllArgs),
}

#[derive(Debug, clap::Args)]
struct AllArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Rows per till file of the stream benchmark (at least one).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    stream_rows: u64,
    /// Till files the stream benchmark lands one at a time.
    #[arg(long, default_value_t = 5)]
    stream_files: usize,
    /// Till files it then lands at once.
    #[arg(long, default_value_t = 20)]
    stream_burst_files: usize,
}

#[derive(Debug, clap::Args)]
struct StreamArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Rows per landed till file (at least one: a file without rows gets no live scores).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    rows: u64,
    /// Files landed one at a time, each once the previous one has its live scores.
    #[arg(long, default_value_t = 5)]
    files: usize,
    /// Files then landed at once.
    #[arg(long, default_value_t = 20)]
    burst_files: usize,
}

#[derive(Debug, clap::Args)]
struct BtydArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// End of calibration (the generated store spans 2024-11-01 to 2026-10-31).
    #[arg(long, default_value = "2026-06-01")]
    as_of: String,
    /// Models to fit, comma-separated.
    #[arg(long, default_value = "bgnbd,pareto-nbd,gamma-gamma")]
    models: String,
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

#[derive(Debug, clap::Args)]
struct IngestArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// How much of the batch the timed ingest holds in memory, as for `churn ingest`.
    #[command(flatten)]
    memory: super::ingest::MemoryArgs,
    /// Rounds of churn's ingest then DuckDB's COPY; each side's figure is its median round
    /// (by wall time), and every round is listed. On a machine whose speed varies, one
    /// round's ratio is as much the machine as the tools.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
}

impl StoreArgs {
    fn setup(self) -> anyhow::Result<Setup> {
        Ok(Setup {
            churn: std::env::current_exe()?,
            customers: self.customers,
            seed: self.seed,
            work: self.work,
            python: self.python,
        })
    }
}

/// Progress and notes of a benchmark go to stderr.
fn progress(message: &str) {
    eprintln!("{message}");
}

/// Prints the figures as one JSON object. Through a `serde_json::Value`, whose keys are sorted,
/// as `churn bench --json` has always printed them.
fn print_json<T: Serialize>(figures: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_value(figures)?);
    Ok(())
}

fn print_ingest(f: &IngestFigures) {
    println!(
        "ingest benchmark: {} customers, {:.0} MiB CSV, {} rows",
        f.customers, f.csv_mib, f.churn.rows
    );
    println!(
        "{:<52} {:>9} {:>12} {:>10}",
        "tool", "wall s", "rows/s", "peak MiB"
    );
    for m in std::iter::once(&f.churn).chain(f.duckdb.as_ref()) {
        println!(
            "{:<52} {:>9.2} {:>12.0} {:>10.0}",
            m.tool, m.wall_seconds, m.rows_per_second, m.peak_rss_mib
        );
    }
    if let Some(r) = f.throughput_ratio_churn_over_duckdb {
        println!("throughput ratio churn / duckdb: {r:.2}");
    }
    println!("sorted runs churn spilled to staging: {}", f.spilled_runs);
    if f.rounds.len() > 1 {
        println!(
            "each side's median of {} rounds above; every round, in order:",
            f.rounds.len()
        );
        println!(
            "{:<6} {:>14} {:>15} {:>16}",
            "round", "churn wall s", "duckdb wall s", "throughput ratio"
        );
        for (k, round) in f.rounds.iter().enumerate() {
            let duckdb = round
                .duckdb
                .as_ref()
                .map_or("-".to_string(), |d| format!("{:.2}", d.wall_seconds));
            let ratio = round
                .throughput_ratio_churn_over_duckdb
                .map_or("-".to_string(), |r| format!("{r:.2}"));
            println!(
                "{:<6} {:>14.2} {:>15} {:>16}",
                k + 1,
                round.churn.wall_seconds,
                duckdb,
                ratio
            );
        }
    }
}

fn print_features(f: &FeaturesFigures, customers: u64) {
    println!(
        "features benchmark: {} customers in the store, snapshot {}, {} customers in the population",
        customers, f.as_of, f.churn.rows
    );
    println!("{:<70} {:>9} {:>10}", "tool", "wall s", "peak MiB");
    for m in std::iter::once(&f.churn).chain(f.duckdb.as_ref()) {
        println!(
            "{:<70} {:>9.2} {:>10.0}",
            m.tool, m.wall_seconds, m.peak_rss_mib
        );
    }
    if let Some(r) = f.speedup_churn_over_duckdb {
        println!("speed-up churn over duckdb (wall time ratio): {r:.2}");
    }
}

fn print_train(t: &TrainResults, customers: u64) {
    println!(
        "train benchmark: {} customers in the store, test snapshot {}, btyd features {}",
        customers, t.as_of, t.btyd_features
    );
    println!(
        "{:<36} {:>9} {:>9} {:>10} {:>10} {:>8}",
        "tool", "wall s", "fit s", "peak MiB", "train rows", "test AUC"
    );
    for f in &t.results {
        println!(
            "{:<36} {:>9.1} {:>9.1} {:>10.0} {:>10} {:>8.4}",
            f.tool, f.wall_seconds, f.fit_seconds, f.peak_rss_mib, f.training_rows, f.test_roc_auc
        );
    }
    println!(
        "(scikit-learn / LightGBM: wall and peak memory are the whole Python process, fitting both; their scores are not calibrated)"
    );
}

fn print_btyd(b: &BtydFigures, customers: u64) {
    println!(
        "btyd benchmark: {} customers in the store, calibration to {}",
        customers, b.as_of
    );
    if let Some(s) = b.duckdb_summary_seconds {
        println!("DuckDB summaries for lifetimes: {s:.1} s");
    }
    println!(
        "{:<12} {:>9} {:>10} {:>9} {:>9} {:>10} {:>12} {:>10} {:>12}",
        "model",
        "customers",
        "churn wall",
        "summaries",
        "churn fit",
        "peak MiB",
        "lifetimes fit",
        "fit ratio",
        "max rel diff"
    );
    let or_dash =
        |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
    for m in &b.models {
        println!(
            "{:<12} {:>9} {:>10.1} {:>9.1} {:>9.2} {:>10.0} {:>12} {:>10} {:>12}",
            m.model,
            m.customers,
            m.churn_wall_seconds,
            m.churn_summaries_seconds,
            m.churn_fit_seconds,
            m.churn_peak_rss_mib,
            or_dash(m.lifetimes_fit_seconds, 1),
            or_dash(m.fit_time_ratio_churn_over_lifetimes, 3),
            m.max_relative_parameter_difference
                .map_or("-".to_string(), |v| format!("{v:.1e}")),
        );
    }
    for m in &b.models {
        let theirs = m.lifetimes_parameters.as_ref();
        let parameters: Vec<String> = m
            .churn_parameters
            .iter()
            .map(|(name, value)| match theirs.and_then(|t| t.get(name)) {
                Some(other) => format!("{name} {value:.6} (lifetimes {other:.6})"),
                None => format!("{name} {value:.6}"),
            })
            .collect();
        println!("{}: {}", m.model, parameters.join(", "));
    }
    if let (Some(wall), Some(peak)) = (b.python_wall_seconds, b.python_peak_rss_mib) {
        println!("(the Python process, summaries and every fit: {wall:.1} s, peak {peak:.0} MiB)");
    }
}

fn print_stream(f: &StreamFigures) {
    println!(
        "stream benchmark: {} customers in the store, files of {} rows",
        f.customers, f.file_rows
    );
    println!(
        "nightly `churn score` of {} customers: {:.1} s, peak {:.0} MiB",
        f.nightly_customers, f.nightly_score_seconds, f.nightly_score_peak_rss_mib
    );
    println!(
        "| file | rows | scored | landing → commit | landing → live scores | live scores | vs nightly score |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (k, l) in f.one_by_one.iter().enumerate() {
        let note = if k == 0 {
            " (waits for the stream to read the lake)"
        } else {
            ""
        };
        println!(
            "| {}{note} | {} | {} | {:.2} s | {:.2} s | {:.2} s | {:.3} |",
            k + 1,
            l.rows,
            l.customers_scored,
            l.commit_lag_seconds,
            l.live_lag_seconds,
            l.live_seconds,
            l.live_lag_seconds / f.nightly_score_seconds
        );
    }
    println!(
        "{} files landed at once ({} per batch): {} rows in {:.1} s, {:.0} rows/s to live scores",
        f.burst_files, f.burst_batch_files, f.burst_rows, f.burst_seconds, f.burst_rows_per_second
    );
    println!(
        "stream process peak memory: {:.0} MiB",
        f.stream_peak_rss_mib
    );
}

fn print_all(a: &AllFigures) {
    print_ingest(&a.ingest);
    println!();
    print_features(&a.features, a.customers);
    println!();
    print_btyd(&a.btyd, a.customers);
    println!();
    print_train(&a.train, a.customers);
    println!();
    print_train(&a.default_model, a.customers);
    println!();
    print_stream(&a.stream);
    println!();
    println!(
        "summary: {} customers, seed {}, {} build; ratio = churn / other (below 1: churn takes less time; for an AUC, above 1: churn ranks better)",
        a.customers,
        a.seed,
        if cfg!(debug_assertions) {
            "dev"
        } else {
            "release"
        }
    );
    println!("| step | churn | churn peak MiB | other tool | other | other peak MiB | ratio |");
    println!("|---|---|---|---|---|---|---|");
    let number =
        |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
    for row in &a.summary {
        // AUCs to four places; times to the millisecond below a second (a BTYD fit of a small
        // store), else to the hundredth.
        let digits = |v: f64| {
            if row.step.starts_with("test ROC AUC") {
                4
            } else if v < 1.0 {
                3
            } else {
                2
            }
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.step,
            number(Some(row.churn), digits(row.churn)),
            number(row.churn_peak_rss_mib, 0),
            row.other_tool,
            number(row.other, row.other.map_or(2, digits)),
            number(row.other_peak_rss_mib, 0),
            number(row.ratio, 3),
        );
    }
}

pub async fn run(args: Args, json: bool) -> anyhow::Result<()> {
    match args.what {
        What::All(a) => {
            let stream = churn_bench::StreamFiles {
                rows: a.stream_rows,
                files: a.stream_files,
                burst_files: a.stream_burst_files,
            };
            let figures = churn_bench::bench_all(&a.store.setup()?, stream, &progress)?;
            if json {
                return print_json(&figures);
            }
            print_all(&figures);
        }
        What::Ingest(a) => {
            let figures = churn_bench::bench_ingest(
                &a.store.setup()?,
                a.memory.bench(),
                a.repeat as usize,
                &progress,
            )?;
            if json {
                return print_json(&figures);
            }
            print_ingest(&figures);
        }
        What::Features(a) => {
            let customers = a.store.customers;
            let figures = churn_bench::bench_features(
                &a.store.setup()?,
                &a.as_of,
                a.memory_limit.as_deref(),
                &progress,
            )?;
            if json {
                return print_json(&figures);
            }
            print_features(&figures, customers);
        }
        What::Train(a) => {
            let customers = a.store.customers;
            let algorithms: Vec<&str> = a.algorithms.split(',').map(str::trim).collect();
            let results = churn_bench::bench_train(
                &a.store.setup()?,
                &a.as_of,
                &algorithms,
                a.btyd,
                &progress,
            )?;
            if json {
                return print_json(&results);
            }
            print_train(&results, customers);
        }
        What::Btyd(a) => {
            let customers = a.store.customers;
            let models: Vec<&str> = a.models.split(',').map(str::trim).collect();
            let figures = churn_bench::bench_btyd(&a.store.setup()?, &a.as_of, &models, &progress)?;
            if json {
                return print_json(&figures);
            }
            print_btyd(&figures, customers);
        }
        What::Stream(a) => {
            let figures = churn_bench::bench_stream(
                &a.store.setup()?,
                a.rows,
                a.files,
                a.burst_files,
                &progress,
            )?;
            if json {
                return print_json(&figures);
            }
            print_stream(&figures);
        }
    }
    Ok(())
}
