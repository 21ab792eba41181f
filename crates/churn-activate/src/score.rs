//! `churn score`: every customer of the population of D (their feature snapshot, built if
//! missing) scored with a registered model. Labels are never read.
//!
//! Columns (see the README): `churn_probability` is the model's calibrated probability of no
//! purchase within its horizon; `risk_band` cuts it at the model file's
//! `[scoring] risk_band_cutoffs`; `risk_percentile` is the percentage of the population with a
//! lower probability (ties count half); `p_alive` and `expected_purchases_90d` come from
//! BG/NBD fitted on the history before D; `expected_value_12m` is the expected spend of the
//! next twelve months (BG/NBD purchases per month × Gamma-Gamma spend per purchase, each month
//! discounted at the annual rate); `value_at_risk` is `churn_probability × expected_value_12m`;
//! `reason_1..3` are the features that push the customer's risk up most.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema};
use chrono::NaiveDate;
use churn_core::Lake;
use churn_features::write::PartitionManifest;
use churn_features::{
    BtydInput, FeatureOptions, Grain, Scope, beside_each_other, btyd_inputs, ensure_snapshot,
};
use churn_model::backtest::add_btyd_columns;
use churn_model::btyd::{
    BgNbd, CustomerOutlook, ExpectedPurchases, GammaGamma, Summary, fit_bgnbd, fit_gamma_gamma,
};
use churn_model::dataset::Frame;
use churn_model::explain::{Directions, predict_and_reason_texts};
use churn_model::spec::ScoringSpec;
use churn_model::{ModelError, ModelSpec};
use churn_train::Result;
use churn_train::frames::read_features;
use churn_train::outlook::summary;
use churn_train::registry;
use serde::{Deserialize, Serialize};

/// Days in a month of the 12-month value: a year's days over twelve.
const MONTH_DAYS: f64 = 365.25 / 12.0;

/// Customers per risk band.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BandCounts {
    pub low: u64,
    pub medium: u64,
    pub high: u64,
}

/// What `churn score` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoreSummary {
    pub kind: String,
    pub as_of: String,
    pub model_name: String,
    pub model_version: u32,
    pub customers: u64,
    pub risk_bands: BandCounts,
    /// Sum of value_at_risk over the population.
    pub value_at_risk: f64,
    /// Whether the feature snapshot of D was built by this run.
    pub built_features: bool,
    pub output: String,
    pub duration_ms: u64,
}

/// The band of a probability.
pub fn risk_band(probability: f64, scoring: &ScoringSpec) -> &'static str {
    let [medium, high] = scoring.risk_band_cutoffs;
    if probability >= high {
        "high"
    } else if probability >= medium {
        "medium"
    } else {
        "low"
    }
}

/// Percentage of `values` below each value, ties counting half.
pub fn percentiles(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let n = values.len() as f64;
    let mut out = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j < order.len() && values[order[j]].total_cmp(&values[order[i]]).is_eq() {
            j += 1;
        }
        // Those below, plus half of the other customers with the same value.
        let below = i as f64 + (j - i - 1) as f64 / 2.0;
        for &k in &order[i..j] {
            out[k] = 100.0 * below / n;
        }
        i = j;
    }
    out
}

/// The ends of the next twelve months, in weeks from D.
fn month_ends_weeks() -> impl Iterator<Item = f64> {
    (1..=12).map(|month| month as f64 * MONTH_DAYS / 7.0)
}

/// The expected spend over the next twelve months (`expected_value_12m`), each month's
/// expected purchases discounted at `annual_rate` to today, from the expected spend per
/// purchase and the expected purchases by the end of each of the twelve months.
fn discounted_value(spend: f64, purchases_by_month: &[f64], annual_rate: f64) -> f64 {
    let mut value = 0.0;
    let mut before = 0.0;
    for (month, &purchases) in (1..=12).zip(purchases_by_month) {
        value += (purchases - before) * spend / (1.0 + annual_rate).powf(month as f64 / 12.0);
        before = purchases;
    }
    value
}

/// The population's buy-till-you-die parameters a score uses: fitted on every customer's
/// history before D by `churn score`, and stored in its manifest for the live scores that
/// follow it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BtydParameters {
    pub bgnbd: BgNbd,
    pub gamma_gamma: GammaGamma,
}

impl BtydParameters {
    /// BG/NBD and Gamma-Gamma fitted on the summaries of D.
    pub fn fit(summaries: &[Summary], as_of: NaiveDate) -> Result<BtydParameters> {
        let wrap = |source| ModelError::Btyd { as_of, source };
        Ok(BtydParameters {
            bgnbd: BgNbd::from_fit(&fit_bgnbd(summaries).map_err(wrap)?).map_err(wrap)?,
            gamma_gamma: GammaGamma::from_fit(&fit_gamma_gamma(summaries).map_err(wrap)?)
                .map_err(wrap)?,
        })
    }
}

/// The buy-till-you-die view of each customer as of D.
pub(crate) struct Outlooks {
    /// Over the model's horizon, for its BTYD feature columns.
    model_horizon: HashMap<String, CustomerOutlook>,
    /// (P(alive), expected purchases in 90 days, expected 12-month value).
    scores: HashMap<String, [f64; 3]>,
}

