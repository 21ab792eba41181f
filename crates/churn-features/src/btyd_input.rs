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
use arrow::datatypes::{DataType, Date32Type, Decimal128Type, DecimalType, Float64Type, Int64Type};
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
    /// SQL for the period number of the day-number expression `day`.
    fn period(self, day: &str) -> String {
        match self {
            Grain::Day => day.to_string(),
            // Day 0 (1970-01-01) is a Thursday; day 4 is the first Monday.
            Grain::Week => format!("CAST(floor(({day} + 3) / 7.0) AS BIGINT)"),
        }
    }

    /// The divisor that turns period differences into weeks.
    fn periods_per_week(self) -> f64 {
        match self {
            Grain::Day => 7.0,
            Grain::Week => 1.0,
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
    btyd_inputs_in(&ctx, grain, Method::for_session(session)).await
}

/// Where the summaries are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// The purchases scanned into this process's memory (32 bytes each) and summed per
    /// customer there: on a 1M-customer lake a quarter less time and memory than SQL's
    /// groupings on the text ids for one date, about half the time for seven.
    InMemory,
    /// SQL groupings, which keep to the session's memory limit (spilling) and run on the
    /// executors of a Ballista cluster.
    Sql,
}

impl Method {
    /// In memory on the in-process engine without a memory limit, as SQL otherwise.
    pub(crate) fn for_session(session: &SessionOptions) -> Method {
        if crate::build::in_process_without_limit(session) {
            Method::InMemory
        } else {
            Method::Sql
        }
    }
}

/// Summaries of every customer with a purchase before D, in a session with the
/// point-in-time views of D (see [`crate::snapshot`]), ordered by customer_id.
pub(crate) async fn btyd_inputs_in(
    ctx: &datafusion::prelude::SessionContext,
    grain: Grain,
    method: Method,
) -> Result<Vec<BtydInput>> {
    let last_period = last_calibration_period(ctx, &grain.period("(as_of_day - 1)")).await?;
    let window = Window {
        before_period: None,
        last_period,
        unit: grain.periods_per_week(),
    };
    if method == Method::Sql {
        return sql_inputs(ctx, grain, window).await;
    }
    let purchases = PurchasePeriods::scan(ctx, grain).await?;
    let mut summaries = purchases.summaries(&[window])?;
    let (ids, summaries) = (purchases.ids, summaries.pop().unwrap_or_default());
    Ok(summaries
        .into_iter()
        .map(|s| s.input(ids.get(s.customer)))
        .collect())
}

/// The daily-grain summaries of every customer at each of several dates, from one scan of
/// the history before the latest of them (see [`btyd_inputs_at_dates`]).
pub struct BtydInputsAtDates {
    dates: Vec<NaiveDate>,
    found: Found,
}

enum Found {
    /// Per date, the summaries of the customers with a purchase before it; their
    /// `customer` numbers index `ids`.
    InMemory {
        ids: CustomerIds,
        summaries: Vec<Vec<CustomerSummary>>,
    },
    /// Per customer (SQL): its largest period's spend, then each date's five aggregates.
    Grouped(Vec<RecordBatch>),
    /// Each date's summaries, found one date at a time (SQL, a day's spend beyond the packed
    /// limit).
    ByDate(Vec<Vec<BtydInput>>),
}

impl BtydInputsAtDates {
    /// The summaries at `as_of`, one of the dates they were computed for, as
    /// [`btyd_inputs`] gives them at daily grain.
    pub fn at(&self, as_of: NaiveDate) -> Result<Vec<BtydInput>> {
        let Some(k) = self.dates.iter().position(|d| *d == as_of) else {
            return Err(datafusion::error::DataFusionError::Internal(format!(
                "BTYD summaries at {as_of} were not computed (dates: {:?})",
                self.dates
            ))
            .into());
        };
        match &self.found {
            Found::InMemory { ids, summaries } => Ok(summaries[k]
                .iter()
                .map(|s| s.input(ids.get(s.customer)))
                .collect()),
            Found::Grouped(batches) => window_inputs(batches, k, &daily_window(as_of)),
            Found::ByDate(inputs) => Ok(inputs[k].clone()),
        }
    }
}

