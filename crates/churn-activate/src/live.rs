//! Live scores: after a micro-batch lands, the customers it touched are scored again at once,
//! so the at-risk list follows the till within seconds instead of waiting for the night.
//!
//! A live score is the nightly score of one customer, recomputed from their whole history up
//! to now: the same feature files (run over only the touched customers' events, taken from
//! the stream's in-memory [`EventHistory`] of the lake), the model version and the
//! population's BTYD parameters of the newest nightly scores, and a percentile against that
//! night's population. So for a touched customer it equals what `churn score` gives with the
//! same model and BTYD parameters, at a cost that follows the batch's customers, not the
//! lake (the history reads each lake file once per process). Rows are appended to
//! `<lake>/scores_live/date=<day scored, store time>/part-<batch id>.parquet`, one file per
//! batch, with the batch id, the customer's newest event in the batch and when it was scored.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, ArrayRef, AsArray, Date32Array, RecordBatch, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Date32Type, Field, TimeUnit, TimestampMicrosecondType};
use chrono::{DateTime, NaiveDate, Utc};
use churn_core::Lake;
use churn_features::write::PartitionManifest;
use churn_features::{EventHistory, FeatureOptions, inputs_for};
use churn_train::frames::frame_from_batches;
use churn_train::registry;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use serde::{Deserialize, Serialize};

use crate::arrays::{batch_columns, with_columns};
use crate::error::{ActivateError, Result};
use crate::score::{BandCounts, BtydParameters, Outlooks, ScoringModel, band_counts, score_rows};

/// The folder of live scores.
pub const LIVE_FOLDER: &str = "scores_live";

/// A customer a batch touched, with what they did in it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Touched {
    pub customer_id: String,
    /// Their newest event in the batch: microseconds since the epoch, UTC.
    pub event_time_us: i64,
    /// Purchases in the batch (not a return, amount above zero).
    pub purchases: u32,
    /// Refunds in the batch (a return, or a negative amount).
    pub refunds: u32,
    /// Purchase amounts minus absolute refund amounts in the batch.
    pub net_spend: f64,
    /// The campaign of their newest `redeemed` campaign event in the batch.
    pub redeemed_campaign_id: Option<String>,
}

/// What one batch's live scores did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LiveScoreSummary {
    /// The as-of date of the live scores: the day after the batch's newest event, or the
    /// nightly scores' date when that is later.
    pub as_of: String,
    /// The nightly scores whose model and BTYD parameters were used.
    pub nightly_as_of: String,
    pub model_name: String,
    pub model_version: u32,
    pub customers_touched: u64,
    /// Touched customers scored (those in the population of `as_of`).
    pub scored: u64,
    pub risk_bands: BandCounts,
    pub output: String,
    pub duration_ms: u64,
}

/// One batch's live scores: the summary, the rows written and the touched customers'
/// features they came from (for the live rules).
pub struct LiveScored {
    pub summary: LiveScoreSummary,
    /// The `scores_live` rows of the batch.
    pub scores: RecordBatch,
    /// The features of the scored customers as of the live as-of date.
    pub features: Vec<RecordBatch>,
    pub scored_at: DateTime<Utc>,
    /// The day of `scored_at` in the lake's time zone (the `date=` partition).
    pub day: NaiveDate,
}

/// The newest nightly scores, as live scores use them.
pub struct LiveScorer {
    model: ScoringModel,
    nightly_as_of: NaiveDate,
    /// The file the nightly scores were read from (to notice a newer night).
    nightly_file: String,
    params: BtydParameters,
    /// The nightly population's churn probabilities, ascending.
    reference: Vec<f64>,
}

/// The newest `scores/as_of=D/part-<job>.parquet` of the lake: (D, file).
async fn newest_nightly(lake: &Lake) -> Result<Option<(NaiveDate, String)>> {
    let mut newest: Option<(NaiveDate, String)> = None;
    for meta in lake.list_parquet("scores").await? {
        let file = lake.relative(&meta.location);
        let Some(day) = file
            .split('/')
            .find_map(|part| part.strip_prefix("as_of="))
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        else {
            continue;
        };
        if newest.as_ref().is_none_or(|(d, _)| day > *d) {
            newest = Some((day, file));
        }
    }
    Ok(newest)
}

