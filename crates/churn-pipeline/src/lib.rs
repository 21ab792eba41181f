//! Pipeline files: one TOML file declares a store's lake and sources (and, as later steps
//! land, its features, models and exports); `churn run FILE --as-of D` executes the steps
//! for one logical date and records what it did under `<lake>/_runs/`. Re-running the same
//! date is safe: ingest deduplicates, and every write commits atomically.

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::NaiveDate;
use churn_activate::ScoreSummary;
use churn_core::Engine;
use churn_core::session::SessionOptions;
use churn_core::{ErrorKind, Lake};
use churn_features::{FeatureFile, FeatureOptions, FeaturesSummary, LabelsSummary};
use churn_ingest::{IngestOptions, IngestSummary, SourceConfig, SourceSpec};
use churn_model::ModelSpec;
use churn_train::TrainReport;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("cannot read pipeline file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid pipeline file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid pipeline file {path}:\n  - {}", .problems.join("\n  - "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
    #[error("pipeline file {path} has no source named {name:?} (it has {known:?})")]
    UnknownSource {
        path: PathBuf,
        name: String,
        known: Vec<String>,
    },
    #[error("source {source_name:?}: {error}")]
    Ingest {
        source_name: String,
        #[source]
        error: Box<churn_ingest::IngestError>,
    },
    #[error("{step} step: {error}")]
    Features {
        step: &'static str,
        #[source]
        error: Box<churn_features::FeatureError>,
    },
    #[error("train step, model {model}: {error}")]
    Train {
        model: String,
        #[source]
        error: Box<churn_train::TrainError>,
    },
    #[error("score step, model {model}: {error}")]
    Score {
        model: String,
        #[source]
        error: Box<churn_train::TrainError>,
    },
    #[error("{step} step: {error}")]
    Activate {
        step: &'static str,
        #[source]
        error: Box<churn_activate::ActivateError>,
    },
    #[error("report step: {0}")]
    Report(#[source] Box<churn_report::ReportError>),
    #[error(transparent)]
    Core(#[from] churn_core::CoreError),
}

impl PipelineError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            PipelineError::Read { .. }
            | PipelineError::Parse { .. }
            | PipelineError::Invalid { .. }
            | PipelineError::UnknownSource { .. } => ErrorKind::Config,
            PipelineError::Ingest { error, .. } => error.kind(),
            PipelineError::Features { error, .. } => error.kind(),
            PipelineError::Train { error, .. } | PipelineError::Score { error, .. } => error.kind(),
            PipelineError::Activate { error, .. } => error.kind(),
            PipelineError::Report(error) => error.kind(),
            PipelineError::Core(e) => e.kind(),
        }
    }
}

pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

/// `[lake]` section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LakeSection {
    /// Lake location: a path (relative to the pipeline file's folder) or a URL. Required
    /// unless `--lake` is given.
    #[serde(default)]
    pub path: Option<String>,
    /// IANA time zone of the store, fixed when the lake is created. Default "UTC".
    #[serde(default)]
    pub timezone: Option<String>,
    /// Memory budget in MiB of every step's query engine (features, labels, training's
    /// reads, score, segments, rules, exports, report); beyond it, sorts, joins and
    /// aggregations spill to disk. `churn run --memory-limit` overrides it. Default: none.
    #[serde(default)]
    pub memory_limit_mib: Option<usize>,
}

/// `[features]` section: build the feature snapshot of the run's date.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeaturesSection {
    /// Folder of feature SQL files, relative to the pipeline file. Default: the built-in files.
    #[serde(default)]
    pub dir: Option<String>,
    /// Population window in days. Default 365.
    #[serde(default)]
    pub lookback_days: Option<u32>,
}

/// `[labels]` section: label the snapshot whose horizon ends the day before the run's date
/// (D - horizon_days), the newest one the data can label.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelsSection {
    /// A customer churned if they make no purchase within this many days. Default 90.
    #[serde(default)]
    pub horizon_days: Option<u32>,
    /// Population window in days. Default 365.
    #[serde(default)]
    pub lookback_days: Option<u32>,
}

/// `[train]` section: train each model file with the newest test snapshot the data can
/// measure, the run's date minus the model's horizon, and register it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    /// Model files (relative to the pipeline file). Required.
    pub models: Vec<String>,
}

/// `[score]` section: score the run's date with a registered model (after any train step).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreSection {
    /// Registered model: NAME (its newest version) or NAME@VERSION. Default "churn".
    #[serde(default = "default_score_model")]
    pub model: String,
}

fn default_score_model() -> String {
    "churn".to_string()
}

