-- Churn-rate trend: of the customers who bought in a month, the share with no purchase in the
-- horizon that follows the month.
-- grain: one row per month (month); only months that ended before D
-- columns:
--   month: first day of the month (local dates)
--   active_customers: customers with a purchase in the month
--   churned_customers: of those, customers with no purchase in the horizon_days from the first day of the next month; null until that window ended before D
--   churn_rate: churned_customers / active_customers; null when not observable
--   horizon_days: the horizon used (the report's --horizon-days)
with
params as (
    select s.as_of_day,
           cast(date_part('year', s.as_of) as int) * 12 + cast(date_part('month', s.as_of) as int) - 1 as as_of_month,
           o.horizon_days
    from snapshot s
    cross join report_options o
),

purchase_days as (
    select distinct
        customer_id,
        day,
        cast(date_part('year', date) as int) * 12 + cast(date_part('month', date) as int) - 1 as month
    from transactions
    where is_purchase
),

-- Each purchase day with the customer's next purchase day and its month.
next_days as (
    select
        customer_id, day, month,
        lead(day) over (partition by customer_id order by day) as next_day,
        lead(month) over (partition by customer_id order by day) as next_month
    from purchase_days
),

-- The last purchase day of each customer and month: its next purchase day is the first one
-- after the month (one window pass instead of a join on a day range).
month_ends as (
    select
        customer_id,
        month,
        next_day,
        cast(make_date((month + 1) / 12, (month + 1) % 12 + 1, 1) as int) as next_month_day
    from next_days
    where next_month is null or next_month <> month
),

per_month as (
    select
        e.month,
        e.next_month_day,
        count(*) as active_customers,
        sum(case when e.next_day is null or e.next_day >= e.next_month_day + p.horizon_days
                 then 1 else 0 end) as churned_customers
    from month_ends e
    cross join params p
    group by e.month, e.next_month_day
),

final as (
    select
        make_date(m.month / 12, m.month % 12 + 1, 1) as month,
        cast(m.active_customers as bigint) as active_customers,
        cast(case when m.next_month_day + p.horizon_days <= p.as_of_day then m.churned_customers end as bigint) as churned_customers,
        cast(case when m.next_month_day + p.horizon_days <= p.as_of_day
                  then m.churned_customers * 1.0 / m.active_customers end as double) as churn_rate,
        cast(p.horizon_days as int) as horizon_days
    from per_month m
    cross join params p
    where m.month < p.as_of_month
)

select * from final
