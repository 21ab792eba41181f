-- Independent reference implementation (DuckDB SQL) of the churn customer-feature contract.
--
-- Inputs (tables or views, canonical columns):
--   transactions(transaction_id, customer_id, ts TIMESTAMP /* naive, store-local */, amount, quantity,
--                product_category, store_id, channel, discount, is_return BOOLEAN)
--   customers(customer_id, signup_date DATE, birthday DATE, tier, referrer_id, email, phone, marketing_opt_in)
--   campaign_events(customer_id, campaign_id, ts TIMESTAMP, event)
-- Parameters (DuckDB named prepared-statement parameters):
--   $as_of DATE          -- snapshot date D
--   $lookback_days INT   -- population window
-- Output: one row per customer with >= 1 purchase in [D - lookback_days, D), ordered by customer_id.
--
-- Conventions used throughout:
--   * "before D" means ts < D 00:00 local time; window "Nd" is [D - N days 00:00, D 00:00).
--   * The "day" of an event is the calendar date of its (naive, local) ts.
--   * The 30/90/180/365-day windows are fixed lengths; they do NOT depend on $lookback_days.
WITH
params AS (
    SELECT
        CAST($as_of AS DATE)            AS d,
        CAST($lookback_days AS INTEGER) AS lookback_days
),

-- All window boundaries as local-midnight timestamps.
bounds AS (
    SELECT
        d,
        CAST(d AS TIMESTAMP)                 AS d_ts,
        CAST(d - 30 AS TIMESTAMP)            AS w30_start,
        CAST(d - 90 AS TIMESTAMP)            AS w90_start,
        CAST(d - 180 AS TIMESTAMP)           AS w180_start,
        CAST(d - 365 AS TIMESTAMP)           AS w365_start,
        CAST(d - lookback_days AS TIMESTAMP) AS lookback_start
    FROM params
),

-- Every transaction strictly before D, classified.
--   purchase: is_return = false AND amount > 0
--   refund:   is_return = true  OR  amount < 0   (either kind of refund encoding)
--   (is_return = false AND amount = 0 is neither; the two classes are mutually exclusive.)
-- SQL NULLs (unknown is_return / amount) make a predicate not-true -> COALESCE to false.
tx AS (
    SELECT
        t.customer_id,
        t.ts,
        CAST(t.ts AS DATE) AS day,
        t.amount,
        -- exact fixed-point copy of amount, used for all money sums (see tx_net)
        CAST(t.amount AS DECIMAL(38, 18)) AS amount_dec,
        t.product_category,
        t.channel,
        COALESCE(t.is_return = false AND t.amount > 0, false) AS is_purchase,
        COALESCE(t.is_return = true  OR  t.amount < 0, false) AS is_refund
    FROM transactions t, bounds b
    WHERE t.ts < b.d_ts
),

-- Signed contribution to net spend: purchases add amount, refunds subtract abs(amount)
-- (refunds may be stored as negative amounts or as positive amounts flagged is_return).
-- Money is summed in DECIMAL(38,18) and only cast to DOUBLE at the end, so the reference value is the
-- correctly rounded exact sum and does not depend on summation order (e.g. +50.44 ... -50.44 cancels
-- exactly). A float implementation will differ by a few ulps: compare with a small tolerance.
tx_net AS (
    SELECT
        *,
        CASE
            WHEN is_purchase THEN amount_dec
            WHEN is_refund   THEN -abs(amount_dec)
            ELSE CAST(0 AS DECIMAL(38, 18))
        END AS net_amount
    FROM tx
),

-- Population: at least one PURCHASE in [D - lookback_days, D).
population AS (
    SELECT DISTINCT tx.customer_id
    FROM tx, bounds b
    WHERE tx.is_purchase
      AND tx.ts >= b.lookback_start
),