/// `[activate]` section: segment the run's date and run the retention rules into the day's
/// action list (after any score step).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivateSection {
    /// Activation file (segment thresholds and rules), relative to the pipeline file.
    /// Default: the built-in playbook (pipelines/rules.toml as shipped).
    #[serde(default)]
    pub rules: Option<String>,
    /// Language of the segment labels: "en" or "zh-CN". Default "en".
    #[serde(default)]
    pub lang: Option<String>,
}

/// `[report]` section: the retention marts and the HTML report of the run's date (the last
/// step).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSection {
    /// Language of the page: "en" or "zh-CN". Default: the `[activate]` language, else "en".
    #[serde(default)]
    pub lang: Option<String>,
    /// The churn trend's horizon in days. Default: the `[labels]` horizon, else 90.
    #[serde(default)]
    pub horizon_days: Option<u32>,
    /// Days after an export over which its campaign's purchases count. Default 30.
    #[serde(default)]
    pub campaign_window_days: Option<u32>,
}

/// A pipeline file as written.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    /// Query engine of the features, labels and score steps: "local" (this process),
    /// "ballista://HOST:PORT" (a Ballista scheduler whose executors read the lake at the same
    /// location) or "ballista-standalone" (a Ballista scheduler and executor inside this
    /// process). Training, segments, rules, exports and the report always run in this
    /// process. Default "local"; `churn run --engine` overrides it.
    #[serde(default)]
    pub engine: Option<String>,
    #[serde(default)]
    pub lake: LakeSection,
    /// Sources in the order they are ingested: `[sources.NAME]` sections (see SourceSpec).
    #[serde(default)]
    pub sources: IndexMap<String, SourceSpec>,
    #[serde(default)]
    pub features: Option<FeaturesSection>,
    #[serde(default)]
    pub labels: Option<LabelsSection>,
    #[serde(default)]
    pub train: Option<TrainSection>,
    #[serde(default)]
    pub score: Option<ScoreSection>,
    #[serde(default)]
    pub activate: Option<ActivateSection>,
    /// Campaign exports: `[campaigns.NAME]` sections (see the README, "Campaign exports").
    #[serde(default)]
    pub campaigns: IndexMap<String, churn_activate::RawCampaign>,
    #[serde(default)]
    pub report: Option<ReportSection>,
    /// `churn stream`'s polling and batch limits (see `churn_stream::RawStreamSection`).
    #[serde(default)]
    pub stream: Option<churn_stream::RawStreamSection>,
}

/// A validated pipeline: paths resolved against the file's folder, sources checked.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub path: PathBuf,
    /// Query engine of the features, labels and score steps.
    pub engine: Engine,
    /// Memory budget of every step's queries (`[lake] memory_limit_mib`); none when `None`.
    pub memory_limit_bytes: Option<usize>,
    pub lake: Option<String>,
    pub timezone: Option<String>,
    pub sources: Vec<(String, SourceConfig)>,
    /// Feature step, when the file has a `[features]` section.
    pub features: Option<FeatureOptions>,
    /// Label step (horizon, lookback), when the file has a `[labels]` section.
    pub labels: Option<(u32, u32)>,
    /// Train steps: each model file's path and validated spec.
    pub train: Vec<(String, ModelSpec)>,
    /// Score step: the registered model to score the run's date with.
    pub score: Option<String>,
    /// Segment and triggers steps: the activation file and the labels' language.
    pub activate: Option<(churn_activate::Activation, churn_activate::Lang)>,
    /// Export step: the checked campaigns, in file order.
    pub campaigns: Vec<churn_activate::Campaign>,
    /// Report step: the page's language, horizon and campaign window, and the session of
    /// its queries.
    pub report: Option<churn_report::ReportOptions>,
    /// `churn stream`'s settings (the defaults without a `[stream]` section).
    pub stream: churn_stream::StreamOptions,
}

/// Paths in a pipeline file are relative to the file's folder, URLs are left alone.
fn resolve(base: &Path, location: &str) -> String {
    if location.contains("://") || Path::new(location).is_absolute() {
        location.to_string()
    } else {
        base.join(location).display().to_string()
    }
}

