-- Independent reference implementation (DuckDB SQL) of the churn label contract.
--
-- Inputs: the same `transactions` table/view as features.duckdb.sql (ts naive, store-local).
--   (`customers` and `campaign_events` are not needed for labels.)
-- Parameters (DuckDB named prepared-statement parameters):
--   $as_of DATE, $lookback_days INT, $horizon_days INT
-- Output: customer_id, churned (INTEGER 0/1), next_purchase_date (DATE, NULL if none),
--   one row per customer of the snapshot population (>= 1 purchase in [D - lookback_days, D)),
--   ordered by customer_id.
WITH
params AS (
    SELECT
        CAST($as_of AS DATE)            AS d,
        CAST($lookback_days AS INTEGER) AS lookback_days,
        CAST($horizon_days AS INTEGER)  AS horizon_days
),

bounds AS (
    SELECT
        CAST(d AS TIMESTAMP)                 AS d_ts,
        CAST(d - lookback_days AS TIMESTAMP) AS lookback_start,
        CAST(d + horizon_days AS TIMESTAMP)  AS horizon_end
    FROM params
),

-- Purchases only: is_return = false AND amount > 0 (refunds and zero-amount rows never count).
purchases AS (
    SELECT customer_id, ts
    FROM transactions
    WHERE COALESCE(is_return = false AND amount > 0, false)
),

-- Population: same definition as the feature snapshot.
population AS (
    SELECT DISTINCT p.customer_id
    FROM purchases p, bounds b
    WHERE p.ts >= b.lookback_start
      AND p.ts <  b.d_ts
),

-- First purchase in the label horizon [D, D + H days).
future AS (
    SELECT p.customer_id, min(CAST(p.ts AS DATE)) AS next_purchase_date
    FROM purchases p, bounds b
    WHERE p.ts >= b.d_ts
      AND p.ts <  b.horizon_end
    GROUP BY p.customer_id
)

SELECT
    pop.customer_id,
    CAST(CASE WHEN f.next_purchase_date IS NULL THEN 1 ELSE 0 END AS INTEGER) AS churned,
    f.next_purchase_date
FROM population pop
LEFT JOIN future f ON f.customer_id = pop.customer_id
ORDER BY pop.customer_id
