-- Campaign participation: messages received and answered in the last 90 days, and the last
-- redemption ever.
-- grain: one row per customer of the snapshot population (customer_id)
-- requires: campaign_events
-- columns:
--   campaign_sent_90d: campaign messages sent in [D-90d, D)
--   campaign_opened_90d: messages opened in [D-90d, D)
--   campaign_clicked_90d: messages clicked in [D-90d, D)
--   campaign_redeemed_90d: offers redeemed in [D-90d, D)
--   days_since_last_redeem: days from the last redemption before D to D; null if never
with
params as (
    select as_of_day from snapshot
),

population_ids as (
    select customer_id from population
),

events as (
    select e.customer_id, e.event, p.as_of_day - e.day as days_ago
    from campaign_events e
    cross join params p
),

per_customer as (
    select
        customer_id,
        sum(case when event = 'sent' and days_ago <= 90 then 1 else 0 end) as sent_90d,
        sum(case when event = 'opened' and days_ago <= 90 then 1 else 0 end) as opened_90d,
        sum(case when event = 'clicked' and days_ago <= 90 then 1 else 0 end) as clicked_90d,
        sum(case when event = 'redeemed' and days_ago <= 90 then 1 else 0 end) as redeemed_90d,
        min(case when event = 'redeemed' then days_ago end) as days_since_last_redeem
    from events
    group by customer_id
),

final as (
    select
        i.customer_id,
        cast(coalesce(c.sent_90d, 0) as bigint) as campaign_sent_90d,
        cast(coalesce(c.opened_90d, 0) as bigint) as campaign_opened_90d,
        cast(coalesce(c.clicked_90d, 0) as bigint) as campaign_clicked_90d,
        cast(coalesce(c.redeemed_90d, 0) as bigint) as campaign_redeemed_90d,
        cast(c.days_since_last_redeem as bigint) as days_since_last_redeem
    from population_ids i
    left join per_customer c on c.customer_id = i.customer_id
)

select * from final