impl Pipeline {
    /// Reads, parses and validates a pipeline file, reporting every problem at once.
    pub fn load(path: &Path) -> Result<Pipeline> {
        let text = std::fs::read_to_string(path).map_err(|source| PipelineError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let file: PipelineFile = toml::from_str(&text).map_err(|e| PipelineError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        let mut problems = Vec::new();
        let mut sources = Vec::new();
        for (name, spec) in &file.sources {
            let mut spec = spec.clone();
            spec.path = resolve(&base, &spec.path);
            match spec.validate() {
                Ok(cfg) => sources.push((name.clone(), cfg)),
                Err(churn_ingest::IngestError::InvalidConfig { problems: p }) => {
                    problems.extend(p.into_iter().map(|p| format!("sources.{name}.{p}")));
                }
                Err(e) => problems.push(format!("sources.{name}: {e}")),
            }
        }
        let engine = match file.engine.as_deref().map(str::parse::<Engine>) {
            None => Engine::InProcess,
            Some(Ok(engine)) => engine,
            Some(Err(e)) => {
                problems.push(format!("engine: {e}"));
                Engine::InProcess
            }
        };
        let memory_limit_bytes = file.lake.memory_limit_mib.map(|m| m << 20);
        if memory_limit_bytes == Some(0) {
            problems.push("lake.memory_limit_mib: must be at least 1".to_string());
        }
        if let Some(tz) = &file.lake.timezone
            && churn_core::lake::parse_timezone(tz).is_err()
        {
            problems.push(format!("lake.timezone: unknown IANA time zone {tz:?}"));
        }
        let features = match &file.features {
            None => None,
            Some(section) => {
                let files = match &section.dir {
                    Some(dir) => FeatureFile::load_dir(Path::new(&resolve(&base, dir))),
                    None => FeatureFile::built_in(),
                };
                match files {
                    Ok(files) => Some(FeatureOptions {
                        lookback_days: section
                            .lookback_days
                            .unwrap_or(churn_features::DEFAULT_LOOKBACK_DAYS),
                        session: SessionOptions::with_memory_limit(memory_limit_bytes),
                        files,
                    }),
                    Err(e) => {
                        problems.push(format!("features: {e}"));
                        None
                    }
                }
            }
        };
        let labels = file.labels.as_ref().map(|l| {
            (
                l.horizon_days
                    .unwrap_or(churn_features::DEFAULT_HORIZON_DAYS),
                l.lookback_days
                    .unwrap_or(churn_features::DEFAULT_LOOKBACK_DAYS),
            )
        });
        if labels.is_some_and(|(h, _)| h == 0) {
            problems.push("labels.horizon_days: must be at least 1".to_string());
        }
        let mut train = Vec::new();
        for model in file.train.iter().flat_map(|t| &t.models) {
            let model_path = resolve(&base, model);
            match ModelSpec::load(Path::new(&model_path)) {
                Ok(spec) => train.push((model_path, spec)),
                Err(churn_model::ModelError::InvalidSpec { problems: p, .. }) => {
                    problems.extend(p.into_iter().map(|p| format!("train.models {model}: {p}")));
                }
                Err(e) => problems.push(format!("train.models: {e}")),
            }
        }
        let activate = file.activate.as_ref().and_then(|a| {
            let activation = match &a.rules {
                Some(rules) => churn_activate::Activation::load(Path::new(&resolve(&base, rules))),
                None => churn_activate::Activation::built_in(),
            };
            let lang = a
                .lang
                .as_deref()
                .unwrap_or("en")
                .parse::<churn_activate::Lang>();
            match (activation, lang) {
                (Ok(activation), Ok(lang)) => Some((activation, lang)),
                (activation, lang) => {
                    for e in [activation.err(), lang.err()].into_iter().flatten() {
                        problems.push(format!("activate: {e}"));
                    }
                    None
                }
            }
        });
        let mut campaigns = Vec::new();
        for (name, raw) in &file.campaigns {
            match churn_activate::Campaign::check(name, raw, &base) {
                Ok(c) => campaigns.push(c),
                Err(p) => problems.extend(p),
            }
        }
        // An audience selects from the nightly action list, which a live rule never writes to.
        if let Some((activation, _)) = &activate {
            for c in &campaigns {
                for rule in &c.audience.rules {
                    if activation.live_rules().any(|r| &r.name == rule) {
                        problems.push(format!(
                            "campaigns.{}.audience.rules: {rule:?} is a live rule (its actions are in triggers_live, not in the day's action list an audience selects from)",
                            c.name
                        ));
                    }
                }
            }
        }
        if !file.campaigns.is_empty() && file.activate.is_none() {
            problems.push(
                "campaigns: exports need the day's segments; add an [activate] section".into(),
            );
        }
        let report = file.report.as_ref().and_then(|r| {
            let lang = match (&r.lang, &activate) {
                (Some(l), _) => match l.parse::<churn_activate::Lang>() {
                    Ok(l) => l,
                    Err(e) => {
                        problems.push(format!("report.lang: {e}"));
                        return None;
                    }
                },
                (None, Some((_, l))) => *l,
                (None, None) => churn_activate::Lang::En,
            };
            let horizon_days = r
                .horizon_days
                .or(labels.map(|(h, _)| h))
                .unwrap_or(churn_features::DEFAULT_HORIZON_DAYS);
            if horizon_days == 0 {
                problems.push("report.horizon_days: must be at least 1".to_string());
            }
            let campaign_window_days = r
                .campaign_window_days
                .unwrap_or(churn_report::DEFAULT_CAMPAIGN_WINDOW_DAYS);
            if campaign_window_days == 0 {
                problems.push("report.campaign_window_days: must be at least 1".to_string());
            }
            Some(churn_report::ReportOptions {
                lang,
                horizon_days,
                campaign_window_days,
                session: SessionOptions::with_memory_limit(memory_limit_bytes),
            })
        });
        let raw_stream = file.stream.clone().unwrap_or_default();
        for name in raw_stream.sources.iter().flatten() {
            if !file.sources.contains_key(name) {
                problems.push(format!(
                    "stream.sources: no [sources.{name}] section in this file"
                ));
            }
        }
        let stream = match raw_stream.validate() {
            Ok(stream) => stream,
            Err(churn_stream::StreamError::InvalidConfig { problems: p }) => {
                problems.extend(p.into_iter().map(|p| format!("stream.{p}")));
                churn_stream::StreamOptions::default()
            }
            Err(e) => {
                problems.push(format!("stream: {e}"));
                churn_stream::StreamOptions::default()
            }
        };
        if !problems.is_empty() {
            return Err(PipelineError::Invalid {
                path: path.to_path_buf(),
                problems,
            });
        }
        Ok(Pipeline {
            path: path.to_path_buf(),
            engine,
            memory_limit_bytes,
            lake: file.lake.path.as_deref().map(|p| resolve(&base, p)),
            timezone: file.lake.timezone.clone(),
            sources,
            features,
            labels,
            train,
            score: file.score.as_ref().map(|s| s.model.clone()),
            activate,
            campaigns,
            report,
            stream,
        })
    }

    /// This pipeline with every step's queries held to `bytes` of memory (`--memory-limit`).
    pub fn with_memory_limit(mut self, bytes: usize) -> Pipeline {
        self.memory_limit_bytes = Some(bytes);
        if let Some(features) = &mut self.features {
            features.session.memory_limit_bytes = Some(bytes);
        }
        if let Some(report) = &mut self.report {
            report.session.memory_limit_bytes = Some(bytes);
        }
        self
    }

    /// The feature files and settings of snapshots (and live scores): the `[features]`
    /// section's, or the built-in files with default settings.
    pub fn feature_options(&self) -> Result<FeatureOptions> {
        feature_options(self, "stream")
    }

    /// The sources `churn stream` watches: those `[stream] sources` names, or all of them.
    pub fn stream_sources(&self) -> Vec<churn_stream::StreamSource> {
        self.sources
            .iter()
            .filter(|(name, _)| {
                self.stream
                    .sources
                    .as_ref()
                    .is_none_or(|names| names.contains(name))
            })
            .map(|(name, config)| churn_stream::StreamSource {
                name: name.clone(),
                config: config.clone(),
            })
            .collect()
    }

    /// The source called `name`.
    pub fn source(&self, name: &str) -> Result<&SourceConfig> {
        self.sources
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
            .ok_or_else(|| PipelineError::UnknownSource {
                path: self.path.clone(),
                name: name.to_string(),
                known: self.sources.iter().map(|(n, _)| n.clone()).collect(),
            })
    }
}

/// What one step of a run did: the summary the matching command prints with `--json`, or why
/// the step was skipped. Stored without a tag: reading one back tries the variants in order,
/// and each summary has fields the ones before it lack (a skip has `skipped`, ingest
/// `batch_id`, features snapshots have `columns`, labels have `horizon_days`, train `version`,
/// score `model_name`, segment `rfm_segments`, triggers `rules`, export `campaigns`, report
/// `report_bytes`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StepOutcome {
    /// The data does not reach far enough yet (labels or a test snapshot not observable).
    Skipped {
        kind: String,
        skipped: String,
    },
    /// A train step that reused the newest registered version (see `churn_train::retrain`).
    Reused(Box<churn_train::RetrainDecision>),
    Ingest(Box<IngestSummary>),
    Features(FeaturesSummary),
    Labels(LabelsSummary),
    Train(Box<TrainReport>),
    Score(Box<ScoreSummary>),
    Segment(Box<churn_activate::SegmentSummary>),
    Triggers(Box<churn_activate::TriggersSummary>),
    Export(Box<churn_activate::ExportSummary>),
    Report(Box<churn_report::ReportSummary>),
}

/// One executed step of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepSummary {
    /// `ingest`, `features`, `labels`, `train`, `score`, `segment`, `triggers`, `export` or
    /// `report`.
    pub step: String,
    /// Source name for ingest steps, the model name for train steps, the snapshot date
    /// otherwise.
    pub name: String,
    #[serde(rename = "summary")]
    pub outcome: StepOutcome,
    /// Why a train step trained or reused a version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Wall time of the step (of the planned step, for segment and triggers together).
    #[serde(default)]
    pub duration_ms: u64,
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
}