/// The nightly probabilities of a scores file, ascending.
async fn nightly_probabilities(lake: &Lake, file: &str) -> Result<Vec<f64>> {
    let ctx = SessionContext::new();
    ctx.register_object_store(&lake.object_store_url(), lake.committed_store().clone());
    ctx.register_parquet(
        "nightly",
        format!("{}{file}", lake.root_url()),
        ParquetReadOptions::default(),
    )
    .await?;
    let batches = ctx
        .sql("SELECT churn_probability FROM nightly ORDER BY churn_probability")
        .await?
        .collect()
        .await?;
    let mut values = Vec::new();
    for batch in &batches {
        let column = batch
            .column(0)
            .as_primitive::<arrow::datatypes::Float64Type>();
        values.extend(column.iter().flatten());
    }
    Ok(values)
}

/// Percentage of `reference` (ascending) below `p`, ties counting half.
pub fn percentile_in(reference: &[f64], p: f64) -> f64 {
    if reference.is_empty() {
        return 0.0;
    }
    let below = reference.partition_point(|&v| v < p);
    let up_to = reference.partition_point(|&v| v <= p);
    100.0 * (below as f64 + (up_to - below) as f64 / 2.0) / reference.len() as f64
}

impl LiveScorer {
    /// The scorer of the lake's newest nightly scores; `None` when the lake has none yet.
    pub async fn load(lake: &Lake) -> Result<Option<LiveScorer>> {
        let Some((nightly_as_of, nightly_file)) = newest_nightly(lake).await? else {
            return Ok(None);
        };
        let job = nightly_file
            .rsplit('/')
            .next()
            .and_then(|f| f.strip_prefix("part-"))
            .and_then(|f| f.strip_suffix(".parquet"))
            .unwrap_or_default();
        let manifest_path = format!("_runs/{job}.json");
        let manifest: PartitionManifest = lake
            .read_json(&lake.path(&manifest_path))
            .await
            .map_err(|_| no_basis(nightly_as_of, "its manifest cannot be read"))?;
        let detail = |key: &str| manifest.details.get(key).cloned();
        let params: BtydParameters = detail("btyd")
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| no_basis(nightly_as_of, "they do not record their BTYD parameters"))?;
        let name: String = detail("model")
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| no_basis(nightly_as_of, "they do not record their model"))?;
        let version: u32 = detail("version")
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| no_basis(nightly_as_of, "they do not record their model version"))?;
        let stored = registry::read(lake, &name, Some(version)).await?;
        let reference = nightly_probabilities(lake, &nightly_file).await?;
        Ok(Some(LiveScorer {
            model: ScoringModel { name, stored },
            nightly_as_of,
            nightly_file,
            params,
            reference,
        }))
    }

    /// Whether the lake's newest nightly scores are still the ones this scorer read.
    pub async fn is_current(&self, lake: &Lake) -> Result<bool> {
        Ok(newest_nightly(lake)
            .await?
            .is_some_and(|(_, file)| file == self.nightly_file))
    }

    pub fn nightly_as_of(&self) -> NaiveDate {
        self.nightly_as_of
    }

    /// The as-of date of a batch whose newest event is on `newest_event_day`.
    pub fn as_of_for(&self, newest_event_day: NaiveDate) -> NaiveDate {
        (newest_event_day + chrono::Duration::days(1)).max(self.nightly_as_of)
    }

    /// Scores the touched customers as of [`LiveScorer::as_of_for`], from `history` brought
    /// in line with the lake first; `write` appends them to the live scores under
    /// `batch_id`, which marks the batch as live-scored (see `LiveScorer::write`).
    pub async fn score(
        &self,
        lake: &Lake,
        history: &mut EventHistory,
        touched: &[Touched],
        newest_event_day: NaiveDate,
        batch_id: &str,
        features: &FeatureOptions,
    ) -> Result<LiveScored> {
        let started = Instant::now();
        refresh_history(lake, history).await?;
        let as_of = self.as_of_for(newest_event_day);
        let ids: Vec<String> = touched.iter().map(|t| t.customer_id.clone()).collect();
        let inputs = inputs_for(lake, as_of, features, &ids, history).await?;
        let feature_rows = inputs.features;
        let frame = frame_from_batches(&feature_rows, as_of)?.frame;
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            customers = frame.rows(),
            "live features and BTYD summaries"
        );
        let outlooks = Outlooks::of(&inputs.btyd, &self.params, &self.model.stored.artifact.spec);
        let scored_ids = frame.customer_ids.clone();
        let reference = &self.reference;
        let percentiles =
            move |ps: &[f64]| ps.iter().map(|&p| percentile_in(reference, p)).collect();
        let scored = score_rows(frame, &self.model, &outlooks, &percentiles)?;
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "live scores computed"
        );

        let scored_at = Utc::now();
        let timezone = lake.settings().await?.unwrap_or_default().timezone;
        let tz = churn_core::lake::parse_timezone(&timezone)?;
        let day = scored_at.with_timezone(&tz).date_naive();
        let event_times: HashMap<&str, i64> = touched
            .iter()
            .map(|t| (t.customer_id.as_str(), t.event_time_us))
            .collect();
        let batch = with_live_columns(
            scored.batch,
            as_of,
            batch_id,
            &scored_ids
                .iter()
                .map(|id| event_times.get(id.as_str()).copied())
                .collect::<Vec<_>>(),
            scored_at,
        )?;
        let output = format!("{LIVE_FOLDER}/date={day}/part-{batch_id}.parquet");
        let summary = LiveScoreSummary {
            as_of: as_of.to_string(),
            nightly_as_of: self.nightly_as_of.to_string(),
            model_name: self.model.name.clone(),
            model_version: self.model.stored.version,
            customers_touched: touched.len() as u64,
            scored: scored_ids.len() as u64,
            risk_bands: band_counts(&scored.bands),
            output,
            duration_ms: started.elapsed().as_millis() as u64,
        };
        Ok(LiveScored {
            summary,
            scores: batch,
            features: feature_rows,
            scored_at,
            day,
        })
    }
}

