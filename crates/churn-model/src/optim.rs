//! Minimisation of smooth low-dimensional functions with exact gradients (BFGS with a
//! backtracking line search) and the Hessian by differences of exact gradients, for standard
//! errors. The likelihoods give their gradients through [`crate::dual`], so a fit takes a few
//! dozen evaluations instead of the thousands a derivative-free search needs.

use crate::dual::Dual;

/// A function's value and gradient at a point.
pub type ValueAndGradient<'a, const N: usize> = &'a dyn Fn(&[f64; N]) -> Dual<N>;

/// Where a minimisation stopped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Minimum<const N: usize> {
    pub at: [f64; N],
    pub value: f64,
    pub iterations: usize,
    pub evaluations: usize,
}

fn dot<const N: usize>(a: &[f64; N], b: &[f64; N]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_abs<const N: usize>(a: &[f64; N]) -> f64 {
    a.iter().fold(0.0, |m, v| m.max(v.abs()))
}

fn is_usable<const N: usize>(d: &Dual<N>) -> bool {
    d.value.is_finite() && d.gradient.iter().all(|g| g.is_finite())
}

/// Minimises `f` from `start` by BFGS. Stops when the largest gradient component is below
/// `1e-8 * max(1, |f|)` (a relative test: likelihoods and the rounding noise of their sums
/// grow with the number of customers), when no step along the search direction lowers `f`
/// any more (machine precision), or after 1000 iterations. Points where `f` or its gradient is not finite are treated as worse than any.
pub fn minimise<const N: usize>(f: ValueAndGradient<N>, start: [f64; N]) -> Minimum<N> {
    let mut x = start;
    let mut here = f(&x);
    let mut evaluations = 1;
    let identity = |scale: f64| -> [[f64; N]; N] {
        std::array::from_fn(|i| std::array::from_fn(|j| if i == j { scale } else { 0.0 }))
    };
    // Approximation of the inverse Hessian.
    let mut h = identity(1.0);
    let mut scaled = false;
    let mut iterations = 0;
    while iterations < 1000 && is_usable(&here) {
        let g = here.gradient;
        if max_abs(&g) <= 1e-8 * here.value.abs().max(1.0) {
            break;
        }
        iterations += 1;
        let mut direction: [f64; N] = std::array::from_fn(|i| -dot(&h[i], &g));
        if dot(&direction, &g) >= 0.0 {
            h = identity(1.0);
            scaled = false;
            direction = g.map(|v| -v);
        }
        // Until the curvature is known, a first step moves no parameter by more than 1.
        let mut t = if scaled {
            1.0
        } else {
            1.0 / max_abs(&direction)
        };
        let slope = dot(&direction, &g);
        let mut accepted = None;
        // Steps too small to move any parameter are rounding noise, not progress.
        while t * max_abs(&direction) > 1e-12 * max_abs(&x).max(1.0) {
            let trial: [f64; N] = std::array::from_fn(|i| x[i] + t * direction[i]);
            let there = f(&trial);
            evaluations += 1;
            if is_usable(&there) && there.value <= here.value + 1e-4 * t * slope {
                accepted = Some((trial, there));
                break;
            }
            t *= 0.5;
        }
        let Some((next, there)) = accepted else {
            break;
        };
        let s: [f64; N] = std::array::from_fn(|i| next[i] - x[i]);
        let y: [f64; N] = std::array::from_fn(|i| there.gradient[i] - g[i]);
        let sy = dot(&s, &y);
        if sy > 1e-12 * dot(&s, &s).sqrt() * dot(&y, &y).sqrt() {
            if !scaled {
                h = identity(sy / dot(&y, &y));
                scaled = true;
            }
            // H' = (I - rho s y') H (I - rho y s') + rho s s'
            let rho = 1.0 / sy;
            let hy: [f64; N] = std::array::from_fn(|i| dot(&h[i], &y));
            let yhy = dot(&y, &hy);
            h = std::array::from_fn(|i| {
                std::array::from_fn(|j| {
                    h[i][j] - rho * (hy[i] * s[j] + s[i] * hy[j])
                        + (rho * rho * yhy + rho) * s[i] * s[j]
                })
            });
        }
        let stalled = here.value - there.value <= 1e-15 * here.value.abs();
        x = next;
        here = there;
        if stalled && max_abs(&s) <= 1e-12 * max_abs(&x).max(1.0) {
            break;
        }
    }
    Minimum {
        at: x,
        value: here.value,
        iterations,
        evaluations,
    }
}

/// Hessian at `x` by central differences of the exact gradient (relative steps), made
/// symmetric.
pub fn hessian<const N: usize>(f: ValueAndGradient<N>, x: &[f64; N]) -> [[f64; N]; N] {
    let mut columns = [[0.0; N]; N];
    for i in 0..N {
        let h = 1e-5 * x[i].abs().max(1e-3);
        let (mut up, mut down) = (*x, *x);
        up[i] += h;
        down[i] -= h;
        let (gu, gd) = (f(&up).gradient, f(&down).gradient);
        columns[i] = std::array::from_fn(|j| (gu[j] - gd[j]) / (2.0 * h));
    }
    std::array::from_fn(|i| std::array::from_fn(|j| 0.5 * (columns[i][j] + columns[j][i])))
}

/// Inverse of a small symmetric positive-definite matrix (Gauss-Jordan); `None` if singular.
pub fn invert<const N: usize>(m: &[[f64; N]; N]) -> Option<[[f64; N]; N]> {
    let n = N;
    let mut a: Vec<Vec<f64>> = m
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let mut r = row.to_vec();
            r.extend((0..n).map(|j| if i == j { 1.0 } else { 0.0 }));
            r
        })
        .collect();
    for col in 0..n {
        let pivot = (col..n).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))?;
        if a[pivot][col].abs() < 1e-300 {
            return None;
        }
        a.swap(col, pivot);
        let p = a[col][col];
        for v in a[col].iter_mut() {
            *v /= p;
        }
        for r in 0..n {
            if r != col {
                let factor = a[r][col];
                let pivot_row = a[col].clone();
                for (v, pv) in a[r].iter_mut().zip(&pivot_row) {
                    *v -= factor * pv;
                }
            }
        }
    }
    Some(std::array::from_fn(|i| {
        std::array::from_fn(|j| a[i][n + j])
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dual::Real;

    fn rosenbrock<D: Real>(x: D, y: D) -> D {
        let a = D::constant(1.0) - x;
        let b = y - x * x;
        a * a + b * b * 100.0
    }

    #[test]
    fn finds_the_minimum_of_the_rosenbrock_function() {
        let f = |p: &[f64; 2]| {
            let [x, y] = Dual::variables(p);
            rosenbrock(x, y)
        };
        let m = minimise(&f, [-1.2, 1.0]);
        assert!(
            (m.at[0] - 1.0).abs() < 1e-6 && (m.at[1] - 1.0).abs() < 1e-6 && m.value < 1e-12,
            "{m:?}"
        );
        assert!(m.evaluations < 500, "{m:?}");
    }

    #[test]
    fn the_hessian_of_a_quadratic_is_its_matrix_and_inverts() {
        let f = |p: &[f64; 2]| {
            let [x, y] = Dual::variables(p);
            x * x * 2.0 + x * y + y * y * 3.0
        };
        let h = hessian(&f, &[0.3, -0.2]);
        assert!(
            (h[0][0] - 4.0).abs() < 1e-8
                && (h[0][1] - 1.0).abs() < 1e-8
                && (h[1][1] - 6.0).abs() < 1e-8,
            "{h:?}"
        );
        let inv = invert(&h).unwrap();
        assert!((inv[0][0] - 6.0 / 23.0).abs() < 1e-8);
    }
}
