//! From Arrow to frames: the lake's feature snapshots (joined with their labels for
//! training) become [`Frame`]s, the arrow-free rows the models work on. A column whose type a
//! model cannot use (dates, lists) is set aside with its type, so the caller can say which
//! were skipped.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
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

/// Converts one Arrow column to frame values; `None` for types a model cannot use.
fn values_of(column: &dyn Array) -> Option<Values> {
    if is_numeric(column.data_type())? {
        let cast = arrow::compute::cast(column, &DataType::Float64).ok()?;
        let floats = cast.as_primitive::<Float64Type>();
        Some(Values::Numeric(
            (0..floats.len())
                .map(|i| {
                    if floats.is_null(i) {
                        f64::NAN
                    } else {
                        floats.value(i)
                    }
                })
                .collect(),
        ))
    } else {
        let cast = arrow::compute::cast(column, &DataType::Utf8).ok()?;
        let text = cast.as_string::<i32>();
        Some(Values::Categorical(
            (0..text.len())
                .map(|i| (!text.is_null(i)).then(|| text.value(i).to_string()))
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

/// The features of snapshot `as_of` joined with its labels, ordered by customer id.
pub async fn read_labelled_snapshot(
    lake: &Lake,
    as_of: NaiveDate,
    session: &SessionOptions,
) -> Result<ReadFrame> {
    let ctx = new_session(lake, session).await?;
    for (name, folder) in [("f", "features"), ("l", "labels")] {
        ctx.register_parquet(
            name,
            lake.folder_url(&format!("{folder}/as_of={as_of}")),
            ParquetReadOptions::default(),
        )
        .await?;
    }
    let batches = ctx
        .sql(
            "SELECT f.*, CAST(l.churned AS DOUBLE) AS churned FROM f \
             JOIN l ON f.customer_id = l.customer_id ORDER BY f.customer_id",
        )
        .await?
        .collect()
        .await?;
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
