//! Scoring and explaining forust's gradient-boosted trees a block of rows at a time. forust
//! scores one tree over every row at a time, with a fresh vector of every row's leaf weight
//! per tree and the column-major matrix read at scattered places, and copies each row into a
//! fresh vector to explain it; the test and calibration scores and explanations of a
//! 1M-customer training run took seconds that way. Here the trees are flattened into one
//! compact array, a block of rows is copied row after row, and rows walk each tree together.
//! A row's score starts at the base score and adds the leaf weights in tree order, and its
//! contributions add the same differences in the same order as forust's: the same bits.

use forust_ml::GradientBooster;
use ndarray::Array2;

use crate::parallel;

/// A node of a flattened tree; children are indices into [`FlatBooster::nodes`].
struct FlatNode {
    split_value: f64,
    /// The node's weight (the leaf weight for a leaf), as forust adds it: `f32` widened.
    weight: f64,
    /// The column the split reads; column 0 for a leaf, which reads it and stays put.
    column: usize,
    /// The left and the right child; a leaf's are itself.
    children: [usize; 2],
    /// Where a missing value goes; a leaf's is itself.
    missing: usize,
    is_leaf: bool,
}

/// The trees a booster predicts with, flattened.
pub(crate) struct FlatBooster {
    nodes: Vec<FlatNode>,
    roots: Vec<usize>,
    /// Each tree's depth: the most splits on a path from its root to a leaf.
    depths: Vec<usize>,
    base_score: f64,
    missing: f64,
}

impl FlatBooster {
    pub(crate) fn new(booster: &GradientBooster) -> Self {
        let used = booster
            .prediction_iteration
            .unwrap_or(booster.trees.len())
            .min(booster.trees.len());
        let mut nodes = Vec::new();
        let mut roots = Vec::with_capacity(used);
        let mut depths = Vec::with_capacity(used);
        for tree in &booster.trees[..used] {
            let offset = nodes.len();
            roots.push(offset);
            nodes.extend(tree.nodes.iter().enumerate().map(|(k, node)| {
                let here = offset + k;
                let (column, children, missing) = if node.is_leaf {
                    (0, [here, here], here)
                } else {
                    (
                        node.split_feature,
                        [offset + node.left_child, offset + node.right_child],
                        offset + node.missing_node,
                    )
                };
                FlatNode {
                    split_value: node.split_value,
                    weight: node.weight_value as f64,
                    column,
                    children,
                    missing,
                    is_leaf: node.is_leaf,
                }
            }));
            depths.push(depth_below(&nodes, offset));
        }
        Self {
            nodes,
            roots,
            depths,
            base_score: booster.base_score,
            missing: booster.missing,
        }
    }

    /// forust's test for a missing value.
    fn is_missing(&self, value: f64) -> bool {
        if self.missing.is_nan() {
            value.is_nan()
        } else {
            value == self.missing
        }
    }

    /// The child of `node` that `row` goes to (a leaf's is itself): left below the split
    /// value, else right (as forust, a NaN that is not the missing value goes right).
    fn child(&self, node: &FlatNode, row: &[f64]) -> usize {
        let value = row[node.column];
        // An index rather than a branch: which way a row goes is a coin toss to the
        // processor, and a mispredicted branch per node was most of the time. Not `>=`: a NaN
        // goes right, as in forust's `else`. Both ways are found before the test for a missing
        // value picks one, so that test can be a select rather than a branch too.
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        let right = !(value < node.split_value);
        let present = node.children[usize::from(right)];
        if self.is_missing(value) {
            node.missing
        } else {
            present
        }
    }

