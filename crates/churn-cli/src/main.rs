//! `churn`: the command-line entry point. It only parses arguments, sets up logging and
//! dispatches to one file per subcommand; the work happens in the library crates.

mod cmd;
mod exit;
mod lease;
mod output;
mod progress;

use clap::{Parser, Subcommand, ValueEnum};

/// Predicts which retail customers are drifting away and hands marketing a ranked list of
/// whom to win back. Start with `churn demo`.
#[derive(Debug, Parser)]
#[command(name = "churn", version, about, max_term_width = 100)]
struct Cli {
    /// Print one JSON object on stdout summarising what was done (counts, paths, timings).
    #[arg(long, global = true)]
    json: bool,
    /// Log format on stderr: `text` for people, `json` for schedulers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// More log output (-v: info, -vv: debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Seconds a command that writes to a lake waits for another writer to finish with it
    /// before giving up (exit code 75). Also read from CHURN_WAIT_SECS.
    #[arg(long, global = true, env = "CHURN_WAIT_SECS", default_value_t = 0)]
    wait_secs: u64,
    /// Seconds a writer's lease on a lake lasts without renewal (renewed every third of it
    /// while the command runs); after a writer dies elsewhere, the next one waits this long.
    #[arg(long, global = true, default_value_t = 120)]
    lease_ttl_secs: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the bundled demo store end to end and print where to look.
    Demo(cmd::demo::Args),
    /// Generate a realistic synthetic store (demo, tests, benchmarks).
    Generate(cmd::generate::Args),
    /// Load a source (CSV, NDJSON, Parquet; local or object store) into the lake.
    Ingest(Box<cmd::ingest::Args>),
    /// Build point-in-time feature snapshots (or list the feature catalogue).
    Features(cmd::features::Args),
    /// Build churn labels for snapshots whose horizon has passed.
    Labels(cmd::labels::Args),
    /// Run a pipeline file's steps for one logical date (or backfill a range of dates).
    Run(cmd::run::Args),
    /// The lake's run manifests: list them, or show one with its steps and failure.
    Runs(cmd::runs::Args),
    /// Micro-batch ingest from the sources' landing folders, each new file exactly once.
    Stream(cmd::stream::Args),
    /// Train a model file with a time-based backtest, baselines and a grade; register it.
    Train(cmd::train::Args),
    /// Score every customer of a date's population with a registered model.
    Score(cmd::score::Args),
    /// RFM segments, lifecycle stages, suggested tiers and tags of a date's population.
    Segment(cmd::segment::Args),
    /// The day's action list from the retention rules (cooldowns, caps, opt-in).
    Triggers(cmd::triggers::Args),
    /// Campaign lists with control groups, from a pipeline file's [campaigns.NAME] sections.
    Export(cmd::export::Args),
    /// Campaign results: treated against control once an export's window has passed.
    Campaigns(cmd::campaigns::Args),
    /// Retention marts (Parquet, for BI tools) and the self-contained HTML report of a date.
    Report(cmd::report::Args),
    /// List the registered models, or show one version in full.
    Models(cmd::models::Args),
    /// Buy-till-you-die models (BG/NBD, Pareto/NBD, Gamma-Gamma) on their own.
    Btyd(cmd::btyd::Args),
    /// Query the lake with SQL (every lake table is registered).
    Sql(cmd::sql::Args),
    /// Benchmarks that print figures (never assertions).
    Bench(cmd::bench::Args),
    /// Processes of a Ballista cluster: a scheduler, and executors that run its queries.
    Engine(cmd::engine::Args),
}

fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    // The stream is a service: its per-batch progress lines are what an operator watches.
    let quiet = if matches!(cli.command, Command::Stream(_) | Command::Engine(_)) {
        "info"
    } else {
        "warn"
    };
    let default = match cli.verbose {
        0 => quiet,
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Stack of the runtime's threads: as deep as a Linux main thread's. Dev builds leave
/// Ballista's crates unoptimised (see the workspace's Cargo.toml); the scheduler's and
/// executor's futures, polled on these threads, overflowed the default 2 MiB in one CI run of
/// the engine tests (and 1 MiB in every run). Pages are only committed as they are touched.
const THREAD_STACK_BYTES: usize = 8 << 20;

fn main() {
    let cli = Cli::parse();
    init_logging(&cli);
    lease::configure(cli.wait_secs, cli.lease_ttl_secs);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(THREAD_STACK_BYTES)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(exit::INTERNAL);
        }
    };
    let json = cli.json;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Demo(args) => cmd::demo::run(args, json).await,
            Command::Generate(args) => cmd::generate::run(args, json),
            Command::Ingest(args) => cmd::ingest::run(*args, json).await,
            Command::Features(args) => cmd::features::run(args, json).await,
            Command::Labels(args) => cmd::labels::run(args, json).await,
            Command::Run(args) => cmd::run::run(args, json).await,
            Command::Runs(args) => cmd::runs::run(args, json).await,
            Command::Stream(args) => cmd::stream::run(args, json).await,
            Command::Train(args) => cmd::train::run(args, json).await,
            Command::Score(args) => cmd::score::run(args, json).await,
            Command::Segment(args) => cmd::segment::run(args, json).await,
            Command::Triggers(args) => cmd::triggers::run(args, json).await,
            Command::Export(args) => cmd::export::run(args, json).await,
            Command::Campaigns(args) => cmd::campaigns::run(args, json).await,
            Command::Report(args) => cmd::report::run(args, json).await,
            Command::Models(args) => cmd::models::run(args, json).await,
            Command::Btyd(args) => cmd::btyd::run(args, json).await,
            Command::Sql(args) => cmd::sql::run(args, json).await,
            Command::Bench(args) => cmd::bench::run(args, json).await,
            Command::Engine(args) => cmd::engine::run(args).await,
        }
    });
    if let Err(err) = result {
        eprintln!("error: {err}");
        for cause in err.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
        std::process::exit(exit::code_for(&err));
    }
}
