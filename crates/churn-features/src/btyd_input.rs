//! The buy-till-you-die summary of every customer at an as-of date, with weeks as the time
//! unit, at daily grain as the published models define it (or at weekly grain, see [`Grain`]):
//! purchases on the same day collapse into one; frequency counts repeat purchase days; recency is first to last purchase day;
//! age runs from the first purchase day to the last day of the calibration period, which is
//! the day before D (so `--as-of 1997-10-01` reproduces a calibration that ends on 1997-09-30
//! inclusive); monetary value is the mean spend of the repeat purchase days. Spend is summed
//! as decimals, so the result does not depend on the order parallel workers add amounts in
//! (a model fitted on it is then reproducible to the bit).

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};
use chrono::NaiveDate;
use churn_core::Lake;
use churn_core::session::SessionOptions;

use crate::error::Result;
use crate::snapshot::{Scope, snapshot_session};

/// How purchases are collapsed into purchase periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    /// Purchases on one day count once; times are days / 7 (weeks with fractions). The
    /// published CDNOW estimates use this grain.
    Day,
    /// Purchases in one Monday-to-Sunday week count once; times are whole weeks between the
    /// weeks' Mondays, and the age runs to the week holding the day before D. This is what
    /// `lifetimes`' `summary_data_from_transaction_data(freq="W")` computes when given only
    /// purchases before D.
    Week,
}

impl Grain {
    /// SQL for the period number of the day-number expression `day`, and the divisor that
    /// turns period differences into weeks.
    fn period(self, day: &str) -> (String, f64) {
        match self {
            Grain::Day => (day.to_string(), 7.0),
            // Day 0 (1970-01-01) is a Thursday; day 4 is the first Monday.
            Grain::Week => (format!("CAST(floor(({day} + 3) / 7.0) AS BIGINT)"), 1.0),
        }
    }
}

/// One customer's summary (time unit: weeks).
#[derive(Debug, Clone, PartialEq)]
pub struct BtydInput {
    pub customer_id: String,
    pub frequency: f64,
    pub recency_weeks: f64,
    pub age_weeks: f64,
    pub monetary: f64,
}

/// Summaries of every customer of `scope` with a purchase before `as_of`, by customer_id.
pub async fn btyd_inputs(
    lake: &Lake,
    as_of: NaiveDate,
    grain: Grain,
    session: &SessionOptions,
    scope: Scope<'_>,
) -> Result<Vec<BtydInput>> {
    let (ctx, _) = snapshot_session(lake, as_of, 365, session, scope).await?;
    btyd_inputs_in(&ctx, grain).await
}

/// Summaries of every customer with a purchase before D, in a session with the
/// point-in-time views of D (see [`crate::snapshot`]).
pub(crate) async fn btyd_inputs_in(
    ctx: &datafusion::prelude::SessionContext,
    grain: Grain,
) -> Result<Vec<BtydInput>> {
    let (period, unit) = grain.period("day");
    let (last_period, _) = grain.period("(as_of_day - 1)");
    let sql = format!(
        "WITH params AS (SELECT {last_period} AS last_period FROM snapshot), \
        purchase_periods AS (SELECT customer_id, {period} AS period, sum(CAST(amount AS DECIMAL(38, 6))) AS spend FROM transactions WHERE is_purchase GROUP BY 1, 2), \
        firsts AS (SELECT customer_id, min(period) AS first_period FROM purchase_periods GROUP BY customer_id), \
        final AS (SELECT d.customer_id, \
            CAST(count(*) - 1 AS DOUBLE) AS frequency, \
            CAST(max(d.period) - min(d.period) AS DOUBLE) / {unit:.1} AS recency_weeks, \
            CAST(max(p.last_period) - min(d.period) AS DOUBLE) / {unit:.1} AS age_weeks, \
            coalesce(CAST(avg(CASE WHEN d.period > f.first_period THEN d.spend END) AS DOUBLE), 0.0) AS monetary \
          FROM purchase_periods d JOIN firsts f ON f.customer_id = d.customer_id CROSS JOIN params p \
          GROUP BY d.customer_id) \
        SELECT * FROM final ORDER BY customer_id"
    );
    let batches: Vec<RecordBatch> = ctx.sql(&sql).await?.collect().await?;
    let mut out = Vec::new();
    for b in &batches {
        let ids = arrow::compute::cast(b.column(0), &DataType::Utf8)
            .map_err(datafusion::error::DataFusionError::from)?;
        let ids = ids.as_string::<i32>();
        let f = |i: usize| b.column(i).as_primitive::<Float64Type>();
        let (freq, rec, age, mon) = (f(1), f(2), f(3), f(4));
        for i in 0..b.num_rows() {
            out.push(BtydInput {
                customer_id: ids.value(i).to_string(),
                frequency: freq.value(i),
                recency_weeks: rec.value(i),
                age_weeks: age.value(i),
                monetary: mon.value(i),
            });
        }
    }
    Ok(out)
}