/// Folder of ingest and run manifests, relative to the lake root.
pub const RUNS_DIR: &str = "_runs";

/// What `churn run` did (or is doing): the run manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    pub kind: String,
    pub run_id: String,
    pub pipeline: String,
    /// SHA-256 of the pipeline file the run read.
    #[serde(default)]
    pub pipeline_sha256: String,
    /// Version of churn that ran it.
    #[serde(default)]
    pub code_version: String,
    pub as_of: String,
    pub lake: String,
    /// RFC 3339.
    #[serde(default)]
    pub started_at: String,
    /// Runs written before statuses were recorded finished successfully.
    #[serde(default = "succeeded")]
    pub status: RunStatus,
    /// The failed run this one resumed.
    #[serde(default)]
    pub resumed_from: Option<String>,
    /// Planned steps finished, by key (`ingest:SOURCE`, `features`, `labels`,
    /// `train:MODEL_FILE`, `score`, `activate`, `export`, `report`).
    #[serde(default)]
    pub completed: Vec<String>,
    #[serde(default)]
    pub failed_step: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    pub steps: Vec<StepSummary>,
    pub manifest: String,
    pub duration_ms: u64,
}

impl RunStatus {
    /// The status as the manifest spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
        }
    }
}

fn succeeded() -> RunStatus {
    RunStatus::Succeeded
}

