//! Model files (`models/<name>.toml`): what to predict, from which snapshots, with which
//! algorithm and features. Parsed raw with serde (unknown keys are refused), then validated
//! into a [`ModelSpec`], reporting every problem at once.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// The learning algorithms a model file can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// Logistic regression on standardised features with an L2 penalty, sample weights as
    /// weights (`crate::logistic`).
    Logistic,
    /// One linfa-trees decision tree.
    DecisionTree,
    /// Bagged linfa-trees decision trees (linfa-ensemble), each on a bootstrap sample and a
    /// random subset of the features.
    RandomForest,
    /// Gradient-boosted trees (forust-ml), binary log-loss.
    Gbdt,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Logistic => "logistic",
            Algorithm::DecisionTree => "decision-tree",
            Algorithm::RandomForest => "random-forest",
            Algorithm::Gbdt => "gbdt",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClassWeight {
    /// Each class weighs half of the training set: w = n / (2 n_class).
    Balanced,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Calibration {
    /// Logistic regression of the label on the score's log-odds (Platt scaling).
    Platt,
    /// Monotone step function fitted by pool-adjacent-violators.
    Isotonic,
    None,
}

/// `models/<name>.toml` as written. Every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    /// Model name in the registry. Default: the file name without `.toml`.
    name: Option<String>,
    /// What the model is for, shown by `churn models show`. Default: empty.
    #[serde(default)]
    description: String,
    /// Churn horizon: a customer churns at D when they make no purchase in [D, D + horizon).
    /// Default 90.
    #[serde(default = "default_horizon_days")]
    horizon_days: u32,
    /// logistic, decision-tree, random-forest or gbdt. Default gbdt.
    #[serde(default = "default_algorithm")]
    algorithm: Algorithm,
    /// Seed of every random choice (bootstrap samples, feature subsets). Default 42.
    #[serde(default = "default_seed")]
    seed: u64,
    #[serde(default)]
    training: RawTraining,
    #[serde(default)]
    features: RawFeatures,
    #[serde(default)]
    scoring: ScoringSpec,
    /// `churn run` trains this model again once its newest version was trained for a run
    /// date at least this many days before the run's. Default: not by age.
    retrain_every_days: Option<u32>,
    /// `churn run` trains this model again once the population stability index of any of its
    /// input features, between the newest version's newest training snapshot and the run's
    /// snapshot, is above this (0.1 moderate, 0.25 major shift). Default: not by drift.
    retrain_when_psi_above: Option<f64>,
    logistic: Option<LogisticParams>,
    decision_tree: Option<TreeParams>,
    random_forest: Option<ForestParams>,
    gbdt: Option<GbdtParams>,
}

/// `[scoring]`: how `churn score` turns the model's probabilities and the BTYD outlook into
/// what marketing sees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoringSpec {
    /// Churn-probability cut-offs of the risk bands: below the first is `low`, from the first
    /// to below the second `medium`, from the second up `high`. Default [0.33, 0.66].
    #[serde(default = "default_risk_band_cutoffs")]
    pub risk_band_cutoffs: [f64; 2],
    /// Annual discount rate of `expected_value_12m` (0.10 = 10 % a year), applied per month.
    /// Default 0.10.
    #[serde(default = "default_annual_discount_rate")]
    pub annual_discount_rate: f64,
}

impl Default for ScoringSpec {
    fn default() -> ScoringSpec {
        ScoringSpec {
            risk_band_cutoffs: default_risk_band_cutoffs(),
            annual_discount_rate: default_annual_discount_rate(),
        }
    }
}

fn default_risk_band_cutoffs() -> [f64; 2] {
    [0.33, 0.66]
}
fn default_annual_discount_rate() -> f64 {
    0.10
}

