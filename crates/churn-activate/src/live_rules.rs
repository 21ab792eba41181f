//! Live rules: the retention rules marked `live = true` run after each micro-batch's live
//! scores, over the customers the batch touched, so that "a high-risk customer just bought"
//! or "a coupon was just redeemed" reaches marketing the same day, not the next night.
//!
//! The live customer view has one row per touched customer: what they did in the batch
//! (`purchases_in_batch`, `refunds_in_batch`, `spend_in_batch`, `redeemed_in_batch`,
//! `redeemed_campaign_id`, `event_time`), their live features and live scores, the night's
//! view of them (`previous_churn_probability`, `previous_risk_band` and the segment columns
//! of the newest nightly scores' date) and their profile. Opt-in, cooldowns and daily caps
//! work as in `churn triggers`, over one history: the nightly action lists and the live
//! ones (`triggers_live/date=D/part-<batch>.parquet`).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    UInt32Array,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use chrono::{DateTime, NaiveDate, Utc};
use churn_core::Lake;
use churn_core::session::{LakeTable, register_table};
use datafusion::datasource::MemTable;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use serde::{Deserialize, Serialize};

use crate::arrays::{batch_columns, strings, with_columns};
use crate::error::{ActivateError, Result};
use crate::live::{LiveScored, Touched};
use crate::rules::{Activation, Rule};
use crate::segment::check_rules_over_view;
use crate::triggers::{RuleOutcome, actions_batch, candidates, history, opt_ins, select_actions};
use crate::view::{
    OPTIONAL_FEATURE_COLUMNS, PROFILE_COLUMNS, SCORE_COLUMNS, SEGMENT_COLUMNS, VIEW, select_list,
};

/// The folder of live actions.
pub const LIVE_TRIGGERS_FOLDER: &str = "triggers_live";

/// What the live rules did for one batch.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LiveRulesSummary {
    /// Rows of the batch's live action list.
    pub actions: u64,
    pub rules: Vec<RuleOutcome>,
    pub output: String,
}

/// Runs the live rules of `activation` over the batch's touched customers and writes their
/// actions to `triggers_live/date=<today>/part-<batch id>.parquet`. `None` when the file
/// has no live rules.
pub async fn fire_live_rules(
    lake: &Lake,
    activation: &Activation,
    scored: &LiveScored,
    touched: &[Touched],
    batch_id: &str,
    fired_at: DateTime<Utc>,
    today: NaiveDate,
) -> Result<Option<LiveRulesSummary>> {
    if activation.live_rules().next().is_none() {
        return Ok(None);
    }
    let nightly_as_of: NaiveDate = scored.summary.nightly_as_of.parse().map_err(|_| {
        ActivateError::Io(format!("bad nightly date {}", scored.summary.nightly_as_of))
    })?;
    let ctx = SessionContext::new();
    ctx.register_object_store(&lake.object_store_url(), lake.committed_store().clone());
    let present = register_inputs(&ctx, lake, scored, touched, nightly_as_of).await?;
    let sql = view_sql(&ctx, &present).await?;
    ctx.register_table(VIEW, ctx.sql(&sql).await?.into_view())?;
    check_rules_over_view(&ctx, activation.live_rules(), &activation.source).await?;

    let last_action = history(
        &ctx,
        present.triggers,
        present.live_triggers,
        today + chrono::Duration::days(1),
        Some(batch_id),
    )
    .await?;
    let fired_today = fired_today(&ctx, present.live_triggers, today, batch_id).await?;
    let referrer_opt_in = if activation.live_rules().any(|r| r.include_referrer) {
        opt_ins(&ctx, present.customers).await?
    } else {
        HashMap::new()
    };
    let mut actions = Vec::new();
    let mut outcomes = Vec::new();
    for rule in activation.live_rules() {
        let found = candidates(&ctx, rule, &activation.source).await?;
        let rule = with_cap_left(rule, fired_today.get(&rule.name).copied().unwrap_or(0));
        let (mut a, outcome) = select_actions(&rule, today, found, &last_action, &referrer_opt_in);
        tracing::info!(rule = %rule.name, matched = outcome.matched, actions = outcome.actions, "live rule ran");
        actions.append(&mut a);
        outcomes.push(outcome);
    }
    let batch = with_batch_columns(actions_batch(&actions, activation)?, batch_id, fired_at)?;
    let output = format!("{LIVE_TRIGGERS_FOLDER}/date={today}/part-{batch_id}.parquet");
    lake.write_parquet(&lake.path(&output), &[batch]).await?;
    Ok(Some(LiveRulesSummary {
        actions: actions.len() as u64,
        rules: outcomes,
        output,
    }))
}

