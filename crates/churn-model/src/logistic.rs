//! Logistic regression with real sample weights and an L2 penalty, fitted by Newton's method.
//!
//! The design matrix has a few dozen standardised columns and up to millions of rows, so each
//! Newton step (one pass that sums the gradient and the (p+1)² Hessian, then a Cholesky solve)
//! costs about as much as a handful of first-order iterations, and the method needs under ten
//! of them. Weights enter the likelihood as weights, not as repeated rows. The sums run over
//! fixed chunks on every core and are added in chunk order, so a fit gives the same bits on
//! any machine.
//!
//! The minimised objective is
//! `Σ wᵢ (log(1 + e^zᵢ) − yᵢ zᵢ) + l2/2 · Σ βⱼ²` with `zᵢ = b + β·xᵢ`; the intercept `b` is
//! not penalised. It is scikit-learn's `LogisticRegression(C = 1/l2)` with the same sample
//! weights.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView2, s};

use crate::classifier::sigmoid;
use crate::parallel::map_chunks;

/// A fitted logistic regression.
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticFit {
    pub intercept: f64,
    pub coefficients: Vec<f64>,
    /// Newton steps taken.
    pub iterations: usize,
    /// False when `max_iterations` ran out before the steps became negligible.
    pub converged: bool,
}

/// Steps whose largest component is below this are negligible: Newton's convergence is
/// quadratic, so the step before was already accurate to about the square root of this.
const NEGLIGIBLE_STEP: f64 = 1e-10;

/// Fits rows `x` with labels `y` (0 or 1) and sample weights `w`.
pub fn fit_logistic<'a>(
    x: ArrayView2<'a, f64>,
    y: &'a [f64],
    w: &'a [f64],
    l2: f64,
    max_iterations: u64,
) -> LogisticFit {
    let dims = x.ncols() + 1;
    let rows: Vec<usize> = (0..x.nrows()).collect();
    let problem = Problem { x, y, w, l2 };
    // Start from the intercept-only model's optimum: the weighted churn share's log-odds.
    let weight: f64 = w.iter().sum();
    let share = (w.iter().zip(y).map(|(wi, yi)| wi * yi).sum::<f64>()
        / weight.max(f64::MIN_POSITIVE))
    .clamp(1e-9, 1.0 - 1e-9);
    let mut theta = vec![0.0; dims];
    theta[0] = (share / (1.0 - share)).ln();
    let mut iterations = 0;
    let mut converged = false;
    while (iterations as u64) < max_iterations {
        let here = problem.sums(&rows, &theta, true);
        iterations += 1;
        let Some(step) = solve_positive_definite(&here.hessian, &here.gradient, dims) else {
            break;
        };
        // Backtracking: a full Newton step, halved while it does not lower the objective.
        let slope: f64 = here.gradient.iter().zip(&step).map(|(g, d)| g * d).sum();
        let mut scale = 1.0;
        let mut moved = false;
        for _ in 0..40 {
            let trial: Vec<f64> = theta
                .iter()
                .zip(&step)
                .map(|(t, d)| t - scale * d)
                .collect();
            let there = problem.sums(&rows, &trial, false).objective;
            if there.is_finite() && there <= here.objective - 1e-4 * scale * slope {
                theta = trial;
                moved = true;
                break;
            }
            scale *= 0.5;
        }
        let largest = step.iter().fold(0.0_f64, |m, d| m.max((scale * d).abs()));
        if !moved || largest < NEGLIGIBLE_STEP {
            // No step lowers the objective any more: it is at its minimum to machine precision.
            converged = true;
            break;
        }
    }
    LogisticFit {
        intercept: theta[0],
        coefficients: theta[1..].to_vec(),
        iterations,
        converged,
    }
}

struct Problem<'a> {
    x: ArrayView2<'a, f64>,
    y: &'a [f64],
    w: &'a [f64],
    l2: f64,
}

/// The objective with its gradient and Hessian (row-major, intercept first) at one point.
struct Sums {
    objective: f64,
    gradient: Vec<f64>,
    hessian: Vec<f64>,
}

