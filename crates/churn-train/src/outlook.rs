//! The buy-till-you-die outlook of every customer of the lake as of a date: BG/NBD (and
//! Gamma-Gamma) fitted on the summaries of the history before the date, as used for the BTYD
//! features, the BG/NBD baseline and scores.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::NaiveDate;
use churn_core::Lake;
use churn_core::session::SessionOptions;
use churn_features::{BtydInput, Grain, Scope, btyd_inputs, btyd_inputs_at_dates, for_each_date};
use churn_model::ModelError;
use churn_model::btyd::{CustomerOutlook, Summary, customer_outlooks};

use crate::error::Result;

/// The model's summary of a customer's history.
pub fn summary(input: &BtydInput) -> Summary {
    Summary {
        frequency: input.frequency,
        recency: input.recency_weeks,
        age: input.age_weeks,
        monetary: input.monetary,
    }
}

/// Each customer's outlook over `horizon_days` as of `as_of`, by customer id. Without
/// `with_value` only BG/NBD is fitted and the expected value is NaN.
pub async fn outlooks(
    lake: &Lake,
    as_of: NaiveDate,
    horizon_days: u32,
    with_value: bool,
    session: &SessionOptions,
) -> Result<HashMap<String, CustomerOutlook>> {
    let inputs = btyd_inputs(lake, as_of, Grain::Day, session, Scope::Everyone).await?;
    outlooks_of(inputs, as_of, horizon_days, with_value)
}

/// Each customer's outlook over `horizon_days` (BG/NBD and Gamma-Gamma) at each of `dates`:
/// the summaries of all dates from one query (see [`btyd_inputs_at_dates`]), then a fit
/// per date, as many at once as snapshots are built.
pub async fn outlooks_at_dates(
    lake: &Lake,
    dates: &[NaiveDate],
    horizon_days: u32,
    session: &SessionOptions,
) -> Result<HashMap<NaiveDate, HashMap<String, CustomerOutlook>>> {
    let inputs = Arc::new(btyd_inputs_at_dates(lake, dates, session).await?);
    let fitted = for_each_date(dates, session, |as_of| {
        let inputs = inputs.clone();
        async move { outlooks_of(inputs.at(as_of)?, as_of, horizon_days, true) }
    })
    .await?;
    Ok(dates.iter().copied().zip(fitted).collect())
}

/// The outlooks of the customers of `inputs`, the summaries at `as_of`.
fn outlooks_of(
    inputs: Vec<BtydInput>,
    as_of: NaiveDate,
    horizon_days: u32,
    with_value: bool,
) -> Result<HashMap<String, CustomerOutlook>> {
    let summaries: Vec<Summary> = inputs.iter().map(summary).collect();
    let outlooks = customer_outlooks(&summaries, horizon_days as f64 / 7.0, with_value)
        .map_err(|source| ModelError::Btyd { as_of, source })?;
    Ok(inputs
        .into_iter()
        .map(|i| i.customer_id)
        .zip(outlooks)
        .collect())
}
