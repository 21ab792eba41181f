//! Forward-mode automatic differentiation, so that each likelihood is written once and its
//! exact gradient comes with its value: quasi-Newton fitting needs a few dozen gradient
//! evaluations where derivative-free search needed thousands of values, and hand-derived
//! gradients of hypergeometric terms (Pareto/NBD) would be a second, error-prone copy of each
//! model.

use std::ops::{Add, Div, Mul, Neg, Sub};

use crate::special;

/// A number the likelihoods are written over: `f64` for plain values, [`Dual`] for a value
/// with its gradient.
pub trait Real:
    Copy
    + Send
    + Sync
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + Add<f64, Output = Self>
    + Sub<f64, Output = Self>
    + Mul<f64, Output = Self>
    + Div<f64, Output = Self>
{
    /// A constant (no derivative).
    fn constant(value: f64) -> Self;
    /// The plain value.
    fn value(self) -> f64;
    fn ln(self) -> Self;
    fn exp(self) -> Self;
    fn ln_1p(self) -> Self;
    /// ln Γ(self) for self > 0.
    fn ln_gamma(self) -> Self;
    /// f(self), given f's value and derivative at self's value (the chain rule): for a
    /// function computed in plain numbers.
    fn chain(self, value: f64, derivative: f64) -> Self;
}

impl Real for f64 {
    fn constant(value: f64) -> f64 {
        value
    }
    fn value(self) -> f64 {
        self
    }
    fn ln(self) -> f64 {
        f64::ln(self)
    }
    fn exp(self) -> f64 {
        f64::exp(self)
    }
    fn ln_1p(self) -> f64 {
        f64::ln_1p(self)
    }
    fn ln_gamma(self) -> f64 {
        special::ln_gamma(self)
    }
    fn chain(self, value: f64, _derivative: f64) -> f64 {
        value
    }
}

/// A value with its partial derivatives with respect to `N` variables.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dual<const N: usize> {
    pub value: f64,
    pub gradient: [f64; N],
}

impl<const N: usize> Dual<N> {
    /// Variable number `index` (of `N`) at `value`.
    pub fn variable(value: f64, index: usize) -> Dual<N> {
        let mut gradient = [0.0; N];
        gradient[index] = 1.0;
        Dual { value, gradient }
    }

    /// Variables `0..N` at `values`.
    pub fn variables(values: &[f64; N]) -> [Dual<N>; N] {
        std::array::from_fn(|i| Dual::variable(values[i], i))
    }
}

impl<const N: usize> Add for Dual<N> {
    type Output = Dual<N>;
    fn add(self, o: Dual<N>) -> Dual<N> {
        Dual {
            value: self.value + o.value,
            gradient: std::array::from_fn(|i| self.gradient[i] + o.gradient[i]),
        }
    }
}

impl<const N: usize> Sub for Dual<N> {
    type Output = Dual<N>;
    fn sub(self, o: Dual<N>) -> Dual<N> {
        Dual {
            value: self.value - o.value,
            gradient: std::array::from_fn(|i| self.gradient[i] - o.gradient[i]),
        }
    }
}

// The product and quotient rules mix operators by nature.
#[allow(clippy::suspicious_arithmetic_impl)]
impl<const N: usize> Mul for Dual<N> {
    type Output = Dual<N>;
    fn mul(self, o: Dual<N>) -> Dual<N> {
        Dual {
            value: self.value * o.value,
            gradient: std::array::from_fn(|i| {
                self.gradient[i] * o.value + o.gradient[i] * self.value
            }),
        }
    }
}

#[allow(clippy::suspicious_arithmetic_impl)]
impl<const N: usize> Div for Dual<N> {
    type Output = Dual<N>;
    fn div(self, o: Dual<N>) -> Dual<N> {
        let value = self.value / o.value;
        Dual {
            value,
            gradient: std::array::from_fn(|i| (self.gradient[i] - value * o.gradient[i]) / o.value),
        }
    }
}

impl<const N: usize> Neg for Dual<N> {
    type Output = Dual<N>;
    fn neg(self) -> Dual<N> {
        Dual {
            value: -self.value,
            gradient: self.gradient.map(|d| -d),
        }
    }
}

impl<const N: usize> Add<f64> for Dual<N> {
    type Output = Dual<N>;
    fn add(self, o: f64) -> Dual<N> {
        Dual {
            value: self.value + o,
            gradient: self.gradient,
        }
    }
}

impl<const N: usize> Sub<f64> for Dual<N> {
    type Output = Dual<N>;
    fn sub(self, o: f64) -> Dual<N> {
        self + -o
    }
}

impl<const N: usize> Mul<f64> for Dual<N> {
    type Output = Dual<N>;
    fn mul(self, o: f64) -> Dual<N> {
        self.chain(self.value * o, o)
    }
}

impl<const N: usize> Div<f64> for Dual<N> {
    type Output = Dual<N>;
    fn div(self, o: f64) -> Dual<N> {
        self.chain(self.value / o, 1.0 / o)
    }
}

impl<const N: usize> Real for Dual<N> {
    fn constant(value: f64) -> Dual<N> {
        Dual {
            value,
            gradient: [0.0; N],
        }
    }
    fn value(self) -> f64 {
        self.value
    }
    fn ln(self) -> Dual<N> {
        self.chain(self.value.ln(), 1.0 / self.value)
    }
    fn exp(self) -> Dual<N> {
        let e = self.value.exp();
        self.chain(e, e)
    }
    fn ln_1p(self) -> Dual<N> {
        self.chain(self.value.ln_1p(), 1.0 / (1.0 + self.value))
    }
    fn ln_gamma(self) -> Dual<N> {
        self.chain(special::ln_gamma(self.value), special::digamma(self.value))
    }
    fn chain(self, value: f64, derivative: f64) -> Dual<N> {
        Dual {
            value,
            gradient: self.gradient.map(|d| d * derivative),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Central difference of `f` along variable `i`.
    fn numeric(f: &dyn Fn(&[f64; 2]) -> f64, at: [f64; 2], i: usize) -> f64 {
        let h = 1e-6 * at[i].abs().max(1.0);
        let (mut up, mut down) = (at, at);
        up[i] += h;
        down[i] -= h;
        (f(&up) - f(&down)) / (2.0 * h)
    }

    fn expression<D: Real>(x: D, y: D) -> D {
        (x * y + 3.0).ln() - (x / y).exp() * 0.5 + (x - 0.2).ln_1p() + (y * 2.0).ln_gamma()
            - D::constant(4.0) / (x + y)
    }

    #[test]
    fn gradients_equal_central_differences_of_the_plain_values() {
        let plain = |p: &[f64; 2]| expression(p[0], p[1]);
        for at in [[0.7, 1.3], [2.5, 0.4], [0.05, 7.0]] {
            let [x, y] = Dual::<2>::variables(&at);
            let dual = expression(x, y);
            assert!((dual.value - plain(&at)).abs() < 1e-14 * plain(&at).abs().max(1.0));
            for i in 0..2 {
                let expected = numeric(&plain, at, i);
                assert!(
                    (dual.gradient[i] - expected).abs() < 1e-6 * expected.abs().max(1.0),
                    "d/d{i} at {at:?}: {} vs {expected}",
                    dual.gradient[i]
                );
            }
        }
    }
}
