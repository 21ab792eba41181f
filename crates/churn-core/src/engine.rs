//! Where a lake session's queries run: in this process (the default), or on an Apache
//! DataFusion Ballista cluster when one machine is not enough. Feature building, labels and
//! scoring plan their SQL the same way on either; with Ballista the plan goes to a scheduler,
//! executors run it over the lake's files and the results stream back to this process, which
//! writes them. This module also runs the scheduler and executor processes that
//! `churn engine scheduler|executor` start, so a cluster needs nothing but the `churn` binary.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use ballista::extension::SessionStateExt;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use datafusion::execution::SessionState;
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use object_store::ObjectStore;
use url::Url;

use crate::error::{CoreError, Result};

/// Port a Ballista scheduler listens on when a URL names none (Ballista's own default).
pub const DEFAULT_SCHEDULER_PORT: u16 = 50050;

/// The query engine of a lake session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Engine {
    /// DataFusion in this process (`local`).
    #[default]
    InProcess,
    /// A Ballista scheduler at `host:port` (`ballista://host:port`); its executors must read
    /// the lake at the same location as this process (a shared folder or object storage).
    Ballista { host: String, port: u16 },
    /// A Ballista scheduler and executor started inside this process on first use
    /// (`ballista-standalone`): Ballista's planning and shuffles without a cluster, to check
    /// that a pipeline runs on Ballista before pointing it at one.
    BallistaStandalone,
}

impl Engine {
    /// Whether queries run on Ballista (and so cannot use tables held in this process).
    pub fn is_ballista(&self) -> bool {
        !matches!(self, Engine::InProcess)
    }
}

impl FromStr for Engine {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Engine> {
        let invalid = |reason: &str| CoreError::InvalidEngine {
            engine: s.to_string(),
            reason: reason.to_string(),
        };
        match s.trim() {
            "local" => return Ok(Engine::InProcess),
            "ballista-standalone" => return Ok(Engine::BallistaStandalone),
            _ => {}
        }
        let Some(address) = s.trim().strip_prefix("ballista://") else {
            return Err(invalid(
                "expected \"local\", \"ballista://HOST:PORT\" or \"ballista-standalone\"",
            ));
        };
        let address = address.trim_end_matches('/');
        let (host, port) = match address.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .map_err(|_| invalid(&format!("port {port:?} is not a number 1-65535")))?,
            ),
            None => (address, DEFAULT_SCHEDULER_PORT),
        };
        if host.is_empty() || host.contains('/') || port == 0 {
            return Err(invalid(
                "expected ballista://HOST:PORT, e.g. ballista://localhost:50050",
            ));
        }
        Ok(Engine::Ballista {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Engine::InProcess => write!(f, "local"),
            Engine::Ballista { host, port } => write!(f, "ballista://{host}:{port}"),
            Engine::BallistaStandalone => write!(f, "ballista-standalone"),
        }
    }
}

