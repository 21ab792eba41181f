//! The CDNOW sample (2,357 customers, weekly time unit, calibration to 1997-09-30) against the
//! published maximum-likelihood estimates (Fader, Hardie & Lee 2005; Fader & Hardie's notes),
//! as listed in shared/datasets/cdnow/README.md. The summary file is the one shipped with the
//! lifetimes package (tests/data/).

use churn_model::btyd::{BgNbd, Summary, fit_bgnbd, fit_gamma_gamma, fit_pareto_nbd};
use churn_test_kit::assert_3sf;

fn cdnow() -> Vec<Summary> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/cdnow_customers_summary_with_transactions.csv"
    );
    let mut reader = csv::Reader::from_path(path).unwrap();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            let v = |i: usize| r[i].parse::<f64>().unwrap();
            Summary {
                frequency: v(1),
                recency: v(2),
                age: v(3),
                monetary: v(4),
            }
        })
        .collect()
}

#[test]
fn bgnbd_reproduces_the_published_cdnow_estimates() {
    let data = cdnow();
    assert_eq!(data.len(), 2357);
    let fit = fit_bgnbd(&data).unwrap();
    for (name, published) in [("r", 0.243), ("alpha", 4.414), ("a", 0.793), ("b", 2.426)] {
        assert_3sf(
            format!("{} {name}", fit.model),
            fit.parameter(name),
            published,
        );
    }
    assert!(
        (fit.log_likelihood - -9582.4).abs() < 0.1,
        "{}",
        fit.log_likelihood
    );
    assert!(
        fit.standard_errors
            .iter()
            .all(|se| se.is_finite() && *se > 0.0),
        "{:?}",
        fit.standard_errors
    );
    // A one-time buyer is certainly alive under BG/NBD; a lapsed regular is not.
    assert_eq!(
        BgNbd::from_fit(&fit)
            .unwrap()
            .p_alive(&data[1].clone_with(0.0, 0.0)),
        1.0
    );
    let lapsed = Summary {
        frequency: 10.0,
        recency: 5.0,
        age: 38.86,
        monetary: 20.0,
    };
    assert!(BgNbd::from_fit(&fit).unwrap().p_alive(&lapsed) < 0.1);
}

#[test]
fn pareto_nbd_reproduces_the_published_cdnow_estimates() {
    let fit = fit_pareto_nbd(&cdnow()).unwrap();
    for (name, published) in [
        ("r", 0.553),
        ("alpha", 10.578),
        ("s", 0.606),
        ("beta", 11.669),
    ] {
        assert_3sf(
            format!("{} {name}", fit.model),
            fit.parameter(name),
            published,
        );
    }
    assert!(
        (fit.log_likelihood - -9595.0).abs() < 0.1,
        "{}",
        fit.log_likelihood
    );
}

#[test]
fn gamma_gamma_reproduces_the_published_cdnow_estimates() {
    let data = cdnow();
    let fit = fit_gamma_gamma(&data).unwrap();
    assert_eq!(fit.customers, 946);
    for (name, published) in [("p", 6.25), ("q", 3.74), ("gamma", 15.44)] {
        assert_3sf(
            format!("{} {name}", fit.model),
            fit.parameter(name),
            published,
        );
    }
    assert!(
        (fit.log_likelihood - -4055.9).abs() < 0.1,
        "{}",
        fit.log_likelihood
    );
}

trait CloneWith {
    fn clone_with(&self, frequency: f64, recency: f64) -> Summary;
}

impl CloneWith for Summary {
    fn clone_with(&self, frequency: f64, recency: f64) -> Summary {
        Summary {
            frequency,
            recency,
            ..*self
        }
    }
}