/// The rule with its daily cap reduced by the actions it already gave today.
fn with_cap_left(rule: &Rule, fired_today: u64) -> Rule {
    let mut rule = rule.clone();
    if let Some(cap) = rule.daily_cap {
        // A cap of zero left puts every match over the cap, so the outcome still counts them.
        rule.daily_cap = Some(cap.saturating_sub(fired_today));
    }
    rule
}

/// Which optional inputs the live view found.
struct Present {
    night_scores: bool,
    night_segments: bool,
    customers: bool,
    triggers: bool,
    live_triggers: bool,
}

async fn has_files(lake: &Lake, folder: &str) -> Result<bool> {
    Ok(!lake.list_parquet(folder).await?.is_empty())
}

/// Registers the batch's tables and the lake's tables the view reads.
async fn register_inputs(
    ctx: &SessionContext,
    lake: &Lake,
    scored: &LiveScored,
    touched: &[Touched],
    nightly_as_of: NaiveDate,
) -> Result<Present> {
    let features = &scored.features;
    let schema = features
        .first()
        .map(|b| b.schema())
        .ok_or_else(|| ActivateError::Io("live features without a schema".into()))?;
    ctx.register_table(
        "live_features",
        Arc::new(MemTable::try_new(schema, vec![features.clone()])?),
    )?;
    ctx.register_table(
        "live_scores",
        Arc::new(MemTable::try_new(
            scored.scores.schema(),
            vec![vec![scored.scores.clone()]],
        )?),
    )?;
    let facts = facts_batch(touched)?;
    ctx.register_table(
        "batch_facts",
        Arc::new(MemTable::try_new(facts.schema(), vec![vec![facts]])?),
    )?;
    let night = format!("as_of={nightly_as_of}");
    let present = Present {
        night_scores: has_files(lake, &format!("scores/{night}")).await?,
        night_segments: has_files(lake, &format!("segments/{night}")).await?,
        customers: has_files(lake, "customers").await?,
        triggers: has_files(lake, "triggers").await?,
        live_triggers: has_files(lake, LIVE_TRIGGERS_FOLDER).await?,
    };
    for (name, folder, on) in [
        (
            "night_scores",
            format!("scores/{night}"),
            present.night_scores,
        ),
        (
            "night_segments",
            format!("segments/{night}"),
            present.night_segments,
        ),
        ("customers", "customers".to_string(), present.customers),
    ] {
        if on {
            ctx.register_parquet(
                name,
                lake.folder_url(&folder),
                ParquetReadOptions::default(),
            )
            .await?;
        }
    }
    for (name, column, on) in [
        ("triggers", "as_of", present.triggers),
        (LIVE_TRIGGERS_FOLDER, "date", present.live_triggers),
    ] {
        if on {
            let table = LakeTable {
                name: name.to_string(),
                folder: name.to_string(),
                partition_columns: vec![column.to_string()],
            };
            register_table(ctx, lake, &table).await?;
        }
    }
    Ok(present)
}