impl LiveScored {
    /// Writes the batch's live scores, even without rows: the file says the batch has had
    /// its live scores (and live rules, which are written first).
    pub async fn write(&mut self, lake: &Lake) -> Result<()> {
        let started = Instant::now();
        lake.write_parquet(
            &lake.path(&self.summary.output),
            std::slice::from_ref(&self.scores),
        )
        .await?;
        self.summary.duration_ms += started.elapsed().as_millis() as u64;
        let s = &self.summary;
        tracing::info!(as_of = %s.as_of, touched = s.customers_touched, scored = s.scored, duration_ms = s.duration_ms, output = %s.output, "live scores written");
        Ok(())
    }
}

/// Brings the customer history in line with the lake, saying so at info level when that
/// read much of it (the first time, or a table read again).
pub async fn refresh_history(lake: &Lake, history: &mut EventHistory) -> Result<()> {
    let started = Instant::now();
    let refreshed = history.refresh(lake).await?;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    if refreshed.tables_reloaded > 0 || refreshed.files_read > 100 {
        let (rows, mib) = (history.rows(), history.bytes() as u64 / (1 << 20));
        tracing::info!(
            files_read = refreshed.files_read,
            rows_read = refreshed.rows_read,
            tables_reloaded = refreshed.tables_reloaded,
            rows_held = rows,
            mib_held = mib,
            elapsed_ms,
            "customer history read from the lake"
        );
    } else {
        tracing::debug!(
            files_read = refreshed.files_read,
            rows_read = refreshed.rows_read,
            elapsed_ms,
            "customer history brought up to date"
        );
    }
    Ok(())
}

fn no_basis(as_of: NaiveDate, reason: &str) -> ActivateError {
    ActivateError::NoLiveBasis {
        as_of: as_of.to_string(),
        reason: reason.to_string(),
    }
}

/// The scores table's columns plus `as_of`, `batch_id`, `scored_at` and `event_time`.
fn with_live_columns(
    batch: RecordBatch,
    as_of: NaiveDate,
    batch_id: &str,
    event_times: &[Option<i64>],
    scored_at: DateTime<Utc>,
) -> Result<RecordBatch> {
    let n = batch.num_rows();
    let mut extra: Vec<(Field, ArrayRef)> = vec![(
        Field::new("as_of", DataType::Date32, false),
        Arc::new(Date32Array::from(vec![
            Date32Type::from_naive_date(as_of);
            n
        ])),
    )];
    extra.extend(batch_columns(n, batch_id, "scored_at", scored_at));
    let utc: Option<Arc<str>> = Some(Arc::from("UTC"));
    extra.push((
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Microsecond, utc.clone()),
            true,
        ),
        Arc::new(TimestampMicrosecondArray::from(event_times.to_vec()).with_timezone_opt(utc)),
    ));
    with_columns(&batch, extra)
}

/// The customers in a batch's lake files (transactions or campaign events), each with what
/// they did in the batch, by customer id, and the newest event's day (from the files'
/// `date=` partitions).
pub async fn touched_customers(
    lake: &Lake,
    data_files: &[String],
) -> Result<(Vec<Touched>, Option<NaiveDate>)> {
    let mut newest_day: Option<NaiveDate> = None;
    let mut by_customer: HashMap<String, Touched> = HashMap::new();
    let mut redeemed_at: HashMap<String, i64> = HashMap::new();
    for file in data_files {
        if let Some(day) = churn_core::Table::partition_date(file) {
            newest_day = newest_day.max(Some(day));
        }
        for batch in read_columns(
            lake,
            file,
            &[
                "customer_id",
                "ts",
                "amount",
                "is_return",
                "event",
                "campaign_id",
            ],
        )
        .await?
        {
            add_events(&mut by_customer, &mut redeemed_at, &batch)?;
        }
    }
    let mut touched: Vec<Touched> = by_customer.into_values().collect();
    touched.sort_by(|a, b| a.customer_id.cmp(&b.customer_id));
    Ok((touched, newest_day))
}