    /// Walks every tree with each of the `rows` rows of `width` values laid one after the
    /// other in `block`: `step(row, node, child)` for each step a row takes, `leaf(row, leaf)`
    /// where it ends; for each row, tree after tree in order. Rows walk a tree [`LANES`] at a
    /// time, so that their walks (each a chain of dependent loads) overlap, and each takes as
    /// many steps as the tree is deep: a row at a leaf steps from it to itself (`child` is
    /// `node`), so no lane waits on a test for a leaf whose answer differs from row to row.
    fn walk(
        &self,
        block: &[f64],
        rows: usize,
        width: usize,
        mut step: impl FnMut(usize, &FlatNode, &FlatNode),
        mut leaf: impl FnMut(usize, &FlatNode),
    ) {
        for first in (0..rows).step_by(LANES) {
            let lanes = LANES.min(rows - first);
            for (&root, &depth) in self.roots.iter().zip(&self.depths) {
                let mut at = [root; LANES];
                for _ in 0..depth {
                    for (k, node) in at.iter_mut().enumerate().take(lanes) {
                        let row = first + k;
                        let here = &self.nodes[*node];
                        let child = self.child(here, &block[row * width..(row + 1) * width]);
                        step(row, here, &self.nodes[child]);
                        *node = child;
                    }
                }
                for (k, node) in at.iter().enumerate().take(lanes) {
                    leaf(first + k, &self.nodes[*node]);
                }
            }
        }
    }

    /// The log-odds score of every row of `x`, on every core: the base score plus the leaf
    /// weights in tree order, as forust adds them.
    pub(crate) fn raw_scores(&self, x: &Array2<f64>) -> Vec<f64> {
        map_row_blocks(x, |block, rows| {
            let mut scores = vec![self.base_score; rows];
            self.walk(block, rows, x.ncols(), |_, _, _| {}, add_leaf(&mut scores));
            scores
        })
    }

    /// Per row of `x` and design column, the column's contribution to the row's log-odds
    /// score (forust's `ContributionsMethod::Weight`), on every core.
    pub(crate) fn contributions(&self, x: &Array2<f64>) -> Array2<f64> {
        let (n, width) = x.dim();
        let values = map_row_blocks(x, |block, rows| {
            let mut out = vec![0.0; block.len()];
            self.walk(block, rows, width, add_step(&mut out, width), |_, _| {});
            out
        });
        Array2::from_shape_vec((n, width), values).expect("n rows of width values")
    }

    /// [`Self::raw_scores`] and [`Self::contributions`] of every row of `x` from one walk of
    /// the trees (the walk is most of either's time): the same values as each alone.
    pub(crate) fn raw_scores_and_contributions(&self, x: &Array2<f64>) -> (Vec<f64>, Array2<f64>) {
        let (n, width) = x.dim();
        let blocks = each_row_block(x, |block, rows| {
            let mut scores = vec![self.base_score; rows];
            let mut out = vec![0.0; block.len()];
            self.walk(
                block,
                rows,
                width,
                add_step(&mut out, width),
                add_leaf(&mut scores),
            );
            (scores, out)
        });
        let mut scores = Vec::with_capacity(n);
        let mut values = Vec::with_capacity(n * width);
        for (block_scores, block_values) in blocks {
            scores.extend(block_scores);
            values.extend(block_values);
        }
        let contributions =
            Array2::from_shape_vec((n, width), values).expect("n rows of width values");
        (scores, contributions)
    }
}

/// Adds each leaf's weight to its row's score.
fn add_leaf(scores: &mut [f64]) -> impl FnMut(usize, &FlatNode) + '_ {
    |row, leaf| scores[row] += leaf.weight
}

/// The most splits on a path from `root` down to a leaf, in `nodes` flattened with their
/// leaves stepping to themselves. Each node is visited once (a missing branch that is also
/// the left or right child is not followed twice).
fn depth_below(nodes: &[FlatNode], root: usize) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(root, 0)];
    while let Some((at, depth)) = stack.pop() {
        let node = &nodes[at];
        if node.is_leaf {
            deepest = deepest.max(depth);
            continue;
        }
        let [left, right] = node.children;
        stack.push((left, depth + 1));
        stack.push((right, depth + 1));
        if node.missing != left && node.missing != right {
            stack.push((node.missing, depth + 1));
        }
    }
    deepest
}

