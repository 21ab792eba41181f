//! Turning raw scores into calibrated churn probabilities, fitted on a held-out time slice
//! the learner never saw: Platt scaling (a logistic regression on the score's log-odds) or
//! isotonic regression (pool-adjacent-violators).

use serde::{Deserialize, Serialize};

use crate::classifier::sigmoid;
use crate::spec::Calibration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Calibrator {
    /// p = sigmoid(a · logit(s) + b).
    Platt {
        a: f64,
        b: f64,
    },
    /// Step function: scores at or above `thresholds[k]` (and below the next) map to
    /// `values[k]`; below the first threshold, `values[0]`.
    Isotonic {
        thresholds: Vec<f64>,
        values: Vec<f64>,
    },
    Identity,
}

fn logit(s: f64) -> f64 {
    let s = s.clamp(1e-9, 1.0 - 1e-9);
    (s / (1.0 - s)).ln()
}

impl Calibrator {
    pub fn fit(kind: Calibration, scores: &[f64], labels: &[f64]) -> Calibrator {
        match kind {
            Calibration::Platt => fit_platt(scores, labels),
            Calibration::Isotonic => fit_isotonic(scores, labels),
            Calibration::None => Calibrator::Identity,
        }
    }

    pub fn apply(&self, score: f64) -> f64 {
        match self {
            Calibrator::Platt { a, b } => sigmoid(a * logit(score) + b),
            Calibrator::Isotonic { thresholds, values } => {
                let k = thresholds.partition_point(|t| *t <= score);
                values[k.saturating_sub(1)]
            }
            Calibrator::Identity => score,
        }
    }
}

/// Newton's method on the log-loss of (a, b), with Platt's smoothed targets so a perfectly
/// separated slice does not send the slope to infinity.
fn fit_platt(scores: &[f64], labels: &[f64]) -> Calibrator {
    let positives: f64 = labels.iter().sum();
    let negatives = labels.len() as f64 - positives;
    let hi = (positives + 1.0) / (positives + 2.0);
    let lo = 1.0 / (negatives + 2.0);
    let z: Vec<f64> = scores.iter().map(|&s| logit(s)).collect();
    let t: Vec<f64> = labels
        .iter()
        .map(|&y| if y > 0.5 { hi } else { lo })
        .collect();
    let (mut a, mut b) = (1.0, 0.0);
    for _ in 0..100 {
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 1e-12, 0.0, 1e-12);
        for (zi, ti) in z.iter().zip(&t) {
            let p = sigmoid(a * zi + b);
            let d = p - ti;
            let w = p * (1.0 - p);
            ga += d * zi;
            gb += d;
            haa += w * zi * zi;
            hab += w * zi;
            hbb += w;
        }
        let det = haa * hbb - hab * hab;
        if det.abs() < 1e-300 {
            break;
        }
        let da = (hbb * ga - hab * gb) / det;
        let db = (haa * gb - hab * ga) / det;
        a -= da;
        b -= db;
        if da.abs() < 1e-10 && db.abs() < 1e-10 {
            break;
        }
    }
    Calibrator::Platt { a, b }
}

fn fit_isotonic(scores: &[f64], labels: &[f64]) -> Calibrator {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&i, &j| scores[i].total_cmp(&scores[j]));
    // Blocks of (first score, sum of labels, count), merged while they decrease.
    let mut blocks: Vec<(f64, f64, f64)> = Vec::new();
    for i in order {
        match blocks.last_mut() {
            Some(last) if last.0 == scores[i] => {
                last.1 += labels[i];
                last.2 += 1.0;
            }
            _ => blocks.push((scores[i], labels[i], 1.0)),
        }
        while blocks.len() >= 2 {
            let n = blocks.len();
            let (prev, last) = (blocks[n - 2], blocks[n - 1]);
            if prev.1 / prev.2 >= last.1 / last.2 {
                blocks[n - 2] = (prev.0, prev.1 + last.1, prev.2 + last.2);
                blocks.pop();
            } else {
                break;
            }
        }
    }
    if blocks.is_empty() {
        return Calibrator::Identity;
    }
    Calibrator::Isotonic {
        thresholds: blocks.iter().map(|b| b.0).collect(),
        values: blocks.iter().map(|b| b.1 / b.2).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isotonic_pools_adjacent_violators() {
        // Labels by score: 0.1->1, 0.2->0, 0.3->0, 0.4->1: first three pool to 1/3.
        let c = fit_isotonic(&[0.1, 0.2, 0.3, 0.4], &[1.0, 0.0, 0.0, 1.0]);
        assert!((c.apply(0.15) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(c.apply(0.4), 1.0);
        assert!((c.apply(0.0) - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn platt_recovers_a_known_mapping() {
        // True P(y=1 | s) = sigmoid(2 logit(s) - 1); expected counts as fractional labels.
        let mut scores = Vec::new();
        let mut labels = Vec::new();
        for k in 1..100 {
            let s = k as f64 / 100.0;
            let p = sigmoid(2.0 * logit(s) - 1.0);
            let positives = (p * 1000.0).round() as usize;
            for i in 0..1000 {
                scores.push(s);
                labels.push(if i < positives { 1.0 } else { 0.0 });
            }
        }
        let Calibrator::Platt { a, b } = fit_platt(&scores, &labels) else {
            unreachable!()
        };
        assert!(
            (a - 2.0).abs() < 0.01 && (b + 1.0).abs() < 0.01,
            "a={a} b={b}"
        );
    }
}
