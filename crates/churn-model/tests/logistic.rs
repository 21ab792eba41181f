//! The logistic regression against an independent optimiser: SciPy's L-BFGS-B minimising the
//! same weighted, penalised log-likelihood (written out in NumPy below) on the same rows.

use churn_model::logistic::fit_logistic;
use churn_test_kit::python_stdout;
use ndarray::Array2;

/// SciPy's fit of `Σ wᵢ (log(1 + e^zᵢ) − yᵢ zᵢ) + l2/2·‖β‖²` (intercept unpenalised) on the
/// rows of a CSV file `x0,…,x(p−1),y,w`; prints the intercept then the coefficients.
const SCIPY_FIT: &str = r#"
import sys, numpy as np
from scipy.optimize import minimize
data = np.loadtxt(sys.argv[1], delimiter=',')
l2 = float(sys.argv[2])
x, y, w = data[:, :-2], data[:, -2], data[:, -1]
a = np.hstack([np.ones((len(y), 1)), x])
def objective(theta):
    z = a @ theta
    value = np.sum(w * (np.logaddexp(0.0, z) - y * z)) + 0.5 * l2 * np.sum(theta[1:] ** 2)
    gradient = a.T @ (w * (1.0 / (1.0 + np.exp(-z)) - y))
    gradient[1:] += l2 * theta[1:]
    return value, gradient
result = minimize(objective, np.zeros(a.shape[1]), jac=True, method='L-BFGS-B',
                  options={'maxiter': 100000, 'ftol': 0.0, 'gtol': 1e-11})
print(' '.join(repr(float(v)) for v in result.x))
"#;

/// Rows with correlated columns, a column of very different scale, an interaction that
/// matters and one that does not, label noise and unequal weights of both classes.
fn rows(n: usize) -> (Array2<f64>, Vec<f64>, Vec<f64>) {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut x = Array2::<f64>::zeros((n, 4));
    let (mut y, mut w) = (Vec::new(), Vec::new());
    for i in 0..n {
        let a = 2.0 * uniform() - 1.0;
        let b = 0.6 * a + 0.8 * (2.0 * uniform() - 1.0);
        let c = 30.0 * uniform();
        x[[i, 0]] = a;
        x[[i, 1]] = b;
        x[[i, 2]] = c;
        x[[i, 3]] = a * b;
        let z = -1.2 + 2.0 * a - 1.0 * b + 0.05 * c + 1.5 * a * b;
        let churned = uniform() < 1.0 / (1.0 + (-z).exp());
        y.push(if churned { 1.0 } else { 0.0 });
        w.push(if churned { 1.7 } else { 0.6 } * (0.5 + uniform()));
    }
    (x, y, w)
}

#[test]
fn weighted_penalised_fits_equal_scipys_minimum_of_the_same_objective() {
    let (x, y, w) = rows(4000);
    let file = std::env::temp_dir().join(format!("churn-logistic-{}.csv", std::process::id()));
    let mut text = String::new();
    for i in 0..x.nrows() {
        for v in x.row(i) {
            text.push_str(&format!("{v:e},"));
        }
        text.push_str(&format!("{},{:e}\n", y[i], w[i]));
    }
    std::fs::write(&file, text).unwrap();
    for l2 in [0.0, 1.0, 25.0] {
        let ours = fit_logistic(x.view(), &y, &w, l2, 200);
        assert!(ours.converged, "l2 {l2}: {ours:?}");
        let theirs: Vec<f64> =
            python_stdout(["-c", SCIPY_FIT, file.to_str().unwrap(), &l2.to_string()])
                .split_whitespace()
                .map(|v| v.parse().unwrap())
                .collect();
        let ours_all: Vec<f64> = std::iter::once(ours.intercept)
            .chain(ours.coefficients.iter().copied())
            .collect();
        assert_eq!(ours_all.len(), theirs.len());
        for (k, (a, b)) in ours_all.iter().zip(&theirs).enumerate() {
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1e-3),
                "l2 {l2}, parameter {k}: ours {a}, SciPy {b} (all ours {ours_all:?}, SciPy {theirs:?})"
            );
        }
    }
    std::fs::remove_file(&file).ok();
}
