-- New-customer repeat rate: of the customers whose first purchase fell in a month, the share
-- who bought again on a later day within 30, 60 and 90 days of that first purchase day.
-- grain: one row per first-purchase month (cohort_month)
-- columns:
--   cohort_month: first day of the month of the first purchases (local dates); only months that ended before D
--   new_customers: customers whose first purchase fell in cohort_month
--   repeat_30d: of those, customers with a purchase on a later day at most 30 days after the first purchase day; null until every member's window ended before D
--   repeat_60d: the same within 60 days
--   repeat_90d: the same within 90 days
--   repeat_rate_30d: repeat_30d / new_customers; null when not observable
--   repeat_rate_60d: repeat_60d / new_customers; null when not observable
--   repeat_rate_90d: repeat_90d / new_customers; null when not observable
with
params as (
    select as_of_day,
           cast(date_part('year', as_of) as int) * 12 + cast(date_part('month', as_of) as int) - 1 as as_of_month
    from snapshot
),

purchase_days as (
    select distinct
        customer_id,
        day,
        cast(date_part('year', date) as int) * 12 + cast(date_part('month', date) as int) - 1 as month
    from transactions
    where is_purchase
),

-- Each customer's first purchase day and the next purchase day after it (one window pass).
ranked_days as (
    select
        customer_id, day, month,
        row_number() over (partition by customer_id order by day) as k,
        lead(day) over (partition by customer_id order by day) as next_day
    from purchase_days
),

first_months as (
    select customer_id, day as first_day, month as cohort_month, next_day - day as days_to_next
    from ranked_days
    where k = 1
),

cohorts as (
    select
        f.cohort_month,
        count(*) as new_customers,
        sum(case when f.days_to_next <= 30 then 1 else 0 end) as repeat_30d,
        sum(case when f.days_to_next <= 60 then 1 else 0 end) as repeat_60d,
        sum(case when f.days_to_next <= 90 then 1 else 0 end) as repeat_90d,
        -- The day after the cohort month's last day: every window starts before it.
        cast(make_date((f.cohort_month + 1) / 12, (f.cohort_month + 1) % 12 + 1, 1) as int) as month_end_day
    from first_months f
    cross join params p
    where f.cohort_month < p.as_of_month
    group by f.cohort_month
),

final as (
    select
        make_date(c.cohort_month / 12, c.cohort_month % 12 + 1, 1) as cohort_month,
        cast(c.new_customers as bigint) as new_customers,
        cast(case when c.month_end_day - 1 + 30 < p.as_of_day then c.repeat_30d end as bigint) as repeat_30d,
        cast(case when c.month_end_day - 1 + 60 < p.as_of_day then c.repeat_60d end as bigint) as repeat_60d,
        cast(case when c.month_end_day - 1 + 90 < p.as_of_day then c.repeat_90d end as bigint) as repeat_90d,
        cast(case when c.month_end_day - 1 + 30 < p.as_of_day then c.repeat_30d * 1.0 / c.new_customers end as double) as repeat_rate_30d,
        cast(case when c.month_end_day - 1 + 60 < p.as_of_day then c.repeat_60d * 1.0 / c.new_customers end as double) as repeat_rate_60d,
        cast(case when c.month_end_day - 1 + 90 < p.as_of_day then c.repeat_90d * 1.0 / c.new_customers end as double) as repeat_rate_90d
    from cohorts c
    cross join params p
)

select * from final
