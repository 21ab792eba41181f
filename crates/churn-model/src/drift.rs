//! Population stability index (PSI): how far a feature's distribution today has moved from
//! the snapshot a model was trained on. `churn run` retrains a model whose file says
//! `retrain_when_psi_above` once any of its input features moves further than that.
//!
//! PSI = Σ over bins (a − e) · ln(a / e), with e and a the shares of the training and the
//! current customers in each bin. Numbers are cut at the training snapshot's deciles (distinct
//! cut points only, so a feature with few values gets fewer bins); text uses the training
//! snapshot's categories plus one bin for the rest; a missing value is a bin of its own in
//! both. Shares are floored at 0.0001 so that an empty bin counts as a large, finite shift.
//! The usual reading: below 0.1 stable, 0.1 – 0.25 a moderate shift, above 0.25 a major one.

use crate::dataset::Values;

/// Share below which a bin counts as 0.0001, so that ln(a / e) stays finite.
const SHARE_FLOOR: f64 = 1e-4;
/// Decile cut points for numbers.
const NUMERIC_BINS: usize = 10;

/// The PSI of `current` against `training`; `None` when the kinds differ or the training
/// values are empty.
pub fn population_stability(training: &Values, current: &Values) -> Option<f64> {
    let (expected, actual) = match (training, current) {
        (Values::Numeric(t), Values::Numeric(c)) => {
            let cuts = decile_cuts(t);
            (numeric_shares(t, &cuts), numeric_shares(c, &cuts))
        }
        (Values::Categorical(t), Values::Categorical(c)) => {
            let mut categories: Vec<&str> = t.iter().flatten().map(String::as_str).collect();
            categories.sort_unstable();
            categories.dedup();
            (
                categorical_shares(t, &categories),
                categorical_shares(c, &categories),
            )
        }
        _ => return None,
    };
    if expected.is_empty() || actual.is_empty() {
        return None;
    }
    Some(
        expected
            .iter()
            .zip(&actual)
            .filter(|(e, a)| **e > 0.0 || **a > 0.0)
            .map(|(e, a)| {
                let (e, a) = (e.max(SHARE_FLOOR), a.max(SHARE_FLOOR));
                (a - e) * (a / e).ln()
            })
            .sum(),
    )
}

/// The distinct inner decile cut points of the non-missing values (bins are `(−∞, c1]`,
/// `(c1, c2]`, …, `(ck, ∞)`).
fn decile_cuts(values: &[f64]) -> Vec<f64> {
    let mut present: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if present.is_empty() {
        return Vec::new();
    }
    present.sort_by(f64::total_cmp);
    let n = present.len();
    let mut cuts: Vec<f64> = (1..NUMERIC_BINS)
        .map(|k| present[(k * n / NUMERIC_BINS).min(n - 1)])
        .collect();
    cuts.dedup();
    // A cut at the maximum would leave its upper bin empty in training for good.
    if cuts.last() == present.last() {
        cuts.pop();
    }
    cuts
}

/// Shares of the bins `(−∞, c1]`, …, `(ck, ∞)` and, last, of missing values. Empty for no
/// values at all.
fn numeric_shares(values: &[f64], cuts: &[f64]) -> Vec<f64> {
    let mut counts = vec![0u64; cuts.len() + 2];
    for v in values {
        let bin = if v.is_nan() {
            cuts.len() + 1
        } else {
            cuts.partition_point(|c| c < v)
        };
        counts[bin] += 1;
    }
    shares(&counts)
}

/// Shares of each training category, of the other categories, and of missing values.
fn categorical_shares(values: &[Option<String>], categories: &[&str]) -> Vec<f64> {
    let mut counts = vec![0u64; categories.len() + 2];
    for v in values {
        let bin = match v {
            None => categories.len() + 1,
            Some(v) => categories
                .binary_search(&v.as_str())
                .unwrap_or(categories.len()),
        };
        counts[bin] += 1;
    }
    shares(&counts)
}

fn shares(counts: &[u64]) -> Vec<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return Vec::new();
    }
    counts.iter().map(|c| *c as f64 / total as f64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(v: &[f64]) -> Values {
        Values::Numeric(v.to_vec())
    }

    #[test]
    fn the_same_distribution_is_stable() {
        let v: Vec<f64> = (0..1000).map(|i| (i % 97) as f64).collect();
        assert_eq!(population_stability(&numbers(&v), &numbers(&v)), Some(0.0));
    }

    #[test]
    fn a_shift_between_two_values_matches_the_formula_by_hand() {
        // Training: 50 % zeros, 50 % ones → one cut at 0: bins (−∞,0] and (0,∞).
        // Today: 20 % zeros, 80 % ones.
        // PSI = (0.2−0.5)·ln(0.2/0.5) + (0.8−0.5)·ln(0.8/0.5) = 0.27489 + 0.14100 = 0.41589.
        let training = numbers(&[0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
        let today = numbers(&[0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
        let psi = population_stability(&training, &today).unwrap();
        let by_hand = -0.3 * (0.4f64).ln() + 0.3 * (1.6f64).ln();
        assert!((psi - by_hand).abs() < 1e-12, "{psi} vs {by_hand}");
        assert!((psi - 0.41589).abs() < 1e-5);
    }

    #[test]
    fn missing_values_and_new_categories_are_bins_of_their_own() {
        // Training: a, a, b, b. Today: a, b, c (new), missing.
        // Bins a, b, other, missing: e = (0.5, 0.5, 0, 0), a = (0.25, 0.25, 0.25, 0.25).
        let training = Values::Categorical(vec![
            Some("a".into()),
            Some("a".into()),
            Some("b".into()),
            Some("b".into()),
        ]);
        let today = Values::Categorical(vec![
            Some("a".into()),
            Some("b".into()),
            Some("c".into()),
            None,
        ]);
        let psi = population_stability(&training, &today).unwrap();
        let by_hand = 2.0 * (-0.25 * (0.5f64).ln()) + 2.0 * ((0.25 - 1e-4) * (0.25f64 / 1e-4).ln());
        assert!((psi - by_hand).abs() < 1e-12, "{psi} vs {by_hand}");
    }

    #[test]
    fn deciles_of_many_distinct_values_give_ten_bins() {
        let v: Vec<f64> = (0..100).map(f64::from).collect();
        assert_eq!(
            decile_cuts(&v),
            vec![10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0]
        );
        let shares = numeric_shares(&v, &decile_cuts(&v));
        // (−∞,10] holds 0..=10 (11 values), then 10 per bin, (90,∞) 9, no missing.
        assert_eq!(shares[0], 0.11);
        assert_eq!(shares[9], 0.09);
        assert_eq!(shares[10], 0.0);
    }

    #[test]
    fn different_kinds_have_no_index() {
        let text = Values::Categorical(vec![Some("a".into())]);
        assert_eq!(population_stability(&numbers(&[1.0]), &text), None);
    }
}
