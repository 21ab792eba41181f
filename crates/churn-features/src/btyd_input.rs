//! The buy-till-you-die summary of every customer at an as-of date, with weeks as the time
//! unit, at daily grain as the published models define it (or at weekly grain, see [`Grain`]):
//! purchases on the same day collapse into one; frequency counts repeat purchase days; recency is first to last purchase day;
//! age runs from the first purchase day to the last day of the calibration period, which is
//! the day before D (so `--as-of 1997-10-01` reproduces a calibration that ends on 1997-09-30
//! inclusive); monetary value is the mean spend of the repeat purchase days. Spend is summed
//! as decimals, so the result does not depend on the order parallel workers add amounts in
//! (a model fitted on it is then reproducible to the bit).

use arrow::array::Decimal128Array;
use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Decimal128Type, DecimalType, Float64Type, Int64Type};
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
///
/// One grouping by customer over the purchase periods gives everything: the repeat
/// periods' spend is the whole spend less the first period's. (Joining each period to its
/// customer's first period and grouping again took twice as long as all the rest.) The mean
/// is then taken as DataFusion's decimal `avg` takes it, so the figures are the same bits as
/// `avg(spend)` over the repeat periods.
pub(crate) async fn btyd_inputs_in(
    ctx: &datafusion::prelude::SessionContext,
    grain: Grain,
) -> Result<Vec<BtydInput>> {
    let (last_period, unit) = grain.period("(as_of_day - 1)");
    let last_period = last_calibration_period(ctx, &last_period).await?;
    let mut batches = customer_periods(ctx, grain, FirstPeriodSpend::Packed).await?;
    let largest_period_spend = batches
        .iter()
        .filter_map(|b| arrow::compute::max(b.column(5).as_primitive::<Decimal128Type>()))
        .max();
    if largest_period_spend.is_some_and(|spend| spend >= PACKED_SPEND_LIMIT) {
        batches = customer_periods(ctx, grain, FirstPeriodSpend::Ordered).await?;
    }
    let mut out = Vec::new();
    for b in &batches {
        let ids = arrow::compute::cast(b.column(0), &DataType::Utf8).map_err(arrow_error)?;
        let ids = ids.as_string::<i32>();
        let periods = b.column(1).as_primitive::<Int64Type>();
        let first = b.column(2).as_primitive::<Int64Type>();
        let last = b.column(3).as_primitive::<Int64Type>();
        let monetary = repeat_spend_means(
            ids,
            b.column(4).as_primitive::<Decimal128Type>(),
            b.column(6).as_primitive::<Decimal128Type>(),
            periods,
        )?;
        for (i, monetary) in monetary.into_iter().enumerate() {
            out.push(BtydInput {
                customer_id: ids.value(i).to_string(),
                frequency: (periods.value(i) - 1) as f64,
                recency_weeks: (last.value(i) - first.value(i)) as f64 / unit,
                age_weeks: (last_period - first.value(i)) as f64 / unit,
                monetary,
            });
        }
    }
    Ok(out)
}

/// Scale of the decimals spend is summed in.
const SPEND_SCALE: i8 = 6;

/// A period's spend below this (in units of the last decimal of [`SPEND_SCALE`], i.e. 10^14
/// in currency) fits beside its period in one decimal of 38 digits.
const PACKED_SPEND_LIMIT: i128 = 100_000_000_000_000_000_000;

/// How the spend of each customer's first purchase period is found.
#[derive(Clone, Copy)]
enum FirstPeriodSpend {
    /// The least of `period * 10^20 + spend` (spend in units of its last decimal): the first
    /// period's, with its spend in the lower digits. A plain `min`, several times faster than
    /// an ordered aggregate; exact while every period's spend is below [`PACKED_SPEND_LIMIT`].
    Packed,
    /// `first_value(spend ORDER BY period)`: exact for any spend.
    Ordered,
}

