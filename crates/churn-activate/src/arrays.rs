//! Query results read into plain vectors, whatever physical type the engine chose (string
//! views or strings, any integer or float width), so that the steps' logic is written once
//! over Rust values.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::error::DataFusionError;

use crate::error::Result;

fn cast(array: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
    Ok(arrow::compute::cast(array, to).map_err(DataFusionError::from)?)
}

pub fn strings(array: &ArrayRef) -> Result<Vec<Option<String>>> {
    let a = cast(array, &DataType::Utf8)?;
    Ok(a.as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect())
}

pub fn floats(array: &ArrayRef) -> Result<Vec<Option<f64>>> {
    let a = cast(array, &DataType::Float64)?;
    Ok(a.as_primitive::<Float64Type>().iter().collect())
}

pub fn ints(array: &ArrayRef) -> Result<Vec<Option<i64>>> {
    let a = cast(array, &DataType::Int64)?;
    Ok(a.as_primitive::<Int64Type>().iter().collect())
}

pub fn bools(array: &ArrayRef) -> Result<Vec<Option<bool>>> {
    let a = cast(array, &DataType::Boolean)?;
    let a = a.as_boolean();
    Ok((0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i)))
        .collect())
}

/// `batch` with `extra` columns appended.
pub fn with_columns(
    batch: &arrow::array::RecordBatch,
    extra: Vec<(arrow::datatypes::Field, ArrayRef)>,
) -> Result<arrow::array::RecordBatch> {
    let mut fields: Vec<arrow::datatypes::Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    for (field, column) in extra {
        fields.push(field);
        columns.push(column);
    }
    let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(fields));
    Ok(arrow::array::RecordBatch::try_new(schema, columns).map_err(DataFusionError::from)?)
}

/// `batch_id` repeated for `n` rows and a UTC timestamp column `name` of `at`: the columns
/// that tie a stream output's rows to their micro-batch.
pub fn batch_columns(
    n: usize,
    batch_id: &str,
    name: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Vec<(arrow::datatypes::Field, ArrayRef)> {
    use arrow::array::{StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, TimeUnit};
    let utc: Option<std::sync::Arc<str>> = Some("UTC".into());
    vec![
        (
            Field::new("batch_id", DataType::Utf8, false),
            std::sync::Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                batch_id, n,
            ))),
        ),
        (
            Field::new(
                name,
                DataType::Timestamp(TimeUnit::Microsecond, utc.clone()),
                false,
            ),
            std::sync::Arc::new(
                TimestampMicrosecondArray::from(vec![at.timestamp_micros(); n])
                    .with_timezone_opt(utc),
            ),
        ),
    ]
}
