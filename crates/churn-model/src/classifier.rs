//! The learners behind one interface: fit on a design matrix with labels and sample weights,
//! predict churn scores, and split each score into per-column contributions for
//! explanations. Logistic regression is our own weighted Newton fit ([`crate::logistic`]), decision trees and bagged
//! forests from linfa-trees / linfa-ensemble, gradient-boosted trees from forust-ml (scored
//! and explained by our own walk of its trees, `boosted.rs`). Fitted
//! models are stored as plain serde data (coefficients, flattened trees, forust's own
//! booster) so an artifact reads back without the training libraries' internal types.

use std::borrow::Cow;

use forust_ml::GradientBooster;
use forust_ml::data::Matrix;
use linfa::prelude::*;
use linfa_ensemble::EnsembleLearnerParams;
use linfa_trees::{DecisionTree, TreeNode};
use ndarray::{Array1, Array2, ArrayView1};
use rand_08::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::boosted::FlatBooster;
use crate::error::{ModelError, Result};
use crate::spec::{ForestParams, GbdtParams, Learner, LogisticParams, TreeParams};

/// Scores and contributions: logistic regression and gradient boosting work in log-odds,
/// trees in probability. Either way a higher score means more likely to churn.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Classifier {
    /// P(churn) = sigmoid(intercept + coefficients · x).
    Logistic {
        intercept: f64,
        coefficients: Vec<f64>,
    },
    /// The mean of the trees' leaf churn shares.
    Trees { trees: Vec<ProbTree> },
    /// P(churn) = sigmoid(sum of leaf weights).
    Gbdt { booster: Box<GradientBooster> },
}

/// A binary decision tree with the weighted churn share of the training rows reaching each
/// node, so it gives probabilities and path contributions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbTree {
    pub nodes: Vec<TreeNodeData>,
}

/// One node: internal nodes send `x[feature] < threshold` left, others right.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeNodeData {
    pub feature: usize,
    pub threshold: f64,
    /// Child indices; 0 for leaves (the root is never a child).
    pub left: usize,
    pub right: usize,
    /// Weighted churn share of the training rows reaching this node.
    pub value: f64,
}

impl TreeNodeData {
    fn is_leaf(&self) -> bool {
        self.left == 0
    }
}

impl ProbTree {
    /// Flattens a linfa tree whose features are `features[j]` of the design matrix.
    fn from_linfa(root: &TreeNode<f64, usize>, features: &[usize]) -> ProbTree {
        let mut nodes = Vec::new();
        fn visit(
            node: &TreeNode<f64, usize>,
            features: &[usize],
            nodes: &mut Vec<TreeNodeData>,
        ) -> usize {
            let index = nodes.len();
            let (feature, threshold, _) = node.split();
            nodes.push(TreeNodeData {
                feature: features.get(feature).copied().unwrap_or(0),
                threshold,
                left: 0,
                right: 0,
                value: 0.0,
            });
            if !node.is_leaf() {
                let children = node.children();
                if let (Some(left), Some(right)) = (children[0].as_deref(), children[1].as_deref())
                {
                    let l = visit(left, features, nodes);
                    let r = visit(right, features, nodes);
                    nodes[index].left = l;
                    nodes[index].right = r;
                }
            }
            index
        }
        visit(root, features, &mut nodes);
        ProbTree { nodes }
    }

    /// The node path of one row, root first.
    fn path(&self, row: ArrayView1<'_, f64>) -> Vec<usize> {
        let mut at = 0;
        let mut path = vec![0];
        while !self.nodes[at].is_leaf() {
            let node = &self.nodes[at];
            at = if row[node.feature] < node.threshold {
                node.left
            } else {
                node.right
            };
            path.push(at);
        }
        path
    }

    /// Sets every node's value to the weighted churn share of the rows reaching it; a node
    /// no row reaches takes its parent's value.
    fn set_values(&mut self, x: &Array2<f64>, y: &[f64], w: &[f64]) {
        let mut sums = vec![(0.0f64, 0.0f64); self.nodes.len()];
        for (i, row) in x.rows().into_iter().enumerate() {
            for node in self.path(row) {
                sums[node].0 += w[i] * y[i];
                sums[node].1 += w[i];
            }
        }
        let mut stack = vec![(0usize, 0.5f64)];
        while let Some((at, parent_value)) = stack.pop() {
            let (pos, total) = sums[at];
            let value = if total > 0.0 {
                pos / total
            } else {
                parent_value
            };
            self.nodes[at].value = value;
            if !self.nodes[at].is_leaf() {
                stack.push((self.nodes[at].left, value));
                stack.push((self.nodes[at].right, value));
            }
        }
    }