/// Per customer with a purchase before D, ordered by customer_id: customer_id, the number
/// of purchase periods, the first and last of them, the whole spend, the largest spend of
/// one period, and the first period's spend (packed, see [`FirstPeriodSpend`]).
async fn customer_periods(
    ctx: &datafusion::prelude::SessionContext,
    grain: Grain,
    first_period_spend: FirstPeriodSpend,
) -> Result<Vec<RecordBatch>> {
    let (period, _) = grain.period("day");
    let first_period_spend = match first_period_spend {
        FirstPeriodSpend::Packed => format!(
            "min(CAST(period AS DECIMAL(38, 0)) * CAST('{PACKED_SPEND_LIMIT}' AS DECIMAL(38, 0)) \
             + CAST(spend * {} AS DECIMAL(38, 0)))",
            10_i128.pow(SPEND_SCALE as u32)
        ),
        FirstPeriodSpend::Ordered => "first_value(spend ORDER BY period)".to_string(),
    };
    let sql = format!(
        "WITH purchase_periods AS (SELECT customer_id, CAST({period} AS BIGINT) AS period, \
            sum(CAST(amount AS DECIMAL(38, {SPEND_SCALE}))) AS spend \
            FROM transactions WHERE is_purchase GROUP BY 1, 2), \
        final AS (SELECT customer_id, count(*) AS periods, min(period) AS first_period, \
            max(period) AS last_purchase_period, sum(spend) AS spend, \
            max(spend) AS largest_period_spend, {first_period_spend} AS first_period_spend \
          FROM purchase_periods GROUP BY customer_id) \
        SELECT * FROM final ORDER BY customer_id"
    );
    Ok(ctx.sql(&sql).await?.collect().await?)
}

/// The last period of the calibration (the one holding the day before D).
async fn last_calibration_period(
    ctx: &datafusion::prelude::SessionContext,
    last_period: &str,
) -> Result<i64> {
    let batches = ctx
        .sql(&format!(
            "SELECT CAST({last_period} AS BIGINT) FROM snapshot"
        ))
        .await?
        .collect()
        .await?;
    Ok(batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .map(|b| b.column(0).as_primitive::<Int64Type>().value(0))
        .expect("the snapshot view has one row"))
}

/// Each customer's mean spend per repeat period (0 without repeats), computed as
/// DataFusion's `avg` of `DECIMAL(38, 6)` values computes it and then cast to a double as
/// `CAST(... AS DOUBLE)` casts it: the sum scaled to the result's 10 decimals, divided by the
/// count with truncation. `first_period_spend` holds the spend of each customer's first
/// period, or (at scale 0) that spend packed with its period (see [`FirstPeriodSpend`]).
fn repeat_spend_means(
    ids: &arrow::array::StringArray,
    spend: &Decimal128Array,
    first_period_spend: &Decimal128Array,
    periods: &arrow::array::Int64Array,
) -> Result<Vec<f64>> {
    const MEAN_SCALE: i8 = SPEND_SCALE + 4;
    let scale_up = 10_i128.pow((MEAN_SCALE - SPEND_SCALE) as u32);
    let means: Decimal128Array = (0..spend.len())
        .map(|i| {
            let repeats = periods.value(i) - 1;
            if repeats == 0 {
                return None;
            }
            let first_spend = if first_period_spend.scale() == 0 {
                first_period_spend.value(i).rem_euclid(PACKED_SPEND_LIMIT)
            } else {
                first_period_spend.value(i)
            };
            let repeat_spend = spend.value(i) - first_spend;
            let mean = repeat_spend
                .checked_mul(scale_up)
                .map(|scaled| scaled / repeats as i128)
                .filter(|mean| Decimal128Type::is_valid_decimal_precision(*mean, 38));
            Some(mean.ok_or_else(|| {
                datafusion::error::DataFusionError::Execution(format!(
                    "Arithmetic Overflow in the mean repeat spend of customer {}",
                    ids.value(i)
                ))
            }))
        })
        .map(Option::transpose)
        .collect::<std::result::Result<_, _>>()?;
    let means = means
        .with_precision_and_scale(38, MEAN_SCALE)
        .map_err(arrow_error)?;
    let means = arrow::compute::cast(&means, &DataType::Float64).map_err(arrow_error)?;
    Ok(means
        .as_primitive::<Float64Type>()
        .iter()
        .map(|m| m.unwrap_or(0.0))
        .collect())
}

fn arrow_error(e: arrow::error::ArrowError) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::from(e)
}
