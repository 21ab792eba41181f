-- Recency, frequency and monetary value of each customer at the as-of date D.
-- grain: one row per customer of the snapshot population (customer_id)
-- columns:
--   recency_days: days from the last purchase day before D to D
--   tenure_days: days from the first purchase day to D
--   frequency_30d: purchases in [D-30d, D)
--   frequency_90d: purchases in [D-90d, D)
--   frequency_365d: purchases in [D-365d, D)
--   frequency_total: purchases before D
--   monetary_30d: net spend in [D-30d, D): purchases minus absolute refunds
--   monetary_90d: net spend in [D-90d, D)
--   monetary_365d: net spend in [D-365d, D)
--   avg_basket_365d: mean purchase amount in [D-365d, D); null without purchases there
--   spend_trend_90d: net spend in the last 90 days minus net spend in [D-180d, D-90d)
--   returns_365d: refunds in [D-365d, D)
--   category_count_365d: distinct product categories among purchases in [D-365d, D)
--   online_share_365d: share of purchases in [D-365d, D) made online; null without purchases there
with
params as (
    select as_of_day from snapshot
),

population_ids as (
    select customer_id from population
),

-- Every transaction before D, with its age in days (1 = the day before D) and its signed
-- contribution to net spend. Money is summed as DECIMAL: exact, so the sums do not depend on
-- the order in which parallel workers add them, and a re-run gives the same bits.
history as (
    select
        t.customer_id,
        t.day,
        t.amount,
        t.product_category,
        t.channel,
        t.is_purchase,
        t.is_refund,
        p.as_of_day - t.day as days_ago,
        cast(t.amount as decimal(18, 4)) as amount_exact,
        cast(
            case when t.is_purchase then t.amount when t.is_refund then -abs(t.amount) else 0.0 end
            as decimal(18, 4)
        ) as net
    from transactions t
    cross join params p
),

per_customer as (
    select
        customer_id,
        min(case when is_purchase then day end) as first_purchase_day,
        max(case when is_purchase then day end) as last_purchase_day,
        sum(case when is_purchase and days_ago <= 30 then 1 else 0 end) as frequency_30d,
        sum(case when is_purchase and days_ago <= 90 then 1 else 0 end) as frequency_90d,
        sum(case when is_purchase and days_ago <= 365 then 1 else 0 end) as frequency_365d,
        sum(case when is_purchase then 1 else 0 end) as frequency_total,
        sum(case when days_ago <= 30 then net else 0 end) as monetary_30d,
        sum(case when days_ago <= 90 then net else 0 end) as monetary_90d,
        sum(case when days_ago <= 365 then net else 0 end) as monetary_365d,
        sum(case when days_ago > 90 and days_ago <= 180 then net else 0 end) as net_91_180d,
        sum(case when is_purchase and days_ago <= 365 then amount_exact end) as basket_sum_365d,
        sum(case when is_refund and days_ago <= 365 then 1 else 0 end) as returns_365d,
        sum(case when is_purchase and days_ago <= 365 and channel = 'online' then 1 else 0 end) as online_365d,
        count(distinct product_category) filter (where is_purchase and days_ago <= 365) as category_count_365d
    from history
    group by customer_id
),

final as (
    select
        c.customer_id,
        cast(p.as_of_day - c.last_purchase_day as bigint) as recency_days,
        cast(p.as_of_day - c.first_purchase_day as bigint) as tenure_days,
        cast(c.frequency_30d as bigint) as frequency_30d,
        cast(c.frequency_90d as bigint) as frequency_90d,
        cast(c.frequency_365d as bigint) as frequency_365d,
        cast(c.frequency_total as bigint) as frequency_total,
        cast(c.monetary_30d as double) as monetary_30d,
        cast(c.monetary_90d as double) as monetary_90d,
        cast(c.monetary_365d as double) as monetary_365d,
        case when c.frequency_365d > 0 then cast(c.basket_sum_365d as double) / c.frequency_365d end as avg_basket_365d,
        cast(c.monetary_90d - c.net_91_180d as double) as spend_trend_90d,
        cast(c.returns_365d as bigint) as returns_365d,
        c.category_count_365d,
        case when c.frequency_365d > 0 then cast(c.online_365d as double) / c.frequency_365d end as online_share_365d
    from population_ids i
    join per_customer c on c.customer_id = i.customer_id
    cross join params p
)

select * from final
