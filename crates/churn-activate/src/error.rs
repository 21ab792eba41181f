//! Errors of segments and rule triggers: a rules file that does not parse or validate, a
//! rule whose SQL does not run (named), inputs the lake lacks, and the errors of the crates
//! below, each with its kind.

use churn_core::{CoreError, ErrorKind, datafusion_error_kind};
use churn_features::FeatureError;
use churn_train::TrainError;

#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("cannot read rules file {path}: {source}")]
    ReadRules {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot read suppression list {path}: {source}")]
    ReadSuppressionList {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("rules file {path} is invalid:\n  - {}", problems.join("\n  - "))]
    InvalidRules { path: String, problems: Vec<String> },

    #[error("rule {rule:?} ({file}) does not run: `{when}`: {source}")]
    RuleSql {
        rule: String,
        file: String,
        when: String,
        #[source]
        source: datafusion::error::DataFusionError,
    },

    #[error("rules of {file} do not run:\n  - {}", failures.join("\n  - "))]
    RulesDoNotRun { file: String, failures: Vec<String> },

    #[error("the lake has no {table} for {as_of}; run `churn {command} --as-of {as_of}` first")]
    MissingInput {
        table: &'static str,
        command: &'static str,
        as_of: String,
    },

    #[error(
        "live scores need the newest nightly scores (as of {as_of}) but {reason}; run `churn score --as-of {as_of}` again"
    )]
    NoLiveBasis { as_of: String, reason: String },

    #[error("campaign {campaign:?}: its audience or rank_by does not run: {source}")]
    CampaignSql {
        campaign: String,
        #[source]
        source: datafusion::error::DataFusionError,
    },

    #[error(
        "campaign {campaign:?} hashes contact details but the environment variable {variable} (the salt) is not set"
    )]
    MissingSalt { campaign: String, variable: String },

    #[error("no export of campaign {campaign:?} on {as_of} in the lake")]
    UnknownCampaignExport { campaign: String, as_of: String },

    #[error(
        "results of {campaign:?} need transactions through {needs_through}, but the lake's last transaction day is {lake_ends}"
    )]
    ResultsNotObservable {
        campaign: String,
        needs_through: String,
        lake_ends: String,
    },

    #[error("a window of {0} days reaches beyond the calendar")]
    WindowTooLong(u32),

    #[error("writing an export: {0}")]
    Io(String),

    #[error("unknown language {0:?} (expected en or zh-CN)")]
    UnknownLanguage(String),

    #[error("segments: {0}")]
    Feature(#[from] FeatureError),

    #[error("lake: {0}")]
    Core(#[from] CoreError),

    #[error("scoring: {0}")]
    Train(#[from] TrainError),

    #[error("query engine error: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
}

impl ActivateError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ActivateError::ReadRules { .. }
            | ActivateError::ReadSuppressionList { .. }
            | ActivateError::InvalidRules { .. }
            | ActivateError::RuleSql { .. }
            | ActivateError::RulesDoNotRun { .. }
            | ActivateError::CampaignSql { .. }
            | ActivateError::MissingSalt { .. }
            | ActivateError::WindowTooLong(_)
            | ActivateError::UnknownLanguage(_) => ErrorKind::Config,
            ActivateError::MissingInput { .. }
            | ActivateError::UnknownCampaignExport { .. }
            | ActivateError::ResultsNotObservable { .. }
            | ActivateError::NoLiveBasis { .. } => ErrorKind::Data,
            ActivateError::Io(_) => ErrorKind::Internal,
            ActivateError::Feature(e) => e.kind(),
            ActivateError::Core(e) => e.kind(),
            ActivateError::Train(e) => e.kind(),
            ActivateError::DataFusion(e) => datafusion_error_kind(e),
        }
    }
}

pub type Result<T, E = ActivateError> = std::result::Result<T, E>;
