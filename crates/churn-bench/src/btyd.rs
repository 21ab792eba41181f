//! `churn bench btyd`: each buy-till-you-die model fitted by `churn btyd fit` on the benchmark
//! lake (one process per model), next to lifetimes fitting the same model on the same
//! customers' summaries (computed from the same lake by DuckDB), with both sides' parameters,
//! so that a speed-up is only read beside the agreement of the estimates.

use std::collections::BTreeMap;
use std::process::Command;

use churn_train::fit_btyd::BtydFitSummary;
use serde::{Deserialize, Serialize};

use crate::run::{measure, python_has};
use crate::{Result, Setup};

/// The other side, run with `python -c` so that the binary needs no file beside it.
const LIFETIMES_SCRIPT: &str = include_str!("../scripts/lifetimes_btyd.py");

/// What the other side needs.
const LIFETIMES_MODULES: &[&str] = &["duckdb", "lifetimes"];

/// One model's figures on both sides.
#[derive(Debug, Clone, Serialize)]
pub struct BtydModelFigures {
    pub model: String,
    pub customers: usize,
    /// The whole `churn btyd fit` process: summaries from the lake, fit, per-customer
    /// outputs written to the lake.
    pub churn_wall_seconds: f64,
    pub churn_summaries_seconds: f64,
    pub churn_fit_seconds: f64,
    pub churn_peak_rss_mib: f64,
    pub churn_parameters: BTreeMap<String, f64>,
    /// lifetimes' fit alone (absent without lifetimes).
    pub lifetimes_fit_seconds: Option<f64>,
    pub lifetimes_parameters: Option<BTreeMap<String, f64>>,
    /// churn's fit time over lifetimes'.
    pub fit_time_ratio_churn_over_lifetimes: Option<f64>,
    /// The largest relative difference between the two sides' parameters.
    pub max_relative_parameter_difference: Option<f64>,
}

/// Every model's figures, and the Python side's summary and process.
#[derive(Debug, Clone, Serialize)]
pub struct BtydFigures {
    pub kind: &'static str,
    pub as_of: String,
    pub models: Vec<BtydModelFigures>,
    /// DuckDB's summaries for lifetimes, and how many customers they have.
    pub duckdb_summary_seconds: Option<f64>,
    pub lifetimes_customers: Option<usize>,
    /// The whole Python process (summary and every fit).
    pub python_wall_seconds: Option<f64>,
    pub python_peak_rss_mib: Option<f64>,
}

/// lifetimes' side as `scripts/lifetimes_btyd.py` prints it.
#[derive(Debug, Deserialize)]
struct LifetimesRun {
    summary_seconds: f64,
    customers: usize,
    fits: Vec<LifetimesFit>,
}

#[derive(Debug, Deserialize)]
struct LifetimesFit {
    model: String,
    fit_seconds: f64,
    parameters: BTreeMap<String, f64>,
}

/// Fits each of `models` (bgnbd, pareto-nbd, gamma-gamma) as of `as_of` with churn, then with
/// lifetimes when `setup.python` has it.
pub fn bench_btyd(
    setup: &Setup,
    as_of: &str,
    models: &[&str],
    progress: &dyn Fn(&str),
) -> Result<BtydFigures> {
    let lake = setup.lake(progress)?;
    let mut figures = Vec::new();
    for model in models {
        progress(&format!("churn btyd fit --model {model} ..."));
        let run = measure(
            Command::new(&setup.churn)
                .args(["btyd", "fit", "--json", "--as-of", as_of, "--model", model])
                .arg("--lake")
                .arg(&lake),
        )?;
        let fit: BtydFitSummary = run.json("the btyd fit summary")?;
        figures.push(BtydModelFigures {
            model: model.to_string(),
            customers: fit.customers,
            churn_wall_seconds: run.wall_seconds,
            churn_summaries_seconds: fit.summaries_ms as f64 / 1000.0,
            churn_fit_seconds: fit.fit_ms as f64 / 1000.0,
            churn_peak_rss_mib: run.peak_rss_mib,
            churn_parameters: fit.parameters,
            lifetimes_fit_seconds: None,
            lifetimes_parameters: None,
            fit_time_ratio_churn_over_lifetimes: None,
            max_relative_parameter_difference: None,
        });
    }
    let mut result = BtydFigures {
        kind: "bench_btyd",
        as_of: as_of.to_string(),
        models: figures,
        duckdb_summary_seconds: None,
        lifetimes_customers: None,
        python_wall_seconds: None,
        python_peak_rss_mib: None,
    };
    let python = &setup.python;
    if !python_has(python, LIFETIMES_MODULES) {
        progress(&format!(
            "lifetimes is not available ({python} -c 'import {}' failed); printing our figures only",
            LIFETIMES_MODULES.join(", ")
        ));
        return Ok(result);
    }
    progress("lifetimes on DuckDB's summaries of the same lake ...");
    let run = measure(
        Command::new(python)
            .args(["-c", LIFETIMES_SCRIPT])
            .arg(&lake)
            .arg(as_of)
            .arg(models.join(",")),
    )?;
    let lifetimes: LifetimesRun = run.json("the lifetimes figures")?;
    result.duckdb_summary_seconds = Some(lifetimes.summary_seconds);
    result.lifetimes_customers = Some(lifetimes.customers);
    result.python_wall_seconds = Some(run.wall_seconds);
    result.python_peak_rss_mib = Some(run.peak_rss_mib);
    for theirs in lifetimes.fits {
        let Some(ours) = result.models.iter_mut().find(|m| m.model == theirs.model) else {
            continue;
        };
        ours.fit_time_ratio_churn_over_lifetimes =
            Some(ours.churn_fit_seconds / theirs.fit_seconds);
        ours.max_relative_parameter_difference = ours
            .churn_parameters
            .iter()
            .filter_map(|(name, value)| {
                let other = theirs.parameters.get(name)?;
                Some(((value - other) / other).abs())
            })
            .reduce(f64::max);
        ours.lifetimes_fit_seconds = Some(theirs.fit_seconds);
        ours.lifetimes_parameters = Some(theirs.parameters);
    }
    Ok(result)
}
