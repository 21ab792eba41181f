//! The lake as the report sees it on D. The contract tables go through the feature builder's
//! point-in-time views, so no mart can read an event at or after D; the outputs of earlier
//! steps (segments, scores, campaign assignments) are registered as they are. Whatever the
//! lake lacks is registered empty with the columns the marts read, so every mart runs on
//! every lake (an empty one included) and the report can say what is missing.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use chrono::NaiveDate;
use churn_activate::arrays::{ints, strings};
use churn_core::session::{SessionOptions, discover_tables, new_session, register_table};
use churn_core::{Lake, Table};
use churn_features::snapshot::{
    DEFAULT_LOOKBACK_DAYS, register_contract_tables, register_empty_table, register_snapshot_views,
};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// Outputs of earlier steps the marts read, with the columns they read when the lake lacks
/// the table.
const STEP_OUTPUTS: &[(&str, &[(&str, DataType)])] = &[
    (
        "segments",
        &[
            ("customer_id", DataType::Utf8),
            ("rfm_segment", DataType::Utf8),
            ("rfm_segment_label", DataType::Utf8),
            ("lifecycle_stage", DataType::Utf8),
            ("lifecycle_label", DataType::Utf8),
            ("suggested_tier", DataType::Utf8),
            ("suggested_tier_label", DataType::Utf8),
            ("as_of", DataType::Date32),
        ],
    ),
    (
        "scores",
        &[
            ("customer_id", DataType::Utf8),
            ("churn_probability", DataType::Float64),
            ("risk_band", DataType::Utf8),
            ("value_at_risk", DataType::Float64),
            ("reason_1", DataType::Utf8),
            ("model_name", DataType::Utf8),
            ("as_of", DataType::Date32),
        ],
    ),
    (
        "campaign_assignments",
        &[
            ("customer_id", DataType::Utf8),
            ("group", DataType::Utf8),
            ("as_of", DataType::Date32),
            ("campaign", DataType::Utf8),
        ],
    ),
];

/// What the lake holds for the report of D: the report says what is missing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Available {
    /// Transactions before D.
    pub transactions: u64,
    /// Customer profiles.
    pub customers: u64,
    /// Campaign events before D.
    pub campaign_events: u64,
    /// Customers scored on D.
    pub scored_on_as_of: u64,
    /// Customers segmented on D.
    pub segmented_on_as_of: u64,
    /// The latest earlier date with segments, for the migration.
    pub previous_segments: Option<String>,
    /// Campaign exports (date and campaign) on or before D.
    pub campaign_exports: u64,
}

/// A session over the lake as of `as_of`, with `report_options` (horizon) registered.
pub async fn report_session(
    lake: &Lake,
    as_of: NaiveDate,
    horizon_days: u32,
    options: &SessionOptions,
) -> Result<SessionContext> {
    // The marts join the whole population with its scores and segments: sessions read text
    // as plain strings for that (see `new_session`).
    let ctx = new_session(lake, options).await?;
    let found = discover_tables(lake).await?;
    let present = register_contract_tables(&ctx, lake, &found, options).await?;
    for table in Table::ALL.into_iter().filter(|t| !present.contains(t)) {
        register_empty_table(&ctx, table)?;
    }
    register_snapshot_views(&ctx, as_of, DEFAULT_LOOKBACK_DAYS, &Table::ALL).await?;
    for (name, columns) in STEP_OUTPUTS {
        match found.iter().find(|t| t.name == *name) {
            Some(t) => register_table(&ctx, lake, t).await?,
            None => {
                let fields: Vec<Field> = columns
                    .iter()
                    .map(|(c, t)| Field::new(*c, t.clone(), true))
                    .collect();
                let schema = Arc::new(Schema::new(fields));
                ctx.register_table(*name, Arc::new(MemTable::try_new(schema, vec![vec![]])?))?;
            }
        }
    }
    ctx.sql(&format!(
        "CREATE VIEW report_options AS SELECT CAST({horizon_days} AS INT) AS horizon_days"
    ))
    .await?;
    Ok(ctx)
}

async fn count(ctx: &SessionContext, sql: &str) -> Result<u64> {
    let mut values = Vec::new();
    for b in ctx.sql(sql).await?.collect().await? {
        values.extend(ints(b.column(0))?);
    }
    Ok(values.into_iter().next().flatten().unwrap_or(0).max(0) as u64)
}

/// What the session's lake holds for D.
pub async fn available(ctx: &SessionContext, as_of: NaiveDate) -> Result<Available> {
    let d = format!("DATE '{as_of}'");
    let mut previous = Vec::new();
    for b in ctx
        .sql(&format!(
            "SELECT CAST(max(as_of) AS VARCHAR) FROM segments WHERE as_of < {d}"
        ))
        .await?
        .collect()
        .await?
    {
        previous.extend(strings(b.column(0))?);
    }
    let previous_segments = previous.into_iter().next().flatten();
    Ok(Available {
        transactions: count(ctx, "SELECT count(*) FROM transactions").await?,
        customers: count(ctx, "SELECT count(*) FROM customers").await?,
        campaign_events: count(ctx, "SELECT count(*) FROM campaign_events").await?,
        scored_on_as_of: count(
            ctx,
            &format!("SELECT count(*) FROM scores WHERE as_of = {d}"),
        )
        .await?,
        segmented_on_as_of: count(
            ctx,
            &format!("SELECT count(*) FROM segments WHERE as_of = {d}"),
        )
        .await?,
        previous_segments,
        campaign_exports: count(
            ctx,
            &format!(
                "SELECT count(*) FROM (SELECT DISTINCT as_of, campaign FROM campaign_assignments WHERE as_of <= {d})"
            ),
        )
        .await?,
    })
}
