//! Evaluation metrics for churn scores against observed labels. Ties are handled the way a
//! fair tie-break would on average, so a score that ranks many customers equal (such as a
//! "no purchase in N days" rule) is measured for what it is, neither flattered nor punished.

use serde::{Deserialize, Deserializer, Serialize};

/// JSON has no NaN: serde_json writes it as `null`. Reads `null` back as NaN (an empty
/// calibration bin has no mean score), so stored metrics round-trip.
pub fn f64_or_nan<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

/// One bin of a calibration table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    /// Scores in [lower, upper).
    pub lower: f64,
    pub upper: f64,
    pub customers: u64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub mean_score: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub churn_rate: f64,
}

/// The metrics of one scorer on one labelled snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    #[serde(deserialize_with = "f64_or_nan")]
    pub roc_auc: f64,
    /// Average precision (area under the precision-recall step curve).
    #[serde(deserialize_with = "f64_or_nan")]
    pub pr_auc: f64,
    /// Churn rate among the top 10 % of scores divided by the overall churn rate.
    #[serde(deserialize_with = "f64_or_nan")]
    pub top_decile_lift: f64,
    /// Mean squared difference between score and label.
    #[serde(deserialize_with = "f64_or_nan")]
    pub brier: f64,
    pub calibration: Vec<CalibrationBin>,
    pub customers: u64,
    pub churners: u64,
}

/// Groups of tied scores, highest score first: (score, rows, churners, weight of churners).
fn tie_groups(scores: &[f64], labels: &[f64]) -> Vec<(f64, f64, f64)> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut groups: Vec<(f64, f64, f64)> = Vec::new();
    for i in order {
        match groups.last_mut() {
            Some(g) if g.0 == scores[i] => {
                g.1 += 1.0;
                g.2 += labels[i];
            }
            _ => groups.push((scores[i], 1.0, labels[i])),
        }
    }
    groups
}

/// Area under the ROC curve (Mann-Whitney, ties count half). NaN without both classes.
pub fn roc_auc(scores: &[f64], labels: &[f64]) -> f64 {
    let positives: f64 = labels.iter().sum();
    let negatives = labels.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return f64::NAN;
    }
    // Walk from the lowest score up, counting negatives already passed.
    let mut wins = 0.0;
    let mut negatives_below = 0.0;
    for (_, rows, pos) in tie_groups(scores, labels).into_iter().rev() {
        let neg = rows - pos;
        wins += pos * (negatives_below + neg / 2.0);
        negatives_below += neg;
    }
    wins / (positives * negatives)
}

/// Average precision: the sum over tie groups of recall gained times precision after the
/// group (a tie group is taken whole, as any threshold must).
pub fn pr_auc(scores: &[f64], labels: &[f64]) -> f64 {
    let positives: f64 = labels.iter().sum();
    if positives == 0.0 {
        return f64::NAN;
    }
    let (mut taken, mut hits, mut area) = (0.0, 0.0, 0.0);
    for (_, rows, pos) in tie_groups(scores, labels) {
        taken += rows;
        hits += pos;
        area += (pos / positives) * (hits / taken);
    }
    area
}

/// Expected churners among the `k` highest scores when ties at the cut are broken at random.
fn churners_in_top(scores: &[f64], labels: &[f64], k: f64) -> f64 {
    let (mut taken, mut hits) = (0.0, 0.0);
    for (_, rows, pos) in tie_groups(scores, labels) {
        if taken + rows <= k {
            taken += rows;
            hits += pos;
        } else {
            hits += pos * (k - taken) / rows;
            break;
        }
    }
    hits
}

/// Churn rate in the top 10 % (rounded up to whole customers) over the overall churn rate.
pub fn top_decile_lift(scores: &[f64], labels: &[f64]) -> f64 {
    let n = labels.len() as f64;
    let positives: f64 = labels.iter().sum();
    if n == 0.0 || positives == 0.0 {
        return f64::NAN;
    }
    let k = (n * 0.1).ceil();
    (churners_in_top(scores, labels, k) / k) / (positives / n)
}

pub fn brier(scores: &[f64], labels: &[f64]) -> f64 {
    scores
        .iter()
        .zip(labels)
        .map(|(s, y)| (s - y).powi(2))
        .sum::<f64>()
        / labels.len().max(1) as f64
}

/// Ten equal-width bins of the score over [0, 1] (1.0 falls in the last bin); empty bins are
/// kept with NaN means so the table always has ten rows.
pub fn calibration_table(scores: &[f64], labels: &[f64]) -> Vec<CalibrationBin> {
    let mut bins = vec![(0u64, 0.0f64, 0.0f64); 10];
    for (s, y) in scores.iter().zip(labels) {
        let b = ((s.clamp(0.0, 1.0) * 10.0).floor() as usize).min(9);
        bins[b].0 += 1;
        bins[b].1 += s;
        bins[b].2 += y;
    }
    bins.into_iter()
        .enumerate()
        .map(|(b, (n, sum, pos))| CalibrationBin {
            lower: b as f64 / 10.0,
            upper: (b + 1) as f64 / 10.0,
            customers: n,
            mean_score: if n > 0 { sum / n as f64 } else { f64::NAN },
            churn_rate: if n > 0 { pos / n as f64 } else { f64::NAN },
        })
        .collect()
}