/// Summaries of every customer with a purchase before each of `dates`, at daily grain, from
/// one scan of the purchases before the latest date: each date's summaries are those of the
/// purchase days before it. A training run needs them at each of its snapshots' dates. With
/// [`Method::Sql`], one grouping by customer and day gives every date's aggregates, filtered
/// to the days before it (seven dates of a 1M-customer lake took 5.7 s where one took 3 s).
pub async fn btyd_inputs_at_dates(
    lake: &Lake,
    dates: &[NaiveDate],
    session: &SessionOptions,
) -> Result<BtydInputsAtDates> {
    let mut dates = dates.to_vec();
    dates.sort();
    dates.dedup();
    let Some(&latest) = dates.last() else {
        return Ok(BtydInputsAtDates {
            dates,
            found: Found::ByDate(Vec::new()),
        });
    };
    let (ctx, _) = snapshot_session(lake, latest, 365, session, Scope::Everyone).await?;
    let windows: Vec<Window> = dates.iter().map(|d| daily_window(*d)).collect();
    let found = match Method::for_session(session) {
        Method::InMemory => {
            let purchases = PurchasePeriods::scan(&ctx, Grain::Day).await?;
            let summaries = purchases.summaries(&windows)?;
            Found::InMemory {
                ids: purchases.ids,
                summaries,
            }
        }
        Method::Sql => {
            let batches = customer_periods(
                &ctx,
                Grain::Day,
                FirstPeriodSpend::Packed,
                &windows,
                Order::Any,
            )
            .await?;
            if exceeds_packed_spend(&batches) {
                drop(batches);
                let mut by_date = Vec::with_capacity(dates.len());
                for &as_of in &dates {
                    by_date.push(
                        btyd_inputs(lake, as_of, Grain::Day, session, Scope::Everyone).await?,
                    );
                }
                Found::ByDate(by_date)
            } else {
                Found::Grouped(batches)
            }
        }
    };
    Ok(BtydInputsAtDates { dates, found })
}

/// The purchase periods one set of summaries covers.
#[derive(Clone, Copy)]
struct Window {
    /// Only periods before this one (None: all the session's).
    before_period: Option<i64>,
    /// The last period of the calibration (the one holding the day before D).
    last_period: i64,
    /// Divisor that turns period differences into weeks.
    unit: f64,
}

impl Window {
    /// Frequency, recency and age (weeks) of a customer with `periods` purchase periods in
    /// this window, the first and last of them `first` and `last`.
    fn times(&self, periods: i64, first: i64, last: i64) -> [f64; 3] {
        [
            (periods - 1) as f64,
            (last - first) as f64 / self.unit,
            (self.last_period - first) as f64 / self.unit,
        ]
    }
}

/// The window of D at daily grain: the days before D.
fn daily_window(as_of: NaiveDate) -> Window {
    let day = i64::from(Date32Type::from_naive_date(as_of));
    Window {
        before_period: Some(day),
        last_period: day - 1,
        unit: Grain::Day.periods_per_week(),
    }
}

/// One customer's summary in one window; the customer is a number into the ids.
#[derive(Debug, Clone, Copy)]
struct CustomerSummary {
    customer: u32,
    frequency: f64,
    recency_weeks: f64,
    age_weeks: f64,
    monetary: f64,
}

impl CustomerSummary {
    fn input(&self, id: &str) -> BtydInput {
        BtydInput {
            customer_id: id.to_string(),
            frequency: self.frequency,
            recency_weeks: self.recency_weeks,
            age_weeks: self.age_weeks,
            monetary: self.monetary,
        }
    }
}

/// Scale of the decimals spend is summed in.
const SPEND_SCALE: i8 = 6;

/// Every purchase of the session's `transactions` view: its customer (a number into `ids`),
/// purchase period and spend (a decimal of [`SPEND_SCALE`], as SQL's cast gives it).
///
/// SQL's two groupings (by customer and period, then by customer with five filtered
/// aggregates per date, see [`Method::Sql`]) spend most of their time in hash tables on the
/// text ids; one scan that numbers the customers, then a pass over each customer's few
/// rows, computes the same sums exactly (128-bit integers, as the decimals).
struct PurchasePeriods {
    /// The customer ids, in the order first seen.
    ids: CustomerIds,
    customer: Vec<u32>,
    period: Vec<i64>,
    spend: Vec<i128>,
}