impl serde::Serialize for Engine {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A context that runs `state`'s queries on `engine`. The state keeps its configuration
/// (batch size, join choice, spill settings), which Ballista sends with every job.
pub(crate) async fn context_on(engine: &Engine, state: SessionState) -> Result<SessionContext> {
    let scheduler = match engine {
        Engine::InProcess => return Ok(SessionContext::new_with_state(state)),
        Engine::Ballista { host, port } => {
            let url = format!("http://{host}:{port}");
            connect(&url, Duration::from_secs(10))
                .await
                .map_err(|reason| CoreError::EngineUnreachable {
                    engine: engine.to_string(),
                    reason,
                })?;
            url
        }
        Engine::BallistaStandalone => standalone_scheduler(&state).await?.clone(),
    };
    // Ballista's upgrade sets the session's functions to its own list: churn's are added back.
    Ok(SessionContext::new_with_state(
        crate::sql_functions::with_churn_functions(state.upgrade_for_ballista(scheduler)?)?,
    ))
}

/// A gRPC client of the scheduler at `url`, retried until `patience` runs out.
async fn connect(
    url: &str,
    patience: Duration,
) -> std::result::Result<SchedulerGrpcClient<tonic::transport::Channel>, String> {
    let started = std::time::Instant::now();
    loop {
        match SchedulerGrpcClient::connect(url.to_string()).await {
            Ok(client) => return Ok(client),
            Err(e) if started.elapsed() >= patience => {
                return Err(format!(
                    "no scheduler answered at {url} within {} s: {e}",
                    patience.as_secs()
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The in-process cluster's scheduler URL, started with the first session's state (its
/// object stores and memory pool serve the executor) and kept for the process.
async fn standalone_scheduler(state: &SessionState) -> Result<&'static String> {
    static SCHEDULER: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    SCHEDULER
        .get_or_try_init(|| async {
            let failed = |reason: String| CoreError::EngineUnreachable {
                engine: Engine::BallistaStandalone.to_string(),
                reason,
            };
            let address = start_standalone_scheduler(state)
                .await
                .map_err(|e| failed(format!("the in-process scheduler did not start: {e}")))?;
            let url = format!("http://localhost:{}", address.port());
            let client = connect(&url, Duration::from_secs(30))
                .await
                .map_err(failed)?;
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            ballista_executor::new_standalone_executor_from_state(client, cores, state)
                .await
                .map_err(|e| failed(format!("the in-process executor did not start: {e}")))?;
            Ok(url)
        })
        .await
}

/// Starts the in-process scheduler. Ballista's own `new_standalone_scheduler_from_state`
/// plans every job with the state as given, without Ballista's restrictions (dynamic filters
/// on, which fail a stage's hash join on an executor); this one plans each job with the
/// configuration its client sent, on `state`'s runtime (object stores, memory pool), as a
/// scheduler process does.
async fn start_standalone_scheduler(
    state: &SessionState,
) -> ballista_core::error::Result<SocketAddr> {
    use ballista::extension::SessionConfigExt;
    let config = state.config().clone().upgrade_for_ballista();
    let codec = ballista_core::serde::BallistaCodec::new(
        config.ballista_logical_extension_codec(),
        config.ballista_physical_extension_codec(),
    );
    let runtime = state.runtime_env().clone();
    ballista_scheduler::standalone::new_standalone_scheduler_with_builder(
        Arc::new(move |job_config| scheduler_session(job_config, runtime.clone())),
        Arc::new(move || config.clone()),
        codec,
    )
    .await
}

/// The state a scheduler plans one job in: the job's configuration as its client sent it,
/// on `runtime` (whose object stores list the lake's files).
fn scheduler_session(
    job_config: datafusion::prelude::SessionConfig,
    runtime: Arc<RuntimeEnv>,
) -> datafusion::error::Result<SessionState> {
    let state = ballista_core::utils::default_session_builder(job_config)?;
    crate::sql_functions::with_churn_functions(
        SessionStateBuilder::new_from_existing(state)
            .with_runtime_env(runtime)
            .build(),
    )
}

/// Object stores of the URLs a job names, opened on first use the way a lake opens them (S3
/// from the `AWS_*` environment variables): a scheduler or executor process reads whichever
/// lake its clients name.
#[derive(Debug, Default)]
struct LakeStores(DefaultObjectStoreRegistry);

impl ObjectStoreRegistry for LakeStores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.0.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        self.0.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        if let Ok(store) = self.0.get_store(url) {
            return Ok(store);
        }
        let (store, _, _) = crate::lake::open_location(url.as_str())
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        self.0.register_store(url, store.clone());
        Ok(store)
    }
}

/// A runtime whose object stores open on first use (see [`LakeStores`]).
fn runtime_with_lake_stores(
    builder: RuntimeEnvBuilder,
) -> datafusion::error::Result<Arc<RuntimeEnv>> {
    builder
        .with_object_store_registry(Arc::new(LakeStores::default()))
        .build_arc()
}

/// Runs a Ballista scheduler listening on `address` until the process is stopped.
pub async fn run_scheduler(address: SocketAddr) -> Result<()> {
    use ballista_scheduler::cluster::BallistaCluster;
    use ballista_scheduler::config::SchedulerConfig;
    let failed = |e: ballista_core::error::BallistaError| CoreError::EngineProcess {
        process: "scheduler",
        reason: e.to_string(),
    };
    let config = SchedulerConfig {
        bind_host: address.ip().to_string(),
        bind_port: address.port(),
        external_host: address.ip().to_string(),
        ..SchedulerConfig::default()
    }
    // The scheduler lists the lake's files to plan a job: it needs its object stores too.
    .with_override_session_builder(Arc::new(|config| {
        scheduler_session(config, runtime_with_lake_stores(RuntimeEnvBuilder::new())?)
    }));
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(failed)?;
    ballista_scheduler::scheduler_process::start_server(cluster, address, Arc::new(config))
        .await
        .map_err(failed)
}

/// Where an executor listens and which scheduler it serves.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// Host and port of the scheduler to register with.
    pub scheduler_host: String,
    pub scheduler_port: u16,
    /// Address other processes reach this executor at (its Arrow Flight port); the gRPC
    /// port is `grpc_port`.
    pub bind_host: String,
    pub flight_port: u16,
    pub grpc_port: u16,
    /// Tasks run at once; the machine's cores by default.
    pub concurrent_tasks: usize,
    /// Folder for shuffle files; a temporary folder when `None`.
    pub work_dir: Option<std::path::PathBuf>,
    /// Memory pool of the executor's queries; none when `None`.
    pub memory_limit_bytes: Option<u64>,
}

/// Runs a Ballista executor until the process is stopped (SIGTERM or Ctrl-C) or its
/// scheduler tells it to stop.
pub async fn run_executor(options: ExecutorOptions) -> Result<()> {
    use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
    let config = ExecutorProcessConfig {
        bind_host: options.bind_host.clone(),
        external_host: Some(options.bind_host),
        port: options.flight_port,
        grpc_port: options.grpc_port,
        scheduler_host: options.scheduler_host,
        scheduler_port: options.scheduler_port,
        vcores: options.concurrent_tasks,
        work_dir: options.work_dir.map(|d| d.display().to_string()),
        memory_pool_size: options.memory_limit_bytes,
        print_thread_info: false,
        override_function_registry: Some(Arc::new(
            crate::sql_functions::ballista_function_registry().map_err(|e| {
                CoreError::EngineProcess {
                    process: "executor",
                    reason: e.to_string(),
                }
            })?,
        )),
        ..ExecutorProcessConfig::default()
    };
    let work_dir = config.work_dir.clone();
    let config = ExecutorProcessConfig {
        override_runtime_producer: Some(Arc::new(move |_| {
            let mut builder = RuntimeEnvBuilder::new();
            if let Some(dir) = &work_dir {
                builder = builder.with_temp_file_path(dir);
            }
            runtime_with_lake_stores(builder)
        })),
        ..config
    };
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| CoreError::EngineProcess {
            process: "executor",
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_parse_from_their_written_form_and_print_back() {
        for written in ["local", "ballista-standalone", "ballista://10.0.0.5:50050"] {
            assert_eq!(written.parse::<Engine>().unwrap().to_string(), written);
        }
        assert_eq!(
            "ballista://scheduler".parse::<Engine>().unwrap(),
            Engine::Ballista {
                host: "scheduler".into(),
                port: DEFAULT_SCHEDULER_PORT
            }
        );
    }

    #[test]
    fn engine_strings_that_name_no_engine_are_refused_with_the_value() {
        for bad in [
            "",
            "ballista",
            "spark://x:1",
            "ballista://:50050",
            "ballista://h:port",
            "ballista://h:0",
        ] {
            let e = bad.parse::<Engine>().unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }
}
