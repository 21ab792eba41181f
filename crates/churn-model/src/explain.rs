//! Why a customer got their score: the three input features that pushed the churn risk up
//! most and the three that pulled it down most. Design-matrix contributions (coefficient ×
//! standardised value for logistic regression, path contributions for trees) are summed per
//! input feature, so a value and its missing-indicator, or the columns of one category,
//! count as one reason, told with the feature's description and the customer's value.

use std::cmp::Ordering;

use ndarray::{Array2, ArrayView1, s};
use serde::Serialize;

use crate::classifier::Classifier;
use crate::dataset::{Frame, Preprocessor};
use crate::parallel;

/// How many reasons each way.
pub const REASONS: usize = 3;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reason<'a> {
    /// The input feature's name (borrowed from the preprocessor: a copy per reason was an
    /// allocation for each of millions of reasons).
    pub feature: &'a str,
    /// e.g. `recency_days = 120 (days from the last purchase day before D to D)`.
    pub text: String,
    /// The feature's push on the score (log-odds for logistic and gbdt, probability for
    /// trees); positive raises the churn risk.
    pub contribution: f64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Explanation<'a> {
    /// Strongest first.
    pub up: Vec<Reason<'a>>,
    /// Strongest first; empty when only the reasons up were asked for.
    pub down: Vec<Reason<'a>>,
}

/// Which reasons to tell. Scoring stores only the reasons up; telling the others too was
/// about half of the reasons' cost, for texts that were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directions {
    UpOnly,
    UpAndDown,
}

/// One column of reason texts of many rows (each row's k-th strongest reason one way), the
/// texts back to back in one buffer. A test snapshot's six texts for each of 800k customers,
/// held as separate strings with a copy of each feature's name, took seconds of allocating
/// and of clearing fresh pages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TextColumn {
    text: String,
    /// Where each row's text ends in `text`; `None` for a row without this reason.
    ends: Vec<Option<usize>>,
}

impl TextColumn {
    fn push(&mut self, text: Option<&str>) {
        self.ends.push(text.map(|text| {
            self.text.push_str(text);
            self.text.len()
        }));
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Each row's text, in order.
    pub fn iter(&self) -> impl Iterator<Item = Option<&str>> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |end| {
            end.map(|end| {
                let text = &self.text[start..end];
                start = end;
                text
            })
        })
    }
}

/// The reason texts of many rows by direction and rank, as the registry stores a test
/// snapshot's and scoring a population's (the reasons up only).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReasonTexts {
    /// `up[k]`: each row's (k + 1)-th strongest reason up.
    pub up: [TextColumn; REASONS],
    /// `down[k]`: each row's (k + 1)-th strongest reason down; no rows when only the reasons
    /// up were asked for.
    pub down: [TextColumn; REASONS],
}

impl ReasonTexts {
    /// Adds a row's reasons in `directions`.
    fn push(&mut self, explanation: &Explanation, directions: Directions) {
        let told = match directions {
            Directions::UpOnly => 1,
            Directions::UpAndDown => 2,
        };
        let both = [
            (&explanation.up, &mut self.up),
            (&explanation.down, &mut self.down),
        ];
        for (reasons, columns) in both.into_iter().take(told) {
            for (k, column) in columns.iter_mut().enumerate() {
                column.push(reasons.get(k).map(|r| r.text.as_str()));
            }
        }
    }
}

/// The churn probability (before calibration) and reason texts in `directions` of every row of
/// `frame`, whose design matrix is `x`, explained a block of rows at a time
/// ([`explain_each`]).
pub fn predict_and_reason_texts(
    preprocessor: &Preprocessor,
    classifier: &Classifier,
    frame: &Frame,
    x: &Array2<f64>,
    directions: Directions,
) -> (Vec<f64>, ReasonTexts) {
    let mut probabilities = Vec::with_capacity(x.nrows());
    let mut texts = ReasonTexts::default();
    explain_each(
        preprocessor,
        classifier,
        frame,
        x,
        directions,
        |probability, explanation| {
            probabilities.push(probability);
            texts.push(explanation, directions);
        },
    );
    (probabilities, texts)
}