pub fn evaluate(scores: &[f64], labels: &[f64]) -> Metrics {
    Metrics {
        roc_auc: roc_auc(scores, labels),
        pr_auc: pr_auc(scores, labels),
        top_decile_lift: top_decile_lift(scores, labels),
        brier: brier(scores, labels),
        calibration: calibration_table(scores, labels),
        customers: labels.len() as u64,
        churners: labels.iter().sum::<f64>() as u64,
    }
}

/// Precision and recall of flagging everyone whose score is at least `threshold`.
pub fn precision_recall_at(scores: &[f64], labels: &[f64], threshold: f64) -> (f64, f64) {
    let positives: f64 = labels.iter().sum();
    let (mut flagged, mut hits) = (0.0, 0.0);
    for (s, y) in scores.iter().zip(labels) {
        if *s >= threshold {
            flagged += 1.0;
            hits += y;
        }
    }
    let precision = if flagged > 0.0 {
        hits / flagged
    } else {
        f64::NAN
    };
    (
        precision,
        if positives > 0.0 {
            hits / positives
        } else {
            f64::NAN
        },
    )
}

/// The highest recall of any threshold on the scores whose precision is at least
/// `precision`; 0 when no threshold reaches it.
pub fn recall_at_precision(scores: &[f64], labels: &[f64], precision: f64) -> f64 {
    let positives: f64 = labels.iter().sum();
    if positives == 0.0 {
        return f64::NAN;
    }
    let (mut taken, mut hits, mut best) = (0.0, 0.0, 0.0f64);
    for (_, rows, pos) in tie_groups(scores, labels) {
        taken += rows;
        hits += pos;
        if hits / taken >= precision - 1e-12 {
            best = best.max(hits / positives);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_with_empty_calibration_bins_survive_a_json_round_trip() {
        let metrics = evaluate(&[0.9, 0.8, 0.2], &[1.0, 1.0, 0.0]);
        assert!(metrics.calibration.iter().any(|b| b.mean_score.is_nan()));
        let text = serde_json::to_string(&metrics).unwrap();
        let back: Metrics = serde_json::from_str(&text).unwrap();
        assert_eq!(back.roc_auc, metrics.roc_auc);
        assert_eq!(back.calibration.len(), metrics.calibration.len());
        for (a, b) in back.calibration.iter().zip(&metrics.calibration) {
            assert!(
                a.mean_score == b.mean_score || (a.mean_score.is_nan() && b.mean_score.is_nan())
            );
        }
    }

    #[test]
    fn roc_auc_matches_a_hand_count_with_ties() {
        // Pairs (pos, neg): pos 0.9 beats all 3 neg; pos 0.5 ties neg 0.5 (half), beats 0.1 and 0.2.
        let scores = [0.9, 0.5, 0.5, 0.2, 0.1];
        let labels = [1.0, 1.0, 0.0, 0.0, 0.0];
        assert!((roc_auc(&scores, &labels) - (3.0 + 2.5) / 6.0).abs() < 1e-12);
    }

    #[test]
    fn average_precision_by_hand() {
        let scores = [0.9, 0.8, 0.7, 0.6];
        let labels = [1.0, 0.0, 1.0, 0.0];
        // recall steps at ranks 1 and 3: 0.5 * 1/1 + 0.5 * 2/3.
        assert!((pr_auc(&scores, &labels) - (0.5 + 1.0 / 3.0)).abs() < 1e-12);
    }

    #[test]
    fn top_decile_lift_splits_ties_at_the_cut() {
        // 20 customers, top 2 taken; 4 tied at the top with 2 churners -> 1 expected churner.
        let mut scores = vec![1.0; 4];
        scores.extend(vec![0.0; 16]);
        let mut labels = vec![1.0, 1.0, 0.0, 0.0];
        labels.extend(vec![0.0; 14]);
        labels.extend(vec![1.0, 1.0]);
        // precision in top 2 = 0.5; base rate 4/20 = 0.2; lift 2.5.
        assert!((top_decile_lift(&scores, &labels) - 2.5).abs() < 1e-12);
    }

    #[test]
    fn recall_at_precision_takes_the_best_threshold() {
        let scores = [0.9, 0.8, 0.7, 0.6, 0.5];
        let labels = [1.0, 1.0, 0.0, 1.0, 0.0];
        assert_eq!(recall_at_precision(&scores, &labels, 0.75), 1.0);
        assert!((recall_at_precision(&scores, &labels, 0.9) - 2.0 / 3.0).abs() < 1e-12);
        let (p, r) = precision_recall_at(&scores, &labels, 0.7);
        assert!((p - 2.0 / 3.0).abs() < 1e-12 && (r - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn calibration_table_has_ten_bins() {
        let t = calibration_table(&[0.05, 0.95, 1.0], &[0.0, 1.0, 1.0]);
        assert_eq!(t.len(), 10);
        assert_eq!(t[0].customers, 1);
        assert_eq!(t[9].customers, 2);
        assert!((t[9].mean_score - 0.975).abs() < 1e-12);
    }
}
