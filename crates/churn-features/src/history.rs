//! Every customer's events, held in memory by a long-running process (`churn stream`), so that
//! the few customers a micro-batch touched are seen whole without scanning the lake: their
//! live scores then cost what those customers' rows cost, not what the lake holds.
//!
//! The history mirrors the lake's files of the contract tables. Before each use it lists them
//! ([`EventHistory::refresh`]): files it has not seen are read and added (an ingest batch adds
//! files; the date-partitioned tables are never rewritten), and a table one of whose files
//! went away or changed size is read again from scratch (a profile upsert rewrites
//! `customers`). So whoever wrote the lake (the stream's own batches, `churn ingest`, the
//! nightly run), the rows it hands out are the lake's rows.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Date32Array, RecordBatch, new_null_array};
use arrow::datatypes::{DataType, Date32Type, Field, Schema, SchemaRef};
use chrono::NaiveDate;
use churn_core::{Lake, Table};
use futures::{StreamExt, TryStreamExt};

use crate::error::{FeatureError, Result};

/// Files read at once when the history is loaded.
const READS_IN_FLIGHT: usize = 4;

/// The events of every customer of the lake, by customer.
#[derive(Default)]
pub struct EventHistory {
    tables: BTreeMap<&'static str, HeldTable>,
}

/// One contract table held in memory: one chunk per lake file, and where each customer's rows
/// are.
struct HeldTable {
    table: Table,
    /// The columns as the lake session sees them: the file schema, plus `date` for the
    /// date-partitioned tables.
    schema: SchemaRef,
    /// Lake file (relative path) → its size, of the files read.
    files: BTreeMap<String, u64>,
    chunks: Vec<RecordBatch>,
    /// (chunk, row) of each customer's rows, in file order.
    by_customer: HashMap<Box<str>, Vec<(u32, u32)>>,
    /// (chunk, row) of the profiles naming each referrer (`customers` only).
    by_referrer: HashMap<Box<str>, Vec<(u32, u32)>>,
}

/// What a refresh did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefreshSummary {
    /// Lake files read (new ones, or all of a table read again).
    pub files_read: usize,
    /// Rows those files held.
    pub rows_read: u64,
    /// Tables read again from scratch because a file they had went away or changed.
    pub tables_reloaded: usize,
}

impl EventHistory {
    pub fn new() -> EventHistory {
        EventHistory::default()
    }

    /// Rows held, over all tables.
    pub fn rows(&self) -> u64 {
        self.tables
            .values()
            .map(|t| t.chunks.iter().map(|c| c.num_rows() as u64).sum::<u64>())
            .sum()
    }

    /// Memory the held rows take (Arrow buffers; the indexes add about 30 bytes per row).
    pub fn bytes(&self) -> usize {
        self.tables
            .values()
            .flat_map(|t| t.chunks.iter())
            .map(RecordBatch::get_array_memory_size)
            .sum()
    }

    /// Whether the lake's transactions are held.
    pub fn has_transactions(&self) -> bool {
        self.tables.contains_key(Table::Transactions.name())
    }

    /// Brings the history in line with the lake's files (see the module's documentation).
    pub async fn refresh(&mut self, lake: &Lake) -> Result<RefreshSummary> {
        let mut summary = RefreshSummary::default();
        for table in Table::ALL {
            let listed = table_files(lake, table).await?;
            if listed.is_empty() {
                self.tables.remove(table.name());
                continue;
            }
            let held = self
                .tables
                .entry(table.name())
                .or_insert_with(|| HeldTable::new(table));
            let changed = held
                .files
                .iter()
                .any(|(file, size)| listed.get(file) != Some(size));
            if changed {
                *held = HeldTable::new(table);
                summary.tables_reloaded += 1;
            }
            let new: Vec<(String, u64)> = listed
                .into_iter()
                .filter(|(file, _)| !held.files.contains_key(file))
                .collect();
            let chunks: Vec<(String, u64, RecordBatch)> = futures::stream::iter(new)
                .map(|(file, size)| {
                    let schema = held.schema.clone();
                    async move {
                        let chunk = read_chunk(lake, table, &file, schema, true).await?;
                        Ok::<_, FeatureError>((file, size, chunk))
                    }
                })
                .buffered(READS_IN_FLIGHT)
                .try_collect()
                .await?;
            for (file, size, chunk) in chunks {
                summary.files_read += 1;
                summary.rows_read += chunk.num_rows() as u64;
                held.add(file, size, chunk)?;
            }
        }
        Ok(summary)
    }