impl Outlooks {
    /// Each customer's outlook under `params`.
    pub(crate) fn of(inputs: &[BtydInput], params: &BtydParameters, spec: &ModelSpec) -> Outlooks {
        let BtydParameters { bgnbd, gamma_gamma } = params;
        let horizon_weeks = spec.horizon_days as f64 / 7.0;
        // Sized once: growing two maps of a million ids rehashed every id several times.
        let mut model_horizon = HashMap::with_capacity(inputs.len());
        let mut scores = HashMap::with_capacity(inputs.len());
        // The model's horizon, 90 days, then the ends of the next twelve months.
        let mut horizons = vec![horizon_weeks, 90.0 / 7.0];
        horizons.extend(month_ends_weeks());
        let mut expected_purchases = ExpectedPurchases::new(bgnbd, &horizons);
        for input in inputs {
            let s = summary(input);
            let purchases = expected_purchases.of(&s);
            let p_alive = bgnbd.p_alive(&s);
            let spend = gamma_gamma.expected_spend(&s);
            model_horizon.insert(
                input.customer_id.clone(),
                CustomerOutlook {
                    p_alive,
                    expected_purchases: purchases[0],
                    expected_value: purchases[0] * spend,
                },
            );
            let rate = spec.scoring.annual_discount_rate;
            scores.insert(
                input.customer_id.clone(),
                [
                    p_alive,
                    purchases[1],
                    discounted_value(spend, &purchases[2..], rate),
                ],
            );
        }
        Outlooks {
            model_horizon,
            scores,
        }
    }
}

/// A model version, as scores name it.
pub(crate) struct ScoringModel {
    pub name: String,
    pub stored: registry::Stored,
}

/// Scored customers: the scores table's columns (without `as_of`) and the figures the
/// summaries count.
pub(crate) struct ScoredRows {
    pub batch: RecordBatch,
    pub bands: Vec<&'static str>,
    pub value_at_risk: Vec<Option<f64>>,
}

/// Scores the customers of `frame` (their features of D): the model's calibrated
/// probability, band, percentile (by `percentiles_of`), BTYD outlook and reasons.
pub(crate) fn score_rows(
    mut frame: Frame,
    model: &ScoringModel,
    outlooks: &Outlooks,
    percentiles_of: &dyn Fn(&[f64]) -> Vec<f64>,
) -> Result<ScoredRows> {
    let artifact = &model.stored.artifact;
    let spec = &artifact.spec;
    if spec.btyd_features {
        add_btyd_columns(&mut frame, &outlooks.model_horizon);
    }
    let x = artifact.preprocessor.transform_for(&frame, &spec.learner)?;
    // The scores table keeps the reasons up only.
    let (raw, reasons) = predict_and_reason_texts(
        &artifact.preprocessor,
        &artifact.classifier,
        &frame,
        &x,
        Directions::UpOnly,
    );
    let probabilities: Vec<f64> = raw
        .into_iter()
        .map(|p| artifact.calibrator.apply(p))
        .collect();

    let n = frame.rows();
    // Each customer's outlook found once, for its three columns.
    let found: Vec<Option<&[f64; 3]>> = frame
        .customer_ids
        .iter()
        .map(|id| outlooks.scores.get(id))
        .collect();
    let outlook =
        |k: usize| -> Vec<Option<f64>> { found.iter().map(|o| o.map(|o| o[k])).collect() };
    let value_12m = outlook(2);
    let value_at_risk: Vec<Option<f64>> = probabilities
        .iter()
        .zip(&value_12m)
        .map(|(p, v)| v.map(|v| p * v))
        .collect();
    let bands: Vec<&'static str> = probabilities
        .iter()
        .map(|&p| risk_band(p, &spec.scoring))
        .collect();
    let mut fields = vec![
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("churn_probability", DataType::Float64, false),
        Field::new("risk_band", DataType::Utf8, false),
        Field::new("risk_percentile", DataType::Float64, false),
        Field::new("p_alive", DataType::Float64, true),
        Field::new("expected_purchases_90d", DataType::Float64, true),
        Field::new("expected_value_12m", DataType::Float64, true),
        Field::new("value_at_risk", DataType::Float64, true),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(&frame.customer_ids)),
        Arc::new(Float64Array::from(probabilities.clone())),
        Arc::new(StringArray::from_iter_values(&bands)),
        Arc::new(Float64Array::from(percentiles_of(&probabilities))),
        Arc::new(Float64Array::from(outlook(0))),
        Arc::new(Float64Array::from(outlook(1))),
        Arc::new(Float64Array::from(value_12m)),
        Arc::new(Float64Array::from(value_at_risk.clone())),
    ];
    // Each column of texts let go once it is an Arrow column.
    for (k, texts) in reasons.up.into_iter().enumerate() {
        fields.push(Field::new(
            format!("reason_{}", k + 1),
            DataType::Utf8,
            true,
        ));
        columns.push(Arc::new(texts.iter().collect::<StringArray>()));
    }
    fields.push(Field::new("model_name", DataType::Utf8, false));
    columns.push(Arc::new(StringArray::from_iter_values(
        std::iter::repeat_n(model.name.as_str(), n),
    )));
    fields.push(Field::new("model_version", DataType::UInt32, false));
    columns.push(Arc::new(UInt32Array::from(vec![model.stored.version; n])));
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(datafusion::error::DataFusionError::from)?;
    Ok(ScoredRows {
        batch,
        bands,
        value_at_risk,
    })
}

