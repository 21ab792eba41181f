//! Buy-till-you-die models by maximum likelihood: BG/NBD (Fader, Hardie & Lee 2005),
//! Pareto/NBD (Schmittlein, Morrison & Colombo 1987, in Fader & Hardie's formulation) and
//! Gamma-Gamma spend (Fader, Hardie & Lee 2005). Parameters are fitted on log scale (so they
//! stay positive) by Nelder-Mead; standard errors come from the inverse Hessian of the
//! negative log-likelihood in the natural parameters.

use serde::Serialize;

use crate::optim::{hessian, invert, nelder_mead};
use crate::special::{hyp2f1, ln_beta, ln_gamma, log_add_exp, log_sub_exp};

/// One customer's summary: repeat purchase periods `frequency` (x), time from the first to
/// the last purchase `recency` (t_x), time from the first purchase to the end of calibration
/// `age` (T), and mean value of the repeat purchases `monetary` (zbar; 0 without repeats).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub frequency: f64,
    pub recency: f64,
    pub age: f64,
    pub monetary: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum BtydError {
    #[error("{model} needs at least {needed} customers with usable data, got {got}")]
    TooFewCustomers {
        model: &'static str,
        needed: usize,
        got: usize,
    },
    #[error("invalid summary for customer #{index}: {problem}")]
    InvalidSummary { index: usize, problem: String },
    #[error("{expected} predictions need a {expected} fit, got a {got} fit")]
    WrongModel {
        expected: &'static str,
        got: &'static str,
    },
}

/// A fitted model.
#[derive(Debug, Clone, Serialize)]
pub struct Fit {
    pub model: &'static str,
    pub parameters: Vec<(&'static str, f64)>,
    /// Standard errors in the same order; NaN when the Hessian is not invertible.
    pub standard_errors: Vec<f64>,
    pub log_likelihood: f64,
    pub customers: usize,
}

impl Fit {
    pub fn parameter(&self, name: &str) -> f64 {
        self.parameters
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(f64::NAN, |(_, v)| *v)
    }

