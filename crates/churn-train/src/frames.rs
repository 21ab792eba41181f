//! From Arrow to frames: the lake's feature snapshots (joined with their labels for
//! training) become [`Frame`]s, the arrow-free rows the models work on. A column whose type a
//! model cannot use (dates, lists) is set aside with its type, so the caller can say which
//! were skipped.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, Float64Array, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};
use chrono::NaiveDate;
use churn_core::Lake;
use churn_core::session::{SessionOptions, new_session};
use churn_model::dataset::{Frame, Values};
use datafusion::prelude::ParquetReadOptions;

use crate::error::Result;

/// Whether an Arrow type can be a model input, and as what.
fn is_numeric(data_type: &DataType) -> Option<bool> {
    match data_type {
        DataType::Boolean
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal128(_, _)
        | DataType::Decimal256(_, _) => Some(true),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(false),
        DataType::Dictionary(_, v) if is_numeric(v) == Some(false) => Some(false),
        _ => None,
    }
}

/// Converts one Arrow column to frame values; `None` for types a model cannot use. The
/// values are moved by Arrow's kernels (a null becomes NaN by a zip with a NaN scalar) rather
/// than one by one: a training run converts tens of millions of them.
fn values_of(column: &dyn Array) -> Option<Values> {
    if is_numeric(column.data_type())? {
        let cast = arrow::compute::cast(column, &DataType::Float64).ok()?;
        let floats = cast.as_primitive::<Float64Type>();
        let values = if floats.null_count() > 0 {
            let nulls = arrow::compute::is_null(floats).ok()?;
            let nan = Float64Array::new_scalar(f64::NAN);
            let filled = arrow::compute::kernels::zip::zip(&nulls, &nan, floats).ok()?;
            filled.as_primitive::<Float64Type>().values().to_vec()
        } else {
            floats.values().to_vec()
        };
        Some(Values::Numeric(values))
    } else {
        let cast = arrow::compute::cast(column, &DataType::Utf8).ok()?;
        Some(Values::Categorical(
            cast.as_string::<i32>()
                .iter()
                .map(|text| text.map(str::to_string))
                .collect(),
        ))
    }
}

/// A frame and the columns set aside because a model cannot use their type (name, type).
pub struct ReadFrame {
    pub frame: Frame,
    pub unusable: Vec<(String, String)>,
}

/// Builds a frame from record batches holding `customer_id` (text), an optional `churned`
/// label and feature columns.
pub fn frame_from_batches(batches: &[RecordBatch], as_of: NaiveDate) -> Result<ReadFrame> {
    let mut frame = Frame::default();
    let mut unusable = BTreeMap::new();
    for batch in batches {
        let schema = batch.schema();
        let mut part = Frame::default();
        for (field, column) in schema.fields().iter().zip(batch.columns()) {
            let name = field.name().as_str();
            match name {
                "customer_id" => {
                    let ids = arrow::compute::cast(column, &DataType::Utf8)
                        .map_err(datafusion::error::DataFusionError::from)?;
                    let ids = ids.as_string::<i32>();
                    part.customer_ids = (0..ids.len()).map(|i| ids.value(i).to_string()).collect();
                }
                "as_of" => {}
                "churned" => {
                    if let Some(Values::Numeric(v)) = values_of(column.as_ref()) {
                        part.churned = v;
                    }
                }
                _ => match values_of(column.as_ref()) {
                    Some(v) => {
                        part.types
                            .insert(name.to_string(), field.data_type().to_string());
                        part.columns.insert(name.to_string(), v);
                    }
                    None => {
                        unusable.insert(name.to_string(), field.data_type().to_string());
                    }
                },
            }
        }
        part.as_of = vec![as_of; part.customer_ids.len()];
        frame.append(part)?;
    }
    Ok(ReadFrame {
        frame,
        unusable: unusable.into_iter().collect(),
    })
}

/// Whether `customer_id` is among the share `keep` (0 to 1) of customers a sampled training
/// run keeps: a fixed hash of the id, so a customer is kept in every snapshot or in none, and
/// the same share keeps the same customers in every run.
pub fn is_kept(customer_id: &str, keep: f64) -> bool {
    let mut hash = customer_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    });
    // FNV-1a alone keeps the structure of sequential ids (C0001000..C0001999 would all fall
    // on one side of a share); MurmurHash3's finaliser spreads them evenly.
    for multiplier in [0xff51_afd7_ed55_8ccdu64, 0xc4ce_b9fe_1a85_ec53] {
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(multiplier);
    }
    hash ^= hash >> 33;
    ((hash >> 11) as f64 / (1u64 << 53) as f64) < keep
}

