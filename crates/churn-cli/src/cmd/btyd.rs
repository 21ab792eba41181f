//! `churn btyd fit`: fit a buy-till-you-die model on the lake as of a date, print its
//! parameters, log-likelihood and standard errors, and write per-customer scores.

use std::sync::Arc;

use anyhow::Context;
use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use churn_core::Lake;
use churn_core::session::SessionOptions;
use churn_model::btyd::{self, Fit, Summary};

use crate::exit::UsageError;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Fit a model on every customer with a purchase before --as-of and score them.
    Fit(FitArgs),
}

#[derive(Debug, clap::Args)]
struct FitArgs {
    /// Lake root: a local path or a URL.
    #[arg(long)]
    lake: String,
    /// End of calibration: purchases before this date count; age runs to the day before it.
    #[arg(long, value_parser = super::parse_date)]
    as_of: chrono::NaiveDate,
    /// bgnbd, pareto-nbd or gamma-gamma.
    #[arg(long)]
    model: String,
    /// Horizon of the expected purchases, in days.
    #[arg(long, default_value_t = 90)]
    horizon_days: u32,
    /// Purchase periods: `day` (purchases on one day count once; the published convention)
    /// or `week` (Monday-to-Sunday weeks count once; whole weeks).
    #[arg(long, value_enum, default_value_t = GrainArg::Day)]
    grain: GrainArg,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum GrainArg {
    Day,
    Week,
}

fn summary(i: &churn_features::BtydInput) -> Summary {
    Summary {
        frequency: i.frequency,
        recency: i.recency_weeks,
        age: i.age_weeks,
        monetary: i.monetary,
    }
}

/// A per-customer value computed from a summary.
type Score<'a> = Box<dyn Fn(&Summary) -> f64 + 'a>;

/// Per-customer scores of a fitted model, as a record batch.
fn scores(
    model: &str,
    fit: &Fit,
    inputs: &[churn_features::BtydInput],
    horizon_weeks: f64,
) -> anyhow::Result<RecordBatch> {
    let mut named: Vec<(&str, Score<'_>)> = vec![
        ("frequency", Box::new(|s: &Summary| s.frequency)),
        ("recency_weeks", Box::new(|s: &Summary| s.recency)),
        ("age_weeks", Box::new(|s: &Summary| s.age)),
        ("monetary", Box::new(|s: &Summary| s.monetary)),
    ];
    match model {
        "bgnbd" => {
            named.push((
                "p_alive",
                Box::new(|s: &Summary| btyd::bgnbd_p_alive(fit, s)),
            ));
            named.push((
                "expected_purchases",
                Box::new(move |s: &Summary| btyd::bgnbd_expected_purchases(fit, s, horizon_weeks)),
            ));
        }
        "pareto-nbd" => {
            named.push((
                "p_alive",
                Box::new(|s: &Summary| btyd::pareto_nbd_p_alive(fit, s)),
            ));
            named.push((
                "expected_purchases",
                Box::new(move |s: &Summary| {
                    btyd::pareto_nbd_expected_purchases(fit, s, horizon_weeks)
                }),
            ));
        }
        _ => named.push((
            "expected_spend",
            Box::new(|s: &Summary| btyd::gamma_gamma_expected_spend(fit, s)),
        )),
    }
    let summaries: Vec<Summary> = inputs.iter().map(summary).collect();
    let ids: StringArray = inputs
        .iter()
        .map(|i| Some(i.customer_id.as_str()))
        .collect();
    let mut fields = vec![Field::new("customer_id", DataType::Utf8, false)];
    let mut columns: Vec<ArrayRef> = vec![Arc::new(ids)];
    for (name, score) in &named {
        fields.push(Field::new(*name, DataType::Float64, false));
        columns.push(Arc::new(
            summaries.iter().map(score).collect::<Float64Array>(),
        ));
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

pub async fn run(args: Args, json: bool) -> anyhow::Result<()> {
    let What::Fit(args) = args.what;
    let model = args.model.to_ascii_lowercase().replace('_', "-");
    let fitter: fn(&[Summary]) -> Result<Fit, btyd::BtydError> = match model.as_str() {
        "bgnbd" | "bg-nbd" => btyd::fit_bgnbd,
        "pareto-nbd" | "paretonbd" => btyd::fit_pareto_nbd,
        "gamma-gamma" | "gammagamma" => btyd::fit_gamma_gamma,
        other => {
            return Err(UsageError(format!(
                "--model: expected bgnbd, pareto-nbd or gamma-gamma, got {other:?}"
            ))
            .into());
        }
    };
    let model = match model.as_str() {
        "bg-nbd" => "bgnbd".to_string(),
        "paretonbd" => "pareto-nbd".to_string(),
        "gammagamma" => "gamma-gamma".to_string(),
        m => m.to_string(),
    };
    let lake = Lake::open(&args.lake)?;
    let started = std::time::Instant::now();
    let inputs = churn_features::btyd_inputs(
        &lake,
        args.as_of,
        match args.grain {
            GrainArg::Day => churn_features::Grain::Day,
            GrainArg::Week => churn_features::Grain::Week,
        },
        &SessionOptions::default(),
    )
    .await
    .with_context(|| {
        format!(
            "summarising customers of {} before {}",
            lake.display(),
            args.as_of
        )
    })?;
    let data: Vec<Summary> = inputs.iter().map(summary).collect();
    let fit = fitter(&data).with_context(|| format!("fitting {model}"))?;
    let batch = scores(&model, &fit, &inputs, args.horizon_days as f64 / 7.0)?;
    let df = datafusion::prelude::SessionContext::new().read_batch(batch)?;
    let job = churn_features::write::job_id("btyd", &model);
    let grain = format!("{:?}", args.grain).to_lowercase();
    let folder = format!("btyd/model={model}/grain={grain}/as_of={}", args.as_of);
    let manifest = serde_json::json!({"kind": "btyd", "model": model, "grain": grain, "as_of": args.as_of.to_string(), "fit": &fit});
    let written =
        churn_features::write::write_partition(&lake, df, &folder, &job, manifest).await?;
    let summary = serde_json::json!({
        "kind": "btyd_fit",
        "model": model,
        "as_of": args.as_of.to_string(),
        "grain": grain,
        "customers": fit.customers,
        "parameters": fit.parameters.iter().map(|(n, v)| (n.to_string(), *v)).collect::<std::collections::BTreeMap<_, _>>(),
        "standard_errors": fit.parameters.iter().zip(&fit.standard_errors).map(|((n, _), se)| (n.to_string(), *se)).collect::<std::collections::BTreeMap<_, _>>(),
        "log_likelihood": fit.log_likelihood,
        "output": written.path,
        "duration_ms": started.elapsed().as_millis() as u64,
    });
    crate::output::emit(json, &summary, || {
        let mut text = format!(
            "{model} fitted on {} customers as of {} (log-likelihood {:.2}):\n",
            fit.customers, args.as_of, fit.log_likelihood
        );
        for ((name, value), se) in fit.parameters.iter().zip(&fit.standard_errors) {
            text.push_str(&format!("  {name:<6} {value:>10.4}  (se {se:.4})\n"));
        }
        text.push_str(&format!("  per-customer scores -> {}\n", written.path));
        text
    })
}