-- Purchase-only aggregates (recency/tenure anchors, frequencies, basket, categories, channel share).
purchase_stats AS (
    SELECT
        tx.customer_id,
        max(tx.day)                                                  AS last_purchase_day,
        min(tx.day)                                                  AS first_purchase_day,
        count(*) FILTER (WHERE tx.ts >= b.w30_start)                 AS frequency_30d,
        count(*) FILTER (WHERE tx.ts >= b.w90_start)                 AS frequency_90d,
        count(*) FILTER (WHERE tx.ts >= b.w365_start)                AS frequency_365d,
        count(*)                                                     AS frequency_total,
        -- mean = exact decimal sum / count (NULL when no purchase in 365d)
        CAST(sum(tx.amount_dec) FILTER (WHERE tx.ts >= b.w365_start) AS DOUBLE)
            / count(*) FILTER (WHERE tx.ts >= b.w365_start)          AS avg_basket_365d,
        -- count(DISTINCT ...) ignores NULL categories, as the contract requires
        count(DISTINCT tx.product_category) FILTER (WHERE tx.ts >= b.w365_start) AS category_count_365d,
        -- denominator = all purchases in 365d (including NULL channel); numerator = channel exactly 'online'
        count(*) FILTER (WHERE tx.ts >= b.w365_start AND tx.channel = 'online') AS online_purchases_365d
    FROM tx, bounds b
    WHERE tx.is_purchase
    GROUP BY tx.customer_id
),

-- Net spend and refund counts (purchases and refunds together).
money_stats AS (
    SELECT
        n.customer_id,
        sum(n.net_amount) FILTER (WHERE n.ts >= b.w30_start)                          AS net_30d,
        sum(n.net_amount) FILTER (WHERE n.ts >= b.w90_start)                          AS net_90d,
        sum(n.net_amount) FILTER (WHERE n.ts >= b.w365_start)                         AS net_365d,
        -- previous 90 days: [D - 180d, D - 90d)
        sum(n.net_amount) FILTER (WHERE n.ts >= b.w180_start AND n.ts < b.w90_start)  AS net_prev_90d,
        count(*) FILTER (WHERE n.is_refund AND n.ts >= b.w365_start)                  AS returns_365d
    FROM tx_net n, bounds b
    GROUP BY n.customer_id
),

-- Distinct calendar days with at least one purchase (all history before D).
purchase_days AS (
    SELECT DISTINCT customer_id, day
    FROM tx
    WHERE is_purchase
),

-- Gap (in days) from each purchase day to the previous distinct purchase day.
purchase_gaps AS (
    SELECT
        customer_id,
        day,
        day - lag(day) OVER (PARTITION BY customer_id ORDER BY day) AS gap_days,
        row_number() OVER (PARTITION BY customer_id ORDER BY day DESC) AS rn_desc
    FROM purchase_days
),

gap_stats AS (
    SELECT
        customer_id,
        count(*)                              AS n_purchase_days,
        min(day)                              AS first_day,
        max(day)                              AS last_day,
        -- integer sums of the gaps (exact); k = number of gaps = n_purchase_days - 1
        sum(gap_days)                         AS gap_sum,
        sum(gap_days * gap_days)              AS gap_sum_sq,
        max(gap_days) FILTER (WHERE rn_desc = 1) AS last_gap_raw  -- gap ending on the last purchase day
    FROM purchase_gaps
    GROUP BY customer_id
),

-- Campaign events: counts in [D - 90d, D) and last redemption before D (all history).
campaign_stats AS (
    SELECT
        e.customer_id,
        count(*) FILTER (WHERE e.event = 'sent'     AND e.ts >= b.w90_start) AS campaign_sent_90d,
        count(*) FILTER (WHERE e.event = 'opened'   AND e.ts >= b.w90_start) AS campaign_opened_90d,
        count(*) FILTER (WHERE e.event = 'clicked'  AND e.ts >= b.w90_start) AS campaign_clicked_90d,
        count(*) FILTER (WHERE e.event = 'redeemed' AND e.ts >= b.w90_start) AS campaign_redeemed_90d,
        max(CAST(e.ts AS DATE)) FILTER (WHERE e.event = 'redeemed')          AS last_redeem_day
    FROM campaign_events e, bounds b
    WHERE e.ts < b.d_ts
    GROUP BY e.customer_id
),