/// The churn probability (before calibration) and explanation of every row of `frame`, whose
/// design matrix is `x`, all at once: what the block-wise functions are checked against.
#[cfg(test)]
fn predict_and_explain<'a>(
    preprocessor: &'a Preprocessor,
    classifier: &Classifier,
    frame: &Frame,
    x: &Array2<f64>,
) -> (Vec<f64>, Vec<Explanation<'a>>) {
    explain_block(preprocessor, classifier, frame, x, 0, Directions::UpAndDown)
}

/// Rows explained at a time by [`explain_each`].
const BLOCK_ROWS: usize = 16_384;

/// Calls `visit` with the churn probability (before calibration) and explanation (the reasons
/// `directions` asks for) of every row of `frame` in order, explaining a block of rows at a
/// time: the contributions and reasons of a whole population (about 1 KB per customer) are
/// never held at once.
fn explain_each<'a>(
    preprocessor: &'a Preprocessor,
    classifier: &Classifier,
    frame: &Frame,
    x: &Array2<f64>,
    directions: Directions,
    mut visit: impl FnMut(f64, &Explanation<'a>),
) {
    for first_row in (0..x.nrows()).step_by(BLOCK_ROWS) {
        let rows = first_row..(first_row + BLOCK_ROWS).min(x.nrows());
        let block = x.slice(s![rows, ..]).to_owned();
        let (probabilities, explanations) = explain_block(
            preprocessor,
            classifier,
            frame,
            &block,
            first_row,
            directions,
        );
        for (probability, explanation) in probabilities.into_iter().zip(&explanations) {
            visit(probability, explanation);
        }
    }
}

/// Churn probabilities and explanations of rows `first_row..` of `frame`, whose design
/// matrix rows are `x`: a gbdt model's trees are walked once for both. The rows' reasons are
/// ranked and told on every core: a test snapshot's hundreds of thousands of rows, six texts
/// each, took seconds on one.
fn explain_block<'a>(
    preprocessor: &'a Preprocessor,
    classifier: &Classifier,
    frame: &Frame,
    x: &Array2<f64>,
    first_row: usize,
    directions: Directions,
) -> (Vec<f64>, Vec<Explanation<'a>>) {
    let (probabilities, contributions) = classifier.predict_and_contributions(x);
    let rows: Vec<usize> = (0..contributions.nrows()).collect();
    let explanations = parallel::map(&rows, |&block_row| {
        explain_row(
            preprocessor,
            frame,
            contributions.row(block_row),
            first_row + block_row,
            directions,
        )
    });
    (probabilities, explanations)
}

/// The explanation of row `row` of `frame` from its design-matrix contributions.
fn explain_row<'a>(
    preprocessor: &'a Preprocessor,
    frame: &Frame,
    contributions: ArrayView1<f64>,
    row: usize,
    directions: Directions,
) -> Explanation<'a> {
    let mut per_input = vec![0.0; preprocessor.inputs.len()];
    for (j, column) in preprocessor.columns.iter().enumerate() {
        per_input[column.input] += contributions[j];
    }
    let reason = |&(input, contribution): &(usize, f64)| Reason {
        feature: preprocessor.inputs[input].name.as_str(),
        text: preprocessor.describe_value(input, frame, row),
        contribution,
    };
    Explanation {
        up: strongest(&per_input, ranks_up, |c| c > 0.0)
            .iter()
            .map(reason)
            .collect(),
        down: match directions {
            Directions::UpOnly => Vec::new(),
            Directions::UpAndDown => strongest(&per_input, |a, b| ranks_up(b, a), |c| c < 0.0)
                .iter()
                .map(reason)
                .collect(),
        },
    }
}