impl PurchasePeriods {
    async fn scan(ctx: &datafusion::prelude::SessionContext, grain: Grain) -> Result<Self> {
        use futures::StreamExt;
        let started = std::time::Instant::now();
        let sql = format!(
            "SELECT customer_id, CAST({} AS BIGINT) AS period, \
             CAST(amount AS DECIMAL(38, {SPEND_SCALE})) AS spend \
             FROM transactions WHERE is_purchase",
            grain.period("day")
        );
        let mut stream = ctx.sql(&sql).await?.execute_stream().await?;
        let mut numbering = Numbering::default();
        let (mut customer, mut period, mut spend) = (Vec::new(), Vec::new(), Vec::new());
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let ids =
                arrow::compute::cast(batch.column(0), &DataType::Utf8).map_err(arrow_error)?;
            // customer_id is never null in the lake (the input contract); a null period or
            // spend cannot come from a purchase's date and positive amount.
            customer.extend(
                ids.as_string::<i32>()
                    .iter()
                    .map(|id| numbering.number(id.unwrap_or_default())),
            );
            period.extend(batch.column(1).as_primitive::<Int64Type>().values());
            spend.extend(batch.column(2).as_primitive::<Decimal128Type>().values());
            if customer.len() > u32::MAX as usize {
                return Err(
                    datafusion::error::DataFusionError::ResourcesExhausted(format!(
                        "more than {} purchases to summarise in memory: set --memory-limit \
                     (or [lake] memory_limit_mib), under which SQL summarises them",
                        u32::MAX
                    ))
                    .into(),
                );
            }
        }
        tracing::debug!(
            purchases = customer.len(),
            customers = numbering.ids.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "purchases scanned for the BTYD summaries"
        );
        Ok(PurchasePeriods {
            ids: numbering.ids,
            customer,
            period,
            spend,
        })
    }

    /// The summaries of each of `windows`, of the customers with a purchase in it, ordered
    /// by customer id.
    fn summaries(&self, windows: &[Window]) -> Result<Vec<Vec<CustomerSummary>>> {
        let started = std::time::Instant::now();
        let rows_of = self.rows_by_customer();
        let by_id = self.ids.sorted();
        let mut found: Vec<Vec<CustomerSummary>> = vec![Vec::new(); windows.len()];
        let mut repeats: Vec<Vec<(i128, i64)>> = vec![Vec::new(); windows.len()];
        let mut days: Vec<(i64, i128)> = Vec::new();
        for customer in by_id {
            days.clear();
            days.extend(
                rows_of
                    .rows(customer)
                    .iter()
                    .map(|&r| (self.period[r as usize], self.spend[r as usize])),
            );
            let periods = self.purchase_periods(&mut days, customer)?;
            let (first, first_spend) = periods[0];
            for (k, window) in windows.iter().enumerate() {
                let count = match window.before_period {
                    Some(before) => periods.partition_point(|(p, _)| *p < before),
                    None => periods.len(),
                };
                if count == 0 {
                    continue;
                }
                let spend = self.spend_sum(&periods[..count], customer)?;
                let [frequency, recency_weeks, age_weeks] =
                    window.times(count as i64, first, periods[count - 1].0);
                found[k].push(CustomerSummary {
                    customer,
                    frequency,
                    recency_weeks,
                    age_weeks,
                    monetary: 0.0,
                });
                repeats[k].push((spend - first_spend, count as i64 - 1));
            }
        }
        for (summaries, repeats) in found.iter_mut().zip(&repeats) {
            let means = repeat_spend_means(repeats, |i| self.ids.get(summaries[i].customer))?;
            for (s, mean) in summaries.iter_mut().zip(means) {
                s.monetary = mean;
            }
        }
        tracing::debug!(
            customers = self.ids.len(),
            windows = windows.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "BTYD summaries computed"
        );
        Ok(found)
    }

    /// `days` (period, spend) of one customer collapsed into its purchase periods in order,
    /// each with its summed spend.
    fn purchase_periods<'a>(
        &self,
        days: &'a mut [(i64, i128)],
        customer: u32,
    ) -> Result<&'a [(i64, i128)]> {
        days.sort_unstable_by_key(|(p, _)| *p);
        let mut kept = 0;
        for i in 0..days.len() {
            if kept > 0 && days[kept - 1].0 == days[i].0 {
                days[kept - 1].1 = self.checked_spend(days[kept - 1].1, days[i].1, customer)?;
            } else {
                days[kept] = days[i];
                kept += 1;
            }
        }
        Ok(&days[..kept])
    }

    /// The whole spend of `periods`.
    fn spend_sum(&self, periods: &[(i64, i128)], customer: u32) -> Result<i128> {
        periods
            .iter()
            .try_fold(0_i128, |sum, (_, s)| self.checked_spend(sum, *s, customer))
    }

    /// `a + b`, or the error SQL's `sum` of 38-digit decimals gives when it overflows.
    fn checked_spend(&self, a: i128, b: i128, customer: u32) -> Result<i128> {
        a.checked_add(b)
            .filter(|sum| Decimal128Type::is_valid_decimal_precision(*sum, 38))
            .ok_or_else(|| {
                datafusion::error::DataFusionError::Execution(format!(
                    "Arithmetic Overflow in the spend of customer {}",
                    self.ids.get(customer)
                ))
                .into()
            })
    }

    /// The rows of each customer, found by counting (two passes over the customer numbers).
    fn rows_by_customer(&self) -> RowsByCustomer {
        let mut starts = vec![0_u32; self.ids.len() + 1];
        for &c in &self.customer {
            starts[c as usize + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut next = starts.clone();
        let mut rows = vec![0_u32; self.customer.len()];
        for (row, &c) in self.customer.iter().enumerate() {
            rows[next[c as usize] as usize] = row as u32;
            next[c as usize] += 1;
        }
        RowsByCustomer { starts, rows }
    }
}

/// Customer ids side by side in one text, numbered in the order they were added.
#[derive(Default)]
struct CustomerIds {
    text: String,
    /// Where each id ends in `text`.
    ends: Vec<usize>,
}

impl CustomerIds {
    fn get(&self, number: u32) -> &str {
        let n = number as usize;
        let start = if n == 0 { 0 } else { self.ends[n - 1] };
        &self.text[start..self.ends[n]]
    }

    fn push(&mut self, id: &str) -> u32 {
        self.text.push_str(id);
        self.ends.push(self.text.len());
        (self.ends.len() - 1) as u32
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    /// The numbers in the order of their ids. Most comparisons are of the ids' heads held
    /// beside the numbers: comparing the texts themselves, scattered over the heap, took a
    /// second for a million ids.
    fn sorted(&self) -> Vec<u32> {
        let mut keyed: Vec<(u64, u32)> = (0..self.len() as u32)
            .map(|n| (IdHead::of(self.get(n)).bytes, n))
            .collect();
        keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| self.get(a.1).cmp(self.get(b.1))));
        keyed.into_iter().map(|(_, n)| n).collect()
    }
}

