//! `churn btyd fit`: one buy-till-you-die model fitted on the lake as of a date, with its
//! parameters, standard errors and log-likelihood, and per-customer outputs written to
//! `<lake>/btyd/model=M/grain=G/as_of=D/`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use chrono::NaiveDate;
use churn_core::Lake;
use churn_core::session::SessionOptions;
use churn_features::write::PartitionManifest;
use churn_features::{BtydInput, Grain, Scope, btyd_inputs};
use churn_model::ModelError;
use churn_model::btyd::{
    self, BgNbd, BtydError, ExpectedPurchases, Fit, GammaGamma, ParetoNbd, Summary,
};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::outlook::summary;

/// The buy-till-you-die models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BtydModel {
    Bgnbd,
    ParetoNbd,
    GammaGamma,
}

impl BtydModel {
    pub fn name(self) -> &'static str {
        match self {
            BtydModel::Bgnbd => "bgnbd",
            BtydModel::ParetoNbd => "pareto-nbd",
            BtydModel::GammaGamma => "gamma-gamma",
        }
    }

    fn fit(self, data: &[Summary]) -> Result<Fit, BtydError> {
        match self {
            BtydModel::Bgnbd => btyd::fit_bgnbd(data),
            BtydModel::ParetoNbd => btyd::fit_pareto_nbd(data),
            BtydModel::GammaGamma => btyd::fit_gamma_gamma(data),
        }
    }

    /// The per-customer outputs of a fit of this model for `summaries`, by column name.
    fn outputs(
        self,
        fit: &Fit,
        horizon_weeks: f64,
        summaries: &[Summary],
    ) -> Result<Vec<PerCustomer>, BtydError> {
        let each = |value: &dyn Fn(&Summary) -> f64| summaries.iter().map(value).collect();
        Ok(match self {
            BtydModel::Bgnbd => {
                let m = BgNbd::from_fit(fit)?;
                // Far fewer (frequency, age) pairs than customers: the series each needs is
                // summed once per pair, with the same value to the bit.
                let mut expected = ExpectedPurchases::new(&m, &[horizon_weeks]);
                vec![
                    ("p_alive", each(&|s| m.p_alive(s))),
                    (
                        "expected_purchases",
                        summaries.iter().map(|s| expected.of(s)[0]).collect(),
                    ),
                ]
            }
            BtydModel::ParetoNbd => {
                let m = ParetoNbd::from_fit(fit)?;
                vec![
                    ("p_alive", each(&|s| m.p_alive(s))),
                    (
                        "expected_purchases",
                        each(&|s| m.expected_purchases(s, horizon_weeks)),
                    ),
                ]
            }
            BtydModel::GammaGamma => {
                let m = GammaGamma::from_fit(fit)?;
                vec![("expected_spend", each(&|s| m.expected_spend(s)))]
            }
        })
    }
}

/// One of a summary's own values.
type SummaryColumn = fn(&Summary) -> f64;

/// A named per-customer value, one per summary in order.
type PerCustomer = (&'static str, Vec<f64>);

/// What a fit found and where its per-customer outputs went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BtydFitSummary {
    pub kind: String,
    pub model: String,
    pub as_of: String,
    pub grain: String,
    pub customers: usize,
    /// Parameter names in the model's conventional order (r, alpha, a, b for BG/NBD).
    pub parameter_order: Vec<String>,
    pub parameters: BTreeMap<String, f64>,
    pub standard_errors: BTreeMap<String, f64>,
    pub log_likelihood: f64,
    pub output: String,
    /// Reading the customers' summaries from the lake.
    pub summaries_ms: u64,
    /// Maximum likelihood and standard errors.
    pub fit_ms: u64,
    pub duration_ms: u64,
}

/// The summaries and per-customer outputs as a record batch.
fn outputs_batch(
    inputs: &[BtydInput],
    summaries: &[Summary],
    outputs: Vec<PerCustomer>,
) -> Result<RecordBatch> {
    let ids: StringArray = inputs
        .iter()
        .map(|i| Some(i.customer_id.as_str()))
        .collect();
    let mut fields = vec![Field::new("customer_id", DataType::Utf8, false)];
    let mut columns: Vec<ArrayRef> = vec![Arc::new(ids)];
    let summary_columns: [(&str, SummaryColumn); 4] = [
        ("frequency", |s| s.frequency),
        ("recency_weeks", |s| s.recency),
        ("age_weeks", |s| s.age),
        ("monetary", |s| s.monetary),
    ];
    let own = summary_columns
        .iter()
        .map(|(n, f)| (*n, summaries.iter().map(f).collect::<Float64Array>()));
    let fitted = outputs
        .into_iter()
        .map(|(n, values)| (n, Float64Array::from(values)));
    for (name, values) in own.chain(fitted) {
        fields.push(Field::new(name, DataType::Float64, false));
        columns.push(Arc::new(values));
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(datafusion::error::DataFusionError::from)?)
}

/// Fits `model` on every customer with a purchase before `as_of` and writes their outputs
/// over `horizon_days`.
pub async fn fit_btyd(
    lake: &Lake,
    as_of: NaiveDate,
    model: BtydModel,
    grain: Grain,
    horizon_days: u32,
    session: &SessionOptions,
) -> Result<BtydFitSummary> {
    let started = Instant::now();
    let inputs = btyd_inputs(lake, as_of, grain, session, Scope::Everyone).await?;
    let summaries: Vec<Summary> = inputs.iter().map(summary).collect();
    let summaries_ms = started.elapsed().as_millis() as u64;
    let wrap = |source| ModelError::Btyd { as_of, source };
    let fitting = Instant::now();
    let fit = model.fit(&summaries).map_err(wrap)?;
    let fit_ms = fitting.elapsed().as_millis() as u64;
    let outputs = model
        .outputs(&fit, horizon_days as f64 / 7.0, &summaries)
        .map_err(wrap)?;
    let batch = outputs_batch(&inputs, &summaries, outputs)?;
    let df = datafusion::prelude::SessionContext::new().read_batch(batch)?;
    let name = model.name();
    let grain = match grain {
        Grain::Day => "day",
        Grain::Week => "week",
    };
    let job = churn_core::commit::job_id("btyd", name);
    let folder = format!("btyd/model={name}/grain={grain}/as_of={as_of}");
    let manifest = PartitionManifest::new("btyd", as_of)
        .with("model", name)
        .with("grain", grain)
        .with("fit", &fit);
    let written = churn_features::write::write_partition(lake, df, &folder, &job, manifest).await?;
    let by_name = |values: Vec<f64>| -> BTreeMap<String, f64> {
        fit.parameters
            .iter()
            .map(|(n, _)| n.to_string())
            .zip(values)
            .collect()
    };
    Ok(BtydFitSummary {
        kind: "btyd_fit".into(),
        model: name.into(),
        as_of: as_of.to_string(),
        grain: grain.into(),
        customers: fit.customers,
        parameter_order: fit.parameters.iter().map(|(n, _)| n.to_string()).collect(),
        parameters: by_name(fit.parameters.iter().map(|(_, v)| *v).collect()),
        standard_errors: by_name(fit.standard_errors.clone()),
        log_likelihood: fit.log_likelihood,
        output: written.path,
        summaries_ms,
        fit_ms,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}