/// The order of the reasons up: the larger push first, then the earlier input. The reasons
/// down are in the reverse order (the more negative push first, then the later input).
fn ranks_up(a: &(usize, f64), b: &(usize, f64)) -> Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// The first [`REASONS`] of the (input, push) pairs that `keep` accepts, in `order`: a
/// selection rather than a sort of every input of every row (sorting was ~2 % of scoring).
fn strongest(
    per_input: &[f64],
    order: impl Fn(&(usize, f64), &(usize, f64)) -> Ordering,
    keep: impl Fn(f64) -> bool,
) -> Vec<(usize, f64)> {
    let mut first: Vec<(usize, f64)> = Vec::with_capacity(REASONS + 1);
    for (input, &push) in per_input.iter().enumerate() {
        if !keep(push) {
            continue;
        }
        let candidate = (input, push);
        let at = first.partition_point(|f| order(f, &candidate) == Ordering::Less);
        if at < REASONS {
            first.insert(at, candidate);
            first.truncate(REASONS);
        }
    }
    first
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::dataset::Values;

    #[test]
    fn explaining_block_by_block_gives_each_row_its_own_reasons() {
        let rows = 2 * BLOCK_ROWS + 5;
        let mut frame = Frame {
            customer_ids: (0..rows).map(|i| format!("c{i}")).collect(),
            ..Frame::default()
        };
        let value = |column: usize, i: usize| match column {
            0 => i as f64,
            1 => ((i * 7) % 13) as f64,
            _ => (i as f64).sin(),
        };
        for (column, name) in ["f1", "f2", "f3"].into_iter().enumerate() {
            let values = (0..rows).map(|i| value(column, i)).collect();
            frame.columns.insert(name.into(), Values::Numeric(values));
        }
        let names: Vec<String> = ["f1", "f2", "f3"].map(String::from).to_vec();
        let p = Preprocessor::fit(&frame, &names, &HashMap::new());
        let x = p.transform(&frame).unwrap();
        let model = Classifier::Logistic {
            intercept: 0.0,
            coefficients: vec![1.0, -0.5, 2.0],
        };
        let (mut each, mut each_probability) = (Vec::new(), Vec::new());
        explain_each(
            &p,
            &model,
            &frame,
            &x,
            Directions::UpAndDown,
            |probability, e| {
                each_probability.push(probability);
                each.push(e.clone());
            },
        );
        let (probabilities, explanations) = predict_and_explain(&p, &model, &frame, &x);
        assert_eq!(each, explanations);
        assert_eq!(each_probability, probabilities);
        assert_eq!(probabilities, model.predict(&x));
        // The texts held column by column are each row's reasons in rank order, none where a
        // row has fewer.
        let (text_probabilities, texts) =
            predict_and_reason_texts(&p, &model, &frame, &x, Directions::UpAndDown);
        assert_eq!(text_probabilities, probabilities);
        for (k, column) in texts.up.iter().chain(&texts.down).enumerate() {
            assert_eq!(column.len(), rows);
            let expected = explanations.iter().map(|e| {
                let reasons = if k < REASONS { &e.up } else { &e.down };
                reasons.get(k % REASONS).map(|r| r.text.as_str())
            });
            assert!(column.iter().eq(expected), "column {k}");
        }
        assert!(texts.down[2].iter().any(|t| t.is_none()));
        // The last row's reasons tell its own values.
        let last = &each[rows - 1];
        let told: Vec<&str> = last
            .up
            .iter()
            .chain(&last.down)
            .map(|r| r.text.as_str())
            .collect();
        assert!(
            told.iter()
                .any(|t| t.starts_with(&format!("f1 = {}", rows - 1))),
            "{told:?}"
        );
    }

    #[test]
    fn the_strongest_reasons_are_those_a_full_ranking_puts_first() {
        // Pushes from a small set, so that ties (and zeros of both signs) are common, also
        // at the third place; the reference ranks every input and takes the first three.
        let pool = [2.0, 1.0, 0.5, 0.0, -0.0, -0.5, -1.0, -2.0, 1.0, -1.0];
        let mut state = 7_u64;
        for inputs in 0..40 {
            let per_input: Vec<f64> = (0..inputs)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    pool[(state >> 33) as usize % pool.len()]
                })
                .collect();
            let mut ranked: Vec<(usize, f64)> = per_input.iter().copied().enumerate().collect();
            ranked.sort_by(ranks_up);
            let up: Vec<(usize, f64)> = ranked
                .iter()
                .copied()
                .filter(|r| r.1 > 0.0)
                .take(REASONS)
                .collect();
            let down: Vec<(usize, f64)> = ranked
                .iter()
                .rev()
                .copied()
                .filter(|r| r.1 < 0.0)
                .take(REASONS)
                .collect();
            assert_eq!(
                strongest(&per_input, ranks_up, |c| c > 0.0),
                up,
                "{per_input:?}"
            );
            assert_eq!(
                strongest(&per_input, |a, b| ranks_up(b, a), |c| c < 0.0),
                down,
                "{per_input:?}"
            );
        }
        // Worked by hand: ties go to the earlier input up, to the later input down.
        let per_input = [1.0, -1.0, 2.0, 1.0, -1.0, 1.0, -3.0];
        assert_eq!(
            strongest(&per_input, ranks_up, |c| c > 0.0),
            [(2, 2.0), (0, 1.0), (3, 1.0)]
        );
        assert_eq!(
            strongest(&per_input, |a, b| ranks_up(b, a), |c| c < 0.0),
            [(6, -3.0), (4, -1.0), (1, -1.0)]
        );
    }

    #[test]
    fn logistic_reasons_are_ranked_products_of_coefficient_and_value() {
        let mut frame = Frame {
            customer_ids: vec!["a".into(), "b".into()],
            ..Frame::default()
        };
        for (name, v) in [
            ("f1", [1.0, 3.0]),
            ("f2", [2.0, 2.0 + 1e-9]),
            ("f3", [5.0, 1.0]),
            ("f4", [0.0, 2.0]),
        ] {
            frame
                .columns
                .insert(name.into(), Values::Numeric(v.to_vec()));
        }
        let names: Vec<String> = ["f1", "f2", "f3", "f4"].map(String::from).to_vec();
        let descriptions = HashMap::from([("f1".to_string(), "first".to_string())]);
        let p = Preprocessor::fit(&frame, &names, &descriptions);
        let x = p.transform(&frame).unwrap();
        // Standardised: f1 -> [-1, 1], f3 -> [1, -1], f4 -> [-1, 1], f2 almost constant.
        let model = Classifier::Logistic {
            intercept: 0.0,
            coefficients: vec![2.0, 0.0, 0.5, -1.0],
        };
        let (_, e) = predict_and_explain(&p, &model, &frame, &x);
        // Row b: f1 +2, f3 -0.5, f4 -1.
        assert_eq!(e[1].up.len(), 1);
        assert_eq!(e[1].up[0].feature, "f1");
        assert_eq!(e[1].up[0].text, "f1 = 3 (first)");
        assert!((e[1].up[0].contribution - 2.0).abs() < 1e-9);
        let down: Vec<&str> = e[1].down.iter().map(|r| r.feature).collect();
        assert_eq!(down, ["f4", "f3"]);
        // Row a: f4 +1, f3 +0.5 up; f1 -2 down.
        let up: Vec<&str> = e[0].up.iter().map(|r| r.feature).collect();
        assert_eq!(up, ["f4", "f3"]);
        // Asked for the reasons up only, each row has the same reasons up and none down.
        let mut up_only = Vec::new();
        explain_each(&p, &model, &frame, &x, Directions::UpOnly, |_, e| {
            up_only.push(e.clone())
        });
        assert_eq!(up_only.len(), 2);
        for (only, both) in up_only.iter().zip(&e) {
            assert_eq!(only.up, both.up);
            assert!(only.down.is_empty());
        }
        assert!(!e[0].down.is_empty());
        // The texts held for the reasons up only: the same columns up, no rows down.
        let (_, both) = predict_and_reason_texts(&p, &model, &frame, &x, Directions::UpAndDown);
        let (_, only) = predict_and_reason_texts(&p, &model, &frame, &x, Directions::UpOnly);
        assert_eq!(only.up, both.up);
        assert!(only.down.iter().all(|column| column.is_empty()));
        assert!(both.down.iter().all(|column| column.len() == 2));
    }
}
