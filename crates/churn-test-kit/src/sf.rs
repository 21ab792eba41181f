//! Agreement with published estimates, which are printed to three significant figures.

use std::fmt::Display;

/// Asserts that `ours` rounds to `published` at its third significant figure: within half a
/// unit of that figure (plus 1e-12 for the binary representation of the bound).
pub fn assert_3sf(what: impl Display, ours: f64, published: f64) {
    let scale = 10f64.powf(published.abs().log10().floor() - 2.0);
    assert!(
        (ours - published).abs() <= 0.5 * scale + 1e-12,
        "{what}: ours {ours}, published {published}"
    );
}

/// [`assert_3sf`] for parameter `name` of a fit as `churn btyd fit --json` prints it.
pub fn assert_fit_3sf(fit: &serde_json::Value, name: &str, published: f64) {
    let ours = fit["parameters"][name]
        .as_f64()
        .unwrap_or_else(|| panic!("no parameter {name} in {fit}"));
    assert_3sf(format!("{} {name}", fit["model"]), ours, published);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_that_round_to_the_published_figures_pass() {
        assert_3sf("r", 0.2434, 0.243);
        assert_3sf("alpha", 10.5784, 10.578);
        assert_3sf("q", 3.7449, 3.74);
        assert_3sf("ll", -9582.449, -9582.4);
    }

    #[test]
    #[should_panic(expected = "r: ours 0.2436, published 0.243")]
    fn a_value_rounding_to_another_third_figure_fails() {
        assert_3sf("r", 0.2436, 0.243);
    }

    #[test]
    #[should_panic(expected = "\"bgnbd\" a: ours 0.8")]
    fn a_fit_report_parameter_off_by_more_than_half_a_unit_fails() {
        let fit = serde_json::json!({"model": "bgnbd", "parameters": {"a": 0.8}});
        assert_fit_3sf(&fit, "a", 0.793);
    }
}
