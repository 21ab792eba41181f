//! Models over the lake. `churn-model` computes (frames in, models and metrics out); this
//! crate feeds it from the lake and keeps what it produces: the training run (the snapshot
//! schedule checked against the lake, snapshots built where missing through
//! `churn-features`, features joined with labels into frames, BTYD features), buy-till-you-die
//! fits with per-customer outputs, and the versioned model registry under `<lake>/_models/`.
//! The CLI, the pipeline and scoring share these.

pub mod error;
pub mod fit_btyd;
pub mod frames;
pub mod outlook;
pub mod registry;
pub mod retrain;
pub mod train;

pub use error::{Result, TrainError};
pub use retrain::{FeatureDrift, FeaturePsi, RetrainDecision};
pub use train::{Register, TrainReport, train};
