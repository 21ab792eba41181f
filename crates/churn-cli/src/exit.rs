//! Exit codes: 0 ok, 2 usage or configuration error, 3 data error, 1 internal error.

use churn_core::CoreError;
use churn_ingest::IngestError;
use churn_pipeline::PipelineError;
use churn_synth::SynthError;

pub const INTERNAL: i32 = 1;
pub const CONFIG: i32 = 2;
pub const DATA: i32 = 3;

/// A usage or configuration problem found by the CLI itself.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The exit code for an error, from the most specific error in its chain.
pub fn code_for(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if cause.downcast_ref::<UsageError>().is_some() {
            return CONFIG;
        }
        if let Some(e) = cause.downcast_ref::<IngestError>() {
            return if e.is_config_error() {
                CONFIG
            } else if e.is_data_error() {
                DATA
            } else {
                INTERNAL
            };
        }
        if let Some(e) = cause.downcast_ref::<PipelineError>() {
            if e.is_config_error() {
                return CONFIG;
            }
            if e.is_data_error() {
                return DATA;
            }
        }
        if let Some(e) = cause.downcast_ref::<churn_features::FeatureError>() {
            if e.is_config_error() {
                return CONFIG;
            }
            if e.is_data_error() {
                return DATA;
            }
        }
        if let Some(e) = cause.downcast_ref::<churn_model::ModelError>() {
            if e.is_config_error() {
                return CONFIG;
            }
            if e.is_data_error() {
                return DATA;
            }
        }
        if let Some(e) = cause.downcast_ref::<CoreError>() {
            return match e {
                CoreError::InvalidLocation { .. }
                | CoreError::InvalidTimezone(_)
                | CoreError::TimezoneMismatch { .. }
                | CoreError::UnknownTable(_) => CONFIG,
                _ => INTERNAL,
            };
        }
        if let Some(SynthError::InvalidOptions(_)) = cause.downcast_ref::<SynthError>() {
            return CONFIG;
        }
        if let Some(
            datafusion::error::DataFusionError::Plan(_)
            | datafusion::error::DataFusionError::SQL(..),
        ) = cause.downcast_ref::<datafusion::error::DataFusionError>()
        {
            return CONFIG;
        }
    }
    INTERNAL
}