fn default_horizon_days() -> u32 {
    90
}
fn default_algorithm() -> Algorithm {
    Algorithm::Gbdt
}
fn default_seed() -> u64 {
    42
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTraining {
    /// Training snapshots, `every_days` apart, the newest `horizon_days` before the test
    /// snapshot. With calibration the newest is held out to calibrate on. Default 4.
    #[serde(default = "default_snapshots")]
    snapshots: u32,
    /// Days between training snapshots. Default 30.
    #[serde(default = "default_every_days")]
    every_days: u32,
    /// balanced or none. Default balanced.
    #[serde(default = "default_class_weight")]
    class_weight: ClassWeight,
    /// platt, isotonic or none. Default platt.
    #[serde(default = "default_calibration")]
    calibration: Calibration,
    /// Refuse to train when a slice has fewer churners or non-churners than this. Default 20.
    #[serde(default = "default_min_class_rows")]
    min_class_rows: u32,
}

fn default_snapshots() -> u32 {
    4
}
fn default_every_days() -> u32 {
    30
}
fn default_class_weight() -> ClassWeight {
    ClassWeight::Balanced
}
fn default_calibration() -> Calibration {
    Calibration::Platt
}
fn default_min_class_rows() -> u32 {
    20
}

impl Default for RawTraining {
    fn default() -> Self {
        RawTraining {
            snapshots: default_snapshots(),
            every_days: default_every_days(),
            class_weight: default_class_weight(),
            calibration: default_calibration(),
            min_class_rows: default_min_class_rows(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeatures {
    /// Feature columns to use: exact names or globs (`*`, `?`). An exact name that is not in
    /// the features table is an error. Default ["*"].
    #[serde(default = "default_include")]
    include: Vec<String>,
    /// Columns to leave out (exact names or globs), applied after `include`. Default [].
    #[serde(default)]
    exclude: Vec<String>,
    /// Add the BG/NBD and Gamma-Gamma outputs, fitted at each snapshot on the history before
    /// it: btyd_p_alive, btyd_expected_purchases (over the horizon), btyd_expected_value.
    /// Default true.
    #[serde(default = "default_true")]
    btyd: bool,
}

fn default_include() -> Vec<String> {
    vec!["*".into()]
}
fn default_true() -> bool {
    true
}

impl Default for RawFeatures {
    fn default() -> Self {
        RawFeatures {
            include: default_include(),
            exclude: Vec::new(),
            btyd: true,
        }
    }
}

/// `[logistic]`: the logistic regression's hyper-parameters. The fit minimises
/// `Σ wᵢ·logloss(xᵢ, yᵢ) + l2/2·‖β‖²` (intercept not penalised): scikit-learn's
/// `LogisticRegression(C = 1/l2)` with the same sample weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogisticParams {
    /// L2 penalty on the standardised coefficients. Default 1.0.
    #[serde(default = "default_l2")]
    pub l2: f64,
    /// Newton steps at most; a fit usually converges in under ten. Default 200.
    #[serde(default = "default_max_iterations")]
    pub max_iterations: u64,
}

fn default_l2() -> f64 {
    1.0
}
fn default_max_iterations() -> u64 {
    200
}

impl Default for LogisticParams {
    fn default() -> Self {
        LogisticParams {
            l2: default_l2(),
            max_iterations: default_max_iterations(),
        }
    }
}

/// `[decision_tree]`: linfa-trees hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeParams {
    /// Maximum depth. Default 6.
    #[serde(default = "default_tree_depth")]
    pub max_depth: u32,
    /// Minimum total sample weight in a leaf. Default 20.
    #[serde(default = "default_min_weight_leaf")]
    pub min_weight_leaf: f64,
}

fn default_tree_depth() -> u32 {
    6
}
fn default_min_weight_leaf() -> f64 {
    20.0
}

impl Default for TreeParams {
    fn default() -> Self {
        TreeParams {
            max_depth: default_tree_depth(),
            min_weight_leaf: default_min_weight_leaf(),
        }
    }
}

/// `[random_forest]`: linfa-ensemble bagging hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForestParams {
    /// Number of trees. Default 50.
    #[serde(default = "default_trees")]
    pub trees: u32,
    /// Maximum depth of each tree. Default 8.
    #[serde(default = "default_forest_depth")]
    pub max_depth: u32,
    /// Minimum total sample weight in a leaf. Default 10.
    #[serde(default = "default_forest_leaf")]
    pub min_weight_leaf: f64,
    /// Share of the rows in each bootstrap sample. Default 0.7.
    #[serde(default = "default_bootstrap_share")]
    pub bootstrap_share: f64,
    /// Share of the features each tree sees. Default 0.6.
    #[serde(default = "default_feature_share")]
    pub feature_share: f64,
}

fn default_trees() -> u32 {
    50
}
fn default_forest_depth() -> u32 {
    8
}
fn default_forest_leaf() -> f64 {
    10.0
}
fn default_bootstrap_share() -> f64 {
    0.7
}
fn default_feature_share() -> f64 {
    0.6
}

impl Default for ForestParams {
    fn default() -> Self {
        ForestParams {
            trees: default_trees(),
            max_depth: default_forest_depth(),
            min_weight_leaf: default_forest_leaf(),
            bootstrap_share: default_bootstrap_share(),
            feature_share: default_feature_share(),
        }
    }
}

/// `[gbdt]`: forust-ml hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GbdtParams {
    /// Boosting rounds. Default 200.
    #[serde(default = "default_iterations")]
    pub iterations: u32,
    /// Shrinkage of each tree. Default 0.05.
    #[serde(default = "default_learning_rate")]
    pub learning_rate: f64,
    /// Maximum depth of each tree. Default 4.
    #[serde(default = "default_gbdt_depth")]
    pub max_depth: u32,
    /// L2 penalty on leaf weights. Default 1.0.
    #[serde(default = "default_l2")]
    pub l2: f64,
    /// Minimum hessian (sample weight) in a leaf. Default 5.
    #[serde(default = "default_min_leaf_weight")]
    pub min_leaf_weight: f64,
}

fn default_iterations() -> u32 {
    200
}
fn default_learning_rate() -> f64 {
    0.05
}
fn default_gbdt_depth() -> u32 {
    4
}
fn default_min_leaf_weight() -> f64 {
    5.0
}

impl Default for GbdtParams {
    fn default() -> Self {
        GbdtParams {
            iterations: default_iterations(),
            learning_rate: default_learning_rate(),
            max_depth: default_gbdt_depth(),
            l2: default_l2(),
            min_leaf_weight: default_min_leaf_weight(),
        }
    }
}

/// The chosen algorithm with its hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "kebab-case")]
pub enum Learner {
    Logistic(LogisticParams),
    DecisionTree(TreeParams),
    RandomForest(ForestParams),
    Gbdt(GbdtParams),
}

impl Learner {
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Learner::Logistic(_) => Algorithm::Logistic,
            Learner::DecisionTree(_) => Algorithm::DecisionTree,
            Learner::RandomForest(_) => Algorithm::RandomForest,
            Learner::Gbdt(_) => Algorithm::Gbdt,
        }
    }

    /// Whether the learner reads its design matrix a column at a time (forust takes it
    /// column-major and borrows it) rather than a row at a time (logistic's Newton steps, the
    /// trees' paths).
    pub fn reads_columns(&self) -> bool {
        matches!(self, Learner::Gbdt(_))
    }
}

