-- Purchase rhythm: gaps between consecutive distinct purchase days, the buy-till-you-die
-- summary (daily grain, time unit weeks) over all history before D, and the purchase days of
-- the last year (here rather than in habits.sql: the distinct purchase days are made once).
-- grain: one row per customer of the snapshot population (customer_id)
-- columns:
--   mean_gap_days: (last - first purchase day) / (purchase days - 1); null below two purchase days
--   std_gap_days: sample standard deviation of the gaps; null below three purchase days
--   last_gap_days: last purchase day minus the one before; null below two purchase days
--   overdue_ratio: recency_days / mean_gap_days; null when mean_gap_days is null or zero
--   btyd_frequency: distinct purchase days - 1 (repeat purchase days)
--   btyd_recency_weeks: (last - first purchase day) / 7
--   btyd_age_weeks: (D - 1 - first purchase day) / 7: age runs to the day before D, as in `churn btyd fit`
--   purchase_days_365d: distinct days with a purchase in [D-365d, D)
with
params as (
    select as_of_day from snapshot
),

population_ids as (
    select customer_id from population
),

-- Every purchase, not the distinct purchase days: a second purchase on a day is a gap of 0,
-- which adds nothing to the sums below and is told apart by `starts_day`. One window over the
-- purchases costs less than making the days distinct first and then sorting them (on a
-- 1M-customer store 4 s instead of 6 s).
purchases as (
    select customer_id, day
    from transactions
    where is_purchase
),

-- Each purchase with the gap since the purchase before it: 0 on the same day, null for the
-- first. One window: the same result on Ballista 55, where a second, descending
-- `row_number()` window in this select numbered the days ascending.
gaps as (
    select
        customer_id,
        day,
        day - lag(day) over (partition by customer_id order by day) as gap
    from purchases
),

-- Whether a purchase is its day's first: each purchase day counted once.
day_starts as (
    select *, gap is null or gap > 0 as starts_day
    from gaps
),

per_customer as (
    select
        g.customer_id,
        sum(case when g.starts_day then 1 else 0 end) as purchase_days,
        min(g.day) as first_day,
        max(g.day) as last_day,
        -- The sample deviation from exact integer sums (not stddev_samp, whose partial states
        -- merge in an order that varies between runs): a re-run gives the same bits.
        sum(case when g.gap > 0 then 1 else 0 end) as gaps,
        sum(g.gap) as gap_sum,
        sum(g.gap * g.gap) as gap_square_sum,
        -- The latest day's gap without a second window: each gap packed after its day (gaps
        -- are below 10^9 days), so the largest is the latest day's first purchase's.
        max(cast(g.day as bigint) * 1000000000 + g.gap) - cast(max(g.day) as bigint) * 1000000000 as last_gap,
        sum(case when g.starts_day and p.as_of_day - g.day <= 365 then 1 else 0 end) as purchase_days_365d
    from day_starts g
    cross join params p
    group by g.customer_id
),

rhythm as (
    select
        c.customer_id,
        c.purchase_days,
        c.first_day,
        c.last_day,
        case
            when c.gaps >= 2 then sqrt(
                greatest(cast(c.gaps * c.gap_square_sum - c.gap_sum * c.gap_sum as double), 0.0)
                / (cast(c.gaps as double) * (c.gaps - 1))
            )
        end as gap_stddev,
        c.last_gap,
        c.purchase_days_365d,
        case when c.purchase_days >= 2 then cast(c.last_day - c.first_day as double) / (c.purchase_days - 1) end as mean_gap_days,
        p.as_of_day - c.last_day as recency_days,
        p.as_of_day
    from per_customer c
    cross join params p
),

final as (
    select
        r.customer_id,
        r.mean_gap_days,
        case when r.purchase_days >= 3 then r.gap_stddev end as std_gap_days,
        case when r.purchase_days >= 2 then cast(r.last_gap as bigint) end as last_gap_days,
        case when r.mean_gap_days > 0 then r.recency_days / r.mean_gap_days end as overdue_ratio,
        cast(r.purchase_days - 1 as bigint) as btyd_frequency,
        cast(r.last_day - r.first_day as double) / 7.0 as btyd_recency_weeks,
        cast(r.as_of_day - 1 - r.first_day as double) / 7.0 as btyd_age_weeks,
        cast(r.purchase_days_365d as bigint) as purchase_days_365d
    from population_ids i
    join rhythm r on r.customer_id = i.customer_id
)

select * from final