/// An id's first eight bytes (zero-padded, big-endian: they order as the texts do) and
/// length; ids of up to eight bytes are equal when their heads are.
#[derive(Clone, Copy, PartialEq, Eq)]
struct IdHead {
    bytes: u64,
    len: u32,
}

impl IdHead {
    fn of(id: &str) -> IdHead {
        let mut head = [0_u8; 8];
        let k = id.len().min(8);
        head[..k].copy_from_slice(&id.as_bytes()[..k]);
        IdHead {
            bytes: u64::from_be_bytes(head),
            // No id is 4 GiB long (a batch's text column holds less).
            len: id.len() as u32,
        }
    }
}

/// Gives each distinct customer id a number, the first one seen 0.
#[derive(Default)]
struct Numbering {
    ids: CustomerIds,
    /// Each id's head and number, found by the id's hash. With the head in the table, a
    /// lookup of a short id reads no other memory (the ids' text was a quarter of a 1M
    /// customer lake's scan).
    table: hashbrown::HashTable<(IdHead, u32)>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl Numbering {
    fn number(&mut self, id: &str) -> u32 {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(id);
        let head = IdHead::of(id);
        let Numbering { ids, table, hasher } = self;
        let same = |(h, n): &(IdHead, u32)| *h == head && (head.len <= 8 || ids.get(*n) == id);
        match table.find(hash, same) {
            Some((_, n)) => *n,
            None => {
                let n = ids.push(id);
                table.insert_unique(hash, (head, n), |(_, n)| hasher.hash_one(ids.get(*n)));
                n
            }
        }
    }
}

/// The rows of each customer: those of customer `c` are `rows[starts[c]..starts[c + 1]]`.
struct RowsByCustomer {
    starts: Vec<u32>,
    rows: Vec<u32>,
}

impl RowsByCustomer {
    fn rows(&self, customer: u32) -> &[u32] {
        let c = customer as usize;
        &self.rows[self.starts[c] as usize..self.starts[c + 1] as usize]
    }
}

/// The summaries of `window` by SQL ([`Method::Sql`]): one grouping by customer over the
/// purchase periods gives everything, the repeat periods' spend being the whole spend less
/// the first period's. (Joining each period to its customer's first period and grouping
/// again took twice as long as all the rest.)
async fn sql_inputs(
    ctx: &datafusion::prelude::SessionContext,
    grain: Grain,
    window: Window,
) -> Result<Vec<BtydInput>> {
    let mut batches = customer_periods(
        ctx,
        grain,
        FirstPeriodSpend::Packed,
        &[window],
        Order::ByCustomer,
    )
    .await?;
    if exceeds_packed_spend(&batches) {
        batches = customer_periods(
            ctx,
            grain,
            FirstPeriodSpend::Ordered,
            &[window],
            Order::ByCustomer,
        )
        .await?;
    }
    window_inputs(&batches, 0, &window)
}

/// Whether a period's spend is too large for [`FirstPeriodSpend::Packed`].
fn exceeds_packed_spend(batches: &[RecordBatch]) -> bool {
    batches
        .iter()
        .filter_map(|b| arrow::compute::max(b.column(1).as_primitive::<Decimal128Type>()))
        .max()
        .is_some_and(|spend| spend >= PACKED_SPEND_LIMIT)
}

/// The summaries of `window`, the `k`th of those [`customer_periods`] computed, of the
/// customers with a purchase in it.
fn window_inputs(batches: &[RecordBatch], k: usize, window: &Window) -> Result<Vec<BtydInput>> {
    let mut out = Vec::new();
    for b in batches {
        let column = |i: usize| b.column(2 + WINDOW_COLUMNS * k + i);
        let bought =
            arrow::compute::kernels::cmp::gt(column(0), &arrow::array::Int64Array::new_scalar(0))
                .map_err(arrow_error)?;
        let kept = |a: &arrow::array::ArrayRef| arrow::compute::filter(a, &bought);
        let ids = arrow::compute::cast(&kept(b.column(0)).map_err(arrow_error)?, &DataType::Utf8)
            .map_err(arrow_error)?;
        let [periods, first, last, spend, first_spend] =
            [0, 1, 2, 3, 4].map(|i| kept(column(i)).map_err(arrow_error));
        let (ids, periods, first, last) = (ids.as_string::<i32>(), periods?, first?, last?);
        let periods = periods.as_primitive::<Int64Type>();
        let first = first.as_primitive::<Int64Type>();
        let last = last.as_primitive::<Int64Type>();
        let (spend, first_spend) = (spend?, first_spend?);
        let (spend, first_spend) = (
            spend.as_primitive::<Decimal128Type>(),
            first_spend.as_primitive::<Decimal128Type>(),
        );
        let repeats: Vec<(i128, i64)> = (0..periods.len())
            .map(|i| {
                let first = if first_spend.scale() == 0 {
                    first_spend.value(i).rem_euclid(PACKED_SPEND_LIMIT)
                } else {
                    first_spend.value(i)
                };
                (spend.value(i) - first, periods.value(i) - 1)
            })
            .collect();
        let monetary = repeat_spend_means(&repeats, |i| ids.value(i))?;
        for (i, monetary) in monetary.into_iter().enumerate() {
            let [frequency, recency_weeks, age_weeks] =
                window.times(periods.value(i), first.value(i), last.value(i));
            out.push(BtydInput {
                customer_id: ids.value(i).to_string(),
                frequency,
                recency_weeks,
                age_weeks,
                monetary,
            });
        }
    }
    Ok(out)
}

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

/// The order of [`customer_periods`]' rows.
#[derive(Clone, Copy)]
enum Order {
    ByCustomer,
    /// Whatever order the grouping leaves (sorting a million ids costs a second).
    Any,
}

/// Columns [`customer_periods`] gives per window.
const WINDOW_COLUMNS: usize = 5;

/// Per customer with a purchase before D (ordered as `order` says): customer_id, the largest
/// spend of one period, then for each window the number of its purchase periods, the first
/// and last of them, their whole spend, and the first period's spend (packed, see
/// [`FirstPeriodSpend`]); a customer with no purchase in a window has 0 periods there and
/// nulls.
async fn customer_periods(
    ctx: &datafusion::prelude::SessionContext,
    grain: Grain,
    first_period_spend: FirstPeriodSpend,
    windows: &[Window],
    order: Order,
) -> Result<Vec<RecordBatch>> {
    let period = grain.period("day");
    let first_period_spend = match first_period_spend {
        FirstPeriodSpend::Packed => format!(
            "min(CAST(period AS DECIMAL(38, 0)) * CAST('{PACKED_SPEND_LIMIT}' AS DECIMAL(38, 0)) \
             + CAST(spend * {} AS DECIMAL(38, 0)))",
            10_i128.pow(SPEND_SCALE as u32)
        ),
        FirstPeriodSpend::Ordered => "first_value(spend ORDER BY period)".to_string(),
    };
    let per_window: Vec<String> = windows
        .iter()
        .enumerate()
        .map(|(k, w)| {
            let only = w
                .before_period
                .map_or(String::new(), |p| format!(" FILTER (WHERE period < {p})"));
            format!(
                "count(*){only} AS periods_{k}, min(period){only} AS first_period_{k}, \
                 max(period){only} AS last_purchase_period_{k}, sum(spend){only} AS spend_{k}, \
                 {first_period_spend}{only} AS first_period_spend_{k}"
            )
        })
        .collect();
    let sql = format!(
        "WITH purchase_periods AS (SELECT customer_id, CAST({period} AS BIGINT) AS period, \
            sum(CAST(amount AS DECIMAL(38, {SPEND_SCALE}))) AS spend \
            FROM transactions WHERE is_purchase GROUP BY 1, 2), \
        final AS (SELECT customer_id, max(spend) AS largest_period_spend, {} \
          FROM purchase_periods GROUP BY customer_id) \
        SELECT * FROM final{}",
        per_window.join(", "),
        match order {
            Order::ByCustomer => " ORDER BY customer_id",
            Order::Any => "",
        }
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

/// Each customer's mean spend per repeat period (0 without repeats) from its repeat spend
/// (a decimal of [`SPEND_SCALE`]) and number of repeat periods, computed as DataFusion's
/// `avg` of `DECIMAL(38, 6)` values computes it and then cast to a double as
/// `CAST(... AS DOUBLE)` casts it: the sum scaled to the result's 10 decimals, divided by the
/// count with truncation. `id` names the customer of a row whose mean overflows.
fn repeat_spend_means<'a>(
    repeats: &[(i128, i64)],
    id: impl Fn(usize) -> &'a str,
) -> Result<Vec<f64>> {
    const MEAN_SCALE: i8 = SPEND_SCALE + 4;
    let scale_up = 10_i128.pow((MEAN_SCALE - SPEND_SCALE) as u32);
    let means: Decimal128Array = repeats
        .iter()
        .enumerate()
        .map(|(i, &(repeat_spend, repeats))| {
            if repeats == 0 {
                return None;
            }
            let mean = repeat_spend
                .checked_mul(scale_up)
                .map(|scaled| scaled / repeats as i128)
                .filter(|mean| Decimal128Type::is_valid_decimal_precision(*mean, 38));
            Some(mean.ok_or_else(|| {
                datafusion::error::DataFusionError::Execution(format!(
                    "Arithmetic Overflow in the mean repeat spend of customer {}",
                    id(i)
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
