//! Churn labels: for the population of snapshot D, whether the customer made no purchase in
//! `[D, D + horizon)`, and when they next bought. Only built once the lake's data covers the
//! whole horizon, so a label is never a guess.

use std::time::Instant;

use arrow::array::{Array, AsArray};
use chrono::{Duration, NaiveDate};
use churn_core::session::{SessionOptions, new_session};
use churn_core::{Lake, Table};
use serde::Serialize;

use crate::error::{FeatureError, Result};
use crate::snapshot::{raw_name, register_lake_tables};
use crate::write::{job_id, write_partition};

/// Default label horizon.
pub const DEFAULT_HORIZON_DAYS: u32 = 90;

#[derive(Debug, Clone, Serialize)]
pub struct LabelSnapshot {
    pub as_of: String,
    pub customers: u64,
    pub churned: u64,
    pub output: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LabelsSummary {
    pub kind: &'static str,
    pub lake: String,
    pub horizon_days: u32,
    pub snapshots: Vec<LabelSnapshot>,
    pub duration_ms: u64,
}

/// The last local day with a transaction in the lake.
async fn last_transaction_day(
    ctx: &datafusion::prelude::SessionContext,
) -> Result<Option<NaiveDate>> {
    let batches = ctx
        .sql(&format!(
            "SELECT max(date) FROM {}",
            raw_name(Table::Transactions)
        ))
        .await?
        .collect()
        .await?;
    let column = arrow::compute::cast(batches[0].column(0), &arrow::datatypes::DataType::Date32)
        .map_err(datafusion::error::DataFusionError::from)?;
    let days = column.as_primitive::<arrow::datatypes::Date32Type>();
    Ok((!days.is_null(0)).then(|| {
        NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid") + Duration::days(days.value(0) as i64)
    }))
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
    let ctx = new_session(lake, session)?;
    register_lake_tables(&ctx, lake).await?;
    let lake_ends = last_transaction_day(&ctx)
        .await?
        .ok_or(FeatureError::NoTransactions)?;
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
        let churned_df = ctx
            .sql(&format!(
                "SELECT CAST(count(*) AS BIGINT) FROM ({sql}) WHERE churned = 1"
            ))
            .await?;
        let churned = churned_df.collect().await?[0]
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0) as u64;
        let job = job_id("labels", &as_of.to_string());
        let manifest = serde_json::json!({"kind": "labels", "as_of": as_of.to_string(), "horizon_days": horizon_days, "lookback_days": lookback_days});
        let written =
            write_partition(lake, df, &format!("labels/as_of={as_of}"), &job, manifest).await?;
        snapshots.push(LabelSnapshot {
            as_of: as_of.to_string(),
            customers: written.rows,
            churned,
            output: written.path,
        });
    }
    Ok(LabelsSummary {
        kind: "labels",
        lake: lake.display(),
        horizon_days,
        snapshots,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}