/// A validated model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub name: String,
    pub description: String,
    pub horizon_days: u32,
    pub seed: u64,
    pub learner: Learner,
    pub training_snapshots: u32,
    pub every_days: u32,
    pub class_weight: ClassWeight,
    pub calibration: Calibration,
    pub min_class_rows: u32,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub btyd_features: bool,
    /// Absent in artifacts registered before scoring existed: the defaults then.
    #[serde(default)]
    pub scoring: ScoringSpec,
    /// When `churn run` trains a new version instead of reusing the newest.
    #[serde(default)]
    pub retrain: RetrainPolicy,
}

/// When `churn run` trains a model again. Without either, the newest version is reused until
/// the model file changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RetrainPolicy {
    pub every_days: Option<u32>,
    pub psi_above: Option<f64>,
}

impl ModelSpec {
    /// Whether `other` trains the same model: every setting equal except the description and
    /// the retrain policy, which say what the model is for and when to train, not what.
    pub fn trains_like(&self, other: &ModelSpec) -> bool {
        let mut other = other.clone();
        other.retrain = self.retrain;
        other.description.clone_from(&self.description);
        *self == other
    }
}

impl ModelSpec {
    /// Reads and validates a model file.
    pub fn load(path: &Path) -> Result<ModelSpec> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::ReadSpec {
            path: path.to_path_buf(),
            source,
        })?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
        ModelSpec::parse(&text, stem, &path.display().to_string())
    }

    /// Parses a model file's text; `default_name` names the model when the file does not.
    pub fn parse(text: &str, default_name: &str, origin: &str) -> Result<ModelSpec> {
        let invalid = |problems: Vec<String>| ModelError::InvalidSpec {
            path: origin.to_string(),
            problems,
        };
        let raw: RawSpec = toml::from_str(text).map_err(|e| invalid(vec![e.to_string()]))?;
        let mut problems = Vec::new();
        let name = raw.name.clone().unwrap_or_else(|| default_name.to_string());
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            problems.push(format!(
                "name: expected letters, digits, '-' or '_', got {name:?}"
            ));
        }
        if raw.horizon_days == 0 {
            problems.push("horizon_days: expected at least 1, got 0".into());
        }
        let t = &raw.training;
        let needed = if t.calibration == Calibration::None {
            1
        } else {
            2
        };
        if t.snapshots < needed {
            problems.push(format!(
                "training.snapshots: expected at least {needed} (one is held out for calibration), got {}",
                t.snapshots
            ));
        }
        if t.every_days == 0 {
            problems.push("training.every_days: expected at least 1, got 0".into());
        }
        if t.min_class_rows == 0 {
            problems.push("training.min_class_rows: expected at least 1, got 0".into());
        }
        if raw.retrain_every_days == Some(0) {
            problems.push("retrain_every_days: expected at least 1, got 0".into());
        }
        if let Some(psi) = raw.retrain_when_psi_above
            && !(psi > 0.0 && psi.is_finite())
        {
            problems.push(format!("retrain_when_psi_above: expected > 0, got {psi}"));
        }
        if raw.features.include.is_empty() {
            problems.push("features.include: expected at least one name or glob".into());
        }
        for pattern in raw.features.include.iter().chain(&raw.features.exclude) {
            if let Err(e) = globset::Glob::new(pattern) {
                problems.push(format!("features: invalid glob {pattern:?}: {e}"));
            }
        }
        let sections = [
            (Algorithm::Logistic, raw.logistic.is_some(), "logistic"),
            (
                Algorithm::DecisionTree,
                raw.decision_tree.is_some(),
                "decision_tree",
            ),
            (
                Algorithm::RandomForest,
                raw.random_forest.is_some(),
                "random_forest",
            ),
            (Algorithm::Gbdt, raw.gbdt.is_some(), "gbdt"),
        ];
        for (algorithm, given, section) in sections {
            if given && algorithm != raw.algorithm {
                problems.push(format!(
                    "[{section}] is given but algorithm is {:?}; remove it or change algorithm",
                    raw.algorithm.name()
                ));
            }
        }
        let learner = match raw.algorithm {
            Algorithm::Logistic => {
                let p = raw.logistic.clone().unwrap_or_default();
                if !(p.l2 >= 0.0 && p.l2.is_finite()) {
                    problems.push(format!("logistic.l2: expected >= 0, got {}", p.l2));
                }
                if p.max_iterations == 0 {
                    problems.push("logistic.max_iterations: expected at least 1, got 0".into());
                }
                Learner::Logistic(p)
            }
            Algorithm::DecisionTree => {
                let p = raw.decision_tree.clone().unwrap_or_default();
                check_tree(
                    &mut problems,
                    "decision_tree",
                    p.max_depth,
                    p.min_weight_leaf,
                );
                Learner::DecisionTree(p)
            }
            Algorithm::RandomForest => {
                let p = raw.random_forest.clone().unwrap_or_default();
                check_tree(
                    &mut problems,
                    "random_forest",
                    p.max_depth,
                    p.min_weight_leaf,
                );
                if p.trees == 0 {
                    problems.push("random_forest.trees: expected at least 1, got 0".into());
                }
                for (key, share) in [
                    ("bootstrap_share", p.bootstrap_share),
                    ("feature_share", p.feature_share),
                ] {
                    if !(share > 0.0 && share <= 1.0) {
                        problems.push(format!(
                            "random_forest.{key}: expected a share in (0, 1], got {share}"
                        ));
                    }
                }
                Learner::RandomForest(p)
            }
            Algorithm::Gbdt => {
                let p = raw.gbdt.clone().unwrap_or_default();
                if p.iterations == 0 {
                    problems.push("gbdt.iterations: expected at least 1, got 0".into());
                }
                if !(p.learning_rate > 0.0 && p.learning_rate <= 1.0) {
                    problems.push(format!(
                        "gbdt.learning_rate: expected a value in (0, 1], got {}",
                        p.learning_rate
                    ));
                }
                if p.max_depth == 0 {
                    problems.push("gbdt.max_depth: expected at least 1, got 0".into());
                }
                if p.l2.is_nan()
                    || p.l2 < 0.0
                    || p.min_leaf_weight.is_nan()
                    || p.min_leaf_weight < 0.0
                {
                    problems.push("gbdt.l2 and gbdt.min_leaf_weight: expected >= 0".into());
                }
                Learner::Gbdt(p)
            }
        };
        let [low, high] = raw.scoring.risk_band_cutoffs;
        if !(0.0 < low && low < high && high < 1.0) {
            problems.push(format!(
                "scoring.risk_band_cutoffs: expected two increasing probabilities between 0 and 1, got [{low}, {high}]"
            ));
        }
        let rate = raw.scoring.annual_discount_rate;
        if !(0.0..1.0).contains(&rate) {
            problems.push(format!(
                "scoring.annual_discount_rate: expected a rate from 0 to below 1, got {rate}"
            ));
        }
        if !problems.is_empty() {
            return Err(invalid(problems));
        }
        Ok(ModelSpec {
            name,
            description: raw.description,
            horizon_days: raw.horizon_days,
            seed: raw.seed,
            learner,
            training_snapshots: t.snapshots,
            every_days: t.every_days,
            class_weight: t.class_weight,
            calibration: t.calibration,
            min_class_rows: t.min_class_rows,
            include: raw.features.include,
            exclude: raw.features.exclude,
            btyd_features: raw.features.btyd,
            scoring: raw.scoring,
            retrain: RetrainPolicy {
                every_days: raw.retrain_every_days,
                psi_above: raw.retrain_when_psi_above,
            },
        })
    }
}