    /// The rows of `customers` (the profiles of them and of the members they referred; the
    /// events of all those before `as_of`), as [`crate::Scope::Customers`] sees them: each
    /// contract table the lake has, with these customers' rows (possibly none).
    pub fn rows_of(
        &self,
        customers: &[String],
        as_of: NaiveDate,
    ) -> Result<Vec<(Table, RecordBatch)>> {
        let mut tables = Vec::new();
        let mut event_customers: BTreeSet<&str> = customers.iter().map(String::as_str).collect();
        let mut referred_ids = Vec::new();
        if let Some(held) = self.tables.get(Table::Customers.name()) {
            let mut rows: BTreeSet<(u32, u32)> = BTreeSet::new();
            for id in customers {
                for index in [&held.by_customer, &held.by_referrer] {
                    rows.extend(index.get(id.as_str()).into_iter().flatten().copied());
                }
            }
            let profiles = held.gather(&rows.into_iter().collect::<Vec<_>>())?;
            let ids =
                arrow::compute::cast(profiles.column(0), &DataType::Utf8).map_err(arrow_error)?;
            referred_ids.extend(ids.as_string::<i32>().iter().flatten().map(str::to_string));
            tables.push((Table::Customers, profiles));
        }
        event_customers.extend(referred_ids.iter().map(String::as_str));
        let before = Date32Type::from_naive_date(as_of);
        for table in [Table::Transactions, Table::CampaignEvents] {
            let Some(held) = self.tables.get(table.name()) else {
                continue;
            };
            let rows: Vec<(u32, u32)> = event_customers
                .iter()
                .flat_map(|id| held.by_customer.get(*id).into_iter().flatten())
                .filter(|&&(chunk, row)| held.day(chunk, row) < before)
                .copied()
                .collect();
            tables.push((table, held.gather(&rows)?));
        }
        Ok(tables)
    }
}

impl HeldTable {
    fn new(table: Table) -> HeldTable {
        HeldTable {
            table,
            schema: session_schema(table),
            files: BTreeMap::new(),
            chunks: Vec::new(),
            by_customer: HashMap::new(),
            by_referrer: HashMap::new(),
        }
    }

    /// Adds one file's rows and indexes them.
    fn add(&mut self, file: String, size: u64, chunk: RecordBatch) -> Result<()> {
        let n = u32::try_from(self.chunks.len()).map_err(|_| too_many(&file))?;
        let index = |column: &str, by: &mut HashMap<Box<str>, Vec<(u32, u32)>>| {
            let Some(values) = chunk.column_by_name(column) else {
                return Ok::<_, FeatureError>(());
            };
            let values = arrow::compute::cast(values, &DataType::Utf8).map_err(arrow_error)?;
            for (row, id) in values.as_string::<i32>().iter().enumerate() {
                let Some(id) = id else { continue };
                let at = (n, u32::try_from(row).map_err(|_| too_many(&file))?);
                match by.get_mut(id) {
                    Some(rows) => rows.push(at),
                    None => {
                        by.insert(id.into(), vec![at]);
                    }
                }
            }
            Ok(())
        };
        index("customer_id", &mut self.by_customer)?;
        if self.table == Table::Customers {
            index("referrer_id", &mut self.by_referrer)?;
        }
        self.chunks.push(chunk);
        self.files.insert(file, size);
        Ok(())
    }

    /// The day number of a row's `date` partition.
    fn day(&self, chunk: u32, row: u32) -> i32 {
        let column = self.chunks[chunk as usize]
            .column_by_name(Table::DATE_PARTITION)
            .expect("date-partitioned tables are held with their date");
        column
            .as_primitive::<arrow::datatypes::Date32Type>()
            .value(row as usize)
    }

    /// The rows at `rows` in the session's columns, in file order (as a scan of the lake
    /// would give them, so that sums add up in the same order).
    fn gather(&self, rows: &[(u32, u32)]) -> Result<RecordBatch> {
        let mut rows = rows.to_vec();
        rows.sort_unstable();
        let mut pieces = Vec::new();
        for same_chunk in rows.chunk_by(|a, b| a.0 == b.0) {
            let chunk = &self.chunks[same_chunk[0].0 as usize];
            let indices =
                arrow::array::UInt32Array::from_iter_values(same_chunk.iter().map(|r| r.1));
            let taken = arrow::compute::take_record_batch(chunk, &indices).map_err(arrow_error)?;
            pieces.push(in_session_types(&taken, &self.schema)?);
        }
        arrow::compute::concat_batches(&self.schema, &pieces).map_err(arrow_error)
    }
}

