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
