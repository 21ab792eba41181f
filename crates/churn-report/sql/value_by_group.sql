-- Repeat-purchase rate and value at risk of D's population by segment, lifecycle stage, tier,
-- store and channel.
-- grain: one row per dimension and value (dimension, code)
-- columns:
--   dimension: rfm_segment, lifecycle_stage or suggested_tier (from the segments of D; absent without them), profile_tier (the customers table's tier), store or channel (where the customer made most purchases in the 365 days before D, ties to the smallest code)
--   code: the value's stable code; unknown when the customer has none
--   label: the value's label in the segments' language (the code itself for profile_tier, store and channel)
--   customers: customers of D's population (a purchase in the 365 days before D) with this value
--   repeat_customers: of those, customers with purchases on at least two days in the 365 days before D
--   repeat_rate: repeat_customers / customers
--   scored_customers: of those, customers with a score of D
--   value_at_risk: sum of the value at risk of D's scores; null when none is scored
--   mean_churn_probability: mean churn probability of D's scores; null when none is scored
with
params as (
    select as_of, as_of_day from snapshot
),

window_purchases as (
    select t.customer_id, t.day, coalesce(t.store_id, 'unknown') as store, coalesce(t.channel, 'unknown') as channel
    from transactions t
    cross join params p
    where t.is_purchase and t.day >= p.as_of_day - 365
),

population as (
    select customer_id, count(distinct day) as purchase_days
    from window_purchases
    group by customer_id
),

store_counts as (
    select customer_id, store, count(*) as purchases
    from window_purchases
    group by customer_id, store
),

store_ranks as (
    select customer_id, store,
           row_number() over (partition by customer_id order by purchases desc, store) as k
    from store_counts
),

channel_counts as (
    select customer_id, channel, count(*) as purchases
    from window_purchases
    group by customer_id, channel
),

channel_ranks as (
    select customer_id, channel,
           row_number() over (partition by customer_id order by purchases desc, channel) as k
    from channel_counts
),

day_segments as (
    select s.customer_id, s.rfm_segment, s.rfm_segment_label, s.lifecycle_stage, s.lifecycle_label,
           s.suggested_tier, s.suggested_tier_label
    from segments s
    cross join params p
    where s.as_of = p.as_of
),

day_scores as (
    select s.customer_id, s.value_at_risk, s.churn_probability
    from scores s
    cross join params p
    where s.as_of = p.as_of
),

customer_rows as (
    select
        p.customer_id,
        case when p.purchase_days >= 2 then 1 else 0 end as is_repeat,
        case when sc.customer_id is null then 0 else 1 end as is_scored,
        sc.value_at_risk,
        sc.churn_probability,
        sg.rfm_segment, sg.rfm_segment_label, sg.lifecycle_stage, sg.lifecycle_label,
        sg.suggested_tier, sg.suggested_tier_label,
        coalesce(c.tier, 'unknown') as profile_tier,
        st.store,
        ch.channel
    from population p
    left join day_segments sg on sg.customer_id = p.customer_id
    left join day_scores sc on sc.customer_id = p.customer_id
    left join customers c on c.customer_id = p.customer_id
    left join store_ranks st on st.customer_id = p.customer_id and st.k = 1
    left join channel_ranks ch on ch.customer_id = p.customer_id and ch.k = 1
),

-- One pass over the customers: each customer's six (dimension, code, label) pairs.
long_rows as (
    select
        pair['dimension'] as dimension, pair['code'] as code, pair['label'] as label,
        is_repeat, is_scored, value_at_risk, churn_probability
    from (
        select
            is_repeat, is_scored, value_at_risk, churn_probability,
            unnest(make_array(
                named_struct('dimension', 'rfm_segment', 'code', rfm_segment, 'label', rfm_segment_label),
                named_struct('dimension', 'lifecycle_stage', 'code', lifecycle_stage, 'label', lifecycle_label),
                named_struct('dimension', 'suggested_tier', 'code', suggested_tier, 'label', suggested_tier_label),
                named_struct('dimension', 'profile_tier', 'code', profile_tier, 'label', profile_tier),
                named_struct('dimension', 'store', 'code', store, 'label', store),
                named_struct('dimension', 'channel', 'code', channel, 'label', channel)
            )) as pair
        from customer_rows
    ) pairs
    where pair['code'] is not null
),

final as (
    select
        cast(dimension as varchar) as dimension,
        cast(code as varchar) as code,
        cast(max(label) as varchar) as label,
        cast(count(*) as bigint) as customers,
        cast(sum(is_repeat) as bigint) as repeat_customers,
        cast(sum(is_repeat) * 1.0 / count(*) as double) as repeat_rate,
        cast(sum(is_scored) as bigint) as scored_customers,
        cast(sum(value_at_risk) as double) as value_at_risk,
        cast(avg(churn_probability) as double) as mean_churn_probability
    from long_rows
    group by dimension, code
)

select * from final