/// The rows of `batch` whose customer is kept (see [`is_kept`]).
fn kept_rows(batch: &RecordBatch, keep: f64) -> Result<RecordBatch> {
    let ids = arrow::compute::cast(batch.column(0), &DataType::Utf8)
        .map_err(datafusion::error::DataFusionError::from)?;
    let ids = ids.as_string::<i32>();
    let mask: arrow::array::BooleanArray = ids
        .iter()
        .map(|id| Some(id.is_some_and(|id| is_kept(id, keep))))
        .collect();
    Ok(arrow::compute::filter_record_batch(batch, &mask)
        .map_err(datafusion::error::DataFusionError::from)?)
}

/// A session with the features (`f`) and labels (`l`) of snapshot `as_of` registered.
async fn labelled_snapshot_session(
    lake: &Lake,
    as_of: NaiveDate,
    session: &SessionOptions,
) -> Result<datafusion::prelude::SessionContext> {
    let ctx = new_session(lake, session).await?;
    for (name, folder) in [("f", "features"), ("l", "labels")] {
        ctx.register_parquet(
            name,
            lake.folder_url(&format!("{folder}/as_of={as_of}")),
            ParquetReadOptions::default(),
        )
        .await?;
    }
    Ok(ctx)
}

/// Rows and columns of the labelled snapshot of `as_of`, from its labels' row count and its
/// features' schema: what a training run knows of a frame before reading it.
pub async fn labelled_shape(
    lake: &Lake,
    as_of: NaiveDate,
    session: &SessionOptions,
) -> Result<(u64, u64)> {
    let ctx = labelled_snapshot_session(lake, as_of, session).await?;
    let columns = ctx.table("f").await?.schema().fields().len() as u64;
    let batches = ctx.sql("SELECT count(*) FROM l").await?.collect().await?;
    let rows = batches.first().filter(|b| b.num_rows() > 0).map_or(0, |b| {
        b.column(0)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0) as u64
    });
    Ok((rows, columns))
}

/// The features of snapshot `as_of` joined with its labels, ordered by customer id; only the
/// customers [`is_kept`] with share `keep` when sampling (`Some`), filtered batch by batch as
/// the query streams them, so the frame and its batches hold only the kept rows (the query's
/// own sort stays within the session's memory pool, spilling beyond it).
pub async fn read_labelled_snapshot(
    lake: &Lake,
    as_of: NaiveDate,
    session: &SessionOptions,
    keep: Option<f64>,
) -> Result<ReadFrame> {
    let ctx = labelled_snapshot_session(lake, as_of, session).await?;
    let df = ctx
        .sql(
            "SELECT f.*, CAST(l.churned AS DOUBLE) AS churned FROM f \
             JOIN l ON f.customer_id = l.customer_id ORDER BY f.customer_id",
        )
        .await?;
    let batches = match keep {
        None => df.collect().await?,
        Some(keep) => {
            use futures::TryStreamExt;
            let mut stream = df.execute_stream().await?;
            let mut kept = Vec::new();
            while let Some(batch) = stream.try_next().await? {
                kept.push(kept_rows(&batch, keep)?);
            }
            kept
        }
    };
    frame_from_batches(&batches, as_of)
}

/// The features of snapshot `as_of` (no labels), ordered by customer id.
pub async fn read_features(
    lake: &Lake,
    as_of: NaiveDate,
    session: &SessionOptions,
) -> Result<ReadFrame> {
    let ctx = new_session(lake, session).await?;
    ctx.register_parquet(
        "f",
        lake.folder_url(&format!("features/as_of={as_of}")),
        ParquetReadOptions::default(),
    )
    .await?;
    let batches = ctx
        .sql("SELECT * FROM f ORDER BY customer_id")
        .await?
        .collect()
        .await?;
    frame_from_batches(&batches, as_of)
}

#[cfg(test)]
mod tests {
    use super::is_kept;

    #[test]
    fn a_share_keeps_that_share_of_every_block_of_sequential_ids() {
        // Binomial(1000, 0.3365): mean 336.5, standard deviation 14.9; five deviations.
        for block in 0..3 {
            let kept = (block * 1000..(block + 1) * 1000)
                .filter(|i| is_kept(&format!("C{i:07}"), 0.3365))
                .count();
            assert!((262..=411).contains(&kept), "block {block}: {kept} kept");
        }
        assert!(!is_kept("C0000001", 0.0));
        assert!(is_kept("C0000001", 1.0));
    }
}