/// The live customer view's SQL.
async fn view_sql(ctx: &SessionContext, present: &Present) -> Result<String> {
    let features = ctx.table("live_features").await?;
    let feature_names: Vec<String> = features
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| n != "customer_id")
        .collect();
    let missing: Vec<(&str, &str)> = OPTIONAL_FEATURE_COLUMNS
        .iter()
        .copied()
        .filter(|(name, _)| !feature_names.iter().any(|n| n == name))
        .collect();
    let mut columns: Vec<String> = [
        "b.customer_id",
        "b.purchases_in_batch",
        "b.refunds_in_batch",
        "b.spend_in_batch",
        "b.redeemed_in_batch",
        "b.redeemed_campaign_id",
        "b.event_time",
    ]
    .iter()
    .map(|c| c.to_string())
    .collect();
    columns.extend(feature_names.iter().map(|n| format!("f.\"{n}\"")));
    columns.extend(select_list(&missing, "f", false));
    columns.extend(select_list(SCORE_COLUMNS, "s", true));
    if present.night_scores {
        columns.push("n.churn_probability AS previous_churn_probability".into());
        columns.push("n.risk_band AS previous_risk_band".into());
    } else {
        columns.push("CAST(NULL AS DOUBLE) AS previous_churn_probability".into());
        columns.push("CAST(NULL AS VARCHAR) AS previous_risk_band".into());
    }
    columns.extend(select_list(SEGMENT_COLUMNS, "g", present.night_segments));
    columns.extend(select_list(PROFILE_COLUMNS, "c", present.customers));
    let mut sql = format!(
        "SELECT {} FROM batch_facts b\n\
         LEFT JOIN live_features f ON f.customer_id = b.customer_id\n\
         LEFT JOIN live_scores s ON s.customer_id = b.customer_id",
        columns.join(", ")
    );
    for (table, alias, on) in [
        ("night_scores", "n", present.night_scores),
        ("night_segments", "g", present.night_segments),
        ("customers", "c", present.customers),
    ] {
        if on {
            sql.push_str(&format!(
                "\nLEFT JOIN {table} {alias} ON {alias}.customer_id = b.customer_id"
            ));
        }
    }
    Ok(sql)
}

/// Live actions each rule gave today in other batches.
async fn fired_today(
    ctx: &SessionContext,
    has_live: bool,
    today: NaiveDate,
    batch_id: &str,
) -> Result<HashMap<String, u64>> {
    let mut out = HashMap::new();
    if !has_live {
        return Ok(out);
    }
    let sql = format!(
        "SELECT rule, CAST(count(*) AS VARCHAR) FROM {LIVE_TRIGGERS_FOLDER} \
         WHERE date = DATE '{today}' AND batch_id <> '{}' GROUP BY rule",
        batch_id.replace('\'', "''")
    );
    for b in ctx.sql(&sql).await?.collect().await? {
        let rules = strings(b.column(0))?;
        let counts = strings(b.column(1))?;
        for (rule, count) in rules.into_iter().zip(counts) {
            if let (Some(rule), Some(count)) = (rule, count.and_then(|c| c.parse().ok())) {
                out.insert(rule, count);
            }
        }
    }
    Ok(out)
}

/// The batch facts as a table: one row per touched customer.
fn facts_batch(touched: &[Touched]) -> Result<RecordBatch> {
    let utc: Option<Arc<str>> = Some(Arc::from("UTC"));
    let fields = vec![
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("purchases_in_batch", DataType::UInt32, false),
        Field::new("refunds_in_batch", DataType::UInt32, false),
        Field::new("spend_in_batch", DataType::Float64, false),
        Field::new("redeemed_in_batch", DataType::Boolean, false),
        Field::new("redeemed_campaign_id", DataType::Utf8, true),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Microsecond, utc.clone()),
            false,
        ),
    ];
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            touched.iter().map(|t| t.customer_id.as_str()),
        )),
        Arc::new(UInt32Array::from_iter_values(
            touched.iter().map(|t| t.purchases),
        )),
        Arc::new(UInt32Array::from_iter_values(
            touched.iter().map(|t| t.refunds),
        )),
        Arc::new(Float64Array::from_iter_values(
            touched.iter().map(|t| t.net_spend),
        )),
        Arc::new(BooleanArray::from_iter(
            touched
                .iter()
                .map(|t| Some(t.redeemed_campaign_id.is_some())),
        )),
        Arc::new(StringArray::from_iter(
            touched.iter().map(|t| t.redeemed_campaign_id.as_deref()),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(touched.iter().map(|t| t.event_time_us))
                .with_timezone_opt(utc),
        ),
    ];
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(datafusion::error::DataFusionError::from)?)
}

/// The action list's columns plus `batch_id` and `fired_at`.
fn with_batch_columns(
    batch: RecordBatch,
    batch_id: &str,
    fired_at: DateTime<Utc>,
) -> Result<RecordBatch> {
    with_columns(
        &batch,
        batch_columns(batch.num_rows(), batch_id, "fired_at", fired_at),
    )
}