/// forust's "weight" contributions, without its bias column: for every node on a row's path,
/// the child's weight minus the node's, added to the node's split feature, in forust's order.
/// A leaf's step to itself adds +0.0 to column 0, which changes no bits: a sum that starts at
/// +0.0 is never -0.0 (x + -x is +0.0).
fn add_step(out: &mut [f64], width: usize) -> impl FnMut(usize, &FlatNode, &FlatNode) + '_ {
    move |row, node, child| out[row * width + node.column] += child.weight - node.weight
}

/// `f(block, rows)` of each block of rows of `x` laid row after row, on every core, the
/// results joined in row order.
fn map_row_blocks<T: Send>(x: &Array2<f64>, f: impl Fn(&[f64], usize) -> Vec<T> + Sync) -> Vec<T> {
    each_row_block(x, f).into_iter().flatten().collect()
}

/// `f(block, rows)` of each block of rows of `x` laid row after row, on every core, in row
/// order.
fn each_row_block<T: Send>(x: &Array2<f64>, f: impl Fn(&[f64], usize) -> T + Sync) -> Vec<T> {
    let rows: Vec<usize> = (0..x.nrows()).collect();
    parallel::map_chunks(&rows, |chunk| f(&row_major(x, chunk), chunk.len()))
}

/// Rows walking a tree together.
const LANES: usize = 8;

/// Rows `rows` of `x` one after the other, read a column at a time (gbdt's design matrices
/// are column-major).
fn row_major(x: &Array2<f64>, rows: &[usize]) -> Vec<f64> {
    let width = x.ncols();
    let mut block = vec![0.0; rows.len() * width];
    for (j, column) in x.columns().into_iter().enumerate() {
        for (k, &r) in rows.iter().enumerate() {
            block[k * width + j] = column[r];
        }
    }
    block
}

#[cfg(test)]
mod tests {
    use forust_ml::data::Matrix;
    use ndarray::ShapeBuilder;

    use super::*;

    #[test]
    fn flattened_trees_score_every_row_as_forust_does_to_the_bit() {
        // Three columns, one with missing values, so that missing branches are taken.
        let n = 3000;
        let mut x = Array2::<f64>::zeros((n, 3));
        let mut y = Vec::new();
        for i in 0..n {
            let a = ((i * 37) % 101) as f64 / 10.0;
            let b = ((i * 53) % 17) as f64 - 8.0;
            let c = if i % 7 == 0 {
                f64::NAN
            } else {
                ((i * 11) % 13) as f64
            };
            x[[i, 0]] = a;
            x[[i, 1]] = b;
            x[[i, 2]] = c;
            y.push(if a + b / 4.0 + if c.is_nan() { 2.0 } else { 0.0 } > 6.0 {
                1.0
            } else {
                0.0
            });
        }
        let columns: Vec<f64> = x.t().iter().copied().collect();
        let matrix = Matrix::new(&columns, n, 3);
        let mut booster = GradientBooster::default()
            .set_objective_type(forust_ml::objective::ObjectiveType::LogLoss)
            .set_iterations(40)
            .set_max_depth(4)
            .set_parallel(false);
        booster.fit(&matrix, &y, &vec![1.0; n], None).unwrap();
        let expected = booster.predict(&matrix, false);
        // Row-major and column-major layouts of the same rows score alike.
        let flat = FlatBooster::new(&booster);
        assert_eq!(flat.raw_scores(&x), expected);
        let column_major = Array2::from_shape_vec((n, 3).f(), columns.clone()).unwrap();
        assert_eq!(flat.raw_scores(&column_major), expected);
        // Contributions, row after row, without forust's bias column.
        let forust_contributions = booster.predict_contributions(
            &matrix,
            forust_ml::gradientbooster::ContributionsMethod::Weight,
            false,
        );
        let ours = flat.contributions(&column_major);
        for i in 0..n {
            assert_eq!(
                ours.row(i).to_vec(),
                forust_contributions[i * 4..i * 4 + 3].to_vec(),
                "row {i}"
            );
        }
        // Both from one walk: forust's scores and contributions again.
        let (scores, contributions) = flat.raw_scores_and_contributions(&column_major);
        assert_eq!(scores, expected);
        assert_eq!(contributions, ours);
    }
}