-- Referred customers who made at least one purchase before D (any time, not only in the lookback).
referrals AS (
    SELECT
        c.referrer_id               AS customer_id,
        count(DISTINCT c.customer_id) AS referrals_converted
    FROM customers c
    WHERE c.referrer_id IS NOT NULL
      AND EXISTS (SELECT 1 FROM tx WHERE tx.customer_id = c.customer_id AND tx.is_purchase)
    GROUP BY c.referrer_id
),

-- Birthday arithmetic.
--   age_years: number of birthdays passed by D (compare month*100+day). A 29 Feb birthday counts as
--     passed on 1 Mar in non-leap years (228 < 229, 301 >= 229), consistent with days_to_birthday.
--   days_to_birthday: next birthday on or after D; 29 Feb -> 1 Mar in non-leap years.
profile_base AS (
    SELECT
        c.customer_id,
        c.birthday,
        c.tier,
        c.referrer_id,
        year(p.d) AS d_year,
        p.d
    FROM customers c, params p
),

profile_bday AS (
    SELECT
        *,
        -- birthday in year(D) and in year(D)+1, with the 29-Feb -> 1-Mar rule for non-leap years
        CASE
            WHEN month(birthday) = 2 AND day(birthday) = 29
                 AND NOT ((d_year % 4 = 0 AND d_year % 100 <> 0) OR d_year % 400 = 0)
            THEN make_date(d_year, 3, 1)
            ELSE make_date(d_year, month(birthday), day(birthday))
        END AS bday_this_year,
        CASE
            WHEN month(birthday) = 2 AND day(birthday) = 29
                 AND NOT (((d_year + 1) % 4 = 0 AND (d_year + 1) % 100 <> 0) OR (d_year + 1) % 400 = 0)
            THEN make_date(d_year + 1, 3, 1)
            ELSE make_date(d_year + 1, month(birthday), day(birthday))
        END AS bday_next_year
    FROM profile_base
),

profile AS (
    SELECT
        customer_id,
        tier,
        CAST(
            d_year - year(birthday)
            - CASE WHEN month(d) * 100 + day(d) < month(birthday) * 100 + day(birthday) THEN 1 ELSE 0 END
        AS BIGINT) AS age_years,
        -- "not null and not empty": the empty string '' counts as no referrer
        (referrer_id IS NOT NULL AND referrer_id <> '') AS has_referrer,
        CAST(
            CASE WHEN bday_this_year >= d THEN bday_this_year - d ELSE bday_next_year - d END
        AS BIGINT) AS days_to_birthday
    FROM profile_bday
)

