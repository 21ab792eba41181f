//! `churn bench train`: training time and peak memory of each algorithm on the benchmark lake
//! (one `churn train` process per algorithm) with the test ROC AUC, next to scikit-learn's
//! LogisticRegression and LightGBM fitted on the same training snapshots and columns.

use std::process::Command;

use churn_train::TrainReport;
use serde::{Deserialize, Serialize};

use crate::run::{measure, python_has};
use crate::{BenchError, Result, Setup};

/// The other side, run with `python -c` so that the binary needs no file beside it.
const SKLEARN_SCRIPT: &str = include_str!("../scripts/sklearn_train.py");

/// What the other side needs.
const SKLEARN_MODULES: &[&str] = &["duckdb", "numpy", "sklearn", "lightgbm"];

/// One trained algorithm's figures.
#[derive(Debug, Clone, Serialize)]
pub struct TrainFigures {
    pub tool: String,
    /// The whole process: for churn reading snapshots, fitting, evaluating, registering; for
    /// the Python side, fitting both of its models.
    pub wall_seconds: f64,
    /// The learner's fit alone.
    pub fit_seconds: f64,
    pub peak_rss_mib: f64,
    pub training_rows: u64,
    pub test_roc_auc: f64,
}

/// Every algorithm's figures, churn's first.
#[derive(Debug, Clone, Serialize)]
pub struct TrainResults {
    pub kind: &'static str,
    pub as_of: String,
    pub btyd_features: bool,
    pub results: Vec<TrainFigures>,
}

/// One model of the Python side, as `scripts/sklearn_train.py` prints it.
#[derive(Debug, Deserialize)]
struct SklearnFit {
    tool: String,
    fit_seconds: f64,
    rows: u64,
    test_roc_auc: f64,
}

/// Trains each of `algorithms` with test snapshot `as_of` (after one untimed run that builds
/// the schedule's snapshots), then the Python side on the training snapshots churn fitted on
/// when `setup.python` has its modules.
pub fn bench_train(
    setup: &Setup,
    as_of: &str,
    algorithms: &[&str],
    btyd: bool,
    progress: &dyn Fn(&str),
) -> Result<TrainResults> {
    let lake = setup.lake(progress)?;
    let models = setup.work.join("bench-models");
    std::fs::create_dir_all(&models).map_err(|e| BenchError::io(&models, e))?;
    let mut results = Vec::new();
    let mut fitted_on: Option<Vec<String>> = None;
    for (k, algorithm) in algorithms.iter().enumerate() {
        let name = format!("bench-{algorithm}");
        let file = models.join(format!("{name}.toml"));
        std::fs::write(
            &file,
            format!(
                "name = \"{name}\"\nalgorithm = \"{algorithm}\"\n[features]\nexclude = [\"tier\"]\nbtyd = {btyd}\n"
            ),
        )
        .map_err(|e| BenchError::io(&file, e))?;
        let train = || {
            let mut cmd = Command::new(&setup.churn);
            cmd.args(["train", "--json", "--as-of", as_of, "--lake"])
                .arg(&lake)
                .arg("--model")
                .arg(&file);
            cmd
        };
        if k == 0 {
            progress("building the feature and label snapshots of the schedule (untimed) ...");
            measure(&mut train())?;
        }
        progress(&format!("training {algorithm} ..."));
        let run = measure(&mut train())?;
        let report: TrainReport = run.json("the train report")?;
        fitted_on.get_or_insert_with(|| report.training.snapshots.clone());
        results.push(TrainFigures {
            tool: format!("churn train {algorithm}"),
            wall_seconds: run.wall_seconds,
            fit_seconds: report.fit_ms as f64 / 1000.0,
            peak_rss_mib: run.peak_rss_mib,
            training_rows: report.training.customers,
            test_roc_auc: report.model.roc_auc,
        });
    }
    let python = &setup.python;
    if let Some(fit) = &fitted_on {
        if python_has(python, SKLEARN_MODULES) {
            // The same fitting rows as churn: its training snapshots (churn holds the
            // calibration snapshot out of the fit).
            let run = measure(
                Command::new(python)
                    .args(["-c", SKLEARN_SCRIPT])
                    .arg(&lake)
                    .arg(fit.join(","))
                    .arg(as_of),
            )?;
            let fits: Vec<SklearnFit> = run.json("the scikit-learn figures")?;
            results.extend(fits.into_iter().map(|f| TrainFigures {
                tool: f.tool,
                wall_seconds: run.wall_seconds,
                fit_seconds: f.fit_seconds,
                peak_rss_mib: run.peak_rss_mib,
                training_rows: f.rows,
                test_roc_auc: f.test_roc_auc,
            }));
        } else {
            progress(&format!(
                "scikit-learn and LightGBM are not available ({python} -c 'import {}' failed); printing our figures only",
                SKLEARN_MODULES.join(", ")
            ));
        }
    }
    Ok(TrainResults {
        kind: "bench_train",
        as_of: as_of.to_string(),
        btyd_features: btyd,
        results,
    })
}