impl Problem<'_> {
    fn sums(&self, rows: &[usize], theta: &[f64], with_hessian: bool) -> Sums {
        let dims = theta.len();
        let parts = map_chunks(rows, |chunk| self.chunk_sums(chunk, theta, with_hessian));
        let mut total = Sums {
            objective: 0.0,
            gradient: vec![0.0; dims],
            hessian: vec![0.0; if with_hessian { dims * dims } else { 0 }],
        };
        for part in parts {
            total.objective += part.objective;
            for (t, p) in total.gradient.iter_mut().zip(&part.gradient) {
                *t += p;
            }
            for (t, p) in total.hessian.iter_mut().zip(&part.hessian) {
                *t += p;
            }
        }
        for (j, t) in theta.iter().enumerate().skip(1) {
            total.objective += 0.5 * self.l2 * t * t;
            total.gradient[j] += self.l2 * t;
            if with_hessian {
                total.hessian[j * dims + j] += self.l2;
            }
        }
        total
    }

    /// The unpenalised sums over one chunk of consecutive rows. The Hessian `Aᵀ diag(s) A`
    /// (A = [1, x]) is one matrix product of the chunk's rows scaled by `√s`.
    fn chunk_sums(&self, chunk: &[usize], theta: &[f64], with_hessian: bool) -> Sums {
        let dims = theta.len();
        let first = chunk[0];
        let rows = self.x.slice(s![first..first + chunk.len(), ..]);
        let mut objective = 0.0;
        let mut gradient = vec![0.0; dims];
        let mut scaled = Array2::<f64>::zeros((if with_hessian { chunk.len() } else { 0 }, dims));
        for (k, row) in rows.rows().into_iter().enumerate() {
            let i = first + k;
            let z = theta[0] + row.iter().zip(&theta[1..]).map(|(v, c)| v * c).sum::<f64>();
            let (wi, yi) = (self.w[i], self.y[i]);
            objective += wi * (softplus(z) - yi * z);
            let p = sigmoid(z);
            let residual = wi * (p - yi);
            gradient[0] += residual;
            for (g, v) in gradient[1..].iter_mut().zip(row) {
                *g += residual * v;
            }
            if with_hessian {
                let root = (wi * p * (1.0 - p)).sqrt();
                let mut out = scaled.row_mut(k);
                out[0] = root;
                for (o, v) in out.iter_mut().skip(1).zip(row) {
                    *o = root * v;
                }
            }
        }
        let hessian = if with_hessian {
            let mut h = Array2::<f64>::zeros((dims, dims));
            general_mat_mul(1.0, &scaled.t(), &scaled, 0.0, &mut h);
            h.into_raw_vec_and_offset().0
        } else {
            Vec::new()
        };
        Sums {
            objective,
            gradient,
            hessian,
        }
    }
}

/// `log(1 + e^z)` without overflow.
fn softplus(z: f64) -> f64 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

/// Solves `h · d = g` for a symmetric positive definite `h` (n×n, row-major) by Cholesky. A
/// matrix that is singular in floating point (a column that is constant over the rows, with
/// no penalty) gets a ridge of growing size on its diagonal; None if even that fails.
fn solve_positive_definite(h: &[f64], g: &[f64], n: usize) -> Option<Vec<f64>> {
    let largest = (0..n)
        .fold(0.0_f64, |m, i| m.max(h[i * n + i].abs()))
        .max(1.0);
    for ridge in [0.0, 1e-12, 1e-9, 1e-6] {
        if let Some(l) = cholesky(h, n, ridge * largest) {
            // Forward then back substitution: L u = g, Lᵀ d = u.
            let mut u = vec![0.0; n];
            for i in 0..n {
                let sum: f64 = (0..i).map(|k| l[i * n + k] * u[k]).sum();
                u[i] = (g[i] - sum) / l[i * n + i];
            }
            let mut d = vec![0.0; n];
            for i in (0..n).rev() {
                let sum: f64 = (i + 1..n).map(|k| l[k * n + i] * d[k]).sum();
                d[i] = (u[i] - sum) / l[i * n + i];
            }
            if d.iter().all(|v| v.is_finite()) {
                return Some(d);
            }
        }
    }
    None
}

