//! `churn engine`: the processes of a Ballista cluster (a scheduler and its executors), so
//! that `--engine ballista://HOST:PORT` needs nothing but the `churn` binary on each machine.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use churn_core::engine::{DEFAULT_SCHEDULER_PORT, ExecutorOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    process: Process,
}

#[derive(Debug, clap::Subcommand)]
enum Process {
    /// Run a Ballista scheduler until stopped; point churn at it with
    /// --engine ballista://HOST:PORT.
    Scheduler {
        /// Address to listen on.
        #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], DEFAULT_SCHEDULER_PORT)))]
        bind: SocketAddr,
    },
    /// Run a Ballista executor for a scheduler until stopped (SIGTERM, Ctrl-C, or the
    /// scheduler). It reads the lake at the location the client names, so a local lake
    /// must be at the same path on every machine.
    Executor {
        /// The scheduler: HOST:PORT.
        #[arg(long, default_value = "localhost:50050")]
        scheduler: String,
        /// Host to listen on, also the address the scheduler and other executors reach this
        /// one at.
        #[arg(long, default_value = "127.0.0.1")]
        bind_host: String,
        /// Port of the executor's Arrow Flight service (results and shuffles).
        #[arg(long, default_value_t = 50051)]
        flight_port: u16,
        /// Port of the executor's gRPC service (tasks).
        #[arg(long, default_value_t = 50052)]
        grpc_port: u16,
        /// Tasks run at once; default the machine's cores.
        #[arg(long)]
        concurrent_tasks: Option<usize>,
        /// Folder for shuffle files; default a temporary folder.
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// Memory budget of the executor's queries (e.g. 2GiB); beyond it, work spills.
        #[arg(long, value_parser = super::parse_bytes)]
        memory_limit: Option<usize>,
    },
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.process {
        Process::Scheduler { bind } => {
            tracing::info!(bind = %bind, "Ballista scheduler listening");
            churn_core::engine::run_scheduler(bind)
                .await
                .with_context(|| format!("running the Ballista scheduler on {bind}"))
        }
        Process::Executor {
            scheduler,
            bind_host,
            flight_port,
            grpc_port,
            concurrent_tasks,
            work_dir,
            memory_limit,
        } => {
            let (scheduler_host, scheduler_port) = match scheduler.rsplit_once(':') {
                Some((host, port)) => (
                    host.to_string(),
                    port.parse::<u16>().map_err(|_| {
                        crate::exit::UsageError(format!(
                            "--scheduler {scheduler:?}: expected HOST:PORT"
                        ))
                    })?,
                ),
                None => (scheduler.clone(), DEFAULT_SCHEDULER_PORT),
            };
            let options = ExecutorOptions {
                scheduler_host,
                scheduler_port,
                bind_host,
                flight_port,
                grpc_port,
                concurrent_tasks: concurrent_tasks
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
                work_dir,
                memory_limit_bytes: memory_limit.map(|b| b as u64),
            };
            tracing::info!(scheduler = %scheduler, flight_port, grpc_port, "Ballista executor starting");
            churn_core::engine::run_executor(options)
                .await
                .with_context(|| {
                    format!("running a Ballista executor for the scheduler {scheduler}")
                })
        }
    }
}
