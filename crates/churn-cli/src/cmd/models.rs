//! `churn models list|show`: what the registry holds.

use anyhow::Context;
use churn_core::Lake;
use churn_model::backtest::GradeLetter;
use churn_model::metrics::Metrics;
use churn_train::registry;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Every model with its versions, grades and test ROC AUC.
    List(ListArgs),
    /// One version in full: metrics, baselines, features, training window, grade.
    Show(ShowArgs),
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// Lake root: a local path or a URL.
    #[arg(long)]
    lake: String,
}

#[derive(Debug, clap::Args)]
struct ShowArgs {
    /// Lake root: a local path or a URL.
    #[arg(long)]
    lake: String,
    /// NAME or NAME@VERSION (default: the newest version).
    model: String,
}

/// One row of `churn models list`.
#[derive(Debug, serde::Serialize)]
struct ListedVersion {
    name: String,
    version: u32,
    algorithm: String,
    as_of: String,
    trained_at: String,
    grade: GradeLetter,
    roc_auc: f64,
    top_decile_lift: f64,
}

fn metrics_line(label: &str, m: &Metrics) -> String {
    format!(
        "  {label:<30} roc_auc {:.3}  pr_auc {:.3}  top_decile_lift {:.2}  brier {:.3}\n",
        m.roc_auc, m.pr_auc, m.top_decile_lift, m.brier
    )
}

pub async fn run(args: Args, json: bool) -> anyhow::Result<()> {
    match args.what {
        What::List(args) => {
            let lake = Lake::open(&args.lake)?;
            let mut rows = Vec::new();
            for model in registry::list(&lake).await? {
                for &version in &model.versions {
                    let stored = registry::read(&lake, &model.name, Some(version))
                        .await
                        .with_context(|| format!("reading {}@{version}", model.name))?;
                    rows.push(ListedVersion {
                        name: model.name.clone(),
                        version,
                        algorithm: stored.manifest.algorithm,
                        as_of: stored.manifest.as_of,
                        trained_at: stored.manifest.trained_at,
                        grade: stored.report.grade.grade,
                        roc_auc: stored.report.model.roc_auc,
                        top_decile_lift: stored.report.model.top_decile_lift,
                    });
                }
            }
            let summary =
                serde_json::json!({"kind": "models", "lake": lake.display(), "models": rows});
            crate::output::emit(json, &summary, || {
                if rows.is_empty() {
                    return format!(
                        "No models in {} yet; train one with `churn train`.\n",
                        lake.display()
                    );
                }
                let mut text = format!(
                    "{:<24} {:>7} {:<14} {:<11} {:>5} {:>8} {:>6}  {}\n",
                    "name",
                    "version",
                    "algorithm",
                    "test as_of",
                    "grade",
                    "roc_auc",
                    "lift",
                    "trained at"
                );
                for r in &rows {
                    text.push_str(&format!(
                        "{:<24} {:>7} {:<14} {:<11} {:>5} {:>8.3} {:>6.2}  {}\n",
                        r.name,
                        r.version,
                        r.algorithm,
                        r.as_of,
                        r.grade.to_string(),
                        r.roc_auc,
                        r.top_decile_lift,
                        r.trained_at
                    ));
                }
                text
            })
        }
        What::Show(args) => {
            let (name, version) = registry::parse_reference(&args.model)?;
            let lake = Lake::open(&args.lake)?;
            let stored = registry::read(&lake, &name, version).await?;
            let summary = serde_json::json!({
                "kind": "model",
                "name": name,
                "version": stored.version,
                "description": stored.artifact.spec.description,
                "manifest": stored.manifest,
                "metrics": stored.report,
                "features": stored.artifact.preprocessor.inputs.iter().map(|i| serde_json::json!({
                    "name": i.name, "data_type": i.data_type, "description": i.description,
                })).collect::<Vec<_>>(),
                "spec": stored.artifact.spec,
            });
            crate::output::emit(json, &summary, || {
                let (mf, m) = (&stored.manifest, &stored.report);
                let mut text = format!(
                    "{name}@{} ({}, {}-day horizon, seed {})\n",
                    stored.version, mf.algorithm, mf.horizon_days, mf.seed
                );
                if !stored.artifact.spec.description.is_empty() {
                    text.push_str(&format!("  {}\n", stored.artifact.spec.description));
                }
                text.push_str(&format!(
                    "Trained at {} by {}; data fingerprint {}\n",
                    mf.trained_at, mf.code_version, mf.data_fingerprint
                ));
                let slices = [
                    ("training", Some(&mf.snapshots.training)),
                    ("calibration", mf.snapshots.calibration.as_ref()),
                    ("test", Some(&mf.snapshots.test)),
                ];
                for (slice, s) in slices {
                    let Some(s) = s else { continue };
                    text.push_str(&format!(
                        "  {slice:<12} {}: {} rows, {} churners\n",
                        s.snapshots.join(", "),
                        s.customers,
                        s.churners
                    ));
                }
                match &mf.scoring_fit {
                    Some(fit) => text.push_str(&format!(
                        "  scoring fit  {}{}: {} rows, {} churners (artifact.json; the backtested model is backtest_artifact.json)\n",
                        fit.training.snapshots.join(", "),
                        fit.calibration
                            .as_ref()
                            .map(|c| format!(", calibrated on {}", c.snapshots.join(", ")))
                            .unwrap_or_default(),
                        fit.training.customers,
                        fit.training.churners
                    )),
                    None => text.push_str("  scoring fit  none: artifact.json is the backtested model\n"),
                }
                text.push_str("Test metrics:\n");
                text.push_str(&metrics_line("model", &m.model));
                text.push_str(&metrics_line("baseline: rule", &m.baseline_rule.metrics));
                text.push_str(&metrics_line(
                    "baseline: BG/NBD 1 - P(alive)",
                    &m.baseline_bgnbd,
                ));
                text.push_str(&format!(
                    "  (rule: no purchase in {} days)\n",
                    m.baseline_rule.no_purchase_days
                ));
                text.push_str(&format!("Grade {}: {}\n", m.grade.grade, m.grade.verdict));
                text.push_str("Calibration (test snapshot):\n  score bin    customers  mean score  churn rate\n");
                for bin in &m.model.calibration {
                    text.push_str(&format!(
                        "  [{:.1}, {:.1})  {:>9}  {:>10.3}  {:>10.3}\n",
                        bin.lower, bin.upper, bin.customers, bin.mean_score, bin.churn_rate
                    ));
                }
                text.push_str(&format!(
                    "Features ({}):\n",
                    stored.artifact.preprocessor.inputs.len()
                ));
                for i in &stored.artifact.preprocessor.inputs {
                    text.push_str(&format!(
                        "  {:<28} {:<10} {}\n",
                        i.name, i.data_type, i.description
                    ));
                }
                text
            })
        }
    }
}
