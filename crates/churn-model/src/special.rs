//! Special functions the likelihoods need, in log space where it matters. The ones a
//! likelihood differentiates through are generic over [`Real`].

use crate::dual::Real;

/// ln Γ(x) for x > 0 (Lanczos approximation, g = 7, n = 9; relative error ~1e-15).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const COEF: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection keeps the approximation in its accurate range.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = COEF[0];
    let t = x + G + 0.5;
    for (i, c) in COEF.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// ψ(x) = d ln Γ(x) / dx for x > 0: the recurrence ψ(x) = ψ(x + 1) - 1/x up to x >= 10,
/// then the asymptotic series (error below 1e-14 there).
pub fn digamma(x: f64) -> f64 {
    let (mut x, mut shift) = (x, 0.0);
    while x < 10.0 {
        shift -= 1.0 / x;
        x += 1.0;
    }
    let inv2 = 1.0 / (x * x);
    let series = inv2
        * (1.0 / 12.0
            - inv2
                * (1.0 / 120.0
                    - inv2
                        * (1.0 / 252.0
                            - inv2
                                * (1.0 / 240.0
                                    - inv2
                                        * (1.0 / 132.0
                                            - inv2 * (691.0 / 32760.0 - inv2 / 12.0))))));
    shift + x.ln() - 0.5 / x - series
}

/// ln B(a, b).
pub fn ln_beta<D: Real>(a: D, b: D) -> D {
    a.ln_gamma() + b.ln_gamma() - (a + b).ln_gamma()
}

/// ln(e^a + e^b) without overflow.
pub fn log_add_exp<D: Real>(a: D, b: D) -> D {
    let m = if a.value() >= b.value() { a } else { b };
    m + ((a - m).exp() + (b - m).exp()).ln()
}

/// ln(e^a - e^b) for a >= b; minus infinity (a constant, so no undefined gradient) when they
/// are equal.
pub fn log_sub_exp<D: Real>(a: D, b: D) -> D {
    if a.value() == b.value() {
        return D::constant(f64::NEG_INFINITY);
    }
    a + (-(b - a).exp()).ln_1p()
}

/// Gauss hypergeometric 2F1(a, b; c; z) for 0 <= z < 1 by its power series, summed until the
/// terms stop mattering.
pub fn hyp2f1<D: Real>(a: D, b: D, c: D, z: D) -> D {
    let mut term = D::constant(1.0);
    let mut sum = term;
    for n in 0..1_000_000 {
        let n = n as f64;
        term = term * (a + n) * (b + n) / ((c + n) * (n + 1.0)) * z;
        sum = sum + term;
        if term.value().abs() <= 1e-16 * sum.value().abs() {
            break;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_gamma_matches_known_values() {
        assert!((ln_gamma(1.0)).abs() < 1e-14);
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-13);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-13);
        // Python: math.lgamma(100.5)
        assert!((ln_gamma(100.5) - 361.435_540_467_777_6).abs() < 1e-9);
    }

    #[test]
    fn digamma_matches_known_values() {
        // ψ(1) = -γ (Euler-Mascheroni), ψ(1/2) = -γ - 2 ln 2, ψ(n + 1) = ψ(n) + 1/n.
        let euler = 0.577_215_664_901_532_9;
        assert!((digamma(1.0) + euler).abs() < 1e-14);
        assert!((digamma(0.5) + euler + 2.0 * 2f64.ln()).abs() < 1e-13);
        assert!((digamma(0.01) - (digamma(1.01) - 100.0)).abs() < 1e-10);
        assert!((digamma(30.0) - (digamma(29.0) + 1.0 / 29.0)).abs() < 1e-14);
    }

    #[test]
    fn hyp2f1_matches_closed_forms() {
        // 2F1(1, 1; 2; z) = -ln(1 - z) / z
        let z: f64 = 0.3;
        assert!((hyp2f1(1.0, 1.0, 2.0, z) - (-(1.0 - z).ln() / z)).abs() < 1e-13);
        // 2F1(a, b; b; z) = (1 - z)^-a
        assert!((hyp2f1(2.5, 1.5, 1.5, 0.2) - 0.8f64.powf(-2.5)).abs() < 1e-12);
    }
}
