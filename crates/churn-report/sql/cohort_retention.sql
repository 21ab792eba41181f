-- Cohort retention triangle: of the customers whose first purchase fell in a month, the share
-- who bought again in each later month.
-- grain: one row per cohort month and month offset (cohort_month, month_offset)
-- columns:
--   cohort_month: first day of the month of the cohort's first purchases (local dates); only months that ended before D
--   month_offset: months after the cohort month (0 is the cohort month itself)
--   period_month: first day of the month the cell measures (cohort_month + month_offset months)
--   cohort_customers: customers whose first purchase fell in cohort_month
--   active_customers: of those, customers with a purchase in period_month; null when period_month has not ended before D
--   retention_rate: active_customers / cohort_customers; null when not observable
with
params as (
    select cast(date_part('year', as_of) as int) * 12 + cast(date_part('month', as_of) as int) - 1 as as_of_month
    from snapshot
),

purchases as (
    select distinct
        customer_id,
        cast(date_part('year', date) as int) * 12 + cast(date_part('month', date) as int) - 1 as month
    from transactions
    where is_purchase
),

-- Each customer's purchase months with the first of them (one window pass, no join).
customer_months as (
    select customer_id, month, min(month) over (partition by customer_id) as cohort_month
    from purchases
),

cohorts as (
    select c.cohort_month, count(*) as cohort_customers
    from customer_months c
    cross join params p
    where c.month = c.cohort_month and c.cohort_month < p.as_of_month
    group by c.cohort_month
),

activity as (
    select cohort_month, month as period_month, count(*) as active_customers
    from customer_months
    group by cohort_month, month
),

offsets as (
    select unnest(range(0, 1200)) as month_offset
),

span as (
    select p.as_of_month - min(c.cohort_month) as months
    from cohorts c
    cross join params p
    group by p.as_of_month
),

grid as (
    select c.cohort_month, c.cohort_customers, o.month_offset, c.cohort_month + o.month_offset as period_month
    from cohorts c
    cross join offsets o
    cross join span s
    where o.month_offset < s.months
),

final as (
    select
        make_date(g.cohort_month / 12, g.cohort_month % 12 + 1, 1) as cohort_month,
        cast(g.month_offset as int) as month_offset,
        make_date(g.period_month / 12, g.period_month % 12 + 1, 1) as period_month,
        cast(g.cohort_customers as bigint) as cohort_customers,
        cast(case when g.period_month < p.as_of_month
                  then coalesce(a.active_customers, 0) end as bigint) as active_customers,
        cast(case when g.period_month < p.as_of_month
                  then coalesce(a.active_customers, 0) * 1.0 / g.cohort_customers end as double) as retention_rate
    from grid g
    cross join params p
    left join activity a on a.cohort_month = g.cohort_month and a.period_month = g.period_month
)

select * from final