    /// The leaf value and, per design column, the value changes along the row's path
    /// (Saabas): root value + contributions = leaf value.
    fn contributions(&self, row: ArrayView1<'_, f64>, out: &mut [f64]) -> f64 {
        let path = self.path(row);
        for pair in path.windows(2) {
            let (parent, child) = (&self.nodes[pair[0]], &self.nodes[pair[1]]);
            out[parent.feature] += child.value - parent.value;
        }
        self.nodes[*path.last().expect("paths start at the root")].value
    }
}

/// The logistic function, from log-odds to probability.
pub(crate) fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Fits the learner on rows `x` with labels `y` (1 = churned) and sample weights `w`.
pub fn fit(
    learner: &Learner,
    x: &Array2<f64>,
    y: &[f64],
    w: &[f64],
    seed: u64,
) -> Result<Classifier> {
    match learner {
        Learner::Logistic(p) => fit_logistic(p, x, y, w),
        Learner::DecisionTree(p) => without_panics("decision-tree", || fit_tree(p, x, y, w)),
        Learner::RandomForest(p) => {
            without_panics("random-forest", || fit_forest(p, x, y, w, seed))
        }
        Learner::Gbdt(p) => fit_gbdt(p, x, y, w, seed),
    }
}

fn training_error(algorithm: &'static str, reason: impl ToString) -> ModelError {
    ModelError::Training {
        algorithm,
        reason: reason.to_string(),
    }
}

fn fit_logistic(p: &LogisticParams, x: &Array2<f64>, y: &[f64], w: &[f64]) -> Result<Classifier> {
    let fitted = crate::logistic::fit_logistic(x.view(), y, w, p.l2, p.max_iterations);
    if !fitted.intercept.is_finite() || fitted.coefficients.iter().any(|c| !c.is_finite()) {
        return Err(training_error(
            "logistic",
            "the coefficients diverged (classes separable without an L2 penalty?)",
        ));
    }
    if !fitted.converged {
        tracing::warn!(
            iterations = fitted.iterations,
            "logistic regression stopped at max_iterations before converging"
        );
    }
    Ok(Classifier::Logistic {
        intercept: fitted.intercept,
        coefficients: fitted.coefficients,
    })
}

/// linfa-trees sums sample weights in f32 and asserts that a node's weight stays positive;
/// with fractional weights over a million rows the rounding error of those running sums
/// breaks that assertion. Weights are therefore given as whole multiples of the smallest
/// weight (1, 2, ...), whose f32 sums are exact up to 2^24.
fn linfa_dataset(x: &Array2<f64>, y: &[f64], w: &[f64]) -> Dataset<f64, usize, ndarray::Ix1> {
    let targets: Array1<usize> = y.iter().map(|&v| usize::from(v > 0.5)).collect();
    let smallest = w.iter().copied().fold(f64::INFINITY, f64::min).max(1e-12);
    Dataset::new(x.clone(), targets).with_weights(
        w.iter()
            .map(|&v| (v / smallest).round().max(1.0) as f32)
            .collect(),
    )
}

/// Runs a linfa fit, turning a panic inside the library into a training error.
fn without_panics<T>(algorithm: &'static str, fit: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(fit)).unwrap_or_else(|panic| {
        let reason = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the library panicked".to_string());
        Err(training_error(
            algorithm,
            format!("the library panicked: {reason}"),
        ))
    })
}

fn fit_tree(p: &TreeParams, x: &Array2<f64>, y: &[f64], w: &[f64]) -> Result<Classifier> {
    let dataset = linfa_dataset(x, y, w);
    let tree = DecisionTree::params()
        .max_depth(Some(p.max_depth as usize))
        .min_weight_leaf(p.min_weight_leaf as f32)
        .min_weight_split(2.0 * p.min_weight_leaf as f32)
        .fit(&dataset)
        .map_err(|e| training_error("decision-tree", e))?;
    let all: Vec<usize> = (0..x.ncols()).collect();
    let mut flat = ProbTree::from_linfa(tree.root_node(), &all);
    flat.set_values(x, y, w);
    Ok(Classifier::Trees { trees: vec![flat] })
}

