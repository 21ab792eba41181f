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

/// Appends one Arrow column's values as numbers (a null becomes NaN); `None` when the column
/// does not cast to numbers.
fn append_numbers(column: &dyn Array, out: &mut Vec<f64>) -> Option<()> {
    let cast = arrow::compute::cast(column, &DataType::Float64).ok()?;
    let floats = cast.as_primitive::<Float64Type>();
    if floats.null_count() == 0 {
        out.extend_from_slice(floats.values());
    } else {
        out.extend(floats.iter().map(|value| value.unwrap_or(f64::NAN)));
    }
    Some(())
}

/// Appends one Arrow column's values as text categories (a null stays missing); `None` when
/// the column does not cast to text.
fn append_categories(column: &dyn Array, out: &mut Vec<Option<String>>) -> Option<()> {
    let cast = arrow::compute::cast(column, &DataType::Utf8).ok()?;
    out.extend(
        cast.as_string::<i32>()
            .iter()
            .map(|text| text.map(str::to_string)),
    );
    Some(())
}

/// The frame values of column `name` over all `batches` (`rows` in all), filled once at
/// their final size; a batch without the column gives missing values. `None` for types a
/// model cannot use.
fn column_values(
    batches: &[RecordBatch],
    name: &str,
    data_type: &DataType,
    rows: usize,
) -> Option<Values> {
    if is_numeric(data_type)? {
        filled(batches, name, rows, f64::NAN, append_numbers).map(Values::Numeric)
    } else {
        filled(batches, name, rows, None, append_categories).map(Values::Categorical)
    }
}

/// Column `name` of every batch appended by `append`, `missing` for the rows of a batch
/// without it; `None` when `append` fails.
fn filled<T: Clone>(
    batches: &[RecordBatch],
    name: &str,
    rows: usize,
    missing: T,
    append: fn(&dyn Array, &mut Vec<T>) -> Option<()>,
) -> Option<Vec<T>> {
    let mut values = Vec::with_capacity(rows);
    for batch in batches {
        match batch.column_by_name(name) {
            Some(column) => append(column.as_ref(), &mut values)?,
            None => values.resize(values.len() + batch.num_rows(), missing.clone()),
        }
    }
    Some(values)
}

/// Every batch's customer ids, in order.
fn customer_ids(batches: &[RecordBatch], rows: usize) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(rows);
    for batch in batches {
        if let Some(column) = batch.column_by_name("customer_id") {
            let ids = arrow::compute::cast(column, &DataType::Utf8)
                .map_err(datafusion::error::DataFusionError::from)?;
            let ids = ids.as_string::<i32>();
            out.extend((0..ids.len()).map(|i| ids.value(i).to_string()));
        }
    }
    Ok(out)
}

/// A frame and the columns set aside because a model cannot use their type (name, type).
pub struct ReadFrame {
    pub frame: Frame,
    pub unusable: Vec<(String, String)>,
}

/// Builds a frame from record batches holding `customer_id` (text), an optional `churned`
/// label and feature columns (the first batch's columns). Each column is filled once, at
/// its final size, straight from the batches' buffers: a frame per batch appended to the
/// whole grew and copied every column several times over, and a 1M-customer training run
/// reads seven snapshots of 700k rows.
pub fn frame_from_batches(batches: &[RecordBatch], as_of: NaiveDate) -> Result<ReadFrame> {
    let mut frame = Frame::default();
    let mut unusable = BTreeMap::new();
    let Some(first) = batches.first() else {
        return Ok(ReadFrame {
            frame,
            unusable: Vec::new(),
        });
    };
    let rows = batches.iter().map(RecordBatch::num_rows).sum();
    let schema = first.schema();
    // The ids (a string allocated per row, about as long as all the numeric columns
    // together) on a thread of their own: a snapshot's conversion was 0.16-0.25 s on one
    // core, seven times in a 1M-customer training run.
    let (ids, ()) = churn_model::parallel::beside(
        || customer_ids(batches, rows),
        || fill_columns(&mut frame, &mut unusable, batches, &schema, rows),
    );
    frame.customer_ids = ids?;
    frame.as_of = vec![as_of; frame.customer_ids.len()];
    Ok(ReadFrame {
        frame,
        unusable: unusable.into_iter().collect(),
    })
}