/// A held chunk with its dictionary-encoded columns decoded to the session's types.
fn in_session_types(chunk: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .zip(chunk.columns())
        .map(|(field, column)| arrow::compute::cast(column, field.data_type()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(arrow_error)?;
    RecordBatch::try_new(schema.clone(), columns).map_err(arrow_error)
}

fn arrow_error(e: arrow::error::ArrowError) -> FeatureError {
    datafusion::error::DataFusionError::from(e).into()
}

/// A text column as held: dictionary-encoded when its values repeat (a category, a store, a
/// campaign), which takes a fraction of the memory; as it is otherwise.
fn held_text(column: ArrayRef) -> std::result::Result<ArrayRef, arrow::error::ArrowError> {
    let Some(text) = column.as_string_opt::<i32>() else {
        return Ok(column);
    };
    let sample = text.len().min(1024);
    let distinct: std::collections::HashSet<Option<&str>> = (0..sample)
        .map(|i| text.is_valid(i).then(|| text.value(i)))
        .collect();
    if sample < 64 || distinct.len() * 8 > sample {
        return Ok(column);
    }
    let encoded = arrow::compute::cast(
        &column,
        &DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
    )?;
    Ok(
        if encoded.get_array_memory_size() < column.get_array_memory_size() {
            encoded
        } else {
            column
        },
    )
}

fn too_many(file: &str) -> FeatureError {
    FeatureError::LakeFile {
        file: file.to_string(),
        problem: "more files or rows than the in-memory history can index (2^32)".to_string(),
    }
}

/// The columns of a lake table as a session sees them (see `register_empty_table`), all
/// nullable (a file from before a column was added has nulls in it, as a session reads it),
/// but `extra`: the point-in-time views do not show it, and it can be the largest column.
fn session_schema(table: Table) -> SchemaRef {
    let fields: Vec<Field> = crate::snapshot::raw_schema(table)
        .fields()
        .iter()
        .filter(|f| f.name() != Table::EXTRA_COLUMN)
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    Arc::new(Schema::new(fields))
}

/// The Parquet files of a table (relative path → size), as a session would read them.
pub(crate) async fn table_files(lake: &Lake, table: Table) -> Result<BTreeMap<String, u64>> {
    Ok(lake
        .list_parquet(table.name())
        .await?
        .into_iter()
        .map(|meta| (lake.relative(&meta.location), meta.size))
        .filter(|(file, _)| !file.split('/').any(|part| part.starts_with(['_', '.'])))
        .collect())
}

/// One lake file's rows in `schema`'s columns, with `compact_text` text that repeats
/// dictionary-encoded (see [`held_text`]): missing columns are null, and the `date` partition
/// comes from the file's path.
pub(crate) async fn read_chunk(
    lake: &Lake,
    table: Table,
    file: &str,
    schema: SchemaRef,
    compact_text: bool,
) -> Result<RecordBatch> {
    let bytes = lake.get(&lake.path(file)).await?;
    let read_error = |problem: String| FeatureError::LakeFile {
        file: file.to_string(),
        problem,
    };
    let day = if table.is_date_partitioned() {
        let day = Table::partition_date(file)
            .ok_or_else(|| read_error("its path has no date=YYYY-MM-DD folder".to_string()))?;
        Some(Date32Type::from_naive_date(day))
    } else {
        None
    };
    let decode = move || -> std::result::Result<RecordBatch, String> {
        use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.with_batch_size(64 * 1024).build())
            .map_err(|e| e.to_string())?;
        let batches = reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let columns = schema
            .fields()
            .iter()
            .map(|field| {
                if field.name() == Table::DATE_PARTITION
                    && let Some(day) = day
                {
                    return Ok(Arc::new(Date32Array::from(vec![day; rows])) as ArrayRef);
                }
                let parts: Vec<ArrayRef> = batches
                    .iter()
                    .map(|b| match b.column_by_name(field.name()) {
                        Some(c) => arrow::compute::cast(c, field.data_type()),
                        None => Ok(new_null_array(field.data_type(), b.num_rows())),
                    })
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| e.to_string())?;
                let parts: Vec<&dyn Array> = parts.iter().map(|p| p.as_ref()).collect();
                if parts.is_empty() {
                    return Ok(arrow::array::new_empty_array(field.data_type()));
                }
                let column = arrow::compute::concat(&parts).map_err(|e| e.to_string())?;
                if compact_text {
                    held_text(column).map_err(|e| e.to_string())
                } else {
                    Ok(column)
                }
            })
            .collect::<std::result::Result<Vec<_>, String>>()?;
        RecordBatch::try_from_iter(
            schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .zip(columns),
        )
        .map_err(|e| e.to_string())
    };
    tokio::task::spawn_blocking(decode)
        .await
        .map_err(|e| read_error(e.to_string()))?
        .map_err(read_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;

    #[test]
    fn repeating_text_is_held_dictionary_encoded_and_unique_text_as_it_is() {
        let stores: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..5000).map(|i| format!("S{:02}", i % 12)),
        ));
        let held = held_text(stores.clone()).unwrap();
        assert!(matches!(held.data_type(), DataType::Dictionary(..)));
        assert!(held.get_array_memory_size() < stores.get_array_memory_size());
        let back = arrow::compute::cast(&held, &DataType::Utf8).unwrap();
        assert_eq!(back.as_ref(), stores.as_ref());

        let ids: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..5000).map(|i| format!("T{i:012}")),
        ));
        assert_eq!(held_text(ids.clone()).unwrap().data_type(), &DataType::Utf8);
    }
}
