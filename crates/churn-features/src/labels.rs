//! Churn labels: for the population of snapshot D, whether the customer made no purchase in
//! `[D, D + horizon)`, and when they next bought. Only built once the lake's data covers the
//! whole horizon, so a label is never a guess.

use std::time::Instant;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Date32Type, Int64Type};
use chrono::{Duration, NaiveDate};
use churn_core::session::{SessionOptions, new_session};
use churn_core::{Lake, Table};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use serde::{Deserialize, Serialize};

use crate::error::{FeatureError, Result};
use crate::snapshot::{raw_name, register_lake_tables};
use crate::write::{PartitionManifest, job_id, write_partition};

/// Default label horizon.
pub const DEFAULT_HORIZON_DAYS: u32 = 90;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabelSnapshot {
    pub as_of: String,
    pub customers: u64,
    pub churned: u64,
    pub output: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabelsSummary {
    pub kind: String,
    pub lake: String,
    pub horizon_days: u32,
    pub snapshots: Vec<LabelSnapshot>,
    pub duration_ms: u64,
}

/// The first and last local day with a transaction, in a session with the raw lake tables
/// registered ([`register_lake_tables`]).
pub async fn transaction_days(ctx: &SessionContext) -> Result<(NaiveDate, NaiveDate)> {
    let batches = ctx
        .sql(&format!(
            "SELECT CAST(min(date) AS DATE), CAST(max(date) AS DATE) FROM {}",
            raw_name(Table::Transactions)
        ))
        .await?
        .collect()
        .await?;
    let day = |i: usize| -> Option<NaiveDate> {
        let days = batches.first()?.column(i).as_primitive::<Date32Type>();
        if days.is_null(0) {
            None
        } else {
            Date32Type::to_naive_date_opt(days.value(0))
        }
    };
    match (day(0), day(1)) {
        (Some(first), Some(last)) => Ok((first, last)),
        _ => Err(FeatureError::NoTransactions),
    }
}

/// The first and last local day with a transaction in the lake.
pub async fn lake_transaction_days(
    lake: &Lake,
    session: &SessionOptions,
) -> Result<(NaiveDate, NaiveDate)> {
    let ctx = new_session(lake, session).await?;
    register_lake_tables(&ctx, lake, session).await?;
    transaction_days(&ctx).await
}

/// The label horizon of the lake's labels of `as_of`, when it has them (and all rows agree).
pub async fn labels_horizon(
    lake: &Lake,
    as_of: NaiveDate,
    session: &SessionOptions,
) -> Result<Option<u32>> {
    let folder = format!("labels/as_of={as_of}");
    if lake.list_parquet(&folder).await?.is_empty() {
        return Ok(None);
    }
    let ctx = new_session(lake, session).await?;
    ctx.register_parquet("l", lake.folder_url(&folder), ParquetReadOptions::default())
        .await?;
    let batches = ctx
        .sql("SELECT CAST(min(horizon_days) AS BIGINT), CAST(max(horizon_days) AS BIGINT) FROM l")
        .await?
        .collect()
        .await?;
    let value = |i: usize| {
        let column = batches.first()?.column(i).as_primitive::<Int64Type>();
        (!column.is_null(0)).then(|| column.value(0))
    };
    Ok(match (value(0), value(1)) {
        (Some(low), Some(high)) if low == high => u32::try_from(low).ok(),
        _ => None,
    })
}

/// Builds the labels of `as_of` for `horizon_days` unless the lake has exactly those;
/// returns whether it built them.
pub async fn ensure_labels(
    lake: &Lake,
    as_of: NaiveDate,
    horizon_days: u32,
    lookback_days: u32,
    session: &SessionOptions,
) -> Result<bool> {
    if labels_horizon(lake, as_of, session).await? == Some(horizon_days) {
        return Ok(false);
    }
    build_labels(lake, &[as_of], horizon_days, lookback_days, session).await?;
    Ok(true)
}

/// Builds labels for several snapshot dates.
pub async fn build_labels(
    lake: &Lake,
    dates: &[NaiveDate],
    horizon_days: u32,
    lookback_days: u32,
    session: &SessionOptions,
) -> Result<LabelsSummary> {
    let started = Instant::now();
    churn_core::commit::recover(lake).await?;
    let ctx = new_session(lake, session).await?;
    register_lake_tables(&ctx, lake, session).await?;
    let (_, lake_ends) = transaction_days(&ctx).await?;
    // Refuse before writing anything.
    for &as_of in dates {
        let needs_through = as_of + Duration::days(horizon_days as i64 - 1);
        if needs_through > lake_ends {
            return Err(FeatureError::LabelsNotObservable {
                as_of,
                horizon_days,
                needs_through,
                lake_ends,
            });
        }
    }
    let mut snapshots = Vec::new();
    for &as_of in dates {
        let start = as_of - Duration::days(lookback_days as i64);
        let end = as_of + Duration::days(horizon_days as i64);
        let sql = format!(
            "WITH purchases AS (SELECT customer_id, date FROM {raw} WHERE NOT is_return AND amount > 0), \
             population AS (SELECT DISTINCT customer_id FROM purchases WHERE date >= DATE '{start}' AND date < DATE '{as_of}'), \
             next_purchase AS (SELECT customer_id, min(date) AS next_purchase_date FROM purchases \
                               WHERE date >= DATE '{as_of}' AND date < DATE '{end}' GROUP BY customer_id), \
             final AS (SELECT p.customer_id, CAST(CASE WHEN n.customer_id IS NULL THEN 1 ELSE 0 END AS INT) AS churned, \
                              CAST(n.next_purchase_date AS DATE) AS next_purchase_date, CAST({horizon_days} AS INT) AS horizon_days \
                       FROM population p LEFT JOIN next_purchase n ON n.customer_id = p.customer_id) \
             SELECT * FROM final ORDER BY customer_id",
            raw = raw_name(Table::Transactions)
        );
        let df = ctx.sql(&sql).await?;
        let job = job_id("labels", &as_of.to_string());
        let manifest = PartitionManifest::new("labels", as_of)
            .with("horizon_days", horizon_days)
            .with("lookback_days", lookback_days);
        let written =
            write_partition(lake, df, &format!("labels/as_of={as_of}"), &job, manifest).await?;
        // Counted on the written file (small), so the label query runs once.
        let churned = count_churned(lake, &written.path).await?;
        snapshots.push(LabelSnapshot {
            as_of: as_of.to_string(),
            customers: written.rows,
            churned,
            output: written.path,
        });
    }
    Ok(LabelsSummary {
        kind: "labels".into(),
        lake: lake.display(),
        horizon_days,
        snapshots,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// Churners in a written labels file.
async fn count_churned(lake: &Lake, file: &str) -> Result<u64> {
    let ctx = new_session(lake, &SessionOptions::default()).await?;
    let churned = ctx
        .read_parquet(
            format!("{}{file}", lake.root_url()),
            ParquetReadOptions::default(),
        )
        .await?
        .filter(datafusion::prelude::col("churned").eq(datafusion::prelude::lit(1)))?
        .count()
        .await?;
    Ok(churned as u64)
}
