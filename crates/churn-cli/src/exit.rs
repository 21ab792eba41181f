//! Exit codes: 0 ok, 2 usage or configuration error, 3 data error, 75 another writer holds
//! the lake (retry later; the code of sysexits' EX_TEMPFAIL), 1 internal error. Every
//! library error reports its [`ErrorKind`] (a wrapper reports the kind of what it wraps), so
//! the outermost library error in the chain decides.

use churn_core::{CoreError, ErrorKind, datafusion_error_kind};

pub const INTERNAL: i32 = 1;
pub const CONFIG: i32 = 2;
pub const DATA: i32 = 3;
pub const BUSY: i32 = 75;

/// A usage or configuration problem found by the CLI itself.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The kind of one error of the chain, when it is one of ours (or the query engine's).
fn kind_of(cause: &(dyn std::error::Error + 'static)) -> Option<ErrorKind> {
    if cause.is::<UsageError>() {
        return Some(ErrorKind::Config);
    }
    macro_rules! kinds {
        ($($t:ty),*) => {
            $(if let Some(e) = cause.downcast_ref::<$t>() {
                return Some(e.kind());
            })*
        };
    }
    kinds!(
        churn_pipeline::PipelineError,
        churn_report::ReportError,
        churn_activate::ActivateError,
        churn_train::TrainError,
        churn_ingest::IngestError,
        churn_features::FeatureError,
        churn_model::ModelError,
        churn_synth::SynthError,
        churn_bench::BenchError,
        CoreError
    );
    cause
        .downcast_ref::<datafusion::error::DataFusionError>()
        .map(datafusion_error_kind)
}

/// The exit code for an error, from the outermost error in its chain that has a kind.
pub fn code_for(err: &anyhow::Error) -> i32 {
    match err.chain().find_map(kind_of) {
        Some(ErrorKind::Config) => CONFIG,
        Some(ErrorKind::Data) => DATA,
        Some(ErrorKind::Busy) => BUSY,
        Some(ErrorKind::Internal) | None => INTERNAL,
    }
}
