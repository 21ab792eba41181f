-- Campaign reach and conversion from the campaign events before D: how many customers each
-- campaign reached, and how many of them opened, clicked and redeemed.
-- grain: one row per campaign (campaign_id)
-- columns:
--   campaign_id: the campaign
--   first_sent: the local date of its first sent event; null when none was sent
--   last_event: the local date of its last event
--   customers_sent: distinct customers with a sent event (the reach)
--   customers_opened: distinct customers with an opened event
--   customers_clicked: distinct customers with a clicked event
--   customers_redeemed: distinct customers with a redeemed event (the conversion)
--   open_rate: customers_opened / customers_sent; null when none was sent
--   click_rate: customers_clicked / customers_sent; null when none was sent
--   redemption_rate: customers_redeemed / customers_sent; null when none was sent
with
events as (
    select campaign_id, customer_id, event, date from campaign_events
),

per_campaign as (
    select
        campaign_id,
        min(case when event = 'sent' then date end) as first_sent,
        max(date) as last_event,
        count(distinct case when event = 'sent' then customer_id end) as sent,
        count(distinct case when event = 'opened' then customer_id end) as opened,
        count(distinct case when event = 'clicked' then customer_id end) as clicked,
        count(distinct case when event = 'redeemed' then customer_id end) as redeemed
    from events
    group by campaign_id
),

final as (
    select
        cast(campaign_id as varchar) as campaign_id,
        first_sent,
        last_event,
        cast(sent as bigint) as customers_sent,
        cast(opened as bigint) as customers_opened,
        cast(clicked as bigint) as customers_clicked,
        cast(redeemed as bigint) as customers_redeemed,
        cast(case when sent > 0 then opened * 1.0 / sent end as double) as open_rate,
        cast(case when sent > 0 then clicked * 1.0 / sent end as double) as click_rate,
        cast(case when sent > 0 then redeemed * 1.0 / sent end as double) as redemption_rate
    from per_campaign
)

select * from final