/// The feature options of steps that build snapshots: the `[features]` section's, or the
/// built-in files with default settings.
fn feature_options(pipeline: &Pipeline, step: &'static str) -> Result<FeatureOptions> {
    match &pipeline.features {
        Some(f) => Ok(f.clone()),
        None => Ok(FeatureOptions {
            lookback_days: churn_features::DEFAULT_LOOKBACK_DAYS,
            session: SessionOptions::with_memory_limit(pipeline.memory_limit_bytes),
            files: FeatureFile::built_in().map_err(|error| PipelineError::Features {
                step,
                error: Box::new(error),
            })?,
        }),
    }
}

/// Trains one model with test snapshot `as_of - horizon` when it is due (see
/// `churn_train::retrain`), else reuses its newest version; a lake that does not reach that
/// far yet is reported as a skipped step, like labels.
async fn train_step(
    pipeline: &Pipeline,
    lake: &Lake,
    as_of: NaiveDate,
    model_path: &str,
    spec: &ModelSpec,
) -> Result<StepSummary> {
    let failed = |error| PipelineError::Train {
        model: model_path.to_string(),
        error: Box::new(error),
    };
    let features = feature_options(pipeline, "train")?;
    let decision = churn_train::retrain::decide(lake, spec, as_of, &features)
        .await
        .map_err(failed)?;
    let step = |outcome, reason| StepSummary {
        step: "train".into(),
        name: spec.name.clone(),
        outcome,
        reason: Some(reason),
        duration_ms: 0,
    };
    if !decision.train {
        tracing::info!(model = %spec.name, reason = %decision.reason, "train step: newest version reused");
        let reason = decision.reason.clone();
        return Ok(step(StepOutcome::Reused(Box::new(decision)), reason));
    }
    let test_date = as_of - chrono::Duration::days(spec.horizon_days as i64);
    tracing::info!(model = %spec.name, as_of = %test_date, reason = %decision.reason, "train step");
    let outcome = match churn_train::train(
        lake,
        spec,
        test_date,
        &features,
        churn_train::Register::ScoringFit,
    )
    .await
    {
        Ok(report) => StepOutcome::Train(Box::new(report)),
        Err(churn_train::TrainError::Model(
            e @ churn_model::ModelError::TestLabelsNotObservable { .. },
        )) => {
            tracing::warn!(error = %e, "train skipped");
            StepOutcome::Skipped {
                kind: "train".into(),
                skipped: e.to_string(),
            }
        }
        Err(error) => return Err(failed(error)),
    };
    Ok(step(outcome, decision.reason))
}

/// Segments the run's date, then runs the rules into the day's action list.
async fn activate_steps(
    pipeline: &Pipeline,
    lake: &Lake,
    as_of: NaiveDate,
    activation: &churn_activate::Activation,
    lang: churn_activate::Lang,
) -> Result<Vec<StepSummary>> {
    let wrap = |step| {
        move |error| PipelineError::Activate {
            step,
            error: Box::new(error),
        }
    };
    tracing::info!(as_of = %as_of, "segment step");
    let features = feature_options(pipeline, "segment")?;
    let segments = churn_activate::segment(lake, as_of, activation, lang, &features)
        .await
        .map_err(wrap("segment"))?;
    tracing::info!(as_of = %as_of, "triggers step");
    let triggers = churn_activate::triggers(lake, as_of, activation, &features.session)
        .await
        .map_err(wrap("triggers"))?;
    Ok(vec![
        StepSummary {
            step: "segment".into(),
            name: as_of.to_string(),
            outcome: StepOutcome::Segment(Box::new(segments)),
            reason: None,
            duration_ms: 0,
        },
        StepSummary {
            step: "triggers".into(),
            name: as_of.to_string(),
            outcome: StepOutcome::Triggers(Box::new(triggers)),
            reason: None,
            duration_ms: 0,
        },
    ])
}