fn fit_forest(
    p: &ForestParams,
    x: &Array2<f64>,
    y: &[f64],
    w: &[f64],
    seed: u64,
) -> Result<Classifier> {
    let dataset = linfa_dataset(x, y, w);
    let rng = rand_08::rngs::SmallRng::seed_from_u64(seed);
    let tree = DecisionTree::params()
        .max_depth(Some(p.max_depth as usize))
        .min_weight_leaf(p.min_weight_leaf as f32)
        .min_weight_split(2.0 * p.min_weight_leaf as f32);
    let forest = EnsembleLearnerParams::new_fixed_rng(tree, rng)
        .ensemble_size(p.trees as usize)
        .bootstrap_proportion(p.bootstrap_share)
        .feature_proportion(p.feature_share)
        .fit(&dataset)
        .map_err(|e| training_error("random-forest", e))?;
    let trees = forest
        .models
        .iter()
        .zip(&forest.model_features)
        .map(|(tree, features)| {
            let mut flat = ProbTree::from_linfa(tree.root_node(), features);
            flat.set_values(x, y, w);
            flat
        })
        .collect();
    Ok(Classifier::Trees { trees })
}

/// A design matrix's values column after column, as forust's fit wants them: borrowed when
/// the matrix is column-major already (as `Preprocessor::transform_for` builds it for gbdt),
/// else copied.
fn column_major(x: &Array2<f64>) -> Cow<'_, [f64]> {
    let columns = x.t();
    match columns.to_slice() {
        Some(values) => Cow::Borrowed(values),
        None => Cow::Owned(columns.iter().copied().collect()),
    }
}

fn fit_gbdt(
    p: &GbdtParams,
    x: &Array2<f64>,
    y: &[f64],
    w: &[f64],
    seed: u64,
) -> Result<Classifier> {
    let data = column_major(x);
    let matrix = Matrix::new(&data, x.nrows(), x.ncols());
    let mut booster = GradientBooster::default()
        .set_objective_type(forust_ml::objective::ObjectiveType::LogLoss)
        .set_iterations(p.iterations as usize)
        .set_learning_rate(p.learning_rate as f32)
        .set_max_depth(p.max_depth as usize)
        .set_l2(p.l2 as f32)
        .set_min_leaf_weight(p.min_leaf_weight as f32)
        .set_seed(seed)
        .set_parallel(true)
        // Histograms filled row by row from a tiled copy of the binned data: the column-wise
        // fill was half of a 1M-customer train (fit 41.3 s -> 27.7 s, the same test AUC), for
        // a second copy of the binned matrix (2 bytes per value).
        .set_tiled_histograms(true);
    booster
        .fit(&matrix, y, w, None)
        .map_err(|e| training_error("gbdt", e))?;
    Ok(Classifier::Gbdt {
        booster: Box::new(booster),
    })
}

impl Classifier {
    /// Churn probability of each row (before calibration).
    pub fn predict(&self, x: &Array2<f64>) -> Vec<f64> {
        match self {
            Classifier::Logistic {
                intercept,
                coefficients,
            } => x
                .rows()
                .into_iter()
                .map(|row| {
                    sigmoid(
                        intercept
                            + row
                                .iter()
                                .zip(coefficients)
                                .map(|(a, b)| a * b)
                                .sum::<f64>(),
                    )
                })
                .collect(),
            Classifier::Trees { trees } => x
                .rows()
                .into_iter()
                .map(|row| {
                    trees
                        .iter()
                        .map(|t| t.nodes[*t.path(row).last().expect("path")].value)
                        .sum::<f64>()
                        / trees.len() as f64
                })
                .collect(),
            Classifier::Gbdt { booster } => FlatBooster::new(booster)
                .raw_scores(x)
                .into_iter()
                .map(sigmoid)
                .collect(),
        }
    }

