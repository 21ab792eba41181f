//! Point-in-time behavioural features and churn labels. Feature SQL files run with DataFusion
//! against a view of the lake as it was before the as-of date; their results are checked for
//! one row per customer and joined into `<lake>/features/as_of=D/`. Labels record who bought
//! again within the horizon, into `<lake>/labels/as_of=D/`.

pub mod btyd_input;
pub mod build;
pub mod dates;
pub mod error;
pub mod held;
pub mod history;
pub mod labels;
pub mod snapshot;
pub mod sqlfile;
pub mod write;

pub use btyd_input::{BtydInput, BtydInputsAtDates, Grain, btyd_inputs, btyd_inputs_at_dates};
pub use build::{
    CatalogueEntry, CustomerInputs, FeatureOptions, FeaturesSummary, SnapshotSummary,
    beside_each_other, build_features, build_snapshot, catalogue, ensure_snapshot, for_each_date,
    inputs_for, on_own_task, snapshots_at_once,
};
pub use dates::as_of_dates;
pub use error::{FeatureError, Result};
pub use history::{EventHistory, RefreshSummary};
pub use labels::{
    DEFAULT_HORIZON_DAYS, LabelsSummary, build_labels, ensure_labels, labels_horizon,
    lake_transaction_days,
};
pub use snapshot::{DEFAULT_LOOKBACK_DAYS, Scope};
pub use sqlfile::FeatureFile;