    /// The parameters of a fit of `model`, in their fitted order.
    fn values_of<const N: usize>(&self, model: &'static str) -> Result<[f64; N], BtydError> {
        let values: Vec<f64> = self.parameters.iter().map(|(_, v)| *v).collect();
        match <[f64; N]>::try_from(values) {
            Ok(values) if self.model == model => Ok(values),
            _ => Err(BtydError::WrongModel {
                expected: model,
                got: self.model,
            }),
        }
    }
}

fn check(data: &[Summary]) -> Result<(), BtydError> {
    for (index, s) in data.iter().enumerate() {
        let problem = if !(s.frequency >= 0.0 && s.recency >= 0.0 && s.age >= 0.0) {
            Some("frequency, recency and age must be non-negative")
        } else if s.recency > s.age + 1e-9 {
            Some("recency cannot exceed age")
        } else if s.frequency == 0.0 && s.recency != 0.0 {
            Some("recency must be 0 without repeat purchases")
        } else {
            None
        };
        if let Some(p) = problem {
            return Err(BtydError::InvalidSummary {
                index,
                problem: format!("{p} (got {s:?})"),
            });
        }
    }
    Ok(())
}

/// Customers with identical summaries contribute identical likelihood terms: evaluate each
/// distinct summary once, weighted by how many customers share it.
fn grouped(data: &[Summary], with_monetary: bool) -> Vec<(Summary, f64)> {
    let mut counts: std::collections::HashMap<[u64; 4], (Summary, f64)> =
        std::collections::HashMap::new();
    for s in data {
        let monetary = if with_monetary { s.monetary } else { 0.0 };
        let key = [
            s.frequency.to_bits(),
            s.recency.to_bits(),
            s.age.to_bits(),
            monetary.to_bits(),
        ];
        counts.entry(key).or_insert((*s, 0.0)).1 += 1.0;
    }
    let mut groups: Vec<(Summary, f64)> = counts.into_values().collect();
    // A fixed order keeps the floating-point sum, and so the fit, reproducible.
    groups.sort_by(|a, b| {
        (a.0.frequency, a.0.recency, a.0.age, a.0.monetary)
            .partial_cmp(&(b.0.frequency, b.0.recency, b.0.age, b.0.monetary))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    groups
}

/// Fits on log-parameters and attaches standard errors.
fn fit(
    model: &'static str,
    names: &[&'static str],
    nll: &dyn Fn(&[f64]) -> f64,
    customers: usize,
) -> Fit {
    let on_log = |lp: &[f64]| {
        let p: Vec<f64> = lp.iter().map(|v| v.exp()).collect();
        let v = nll(&p);
        if v.is_finite() { v } else { f64::MAX }
    };
    let (log_params, value) = nelder_mead(&on_log, &vec![0.0; names.len()]);
    let params: Vec<f64> = log_params.iter().map(|v| v.exp()).collect();
    let standard_errors = match invert(&hessian(nll, &params)) {
        Some(cov) => (0..params.len())
            .map(|i| cov[i][i].max(0.0).sqrt())
            .collect(),
        None => vec![f64::NAN; params.len()],
    };
    Fit {
        model,
        parameters: names.iter().copied().zip(params).collect(),
        standard_errors,
        log_likelihood: -value,
        customers,
    }
}

/// BG/NBD log-likelihood of one customer.
fn bgnbd_ll(p: &[f64], s: &Summary) -> f64 {
    let (r, alpha, a, b) = (p[0], p[1], p[2], p[3]);
    let x = s.frequency;
    let a1 = ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln();
    let a2 = ln_beta(a, b + x) - ln_beta(a, b);
    let a3 = -(r + x) * (alpha + s.age).ln();
    let a4 = if x > 0.0 {
        a.ln() - (b + x - 1.0).ln() - (r + x) * (alpha + s.recency).ln()
    } else {
        f64::NEG_INFINITY
    };
    a1 + a2 + log_add_exp(a3, a4)
}

/// Fits BG/NBD (parameters r, alpha, a, b).
pub fn fit_bgnbd(data: &[Summary]) -> Result<Fit, BtydError> {
    check(data)?;
    if data.len() < 10 {
        return Err(BtydError::TooFewCustomers {
            model: "BG/NBD",
            needed: 10,
            got: data.len(),
        });
    }
    let groups = grouped(data, false);
    let nll = |p: &[f64]| -groups.iter().map(|(s, n)| n * bgnbd_ll(p, s)).sum::<f64>();
    Ok(fit("bgnbd", &["r", "alpha", "a", "b"], &nll, data.len()))
}

/// Pareto/NBD log-likelihood of one customer.
fn pareto_nbd_ll(p: &[f64], s: &Summary) -> f64 {
    let (r, alpha, sh, beta) = (p[0], p[1], p[2], p[3]);
    let x = s.frequency;
    let rsx = r + sh + x;
    let a1 = ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln() + sh * beta.ln();
    let log_a0 = pareto_log_a0(p, s);
    let a2 = log_add_exp(
        -(r + x) * (alpha + s.age).ln() - sh * (beta + s.age).ln(),
        sh.ln() + log_a0 - rsx.ln(),
    );
    a1 + a2
}

/// Fits Pareto/NBD (parameters r, alpha, s, beta).
pub fn fit_pareto_nbd(data: &[Summary]) -> Result<Fit, BtydError> {
    check(data)?;
    if data.len() < 10 {
        return Err(BtydError::TooFewCustomers {
            model: "Pareto/NBD",
            needed: 10,
            got: data.len(),
        });
    }
    let groups = grouped(data, false);
    let nll = |p: &[f64]| {
        -groups
            .iter()
            .map(|(s, n)| n * pareto_nbd_ll(p, s))
            .sum::<f64>()
    };
    Ok(fit(
        "pareto_nbd",
        &["r", "alpha", "s", "beta"],
        &nll,
        data.len(),
    ))
}

/// Gamma-Gamma log-likelihood of one repeat buyer's mean spend.
fn gamma_gamma_ll(par: &[f64], s: &Summary) -> f64 {
    let (p, q, gamma) = (par[0], par[1], par[2]);
    let (x, m) = (s.frequency, s.monetary);
    ln_gamma(p * x + q) - ln_gamma(p * x) - ln_gamma(q)
        + q * gamma.ln()
        + (p * x - 1.0) * m.ln()
        + (p * x) * x.ln()
        - (p * x + q) * (gamma + x * m).ln()
}

/// Fits Gamma-Gamma (parameters p, q, gamma) on customers with repeat purchases.
pub fn fit_gamma_gamma(data: &[Summary]) -> Result<Fit, BtydError> {
    check(data)?;
    let repeaters: Vec<Summary> = data
        .iter()
        .copied()
        .filter(|s| s.frequency > 0.0 && s.monetary > 0.0)
        .collect();
    if repeaters.len() < 10 {
        return Err(BtydError::TooFewCustomers {
            model: "Gamma-Gamma",
            needed: 10,
            got: repeaters.len(),
        });
    }
    let groups = grouped(&repeaters, true);
    let nll = |p: &[f64]| {
        -groups
            .iter()
            .map(|(s, n)| n * gamma_gamma_ll(p, s))
            .sum::<f64>()
    };
    Ok(fit(
        "gamma_gamma",
        &["p", "q", "gamma"],
        &nll,
        repeaters.len(),
    ))
}

/// Fitted BG/NBD parameters, for per-customer predictions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

impl BgNbd {
    pub fn from_fit(fit: &Fit) -> Result<BgNbd, BtydError> {
        let [r, alpha, a, b] = fit.values_of("bgnbd")?;
        Ok(BgNbd { r, alpha, a, b })
    }

    /// Probability that the customer is still active at the end of calibration.
    pub fn p_alive(&self, s: &Summary) -> f64 {
        let BgNbd { r, alpha, a, b } = *self;
        if s.frequency == 0.0 {
            return 1.0;
        }
        let x = s.frequency;
        let log_ratio = a.ln() - (b + x - 1.0).ln()
            + (r + x) * ((alpha + s.age).ln() - (alpha + s.recency).ln());
        1.0 / (1.0 + log_ratio.exp())
    }

    /// Expected number of purchases in the next `t` time units.
    pub fn expected_purchases(&self, s: &Summary, t: f64) -> f64 {
        let BgNbd { r, alpha, a, b } = *self;
        let x = s.frequency;
        let head = (a + b + x - 1.0) / (a - 1.0);
        let hyp = hyp2f1(r + x, b + x, a + b + x - 1.0, t / (alpha + s.age + t));
        let tail = 1.0 - ((alpha + s.age) / (alpha + s.age + t)).powf(r + x) * hyp;
        let denom = if x > 0.0 {
            1.0 + (a / (b + x - 1.0)) * ((alpha + s.age) / (alpha + s.recency)).powf(r + x)
        } else {
            1.0
        };
        head * tail / denom
    }
}

/// Fitted Gamma-Gamma parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GammaGamma {
    pub p: f64,
    pub q: f64,
    pub gamma: f64,
}

impl GammaGamma {
    pub fn from_fit(fit: &Fit) -> Result<GammaGamma, BtydError> {
        let [p, q, gamma] = fit.values_of("gamma_gamma")?;
        Ok(GammaGamma { p, q, gamma })
    }

    /// Expected mean spend per purchase.
    pub fn expected_spend(&self, s: &Summary) -> f64 {
        let GammaGamma { p, q, gamma } = *self;
        p * (gamma + s.frequency * s.monetary) / (p * s.frequency + q - 1.0)
    }
}

/// log A0 of the Pareto/NBD likelihood (the integral over the unobserved dropout time),
/// computed with the larger of alpha and beta so that the series converges.
fn pareto_log_a0(p: &[f64], s: &Summary) -> f64 {
    let (r, alpha, sh, beta) = (p[0], p[1], p[2], p[3]);
    let rsx = r + sh + s.frequency;
    let (big, small_t) = if alpha >= beta {
        (alpha, sh + 1.0)
    } else {
        (beta, r + s.frequency)
    };
    let diff = (alpha - beta).abs();
    let (q1, q2) = (big + s.recency, big + s.age);
    let f1 = hyp2f1(rsx, small_t, rsx + 1.0, diff / q1);
    let f2 = hyp2f1(rsx, small_t, rsx + 1.0, diff / q2);
    log_sub_exp(f1.ln() + rsx * q2.ln(), f2.ln() + rsx * q1.ln()) - rsx * (q1 * q2).ln()
}

/// Fitted Pareto/NBD parameters (`s` is the dropout shape, written `sh` in formulas so it is
/// not confused with a customer's summary).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParetoNbd {
    pub r: f64,
    pub alpha: f64,
    pub s: f64,
    pub beta: f64,
}

impl ParetoNbd {
    pub fn from_fit(fit: &Fit) -> Result<ParetoNbd, BtydError> {
        let [r, alpha, s, beta] = fit.values_of("pareto_nbd")?;
        Ok(ParetoNbd { r, alpha, s, beta })
    }

    fn values(&self) -> [f64; 4] {
        [self.r, self.alpha, self.s, self.beta]
    }

    /// Probability that the customer is still active at the end of calibration.
    pub fn p_alive(&self, s: &Summary) -> f64 {
        let [r, alpha, sh, beta] = self.values();
        let x = s.frequency;
        let log_term = sh.ln() - (r + sh + x).ln()
            + (r + x) * (alpha + s.age).ln()
            + sh * (beta + s.age).ln()
            + pareto_log_a0(&self.values(), s);
        1.0 / (1.0 + log_term.exp())
    }

    /// Expected number of purchases in the next `t` time units.
    pub fn expected_purchases(&self, s: &Summary, t: f64) -> f64 {
        let [r, alpha, sh, beta] = self.values();
        let x = s.frequency;
        let rate = (r + x) * (beta + s.age) / ((alpha + s.age) * (sh - 1.0));
        rate * (1.0 - ((beta + s.age) / (beta + s.age + t)).powf(sh - 1.0)) * self.p_alive(s)
    }
}

/// What the buy-till-you-die models say about each customer: BG/NBD's probability of being
/// alive and expected purchases over a horizon, and their expected value (those purchases
/// times Gamma-Gamma's expected spend per purchase).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CustomerOutlook {
    pub p_alive: f64,
    pub expected_purchases: f64,
    /// NaN when Gamma-Gamma was not fitted.
    pub expected_value: f64,
}

/// Fits BG/NBD (and Gamma-Gamma when `with_value`) on `summaries` and gives each customer's
/// outlook over `horizon_weeks`, in the order of `summaries`.
pub fn customer_outlooks(
    summaries: &[Summary],
    horizon_weeks: f64,
    with_value: bool,
) -> Result<Vec<CustomerOutlook>, BtydError> {
    let bgnbd = BgNbd::from_fit(&fit_bgnbd(summaries)?)?;
    let gamma_gamma = if with_value {
        Some(GammaGamma::from_fit(&fit_gamma_gamma(summaries)?)?)
    } else {
        None
    };
    Ok(summaries
        .iter()
        .map(|s| {
            let expected_purchases = bgnbd.expected_purchases(s, horizon_weeks);
            let spend = gamma_gamma.map_or(f64::NAN, |g| g.expected_spend(s));
            CustomerOutlook {
                p_alive: bgnbd.p_alive(s),
                expected_purchases,
                expected_value: expected_purchases * spend,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictions_refuse_another_models_parameters() {
        let gamma_gamma = Fit {
            model: "gamma_gamma",
            parameters: vec![("p", 6.25), ("q", 3.74), ("gamma", 15.44)],
            standard_errors: vec![f64::NAN; 3],
            log_likelihood: 0.0,
            customers: 10,
        };
        let err = ParetoNbd::from_fit(&gamma_gamma).unwrap_err();
        assert_eq!(
            err.to_string(),
            "pareto_nbd predictions need a pareto_nbd fit, got a gamma_gamma fit"
        );
        assert!(BgNbd::from_fit(&gamma_gamma).is_err());
        assert!(GammaGamma::from_fit(&gamma_gamma).is_ok());
    }
}
