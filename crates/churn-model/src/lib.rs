//! Churn models as pure computations (data in, fitted models and metrics out; no lake and no
//! query engine): buy-till-you-die models (BG/NBD, Pareto/NBD, Gamma-Gamma) fitted by maximum
//! likelihood; churn classifiers (logistic regression, decision trees and forests, gradient
//! boosting) with preprocessing, calibration and explanations; the time-based backtest against
//! baselines and its grade. Reading snapshots from the lake and the registry live in
//! `churn-train`.

pub mod artifact;
pub mod backtest;
mod boosted;
pub mod btyd;
pub mod calibrate;
pub mod classifier;
pub mod dataset;
pub mod drift;
pub mod dual;
pub mod error;
pub mod explain;
pub mod logistic;
pub mod metrics;
pub mod optim;
pub mod parallel;
pub mod spec;
pub mod special;

pub use artifact::Artifact;
pub use error::{ErrorKind, ModelError, Result};
pub use spec::ModelSpec;