SELECT
    pop.customer_id,
    b.d                                                           AS as_of,
    CAST(b.d - ps.last_purchase_day AS BIGINT)                    AS recency_days,
    CAST(b.d - ps.first_purchase_day AS BIGINT)                   AS tenure_days,
    CAST(ps.frequency_30d AS BIGINT)                              AS frequency_30d,
    CAST(ps.frequency_90d AS BIGINT)                              AS frequency_90d,
    CAST(ps.frequency_365d AS BIGINT)                             AS frequency_365d,
    CAST(ps.frequency_total AS BIGINT)                            AS frequency_total,
    -- 0 when nothing in the window
    CAST(COALESCE(ms.net_30d, 0) AS DOUBLE)                       AS monetary_30d,
    CAST(COALESCE(ms.net_90d, 0) AS DOUBLE)                       AS monetary_90d,
    CAST(COALESCE(ms.net_365d, 0) AS DOUBLE)                      AS monetary_365d,
    CAST(ps.avg_basket_365d AS DOUBLE)                            AS avg_basket_365d,
    -- (last - first) / (distinct days - 1); NULL below two purchase days
    CASE WHEN gs.n_purchase_days >= 2
         THEN CAST(gs.last_day - gs.first_day AS DOUBLE) / (gs.n_purchase_days - 1)
    END                                                           AS mean_gap_days,
    -- sample std (denominator k - 1) of the k = n - 1 gaps; NULL below three purchase days.
    -- Same value as stddev_samp(gap_days), but computed from exact integer sums,
    --   var = (k * sum(g^2) - (sum g)^2) / (k * (k - 1)),
    -- so the result is deterministic (stddev_samp is summation-order dependent in the last ulp).
    CASE WHEN gs.n_purchase_days >= 3
         THEN sqrt(
                CAST((gs.n_purchase_days - 1) * gs.gap_sum_sq - gs.gap_sum * gs.gap_sum AS DOUBLE)
                / CAST((gs.n_purchase_days - 1) * (gs.n_purchase_days - 2) AS DOUBLE))
    END                                                           AS std_gap_days,
    CASE WHEN gs.n_purchase_days >= 2 THEN CAST(gs.last_gap_raw AS BIGINT) END AS last_gap_days,
    -- recency / mean gap; NULL when mean gap is NULL or 0
    CASE WHEN gs.n_purchase_days >= 2 AND gs.last_day <> gs.first_day
         THEN CAST(b.d - ps.last_purchase_day AS DOUBLE)
              / (CAST(gs.last_day - gs.first_day AS DOUBLE) / (gs.n_purchase_days - 1))
    END                                                           AS overdue_ratio,
    CAST(COALESCE(ms.net_90d, 0) - COALESCE(ms.net_prev_90d, 0) AS DOUBLE) AS spend_trend_90d,
    CAST(COALESCE(ms.returns_365d, 0) AS BIGINT)                  AS returns_365d,
    CAST(COALESCE(ps.category_count_365d, 0) AS BIGINT)           AS category_count_365d,
    CASE WHEN ps.frequency_365d > 0
         THEN CAST(ps.online_purchases_365d AS DOUBLE) / ps.frequency_365d
    END                                                           AS online_share_365d,
    CAST(COALESCE(cs.campaign_sent_90d, 0) AS BIGINT)             AS campaign_sent_90d,
    CAST(COALESCE(cs.campaign_opened_90d, 0) AS BIGINT)           AS campaign_opened_90d,
    CAST(COALESCE(cs.campaign_clicked_90d, 0) AS BIGINT)          AS campaign_clicked_90d,
    CAST(COALESCE(cs.campaign_redeemed_90d, 0) AS BIGINT)         AS campaign_redeemed_90d,
    CAST(b.d - cs.last_redeem_day AS BIGINT)                      AS days_since_last_redeem,
    pr.age_years,
    pr.tier,
    -- a customer missing from `customers` has no referrer_id -> false
    COALESCE(pr.has_referrer, false)                              AS has_referrer,
    CAST(COALESCE(rf.referrals_converted, 0) AS BIGINT)           AS referrals_converted,
    pr.days_to_birthday,
    -- buy-till-you-die summary (daily grain, weeks)
    CAST(gs.n_purchase_days - 1 AS BIGINT)                        AS btyd_frequency,
    CAST(gs.last_day - gs.first_day AS DOUBLE) / 7.0              AS btyd_recency_weeks,
    CAST(b.d - 1 - gs.first_day AS DOUBLE) / 7.0                  AS btyd_age_weeks
FROM population pop
CROSS JOIN bounds b
JOIN purchase_stats ps  ON ps.customer_id = pop.customer_id
JOIN gap_stats gs       ON gs.customer_id = pop.customer_id
LEFT JOIN money_stats ms    ON ms.customer_id = pop.customer_id
LEFT JOIN campaign_stats cs ON cs.customer_id = pop.customer_id
LEFT JOIN profile pr        ON pr.customer_id = pop.customer_id
LEFT JOIN referrals rf      ON rf.customer_id = pop.customer_id
ORDER BY pop.customer_id