/// The columns of `names` a lake Parquet file has.
async fn read_columns(lake: &Lake, file: &str, names: &[&str]) -> Result<Vec<RecordBatch>> {
    use datafusion::parquet::arrow::ProjectionMask;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let df_error = datafusion::error::DataFusionError::from;
    let bytes = lake.get(&lake.path(file)).await?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(df_error)?;
    let mask = ProjectionMask::columns(reader.parquet_schema(), names.iter().copied());
    let batches = reader
        .with_projection(mask)
        .build()
        .map_err(df_error)?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(datafusion::error::DataFusionError::from)?;
    Ok(batches)
}

/// A column as text (null where missing), or `None` when the batch lacks it.
fn text_column(batch: &RecordBatch, name: &str) -> Result<Option<ArrayRef>> {
    batch
        .column_by_name(name)
        .map(|c| arrow::compute::cast(c, &DataType::Utf8))
        .transpose()
        .map_err(|e| datafusion::error::DataFusionError::from(e).into())
}

/// Adds one batch of transactions or campaign events to each customer's facts.
fn add_events(
    by_customer: &mut HashMap<String, Touched>,
    redeemed_at: &mut HashMap<String, i64>,
    batch: &RecordBatch,
) -> Result<()> {
    let df_error = datafusion::error::DataFusionError::from;
    let (Some(ids), Some(ts)) = (
        text_column(batch, "customer_id")?,
        batch.column_by_name("ts"),
    ) else {
        return Ok(());
    };
    let ids = ids.as_string::<i32>();
    let ts = arrow::compute::cast(ts, &DataType::Timestamp(TimeUnit::Microsecond, None))
        .map_err(df_error)?;
    let ts = ts.as_primitive::<TimestampMicrosecondType>();
    let amount = batch
        .column_by_name("amount")
        .map(|c| arrow::compute::cast(c, &DataType::Float64))
        .transpose()
        .map_err(df_error)?;
    let amount = amount
        .as_ref()
        .map(|a| a.as_primitive::<arrow::datatypes::Float64Type>());
    let is_return = batch.column_by_name("is_return").map(|c| c.as_boolean());
    let events = text_column(batch, "event")?;
    let events = events.as_ref().map(|e| e.as_string::<i32>());
    let campaigns = text_column(batch, "campaign_id")?;
    let campaigns = campaigns.as_ref().map(|c| c.as_string::<i32>());
    for i in 0..batch.num_rows() {
        if ids.is_null(i) || ts.is_null(i) {
            continue;
        }
        let id = ids.value(i);
        let facts = by_customer
            .entry(id.to_string())
            .or_insert_with(|| Touched {
                customer_id: id.to_string(),
                event_time_us: i64::MIN,
                ..Touched::default()
            });
        let time = ts.value(i);
        facts.event_time_us = facts.event_time_us.max(time);
        if let Some(amount) = amount.filter(|a| !a.is_null(i)) {
            let value = amount.value(i);
            let returned = is_return.is_some_and(|r| !r.is_null(i) && r.value(i));
            if !returned && value > 0.0 {
                facts.purchases += 1;
                facts.net_spend += value;
            } else if returned || value < 0.0 {
                facts.refunds += 1;
                facts.net_spend -= value.abs();
            }
        }
        if let (Some(events), Some(campaigns)) = (events, campaigns)
            && !events.is_null(i)
            && events.value(i) == "redeemed"
            && !campaigns.is_null(i)
        {
            let newest = redeemed_at.entry(id.to_string()).or_insert(i64::MIN);
            if time >= *newest {
                *newest = time;
                facts.redeemed_campaign_id = Some(campaigns.value(i).to_string());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_percentile_counts_the_nightly_customers_below_and_half_the_ties() {
        let nightly = [0.1, 0.2, 0.2, 0.5];
        assert_eq!(percentile_in(&nightly, 0.05), 0.0);
        assert_eq!(percentile_in(&nightly, 0.2), 50.0);
        assert_eq!(percentile_in(&nightly, 0.3), 75.0);
        assert_eq!(percentile_in(&nightly, 0.9), 100.0);
        assert_eq!(percentile_in(&[], 0.9), 0.0);
    }
}
