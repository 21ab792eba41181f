//! Live scores: after a micro-batch lands, the customers it touched are scored again at once,
//! so the at-risk list follows the till within seconds instead of waiting for the night.
//!
//! A live score is the nightly score of one customer, recomputed from their whole history up
//! to now: the same feature files (run over only the touched customers' events, see
//! [`churn_features::Scope`]), the model version and the population's BTYD parameters of the
//! newest nightly scores, and a percentile against that night's population. So for a touched
//! customer it equals what `churn score` gives with the same model and BTYD parameters, at a
//! cost that follows the batch's customers. Rows are appended to
//! `<lake>/scores_live/date=<day scored, store time>/part-<batch id>.parquet`, one file per
//! batch, with the batch id, the customer's newest event in the batch and when it was scored.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Date32Type, Field, Schema, TimeUnit, TimestampMicrosecondType};
use chrono::{DateTime, NaiveDate, Utc};
use churn_core::Lake;
use churn_features::write::PartitionManifest;
use churn_features::{FeatureOptions, Grain, Scope, btyd_inputs, features_for};
use churn_train::frames::frame_from_batches;
use churn_train::registry;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use serde::{Deserialize, Serialize};

use crate::error::{ActivateError, Result};
use crate::score::{BandCounts, BtydParameters, Outlooks, ScoringModel, band_counts, score_rows};

/// The folder of live scores.
pub const LIVE_FOLDER: &str = "scores_live";

/// A customer a batch touched, with their newest event in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Touched {
    pub customer_id: String,
    /// Microseconds since the epoch, UTC.
    pub event_time_us: i64,
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
    ctx.register_object_store(&lake.object_store_url(), lake.store().clone());
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

    /// Scores the touched customers as of [`LiveScorer::as_of_for`] and appends them to the
    /// live scores under `batch_id`.
    pub async fn score(
        &self,
        lake: &Lake,
        touched: &[Touched],
        newest_event_day: NaiveDate,
        batch_id: &str,
        features: &FeatureOptions,
    ) -> Result<LiveScoreSummary> {
        let started = Instant::now();
        let as_of = self.as_of_for(newest_event_day);
        let ids: Vec<String> = touched.iter().map(|t| t.customer_id.clone()).collect();
        let batches = features_for(lake, as_of, features, &ids).await?;
        let frame = frame_from_batches(&batches, as_of)?.frame;
        let inputs = btyd_inputs(
            lake,
            as_of,
            Grain::Day,
            &features.session,
            Scope::Customers(&ids),
        )
        .await?;
        let outlooks = Outlooks::of(&inputs, &self.params, &self.model.stored.artifact.spec);
        let scored_ids = frame.customer_ids.clone();
        let reference = &self.reference;
        let percentiles =
            move |ps: &[f64]| ps.iter().map(|&p| percentile_in(reference, p)).collect();
        let scored = score_rows(frame, &self.model, &outlooks, &percentiles)?;

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
        if batch.num_rows() > 0 {
            lake.write_parquet(&lake.path(&output), &[batch]).await?;
        }
        let summary = LiveScoreSummary {
            as_of: as_of.to_string(),
            nightly_as_of: self.nightly_as_of.to_string(),
            model_name: self.model.name.clone(),
            model_version: self.model.stored.version,
            customers_touched: touched.len() as u64,
            scored: scored_ids.len() as u64,
            risk_bands: band_counts(&scored.bands),
            output: if scored_ids.is_empty() {
                String::new()
            } else {
                output
            },
            duration_ms: started.elapsed().as_millis() as u64,
        };
        tracing::info!(batch_id, as_of = %as_of, touched = summary.customers_touched, scored = summary.scored, duration_ms = summary.duration_ms, "live scores written");
        Ok(summary)
    }
}

fn no_basis(as_of: NaiveDate, reason: &str) -> ActivateError {
    ActivateError::NoLiveBasis {
        as_of: as_of.to_string(),
        reason: reason.to_string(),
    }
}

/// The scores table's columns plus `as_of`, `batch_id`, `event_time` and `scored_at`.
fn with_live_columns(
    batch: RecordBatch,
    as_of: NaiveDate,
    batch_id: &str,
    event_times: &[Option<i64>],
    scored_at: DateTime<Utc>,
) -> Result<RecordBatch> {
    let n = batch.num_rows();
    let utc = Some(Arc::from("UTC"));
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    fields.push(Field::new("as_of", DataType::Date32, false));
    columns.push(Arc::new(Date32Array::from(vec![
        Date32Type::from_naive_date(
            as_of
        );
        n
    ])));
    fields.push(Field::new("batch_id", DataType::Utf8, false));
    columns.push(Arc::new(StringArray::from_iter_values(
        std::iter::repeat_n(batch_id, n),
    )));
    let timestamp = DataType::Timestamp(TimeUnit::Microsecond, utc.clone());
    fields.push(Field::new("event_time", timestamp.clone(), true));
    columns.push(Arc::new(
        TimestampMicrosecondArray::from(event_times.to_vec()).with_timezone_opt(utc.clone()),
    ));
    fields.push(Field::new("scored_at", timestamp, false));
    columns.push(Arc::new(
        TimestampMicrosecondArray::from(vec![scored_at.timestamp_micros(); n])
            .with_timezone_opt(utc),
    ));
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(datafusion::error::DataFusionError::from)?)
}

/// The customers in a batch's lake files (transactions or campaign events), each with their
/// newest event time, and the newest event's day (from the files' `date=` partitions).
pub async fn touched_customers(
    lake: &Lake,
    data_files: &[String],
) -> Result<(Vec<Touched>, Option<NaiveDate>)> {
    let mut newest_day: Option<NaiveDate> = None;
    let mut newest: HashMap<String, i64> = HashMap::new();
    for file in data_files {
        if let Some(day) = file
            .split('/')
            .find_map(|p| p.strip_prefix("date="))
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        {
            newest_day = newest_day.max(Some(day));
        }
        let bytes = lake.get(&lake.path(file)).await?;
        let reader =
            datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                bytes,
            )
            .map_err(datafusion::error::DataFusionError::from)?;
        let mask = datafusion::parquet::arrow::ProjectionMask::columns(
            reader.parquet_schema(),
            ["customer_id", "ts"],
        );
        for batch in reader
            .with_projection(mask)
            .build()
            .map_err(datafusion::error::DataFusionError::from)?
        {
            let batch = batch.map_err(datafusion::error::DataFusionError::from)?;
            let (Some(ids), Some(ts)) = (
                batch.column_by_name("customer_id"),
                batch.column_by_name("ts"),
            ) else {
                continue;
            };
            let ids = arrow::compute::cast(ids, &DataType::Utf8)
                .map_err(datafusion::error::DataFusionError::from)?;
            let ids = ids.as_string::<i32>();
            let ts = arrow::compute::cast(ts, &DataType::Timestamp(TimeUnit::Microsecond, None))
                .map_err(datafusion::error::DataFusionError::from)?;
            let ts = ts.as_primitive::<TimestampMicrosecondType>();
            for i in 0..batch.num_rows() {
                if ids.is_null(i) || ts.is_null(i) {
                    continue;
                }
                let entry = newest.entry(ids.value(i).to_string()).or_insert(i64::MIN);
                *entry = (*entry).max(ts.value(i));
            }
        }
    }
    let mut touched: Vec<Touched> = newest
        .into_iter()
        .map(|(customer_id, event_time_us)| Touched {
            customer_id,
            event_time_us,
        })
        .collect();
    touched.sort_by(|a, b| a.customer_id.cmp(&b.customer_id));
    Ok((touched, newest_day))
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
