//! A trained model as data: everything needed to score a frame (the model file it was
//! trained from, the fitted preprocessing, the fitted learner and the calibrator), serialised
//! deterministically so the same data and seed give the same bytes.

use serde::{Deserialize, Serialize};

use crate::calibrate::Calibrator;
use crate::classifier::Classifier;
use crate::dataset::{Frame, Preprocessor};
use crate::error::Result;
use crate::spec::ModelSpec;

/// Bumped whenever the artifact's layout changes incompatibly.
pub const ARTIFACT_SCHEMA_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
pub struct Artifact {
    pub schema_version: u32,
    pub name: String,
    pub spec: ModelSpec,
    pub preprocessor: Preprocessor,
    pub classifier: Classifier,
    pub calibrator: Calibrator,
}

impl Artifact {
    /// Calibrated churn probabilities of every row of `frame`, after checking that the frame
    /// has every input the model needs, with the kind it was trained on.
    pub fn predict(&self, frame: &Frame) -> Result<Vec<f64>> {
        let x = self.preprocessor.transform_for(frame, &self.spec.learner)?;
        Ok(self
            .classifier
            .predict(&x)
            .into_iter()
            .map(|s| self.calibrator.apply(s))
            .collect())
    }
}
