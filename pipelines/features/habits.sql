-- Shopping habits over the last year: discounts, basket size, stores, weekends, refunds.
-- grain: one row per customer of the snapshot population (customer_id)
-- columns:
--   discount_share_365d: share of purchases in [D-365d, D) with a discount; null without purchases there
--   avg_quantity_365d: mean items per purchase in [D-365d, D); null without quantities there
--   store_count_365d: distinct stores (the web shop counts as one) among purchases in [D-365d, D)
--   weekend_share_365d: share of purchases in [D-365d, D) made on a Saturday or Sunday; null without purchases there
--   days_since_last_refund: days from the last refund before D to D; null if never
with
params as (
    select as_of_day from snapshot
),

population_ids as (
    select customer_id from population
),

history as (
    select
        t.customer_id,
        t.day,
        t.date,
        t.quantity,
        t.discount,
        t.store_id,
        t.is_purchase,
        t.is_refund,
        p.as_of_day - t.day as days_ago
    from transactions t
    cross join params p
),

last_year as (
    select *, extract(dow from date) in (0, 6) as on_weekend
    from history
    where is_purchase and days_ago <= 365
),

purchase_habits as (
    select
        customer_id,
        count(*) as purchases,
        sum(case when discount > 0 then 1 else 0 end) as discounted,
        -- An exact DECIMAL sum, the same on every run however the work is split (DECIMAL's
        -- own avg would round to its scale).
        cast(sum(cast(quantity as decimal(18, 4))) as double) / count(quantity) as avg_quantity,
        sum(case when on_weekend then 1 else 0 end) as weekend_purchases,
        count(distinct store_id) as stores
    from last_year
    group by customer_id
),

refunds as (
    select customer_id, min(days_ago) as days_since_last_refund
    from history
    where is_refund
    group by customer_id
),

final as (
    select
        i.customer_id,
        case when h.purchases > 0 then cast(h.discounted as double) / h.purchases end as discount_share_365d,
        h.avg_quantity as avg_quantity_365d,
        cast(coalesce(h.stores, 0) as bigint) as store_count_365d,
        case when h.purchases > 0 then cast(h.weekend_purchases as double) / h.purchases end as weekend_share_365d,
        cast(r.days_since_last_refund as bigint) as days_since_last_refund
    from population_ids i
    left join purchase_habits h on h.customer_id = i.customer_id
    left join refunds r on r.customer_id = i.customer_id
)

select * from final