fn check_tree(problems: &mut Vec<String>, section: &str, max_depth: u32, min_weight_leaf: f64) {
    if max_depth == 0 {
        problems.push(format!("{section}.max_depth: expected at least 1, got 0"));
    }
    if min_weight_leaf.is_nan() || min_weight_leaf < 1.0 {
        problems.push(format!(
            "{section}.min_weight_leaf: expected at least 1, got {min_weight_leaf}"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_an_empty_file() {
        let spec = ModelSpec::parse("", "churn", "t.toml").unwrap();
        assert_eq!(spec.name, "churn");
        assert_eq!(spec.horizon_days, 90);
        assert_eq!(spec.learner, Learner::Gbdt(GbdtParams::default()));
        assert_eq!(spec.training_snapshots, 4);
        assert_eq!(spec.calibration, Calibration::Platt);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = ModelSpec::parse("horizon = 3", "m", "t.toml").unwrap_err();
        assert!(err.to_string().contains("unknown field `horizon`"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = "horizon_days = 0\nalgorithm = \"logistic\"\n[training]\nsnapshots = 1\n[gbdt]\niterations = 5\n[logistic]\nl2 = -1.0\n";
        let err = ModelSpec::parse(text, "m", "t.toml")
            .unwrap_err()
            .to_string();
        for needle in [
            "horizon_days",
            "training.snapshots",
            "[gbdt] is given",
            "logistic.l2",
        ] {
            assert!(err.contains(needle), "{needle} missing from {err}");
        }
    }
}
