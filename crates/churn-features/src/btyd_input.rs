//! The buy-till-you-die summary of every customer at an as-of date, at daily grain with weeks
//! as the time unit, as the published models define it: purchases on the same day collapse
//! into one; frequency counts repeat purchase days; recency is first to last purchase day;
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
use crate::snapshot::snapshot_session;

/// One customer's summary (time unit: weeks).
#[derive(Debug, Clone, PartialEq)]
pub struct BtydInput {
    pub customer_id: String,
    pub frequency: f64,
    pub recency_weeks: f64,
    pub age_weeks: f64,
    pub monetary: f64,
}

/// Summaries of every customer with a purchase before `as_of`, by customer_id.
pub async fn btyd_inputs(
    lake: &Lake,
    as_of: NaiveDate,
    session: &SessionOptions,
) -> Result<Vec<BtydInput>> {
    let (ctx, _) = snapshot_session(lake, as_of, 365, session).await?;
    let sql = "WITH params AS (SELECT as_of_day FROM snapshot), \
        purchase_days AS (SELECT customer_id, day, sum(CAST(amount AS DECIMAL(38, 6))) AS spend FROM transactions WHERE is_purchase GROUP BY customer_id, day), \
        firsts AS (SELECT customer_id, min(day) AS first_day FROM purchase_days GROUP BY customer_id), \
        final AS (SELECT d.customer_id, \
            CAST(count(*) - 1 AS DOUBLE) AS frequency, \
            CAST(max(d.day) - min(d.day) AS DOUBLE) / 7.0 AS recency_weeks, \
            CAST(max(p.as_of_day) - 1 - min(d.day) AS DOUBLE) / 7.0 AS age_weeks, \
            coalesce(CAST(avg(CASE WHEN d.day > f.first_day THEN d.spend END) AS DOUBLE), 0.0) AS monetary \
          FROM purchase_days d JOIN firsts f ON f.customer_id = d.customer_id CROSS JOIN params p \
          GROUP BY d.customer_id) \
        SELECT * FROM final ORDER BY customer_id";
    let batches: Vec<RecordBatch> = ctx.sql(sql).await?.collect().await?;
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