    /// [`Self::predict`] and [`Self::contributions`] of every row of `x`; for gbdt from one
    /// walk of the trees, with the same values.
    pub fn predict_and_contributions(&self, x: &Array2<f64>) -> (Vec<f64>, Array2<f64>) {
        match self {
            Classifier::Gbdt { booster } => {
                let (raw, contributions) =
                    FlatBooster::new(booster).raw_scores_and_contributions(x);
                (raw.into_iter().map(sigmoid).collect(), contributions)
            }
            _ => (self.predict(x), self.contributions(x)),
        }
    }

    /// Per row and design column, how much the column moved the score away from the
    /// model's baseline (log-odds for logistic and gbdt, probability for trees).
    pub fn contributions(&self, x: &Array2<f64>) -> Array2<f64> {
        let (n, p) = x.dim();
        let mut out = Array2::<f64>::zeros((n, p));
        match self {
            Classifier::Logistic { coefficients, .. } => {
                for ((i, j), v) in out.indexed_iter_mut() {
                    *v = coefficients[j] * x[[i, j]];
                }
            }
            Classifier::Trees { trees } => {
                let share = 1.0 / trees.len() as f64;
                let mut row_out = vec![0.0; p];
                for (i, row) in x.rows().into_iter().enumerate() {
                    row_out.iter_mut().for_each(|v| *v = 0.0);
                    for t in trees {
                        t.contributions(row, &mut row_out);
                    }
                    for j in 0..p {
                        out[[i, j]] = row_out[j] * share;
                    }
                }
            }
            Classifier::Gbdt { booster } => return FlatBooster::new(booster).contributions(x),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two clusters: churners have high x0; x1 is noise.
    fn toy() -> (Array2<f64>, Vec<f64>, Vec<f64>) {
        let n = 400;
        let mut x = Array2::<f64>::zeros((n, 2));
        let mut y = Vec::new();
        for i in 0..n {
            let churned = i % 4 == 0;
            x[[i, 0]] = if churned { 1.0 } else { -1.0 } + ((i * 37 % 11) as f64 - 5.0) / 10.0;
            x[[i, 1]] = ((i * 53 % 17) as f64 - 8.0) / 8.0;
            y.push(if churned { 1.0 } else { 0.0 });
        }
        (x, y, vec![1.0; n])
    }

    #[test]
    fn every_learner_separates_two_clusters() {
        let (x, y, w) = toy();
        for learner in [
            Learner::Logistic(LogisticParams::default()),
            Learner::DecisionTree(TreeParams::default()),
            Learner::RandomForest(ForestParams {
                trees: 10,
                ..ForestParams::default()
            }),
            Learner::Gbdt(GbdtParams {
                iterations: 50,
                ..GbdtParams::default()
            }),
        ] {
            let model = fit(&learner, &x, &y, &w, 7).unwrap();
            let p = model.predict(&x);
            for (pi, yi) in p.iter().zip(&y) {
                assert_eq!(*pi > 0.5, *yi > 0.5, "{learner:?} gave {pi} for label {yi}");
            }
        }
    }

    #[test]
    fn tree_contributions_add_up_to_the_prediction() {
        let (x, y, w) = toy();
        let model = fit(
            &Learner::RandomForest(ForestParams {
                trees: 5,
                ..ForestParams::default()
            }),
            &x,
            &y,
            &w,
            3,
        )
        .unwrap();
        let Classifier::Trees { trees } = &model else {
            panic!("a forest gives trees")
        };
        let root: f64 = trees.iter().map(|t| t.nodes[0].value).sum::<f64>() / trees.len() as f64;
        let p = model.predict(&x);
        let c = model.contributions(&x);
        for (row, pi) in c.rows().into_iter().zip(&p) {
            assert!((root + row.sum() - pi).abs() < 1e-9);
        }
    }

    #[test]
    fn logistic_contributions_are_coefficient_times_value() {
        let (x, y, w) = toy();
        let model = fit(&Learner::Logistic(LogisticParams::default()), &x, &y, &w, 1).unwrap();
        let Classifier::Logistic {
            intercept,
            coefficients,
        } = &model
        else {
            panic!("logistic regression gives coefficients")
        };
        assert!(
            coefficients[0] > 0.0,
            "high x0 means churn: {coefficients:?}"
        );
        let c = model.contributions(&x);
        let p = model.predict(&x);
        for (row, pi) in c.rows().into_iter().zip(&p) {
            assert!((sigmoid(intercept + row.sum()) - pi).abs() < 1e-12);
        }
    }
}
