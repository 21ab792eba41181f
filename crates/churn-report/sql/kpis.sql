-- Headline figures of D with the same figure one period earlier.
-- grain: one row per figure (kpi)
-- columns:
--   kpi: active_customers (a purchase in the 365 days before D), buyers_30d (customers with a purchase in the 30 days before D), new_customers_30d (first purchase in those 30 days), orders_30d (purchases in those 30 days), revenue_30d (net spend in those 30 days), high_risk_customers (D's scores in the high risk band: the churn warnings), value_at_risk (sum over D's scores), at_risk_customers (lifecycle stage at_risk in D's segments)
--   display_order: display order
--   value: the figure on D; null when its input (scores or segments of D) is missing
--   previous_value: the same figure for the previous period: the 30 days before (for activity, D - 30 for active_customers) or the latest earlier scores or segments; null when unknown
--   change: value - previous_value
--   change_ratio: change / previous_value; null when previous_value is null or zero
--   previous_as_of: the date previous_value is as of (D - 30, or the earlier scores' or segments' date)
with
params as (
    select as_of, as_of_day from snapshot
),

purchases as (
    select t.customer_id, t.day, t.amount, t.is_purchase, t.is_refund
    from transactions t
),

first_days as (
    select customer_id, min(day) as first_day from purchases where is_purchase group by customer_id
),

activity as (
    select
        count(distinct case when pu.is_purchase and pu.day >= p.as_of_day - 365 then pu.customer_id end) as active_now,
        count(distinct case when pu.is_purchase and pu.day >= p.as_of_day - 395 and pu.day < p.as_of_day - 30 then pu.customer_id end) as active_before,
        count(distinct case when pu.is_purchase and pu.day >= p.as_of_day - 30 then pu.customer_id end) as buyers_now,
        count(distinct case when pu.is_purchase and pu.day >= p.as_of_day - 60 and pu.day < p.as_of_day - 30 then pu.customer_id end) as buyers_before,
        sum(case when pu.is_purchase and pu.day >= p.as_of_day - 30 then 1 else 0 end) as orders_now,
        sum(case when pu.is_purchase and pu.day >= p.as_of_day - 60 and pu.day < p.as_of_day - 30 then 1 else 0 end) as orders_before,
        sum(case when pu.day >= p.as_of_day - 30 then
                 case when pu.is_purchase then pu.amount when pu.is_refund then -abs(pu.amount) else 0 end
                 else 0 end) as revenue_now,
        sum(case when pu.day >= p.as_of_day - 60 and pu.day < p.as_of_day - 30 then
                 case when pu.is_purchase then pu.amount when pu.is_refund then -abs(pu.amount) else 0 end
                 else 0 end) as revenue_before
    from purchases pu
    cross join params p
),

newcomers as (
    select
        sum(case when f.first_day >= p.as_of_day - 30 then 1 else 0 end) as new_now,
        sum(case when f.first_day >= p.as_of_day - 60 and f.first_day < p.as_of_day - 30 then 1 else 0 end) as new_before
    from first_days f
    cross join params p
),

score_dates as (
    select
        max(case when s.as_of = p.as_of then s.as_of end) as now_date,
        max(case when s.as_of < p.as_of then s.as_of end) as before_date
    from (select distinct as_of from scores) s
    cross join params p
),

risk as (
    select
        sum(case when s.as_of = d.now_date and s.risk_band = 'high' then 1 else 0 end) as high_now,
        sum(case when s.as_of = d.before_date and s.risk_band = 'high' then 1 else 0 end) as high_before,
        sum(case when s.as_of = d.now_date then s.value_at_risk end) as var_now,
        sum(case when s.as_of = d.before_date then s.value_at_risk end) as var_before
    from scores s
    cross join score_dates d
),

segment_dates as (
    select
        max(case when s.as_of = p.as_of then s.as_of end) as now_date,
        max(case when s.as_of < p.as_of then s.as_of end) as before_date
    from (select distinct as_of from segments) s
    cross join params p
),

stages as (
    select
        sum(case when s.as_of = d.now_date and s.lifecycle_stage = 'at_risk' then 1 else 0 end) as at_risk_now,
        sum(case when s.as_of = d.before_date and s.lifecycle_stage = 'at_risk' then 1 else 0 end) as at_risk_before
    from segments s
    cross join segment_dates d
),

figures as (
    select 'active_customers' as kpi, 1 as display_order, cast(a.active_now as double) as value, cast(a.active_before as double) as previous_value, p.as_of - interval '30 days' as previous_as_of
    from activity a cross join params p
    union all
    select 'buyers_30d', 2, cast(a.buyers_now as double), cast(a.buyers_before as double), p.as_of - interval '30 days'
    from activity a cross join params p
    union all
    select 'new_customers_30d', 3, cast(coalesce(n.new_now, 0) as double), cast(coalesce(n.new_before, 0) as double), p.as_of - interval '30 days'
    from newcomers n cross join params p
    union all
    select 'orders_30d', 4, cast(coalesce(a.orders_now, 0) as double), cast(coalesce(a.orders_before, 0) as double), p.as_of - interval '30 days'
    from activity a cross join params p
    union all
    select 'revenue_30d', 5, cast(coalesce(a.revenue_now, 0) as double), cast(coalesce(a.revenue_before, 0) as double), p.as_of - interval '30 days'
    from activity a cross join params p
    union all
    select 'high_risk_customers', 6,
           case when d.now_date is not null then cast(coalesce(r.high_now, 0) as double) end,
           case when d.before_date is not null then cast(coalesce(r.high_before, 0) as double) end,
           d.before_date
    from risk r cross join score_dates d
    union all
    select 'value_at_risk', 7,
           case when d.now_date is not null then cast(coalesce(r.var_now, 0) as double) end,
           case when d.before_date is not null then cast(coalesce(r.var_before, 0) as double) end,
           d.before_date
    from risk r cross join score_dates d
    union all
    select 'at_risk_customers', 8,
           case when d.now_date is not null then cast(coalesce(s.at_risk_now, 0) as double) end,
           case when d.before_date is not null then cast(coalesce(s.at_risk_before, 0) as double) end,
           d.before_date
    from stages s cross join segment_dates d
),

final as (
    select
        cast(kpi as varchar) as kpi,
        cast(display_order as int) as display_order,
        value,
        previous_value,
        value - previous_value as change,
        case when previous_value <> 0 then (value - previous_value) / previous_value end as change_ratio,
        cast(previous_as_of as date) as previous_as_of
    from figures
)

select * from final
