//! Why a customer got their score: the three input features that pushed the churn risk up
//! most and the three that pulled it down most. Design-matrix contributions (coefficient ×
//! standardised value for logistic regression, path contributions for trees) are summed per
//! input feature, so a value and its missing-indicator, or the columns of one category,
//! count as one reason, told with the feature's description and the customer's value.

use ndarray::Array2;
use serde::Serialize;

use crate::classifier::Classifier;
use crate::dataset::{Frame, Preprocessor};

/// How many reasons each way.
pub const REASONS: usize = 3;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reason {
    pub feature: String,
    /// e.g. `recency_days = 120 (days from the last purchase day before D to D)`.
    pub text: String,
    /// The feature's push on the score (log-odds for logistic and gbdt, probability for
    /// trees); positive raises the churn risk.
    pub contribution: f64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Explanation {
    /// Strongest first.
    pub up: Vec<Reason>,
    pub down: Vec<Reason>,
}

/// Explanations of every row of `frame`, whose design matrix is `x`.
pub fn explain(
    preprocessor: &Preprocessor,
    classifier: &Classifier,
    frame: &Frame,
    x: &Array2<f64>,
) -> Vec<Explanation> {
    let contributions = classifier.contributions(x);
    let inputs = preprocessor.inputs.len();
    contributions
        .rows()
        .into_iter()
        .enumerate()
        .map(|(row, c)| {
            let mut per_input = vec![0.0; inputs];
            for (j, column) in preprocessor.columns.iter().enumerate() {
                per_input[column.input] += c[j];
            }
            let mut ranked: Vec<(usize, f64)> = per_input.into_iter().enumerate().collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let reason = |&(input, contribution): &(usize, f64)| Reason {
                feature: preprocessor.inputs[input].name.clone(),
                text: preprocessor.describe_value(input, frame, row),
                contribution,
            };
            Explanation {
                up: ranked
                    .iter()
                    .filter(|r| r.1 > 0.0)
                    .take(REASONS)
                    .map(reason)
                    .collect(),
                down: ranked
                    .iter()
                    .rev()
                    .filter(|r| r.1 < 0.0)
                    .take(REASONS)
                    .map(reason)
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::dataset::Values;

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
        let e = explain(&p, &model, &frame, &x);
        // Row b: f1 +2, f3 -0.5, f4 -1.
        assert_eq!(e[1].up.len(), 1);
        assert_eq!(e[1].up[0].feature, "f1");
        assert_eq!(e[1].up[0].text, "f1 = 3 (first)");
        assert!((e[1].up[0].contribution - 2.0).abs() < 1e-9);
        let down: Vec<&str> = e[1].down.iter().map(|r| r.feature.as_str()).collect();
        assert_eq!(down, ["f4", "f3"]);
        // Row a: f4 +1, f3 +0.5 up; f1 -2 down.
        let up: Vec<&str> = e[0].up.iter().map(|r| r.feature.as_str()).collect();
        assert_eq!(up, ["f4", "f3"]);
    }
}