/// One step of a pipeline, in the order a run executes them.
enum PlannedStep<'a> {
    Ingest(&'a str, &'a SourceConfig),
    Features(&'a FeatureOptions),
    Labels {
        horizon_days: u32,
        lookback_days: u32,
    },
    Train(&'a str, &'a ModelSpec),
    Score(&'a str),
    Activate(&'a churn_activate::Activation, churn_activate::Lang),
    Export,
    Report(&'a churn_report::ReportOptions),
}

impl PlannedStep<'_> {
    /// The step's name in run manifests, which `--resume` matches on: `ingest:SOURCE`,
    /// `train:MODEL_FILE`, or the step's kind.
    fn key(&self) -> String {
        match self {
            PlannedStep::Ingest(name, _) => format!("ingest:{name}"),
            PlannedStep::Features(_) => "features".into(),
            PlannedStep::Labels { .. } => "labels".into(),
            PlannedStep::Train(path, _) => format!("train:{path}"),
            PlannedStep::Score(_) => "score".into(),
            PlannedStep::Activate(..) => "activate".into(),
            PlannedStep::Export => "export".into(),
            PlannedStep::Report(_) => "report".into(),
        }
    }
}

/// The steps of `pipeline`: ingest each source, then build the feature snapshot of the run's
/// date, then the labels of `date - horizon`, then train each model with test snapshot
/// `date - horizon`, then score the date, then segment it and run its rules into the day's
/// action list, then export its campaigns, then write the retention marts and report.
fn plan(pipeline: &Pipeline) -> Vec<PlannedStep<'_>> {
    let mut steps: Vec<PlannedStep> = pipeline
        .sources
        .iter()
        .map(|(name, source)| PlannedStep::Ingest(name, source))
        .collect();
    steps.extend(pipeline.features.as_ref().map(PlannedStep::Features));
    steps.extend(
        pipeline
            .labels
            .map(|(horizon_days, lookback_days)| PlannedStep::Labels {
                horizon_days,
                lookback_days,
            }),
    );
    steps.extend(
        pipeline
            .train
            .iter()
            .map(|(path, spec)| PlannedStep::Train(path, spec)),
    );
    steps.extend(pipeline.score.as_deref().map(PlannedStep::Score));
    steps.extend(
        pipeline
            .activate
            .as_ref()
            .map(|(activation, lang)| PlannedStep::Activate(activation, *lang)),
    );
    if !pipeline.campaigns.is_empty() {
        steps.push(PlannedStep::Export);
    }
    steps.extend(pipeline.report.as_ref().map(PlannedStep::Report));
    steps
}

/// `features` with their queries on the pipeline's engine (the features, labels and score
/// steps'; the other steps run in this process).
fn on_engine(pipeline: &Pipeline, features: &FeatureOptions) -> FeatureOptions {
    FeatureOptions {
        session: features.session.clone().on(pipeline.engine.clone()),
        ..features.clone()
    }
}

/// The session of steps that read through the query engine, within the lake's memory budget.
fn session_of(pipeline: &Pipeline) -> SessionOptions {
    SessionOptions::with_memory_limit(pipeline.memory_limit_bytes)
}

/// Executes one step for `as_of`; most give one summary, the activate step two (segment and
/// triggers).
async fn execute(
    pipeline: &Pipeline,
    lake: &Lake,
    as_of: NaiveDate,
    options: &IngestOptions,
    step: &PlannedStep<'_>,
) -> Result<Vec<StepSummary>> {
    let one = |step: &str, name: String, outcome: StepOutcome| {
        Ok(vec![StepSummary {
            step: step.into(),
            name,
            outcome,
            reason: None,
            duration_ms: 0,
        }])
    };
    match step {
        PlannedStep::Ingest(name, source) => {
            tracing::info!(source = %name, table = %source.table, "ingest step");
            let summary = churn_ingest::ingest(lake, source, options)
                .await
                .map_err(|error| PipelineError::Ingest {
                    source_name: name.to_string(),
                    error: Box::new(error),
                })?;
            one(
                "ingest",
                name.to_string(),
                StepOutcome::Ingest(Box::new(summary)),
            )
        }
        PlannedStep::Features(features) => {
            tracing::info!(as_of = %as_of, "features step");
            let features = on_engine(pipeline, features);
            let summary = churn_features::build_features(lake, &[as_of], &features)
                .await
                .map_err(|error| PipelineError::Features {
                    step: "features",
                    error: Box::new(error),
                })?;
            one(
                "features",
                as_of.to_string(),
                StepOutcome::Features(summary),
            )
        }
        PlannedStep::Labels {
            horizon_days,
            lookback_days,
        } => {
            let label_date = as_of - chrono::Duration::days(*horizon_days as i64);
            tracing::info!(as_of = %label_date, "labels step");
            let outcome = match churn_features::build_labels(
                lake,
                &[label_date],
                *horizon_days,
                *lookback_days,
                &session_of(pipeline).on(pipeline.engine.clone()),
            )
            .await
            {
                Ok(s) => StepOutcome::Labels(s),
                // Data that does not reach the horizon yet (no sales yesterday) is normal: say so.
                Err(e @ churn_features::FeatureError::LabelsNotObservable { .. }) => {
                    tracing::warn!(error = %e, "labels skipped");
                    StepOutcome::Skipped {
                        kind: "labels".into(),
                        skipped: e.to_string(),
                    }
                }
                Err(error) => {
                    return Err(PipelineError::Features {
                        step: "labels",
                        error: Box::new(error),
                    });
                }
            };
            one("labels", label_date.to_string(), outcome)
        }
        PlannedStep::Train(path, spec) => {
            Ok(vec![train_step(pipeline, lake, as_of, path, spec).await?])
        }
        PlannedStep::Score(model) => {
            tracing::info!(as_of = %as_of, model = %model, "score step");
            let features = on_engine(pipeline, &feature_options(pipeline, "score")?);
            let summary = churn_activate::score(lake, as_of, model, &features)
                .await
                .map_err(|error| PipelineError::Score {
                    model: model.to_string(),
                    error: Box::new(error),
                })?;
            one(
                "score",
                as_of.to_string(),
                StepOutcome::Score(Box::new(summary)),
            )
        }
        PlannedStep::Activate(activation, lang) => {
            activate_steps(pipeline, lake, as_of, activation, *lang).await
        }
        PlannedStep::Export => {
            tracing::info!(as_of = %as_of, campaigns = pipeline.campaigns.len(), "export step");
            let session = feature_options(pipeline, "export")?.session;
            let summary = churn_activate::export(lake, as_of, &pipeline.campaigns, &session)
                .await
                .map_err(|error| PipelineError::Activate {
                    step: "export",
                    error: Box::new(error),
                })?;
            one(
                "export",
                as_of.to_string(),
                StepOutcome::Export(Box::new(summary)),
            )
        }
        PlannedStep::Report(report) => {
            tracing::info!(as_of = %as_of, "report step");
            let options = churn_report::ReportOptions {
                session: session_of(pipeline),
                ..(*report).clone()
            };
            let summary = churn_report::report(lake, as_of, &options)
                .await
                .map_err(|error| PipelineError::Report(Box::new(error)))?;
            one(
                "report",
                as_of.to_string(),
                StepOutcome::Report(Box::new(summary)),
            )
        }
    }
}

/// The run manifests of `lake`, newest first.
pub async fn run_manifests(lake: &Lake) -> Result<Vec<RunSummary>> {
    let mut runs = Vec::new();
    for meta in lake.list(RUNS_DIR).await? {
        let is_run = meta
            .location
            .filename()
            .is_some_and(|n| n.starts_with("run-") && n.ends_with(".json"));
        if is_run {
            runs.push(lake.read_json::<RunSummary>(&meta.location).await?);
        }
    }
    runs.sort_by(|a, b| {
        b.started_at
            .cmp(&a.started_at)
            .then(b.run_id.cmp(&a.run_id))
    });
    Ok(runs)
}

/// SHA-256 of the pipeline file, so that a run manifest says which settings it ran with.
fn fingerprint(path: &Path) -> String {
    use sha2::Digest;
    std::fs::read(path)
        .map(|bytes| format!("{:x}", sha2::Sha256::digest(bytes)))
        .unwrap_or_default()
}

/// How a run starts: from the first step, or resuming the failed run it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Fresh,
    /// Continue the newest run of the same pipeline and date if it failed or was interrupted
    /// (killed, so still marked running): steps it finished
    /// are not run again (their outputs are in the lake) and its summaries are carried over.
    /// If that run succeeded, it is the result and nothing runs; without one, every step runs.
    Resume,
}

