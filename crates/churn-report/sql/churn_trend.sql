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

months as (
    select distinct month,
           cast(make_date((month + 1) / 12, (month + 1) % 12 + 1, 1) as int) as next_month_day
    from purchase_days
),

active as (
    select distinct d.customer_id, d.month, m.next_month_day
    from purchase_days d
    join months m on m.month = d.month
),

returned as (
    select distinct a.customer_id, a.month
    from active a
    cross join params p
    join purchase_days d
      on d.customer_id = a.customer_id
     and d.day >= a.next_month_day
     and d.day < a.next_month_day + p.horizon_days
),

per_month as (
    select a.month, a.next_month_day,
           count(*) as active_customers,
           count(*) - count(r.customer_id) as churned_customers
    from active a
    left join returned r on r.customer_id = a.customer_id and r.month = a.month
    group by a.month, a.next_month_day
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
