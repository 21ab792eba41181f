//! `churn train`: train a model file on the lake with a time-based backtest, compare it with
//! the baselines, grade it and register it.

use std::path::PathBuf;

use anyhow::Context;
use churn_core::Lake;
use churn_core::session::SessionOptions;
use churn_features::FeatureOptions;
use churn_model::ModelSpec;
use churn_model::backtest::GradeLetter;
use churn_model::metrics::Metrics;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Lake root: a local path or a URL.
    #[arg(long)]
    lake: String,
    /// Model file (models/<name>.toml).
    #[arg(long)]
    model: PathBuf,
    /// Test snapshot D: the model trains on snapshots whose labels are observed before D
    /// and is measured on D, so the lake must cover D + horizon - 1.
    #[arg(long, value_parser = super::parse_date)]
    as_of: chrono::NaiveDate,
    /// Folder of feature SQL files for snapshots the lake lacks; default pipelines/features
    /// when it exists, else the built-in files.
    #[arg(long)]
    features_dir: Option<PathBuf>,
    /// Population window of snapshots built here (days).
    #[arg(long, default_value_t = churn_features::DEFAULT_LOOKBACK_DAYS)]
    lookback_days: u32,
    /// Register the backtested model itself instead of refitting it on the newest labelled
    /// snapshots (the test snapshot included) to score with.
    #[arg(long)]
    backtest_only: bool,
    /// Memory budget of the query engine (e.g. 2GiB); beyond it, work spills to disk.
    #[arg(long, value_parser = super::parse_bytes)]
    memory_limit: Option<usize>,
}

fn metrics_line(label: &str, m: &Metrics) -> String {
    format!(
        "  {label:<34} roc_auc {:.3}  pr_auc {:.3}  top_decile_lift {:.2}  brier {:.3}\n",
        m.roc_auc, m.pr_auc, m.top_decile_lift, m.brier
    )
}

pub async fn run(args: Args, json: bool) -> anyhow::Result<()> {
    let spec = ModelSpec::load(&args.model)?;
    let lake = Lake::open(&args.lake)?;
    let features = FeatureOptions {
        session: SessionOptions::with_memory_limit(args.memory_limit),
        files: super::features::feature_files(args.features_dir.as_ref())?,
        lookback_days: args.lookback_days,
    };
    let register = if args.backtest_only {
        churn_train::Register::BacktestOnly
    } else {
        churn_train::Register::ScoringFit
    };
    let report = crate::lease::writing(&lake, "churn train", async |lake| {
        churn_train::train(lake, &spec, args.as_of, &features, register)
            .await
            .with_context(|| {
                format!(
                    "training {} on {} with test snapshot {}",
                    args.model.display(),
                    lake.display(),
                    args.as_of
                )
            })
    })
    .await?;
    if report.grade.grade == GradeLetter::C {
        eprintln!(
            "WARNING: model {}@{} is grade C: it {}.",
            report.name, report.version, report.grade.verdict
        );
    }
    crate::output::emit(json, &report, || {
        let mut text = format!(
            "Trained {}@{} ({}, {}-day horizon) in {:.1} s\n",
            report.name,
            report.version,
            report.algorithm,
            report.horizon_days,
            report.duration_ms as f64 / 1000.0
        );
        text.push_str(&format!(
            "  training snapshots {}: {} rows, {} churners\n",
            report.training.snapshots.join(", "),
            report.training.customers,
            report.training.churners
        ));
        if let Some(c) = &report.calibration {
            text.push_str(&format!(
                "  calibration snapshot {}: {} rows, {} churners\n",
                c.snapshots.join(", "),
                c.customers,
                c.churners
            ));
        }
        text.push_str(&format!(
            "  test snapshot {}: {} customers, {} churners\n",
            report.as_of, report.test.customers, report.test.churners
        ));
        if let Some(s) = &report.sampling {
            text.push_str(&format!(
                "  sampled: {:.1} % of the customers (the same ones in every snapshot): their frames \
                 would take about {} MiB, over half the memory limit ({} MiB)\n",
                s.kept_share * 100.0,
                s.estimated_bytes >> 20,
                s.frame_budget_bytes >> 20
            ));
        }
        text.push_str(&format!("Test metrics (snapshot {}):\n", report.as_of));
        text.push_str(&metrics_line("model", &report.model));
        text.push_str(&metrics_line(
            &format!(
                "baseline: no purchase in {} days",
                report.baseline_rule.no_purchase_days
            ),
            &report.baseline_rule.metrics,
        ));
        text.push_str(&metrics_line(
            "baseline: BG/NBD 1 - P(alive)",
            &report.baseline_bgnbd,
        ));
        text.push_str(&format!(
            "Grade {}: at the rule's precision {:.3}, the model finds {:.1} % of churners, the rule {:.1} %; it {}.\n",
            report.grade.grade,
            report.grade.rule_precision,
            100.0 * report.grade.model_recall_at_rule_precision,
            100.0 * report.grade.rule_recall,
            report.grade.verdict
        ));
        if !report.skipped_features.is_empty() {
            text.push_str(&format!(
                "Skipped (type not usable): {}\n",
                report.skipped_features.join(", ")
            ));
        }
        match &report.scoring_fit {
            Some(fit) => text.push_str(&format!(
                "Refitted to score with on snapshots {}{} ({} rows, {} churners)\n",
                fit.training.snapshots.join(", "),
                fit.calibration
                    .as_ref()
                    .map(|c| format!(", calibrated on {}", c.snapshots.join(", ")))
                    .unwrap_or_default(),
                fit.training.customers,
                fit.training.churners
            )),
            None => text.push_str("Registered the backtested model itself (--backtest-only)\n"),
        }
        text.push_str(&format!("Registered in {}\n", report.registry_path));
        text
    })
}