/// The lower Cholesky factor of `h + ridge·I`, or None when it is not positive definite.
fn cholesky(h: &[f64], n: usize, ridge: f64) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let sum: f64 = (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum();
            let value = h[i * n + j] + if i == j { ridge } else { 0.0 } - sum;
            if i == j {
                if value <= 0.0 || !value.is_finite() {
                    return None;
                }
                l[i * n + i] = value.sqrt();
            } else {
                l[i * n + j] = value / l[j * n + j];
            }
        }
    }
    Some(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With one binary column and no penalty the maximum-likelihood fit has a closed form:
    /// the intercept is the weighted churn log-odds of the rows with x = 0, the coefficient
    /// the difference to those with x = 1.
    #[test]
    fn a_binary_column_without_penalty_gives_the_weighted_group_log_odds() {
        let mut x = Array2::<f64>::zeros((10, 1));
        let mut y = Vec::new();
        let mut w = Vec::new();
        // x = 0: churned weights 1 + 2, stayed 3 + 4 → share 3/10.
        // x = 1: churned weights 0.5 + 1.5 + 2, stayed 1 → share 4/5.
        for (i, (xi, yi, wi)) in [
            (0.0, 1.0, 1.0),
            (0.0, 1.0, 2.0),
            (0.0, 0.0, 3.0),
            (0.0, 0.0, 4.0),
            (1.0, 1.0, 0.5),
            (1.0, 1.0, 1.5),
            (1.0, 1.0, 2.0),
            (1.0, 0.0, 1.0),
            (0.0, 0.0, 0.0),
            (1.0, 0.0, 0.0),
        ]
        .into_iter()
        .enumerate()
        {
            x[[i, 0]] = xi;
            y.push(yi);
            w.push(wi);
        }
        let fit = fit_logistic(x.view(), &y, &w, 0.0, 100);
        let logit = |p: f64| (p / (1.0 - p)).ln();
        assert!(fit.converged, "{fit:?}");
        assert!((fit.intercept - logit(0.3)).abs() < 1e-9, "{fit:?}");
        assert!(
            (fit.coefficients[0] - (logit(0.8) - logit(0.3))).abs() < 1e-9,
            "{fit:?}"
        );
    }

    /// At the penalised optimum the gradient of the objective, computed here row by row, is
    /// zero: for each column the weighted residuals' sum equals −l2 times its coefficient.
    #[test]
    fn the_penalised_fit_is_where_the_gradient_vanishes() {
        let n = 3000;
        let mut x = Array2::<f64>::zeros((n, 3));
        let mut y = Vec::new();
        let mut w = Vec::new();
        for i in 0..n {
            let a = ((i * 7919) % 1000) as f64 / 500.0 - 1.0;
            let b = ((i * 104_729) % 997) as f64 / 498.5 - 1.0;
            x[[i, 0]] = a;
            x[[i, 1]] = b;
            x[[i, 2]] = a * b;
            let noise = ((i * 31) % 13) as f64 / 13.0 - 0.5;
            y.push(if 1.5 * a - b + noise > 0.2 { 1.0 } else { 0.0 });
            w.push(if y[i] > 0.5 { 2.5 } else { 0.75 });
        }
        let l2 = 3.0;
        let fit = fit_logistic(x.view(), &y, &w, l2, 100);
        assert!(fit.converged && fit.iterations < 20, "{fit:?}");
        let mut gradient = [0.0; 4];
        for i in 0..n {
            let z = fit.intercept + (0..3).map(|j| fit.coefficients[j] * x[[i, j]]).sum::<f64>();
            let r = w[i] * (1.0 / (1.0 + (-z).exp()) - y[i]);
            gradient[0] += r;
            for j in 0..3 {
                gradient[j + 1] += r * x[[i, j]];
            }
        }
        assert!(gradient[0].abs() < 1e-8, "{gradient:?}");
        for j in 0..3 {
            assert!(
                (gradient[j + 1] + l2 * fit.coefficients[j]).abs() < 1e-8,
                "{gradient:?} {fit:?}"
            );
        }
    }

    #[test]
    fn a_constant_column_without_penalty_still_fits() {
        let n = 50;
        let mut x = Array2::<f64>::zeros((n, 2));
        let mut y = Vec::new();
        for i in 0..n {
            x[[i, 0]] = (i % 7) as f64 - 3.0;
            y.push(if (i * 13) % 5 < 2 { 1.0 } else { 0.0 });
        }
        let fit = fit_logistic(x.view(), &y, &vec![1.0; n], 0.0, 100);
        assert!(fit.intercept.is_finite() && fit.coefficients.iter().all(|c| c.is_finite()));
        assert!(fit.coefficients[1].abs() < 1e-6, "{fit:?}");
    }
}