/// Fills `frame`'s label and feature columns (all but the id) from `batches`, noting in
/// `unusable` the columns of types a model cannot use.
fn fill_columns(
    frame: &mut Frame,
    unusable: &mut BTreeMap<String, String>,
    batches: &[RecordBatch],
    schema: &arrow::datatypes::Schema,
    rows: usize,
) {
    for field in schema.fields() {
        let name = field.name().as_str();
        match name {
            "customer_id" | "as_of" => {}
            "churned" => {
                if let Some(Values::Numeric(v)) =
                    column_values(batches, name, field.data_type(), rows)
                {
                    frame.churned = v;
                }
            }
            _ => match column_values(batches, name, field.data_type(), rows) {
                Some(v) => {
                    frame
                        .types
                        .insert(name.to_string(), field.data_type().to_string());
                    frame.columns.insert(name.to_string(), v);
                }
                None => {
                    unusable.insert(name.to_string(), field.data_type().to_string());
                }
            },
        }
    }
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
    // The labels (two columns) first, so the hash join builds its table from them and streams
    // the features past it; built from the features (40-odd columns), it gathered every
    // feature value again for its output (on the 1M bench store the seven reads of a training
    // run took 5.7 s instead of 5.2 s, the query alone 1.0-1.1 s instead of 0.8 s).
    let df = ctx
        .sql(
            "SELECT f.*, CAST(l.churned AS DOUBLE) AS churned FROM l \
             JOIN f ON f.customer_id = l.customer_id ORDER BY f.customer_id",
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
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Date32Array, Float64Array, Int64Array, StringArray};
    use chrono::NaiveDate;
    use churn_model::dataset::Values;

    use super::{RecordBatch, frame_from_batches, is_kept};

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(columns).expect("columns of equal length")
    }

    fn numbers(values: &Values) -> Vec<Option<f64>> {
        match values {
            Values::Numeric(v) => v.iter().map(|x| (!x.is_nan()).then_some(*x)).collect(),
            Values::Categorical(_) => panic!("categorical"),
        }
    }

    #[test]
    fn a_frame_holds_every_batchs_rows_in_order_with_nulls_missing_and_unusable_columns_set_aside()
    {
        let ids = |v: &[&str]| Arc::new(StringArray::from(v.to_vec())) as ArrayRef;
        let first = batch(vec![
            ("customer_id", ids(&["C1", "C2"])),
            ("churned", Arc::new(Float64Array::from(vec![1.0, 0.0]))),
            ("spend", Arc::new(Float64Array::from(vec![Some(1.5), None]))),
            ("visits", Arc::new(Int64Array::from(vec![3, 4]))),
            (
                "tier",
                Arc::new(StringArray::from(vec![Some("gold"), None])),
            ),
            ("last_seen", Arc::new(Date32Array::from(vec![20000, 20001]))),
        ]);
        let second = batch(vec![
            ("customer_id", ids(&["C3"])),
            ("churned", Arc::new(Float64Array::from(vec![0.0]))),
            ("spend", Arc::new(Float64Array::from(vec![2.5]))),
            ("visits", Arc::new(Int64Array::from(vec![None]))),
            ("tier", Arc::new(StringArray::from(vec!["silver"]))),
            ("last_seen", Arc::new(Date32Array::from(vec![20002]))),
        ]);
        // A batch without a column gives that column missing values for its rows.
        let third = batch(vec![
            ("customer_id", ids(&["C4"])),
            ("churned", Arc::new(Float64Array::from(vec![1.0]))),
            ("spend", Arc::new(Float64Array::from(vec![0.0]))),
            ("visits", Arc::new(Int64Array::from(vec![7]))),
        ]);
        let as_of = NaiveDate::from_ymd_opt(2026, 6, 1).unwrap();
        let read = frame_from_batches(&[first, second, third], as_of).unwrap();
        let frame = read.frame;
        assert_eq!(frame.customer_ids, ["C1", "C2", "C3", "C4"]);
        assert_eq!(frame.as_of, vec![as_of; 4]);
        assert_eq!(frame.churned, [1.0, 0.0, 0.0, 1.0]);
        assert_eq!(
            numbers(&frame.columns["spend"]),
            [Some(1.5), None, Some(2.5), Some(0.0)]
        );
        assert_eq!(
            numbers(&frame.columns["visits"]),
            [Some(3.0), Some(4.0), None, Some(7.0)]
        );
        let Values::Categorical(tiers) = &frame.columns["tier"] else {
            panic!("tier is text")
        };
        let gold_silver = [
            Some("gold".to_string()),
            None,
            Some("silver".to_string()),
            None,
        ];
        assert_eq!(tiers, &gold_silver);
        assert_eq!(frame.types["visits"], "Int64");
        assert_eq!(frame.types["tier"], "Utf8");
        assert!(!frame.columns.contains_key("last_seen"));
        assert_eq!(
            read.unusable,
            [("last_seen".to_string(), "Date32".to_string())]
        );
    }

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
