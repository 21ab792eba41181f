//! `churn models list|show`: what the registry holds.

use anyhow::Context;
use churn_core::Lake;
use churn_model::registry;

use crate::exit::UsageError;

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

fn parse_reference(reference: &str) -> Result<(String, Option<u32>), UsageError> {
    match reference.split_once('@') {
        None => Ok((reference.to_string(), None)),
        Some((name, version)) => version
            .parse::<u32>()
            .map(|v| (name.to_string(), Some(v)))
            .map_err(|_| {
                UsageError(format!(
                    "expected NAME or NAME@VERSION with a whole-number version, got {reference:?}"
                ))
            }),
    }
}

fn number(v: &serde_json::Value, path: &[&str]) -> f64 {
    path.iter()
        .fold(v, |v, key| &v[*key])
        .as_f64()
        .unwrap_or(f64::NAN)
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
                    rows.push(serde_json::json!({
                        "name": model.name,
                        "version": version,
                        "algorithm": stored.manifest["algorithm"],
                        "as_of": stored.manifest["as_of"],
                        "trained_at": stored.manifest["trained_at"],
                        "grade": stored.metrics["grade"]["grade"],
                        "roc_auc": stored.metrics["model"]["roc_auc"],
                        "top_decile_lift": stored.metrics["model"]["top_decile_lift"],
                    }));
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
                        r["name"].as_str().unwrap_or(""),
                        r["version"].to_string(),
                        r["algorithm"].as_str().unwrap_or(""),
                        r["as_of"].as_str().unwrap_or(""),
                        r["grade"].as_str().unwrap_or(""),
                        r["roc_auc"].as_f64().unwrap_or(f64::NAN),
                        r["top_decile_lift"].as_f64().unwrap_or(f64::NAN),
                        r["trained_at"].as_str().unwrap_or("")
                    ));
                }
                text
            })
        }
        What::Show(args) => {
            let (name, version) = parse_reference(&args.model)?;
            let lake = Lake::open(&args.lake)?;
            let stored = registry::read(&lake, &name, version).await?;
            let m = &stored.metrics;
            let summary = serde_json::json!({
                "kind": "model",
                "name": name,
                "version": stored.version,
                "description": stored.artifact.spec.description,
                "manifest": stored.manifest,
                "metrics": m,
                "features": stored.artifact.preprocessor.inputs.iter().map(|i| serde_json::json!({
                    "name": i.name, "data_type": i.data_type, "description": i.description,
                })).collect::<Vec<_>>(),
                "spec": stored.artifact.spec,
            });
            crate::output::emit(json, &summary, || {
                let mf = &stored.manifest;
                let mut text = format!(
                    "{name}@{} ({}, {}-day horizon, seed {})\n",
                    stored.version,
                    mf["algorithm"].as_str().unwrap_or(""),
                    mf["horizon_days"],
                    mf["seed"]
                );
                if !stored.artifact.spec.description.is_empty() {
                    text.push_str(&format!("  {}\n", stored.artifact.spec.description));
                }
                text.push_str(&format!(
                    "Trained at {} by {}; data fingerprint {}\n",
                    mf["trained_at"].as_str().unwrap_or(""),
                    mf["code_version"].as_str().unwrap_or(""),
                    mf["data_fingerprint"].as_str().unwrap_or("")
                ));
                for slice in ["training", "calibration", "test"] {
                    let s = &mf["snapshots"][slice];
                    if s.is_null() {
                        continue;
                    }
                    let dates: Vec<&str> = s["snapshots"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|d| d.as_str())
                        .collect();
                    text.push_str(&format!(
                        "  {slice:<12} {}: {} rows, {} churners\n",
                        dates.join(", "),
                        s["customers"],
                        s["churners"]
                    ));
                }
                text.push_str("Test metrics:\n");
                for (label, key) in [
                    ("model", "model"),
                    ("baseline: rule", "baseline_rule"),
                    ("baseline: BG/NBD 1 - P(alive)", "baseline_bgnbd"),
                ] {
                    let base: Vec<&str> = if key == "baseline_rule" {
                        vec![key, "metrics"]
                    } else {
                        vec![key]
                    };
                    let get = |metric: &str| {
                        let mut path = base.clone();
                        path.push(metric);
                        number(m, &path)
                    };
                    text.push_str(&format!(
                        "  {label:<30} roc_auc {:.3}  pr_auc {:.3}  top_decile_lift {:.2}  brier {:.3}\n",
                        get("roc_auc"), get("pr_auc"), get("top_decile_lift"), get("brier")
                    ));
                }
                text.push_str(&format!(
                    "  (rule: no purchase in {} days)\n",
                    m["baseline_rule"]["no_purchase_days"]
                ));
                text.push_str(&format!(
                    "Grade {}: {}\n",
                    m["grade"]["grade"].as_str().unwrap_or(""),
                    m["grade"]["verdict"].as_str().unwrap_or("")
                ));
                text.push_str("Calibration (test snapshot):\n  score bin    customers  mean score  churn rate\n");
                for bin in m["model"]["calibration"].as_array().into_iter().flatten() {
                    text.push_str(&format!(
                        "  [{:.1}, {:.1})  {:>9}  {:>10.3}  {:>10.3}\n",
                        number(bin, &["lower"]),
                        number(bin, &["upper"]),
                        bin["customers"].to_string(),
                        number(bin, &["mean_score"]),
                        number(bin, &["churn_rate"])
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