/// Told as a run goes from step to step (the CLI draws a progress bar on a terminal).
pub trait RunObserver: Sync {
    /// Step `index` (from 0) of `total`, named by its key (`ingest:NAME`, `features`, …),
    /// starts; steps a resumed run finished are counted as done, not started.
    fn step_started(&self, _index: usize, _total: usize, _step: &str) {}
    /// The run is over, whatever its outcome.
    fn run_ended(&self) {}
}

/// An observer that ignores everything.
pub struct Unobserved;

impl RunObserver for Unobserved {}

/// Runs the pipeline's steps for the logical date `as_of` (see [`plan`]). The run manifest
/// `_runs/run-D-….json` is written when the run starts and after every step, so that a
/// failed run says which step failed and why, and `Start::Resume` can continue from there.
pub async fn run(
    pipeline: &Pipeline,
    lake: &Lake,
    as_of: NaiveDate,
    options: &IngestOptions,
    start: Start,
    observer: &dyn RunObserver,
) -> Result<RunSummary> {
    let result = run_observed(pipeline, lake, as_of, options, start, observer).await;
    observer.run_ended();
    result
}

async fn run_observed(
    pipeline: &Pipeline,
    lake: &Lake,
    as_of: NaiveDate,
    options: &IngestOptions,
    start: Start,
    observer: &dyn RunObserver,
) -> Result<RunSummary> {
    let started = Instant::now();
    lake.ensure_settings(pipeline.timezone.as_deref()).await?;
    let now = chrono::Utc::now();
    let run_id = format!("run-{as_of}-{}", now.format("%Y%m%dT%H%M%S%.3f"));
    let pipeline_name = pipeline.path.display().to_string();
    let resumed = match start {
        Start::Fresh => None,
        Start::Resume => {
            let newest = run_manifests(lake)
                .await?
                .into_iter()
                .find(|r| r.as_of == as_of.to_string() && r.pipeline == pipeline_name);
            match newest {
                // A run still marked running was interrupted (killed): this run holds the
                // lake's writer lease, so no other run is going on.
                Some(previous)
                    if matches!(previous.status, RunStatus::Failed | RunStatus::Running) =>
                {
                    Some(previous)
                }
                // A retry after success has nothing to do (a backfill resumed after a failure
                // skips the dates it finished).
                Some(previous) if previous.status == RunStatus::Succeeded => {
                    tracing::info!(as_of = %as_of, run_id = %previous.run_id, "already succeeded: nothing to resume");
                    return Ok(previous);
                }
                _ => None,
            }
        }
    };
    let manifest = format!("{RUNS_DIR}/{run_id}.json");
    let mut summary = RunSummary {
        kind: "run".into(),
        run_id,
        pipeline: pipeline_name,
        pipeline_sha256: fingerprint(&pipeline.path),
        code_version: env!("CARGO_PKG_VERSION").into(),
        as_of: as_of.to_string(),
        lake: lake.display(),
        started_at: now.to_rfc3339(),
        status: RunStatus::Running,
        resumed_from: resumed.as_ref().map(|r| r.run_id.clone()),
        completed: resumed
            .as_ref()
            .map(|r| r.completed.clone())
            .unwrap_or_default(),
        failed_step: None,
        error: None,
        steps: resumed.map(|r| r.steps).unwrap_or_default(),
        manifest: manifest.clone(),
        duration_ms: 0,
    };
    let save = async |summary: &mut RunSummary| {
        summary.duration_ms = started.elapsed().as_millis() as u64;
        lake.write_json(&lake.path(&manifest), summary).await
    };
    save(&mut summary).await?;
    let steps = plan(pipeline);
    let total = steps.len();
    for (index, step) in steps.into_iter().enumerate() {
        let key = step.key();
        if summary.completed.contains(&key) {
            tracing::info!(step = %key, "done in the resumed run");
            continue;
        }
        observer.step_started(index, total, &key);
        let step_started = Instant::now();
        match execute(pipeline, lake, as_of, options, &step).await {
            Ok(done) => {
                let duration_ms = step_started.elapsed().as_millis() as u64;
                summary
                    .steps
                    .extend(done.into_iter().map(|s| StepSummary { duration_ms, ..s }));
                summary.completed.push(key);
                save(&mut summary).await?;
                // The next step starts from what the process needs, not from the peak of
                // this one: the allocator keeps freed pages otherwise.
                churn_core::memory::return_freed_memory();
            }
            Err(error) => {
                summary.status = RunStatus::Failed;
                summary.failed_step = Some(key);
                summary.error = Some(error.to_string());
                // The step's own error is what the caller needs; a manifest that cannot be
                // written is logged.
                if let Err(e) = save(&mut summary).await {
                    tracing::error!(error = %e, "cannot record the failed run");
                }
                return Err(error);
            }
        }
    }
    summary.status = RunStatus::Succeeded;
    save(&mut summary).await?;
    Ok(summary)
}