/// Customers per band.
pub(crate) fn band_counts(bands: &[&str]) -> BandCounts {
    let mut counts = BandCounts::default();
    for band in bands {
        match *band {
            "high" => counts.high += 1,
            "medium" => counts.medium += 1,
            _ => counts.low += 1,
        }
    }
    counts
}

/// Scores the population of `as_of` with `model` (`NAME` or `NAME@VERSION`; the newest
/// version without one) and writes `scores/as_of=D/`, its manifest holding the BTYD
/// parameters fitted on D (which the live scores after it use).
pub async fn score(
    lake: &Lake,
    as_of: NaiveDate,
    model: &str,
    features: &FeatureOptions,
) -> Result<ScoreSummary> {
    let started = Instant::now();
    churn_core::commit::recover(lake).await?;
    let (name, version) = registry::parse_reference(model)?;
    let model = ScoringModel {
        stored: registry::read(lake, &name, version).await?,
        name,
    };
    let built_features = ensure_snapshot(lake, as_of, features).await?;
    // The snapshot is read beside the BTYD summaries, whose scan numbers the customers on one
    // core.
    let (frame, inputs) = beside_each_other(
        &features.session,
        async {
            Ok::<_, churn_train::TrainError>(
                read_features(lake, as_of, &features.session).await?.frame,
            )
        },
        async {
            Ok(btyd_inputs(lake, as_of, Grain::Day, &features.session, Scope::Everyone).await?)
        },
    )
    .await?;
    let summaries: Vec<Summary> = inputs.iter().map(summary).collect();
    let params = BtydParameters::fit(&summaries, as_of)?;
    let outlooks = Outlooks::of(&inputs, &params, &model.stored.artifact.spec);
    let n = frame.rows();
    let scored = score_rows(frame, &model, &outlooks, &percentiles)?;

    let df = datafusion::prelude::SessionContext::new().read_batch(scored.batch)?;
    let job = churn_core::commit::job_id("score", &as_of.to_string());
    let manifest = PartitionManifest::new("score", as_of)
        .with("model", &model.name)
        .with("version", model.stored.version)
        .with("btyd", params);
    let written = churn_features::write::write_partition(
        lake,
        df,
        &format!("scores/as_of={as_of}"),
        &job,
        manifest,
    )
    .await?;
    let version = model.stored.version;
    tracing::info!(as_of = %as_of, customers = n, model = %model.name, version, "scores written");
    Ok(ScoreSummary {
        kind: "score".into(),
        as_of: as_of.to_string(),
        model_name: model.name,
        model_version: version,
        customers: written.rows,
        risk_bands: band_counts(&scored.bands),
        value_at_risk: scored.value_at_risk.iter().flatten().sum(),
        built_features,
        output: written.path,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_count_lower_values_and_half_the_ties() {
        // 4 values: 0.1 has none below; the two 0.5s have one below and share one tie;
        // 0.9 has three below.
        assert_eq!(percentiles(&[0.5, 0.1, 0.9, 0.5]), [37.5, 0.0, 75.0, 37.5]);
    }

    #[test]
    fn bands_cut_at_the_configured_probabilities() {
        let scoring = ScoringSpec::default();
        assert_eq!(risk_band(0.329, &scoring), "low");
        assert_eq!(risk_band(0.33, &scoring), "medium");
        assert_eq!(risk_band(0.66, &scoring), "high");
    }

    #[test]
    fn a_zero_discount_rate_gives_twelve_months_of_expected_purchases_times_spend() {
        let bgnbd = BgNbd {
            r: 0.243,
            alpha: 4.414,
            a: 0.793,
            b: 2.426,
        };
        let gamma_gamma = GammaGamma {
            p: 6.25,
            q: 3.74,
            gamma: 15.44,
        };
        let s = Summary {
            frequency: 2.0,
            recency: 30.43,
            age: 38.86,
            monetary: 22.35,
        };
        let by_month: Vec<f64> = month_ends_weeks()
            .map(|t| bgnbd.expected_purchases(&s, t))
            .collect();
        let spend = gamma_gamma.expected_spend(&s);
        let undiscounted = discounted_value(spend, &by_month, 0.0);
        let by_hand = bgnbd.expected_purchases(&s, 365.25 / 7.0) * gamma_gamma.expected_spend(&s);
        assert!((undiscounted - by_hand).abs() < 1e-9 * by_hand);
        let discounted = discounted_value(spend, &by_month, 0.10);
        assert!(discounted < undiscounted && discounted > undiscounted / 1.1);
    }
}
