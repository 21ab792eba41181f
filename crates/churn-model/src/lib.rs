//! Churn models: buy-till-you-die models (BG/NBD, Pareto/NBD, Gamma-Gamma) fitted by maximum
//! likelihood; churn classifiers (linfa logistic regression, decision trees and forests,
//! forust-ml gradient boosting) trained with a time-based backtest against baselines,
//! calibrated, explained and kept in a versioned registry in the lake.

pub mod btyd;
pub mod calibrate;
pub mod classifier;
pub mod dataset;
pub mod error;
pub mod explain;
pub mod metrics;
pub mod optim;
pub mod registry;
pub mod spec;
pub mod special;
pub mod train;

pub use error::{ModelError, Result};
pub use spec::ModelSpec;
pub use train::{TrainOptions, TrainReport, train};
