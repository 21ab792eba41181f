//! The lake's contract tables held in memory for the rest of the process, so that a process
//! that opens many sessions over every customer (training builds a feature snapshot, labels
//! and BTYD summaries for each of its dates; `churn features --every`; a pipeline run's steps)
//! reads each lake file once instead of once per query. A lake keeps one file per table and
//! day, and every scan of a table opens all of them again: on the demo store (730 files a
//! table, 49k transactions) that opening was most of a feature snapshot's 4 s.
//!
//! The tables are held only when they fit: [`HELD_BYTES_PER_PARQUET_BYTE`] times their Parquet
//! bytes must be at most the session's `hold_tables_max_bytes`, by default a quarter of its
//! memory limit, or [`HELD_MAX_BYTES`] without one; otherwise sessions scan the files as before (and anything held of that lake
//! is let go). Before each use the tables' files are listed again, as the stream's history
//! does: new files are read and added, and a table one of whose files went away or changed
//! size, or whose columns changed, is read again; so a session sees the lake's rows whoever
//! wrote them. The held columns are the ones a scan of the files would give (same types,
//! same nullability, `date` from the partition folder), but `extra`, which no point-in-time
//! view shows.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use churn_core::session::{LakeTable, SessionOptions, register_table};
use churn_core::{Lake, Table};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};

use crate::error::{FeatureError, Result};
use crate::history::{read_chunk, table_files};

/// Memory the held rows take per byte of their Parquet files (measured on a generated store
/// of 100,000 customers: 7.3; rounded up).
pub const HELD_BYTES_PER_PARQUET_BYTE: u64 = 8;

/// The most memory the held tables may take when no memory limit is set: 1 GiB (a generated
/// store of about 250,000 customers and two years of transactions).
pub const HELD_MAX_BYTES: u64 = 1 << 30;

/// Files read at once.
const READS_IN_FLIGHT: usize = 4;

/// Rows of the batches small files' rows are held in. A lake file of a small store holds a
/// few dozen rows (the demo's days: 67), and every operator of every query pays per batch:
/// neighbouring files of fewer than [`SMALL_FILE_ROWS`] rows are held as batches of this many
/// rows (DataFusion's default batch size). Larger files stay one batch each: merging them
/// gained nothing on a 100,000-customer store (2,300 rows a day) and took 20 % more memory
/// while the copies were made.
const HELD_BATCH_ROWS: usize = 8192;
const SMALL_FILE_ROWS: usize = 1024;

/// Held lakes by root URL and the session's kind of text.
static HELD: LazyLock<tokio::sync::Mutex<HashMap<String, HeldLake>>> =
    LazyLock::new(Default::default);

#[derive(Default)]
struct HeldLake {
    tables: BTreeMap<&'static str, HeldTable>,
}

/// One table's rows, in file order (small files read together merged into batches of about
/// [`HELD_BATCH_ROWS`] rows).
struct HeldTable {
    schema: SchemaRef,
    /// Lake file (relative path) → its size, of the files read.
    files: BTreeMap<String, u64>,
    chunks: Vec<RecordBatch>,
}

/// The most memory held tables may take under `options`.
fn held_budget(options: &SessionOptions) -> u64 {
    options.hold_tables_max_bytes.unwrap_or_else(|| {
        options
            .memory_limit_bytes
            .map_or(HELD_MAX_BYTES, |limit| limit as u64 / 4)
    })
}

/// Registers `found` (the lake's contract tables) in `ctx` from memory, reading what the
/// process does not hold yet; returns false, registering nothing, when the tables do not fit
/// the budget (the caller then registers the lake's files).
pub(crate) async fn register_held_tables(
    ctx: &SessionContext,
    lake: &Lake,
    found: &[(Table, LakeTable)],
    options: &SessionOptions,
) -> Result<bool> {
    // Ballista's executors read the lake's files; they cannot see this process's memory.
    if options.engine.is_ballista() {
        return Ok(false);
    }
    let mut listed = Vec::new();
    for (table, at) in found {
        listed.push((*table, at, table_files(lake, *table).await?));
    }
    let parquet_bytes: u64 = listed.iter().flat_map(|(_, _, files)| files.values()).sum();
    let mut held_lakes = HELD.lock().await;
    // Held tables have the string kind of the session that read them (plain strings, see
    // `new_session`); a session set to read views would hold its own copy, so that the tables
    // it is given have the types a scan in that session would give.
    let views = ctx
        .state()
        .config_options()
        .execution
        .parquet
        .schema_force_view_types;
    let key = format!("{} views={views}", lake.root_url());
    if parquet_bytes.saturating_mul(HELD_BYTES_PER_PARQUET_BYTE) > held_budget(options) {
        held_lakes.remove(&key);
        return Ok(false);
    }
    let held = held_lakes.entry(key).or_default();
    held.tables
        .retain(|name, _| found.iter().any(|(t, _)| t.name() == *name));
    let mut tables = Vec::new();
    for (table, at, files) in listed {
        let Some(rows) = held.refresh(ctx, lake, table, at, files).await? else {
            held.tables.remove(table.name());
            // Reading the columns registered some of the tables' files: the caller registers
            // them all.
            for (table, _) in found {
                ctx.deregister_table(crate::snapshot::raw_name(*table))?;
            }
            return Ok(false);
        };
        tables.push((table, rows));
    }
    let partitions = ctx.state().config().target_partitions().max(1);
    for (table, (schema, chunks)) in tables {
        let name = crate::snapshot::raw_name(table);
        ctx.deregister_table(&name)?;
        ctx.register_table(
            name,
            Arc::new(MemTable::try_new(schema, split(chunks, partitions))?),
        )?;
    }
    Ok(true)
}

impl HeldLake {
    /// Brings `table` in line with its `files` and returns its schema and chunks; `None` when
    /// its files cannot be held as a scan would read them (the caller scans them instead).
    async fn refresh(
        &mut self,
        ctx: &SessionContext,
        lake: &Lake,
        table: Table,
        at: &LakeTable,
        files: BTreeMap<String, u64>,
    ) -> Result<Option<(SchemaRef, Vec<RecordBatch>)>> {
        let changed = |held: &HeldTable| {
            held.files
                .iter()
                .any(|(file, size)| files.get(file) != Some(size))
        };
        if self.tables.get(table.name()).is_some_and(changed) {
            self.tables.remove(table.name());
        }
        let mut new: Vec<(String, u64)> = files
            .iter()
            .filter(|(file, _)| {
                self.tables
                    .get(table.name())
                    .is_none_or(|held| !held.files.contains_key(*file))
            })
            .map(|(file, size)| (file.clone(), *size))
            .collect();
        if !new.is_empty() {
            let schema = scan_schema(ctx, lake, table, at).await?;
            if self
                .tables
                .get(table.name())
                .is_some_and(|held| held.schema != schema)
            {
                self.tables.remove(table.name());
                new = files.into_iter().collect();
            }
            let held = self
                .tables
                .entry(table.name())
                .or_insert_with(|| HeldTable {
                    schema: schema.clone(),
                    files: BTreeMap::new(),
                    chunks: Vec::new(),
                });
            let read: Vec<(String, u64, RecordBatch)> = futures::stream::iter(new)
                .map(|(file, size)| {
                    let schema = schema.clone();
                    async move {
                        let chunk = read_chunk(lake, table, &file, schema, false).await?;
                        Ok::<_, FeatureError>((file, size, chunk))
                    }
                })
                .buffered(READS_IN_FLIGHT)
                .try_collect()
                .await?;
            let mut chunks = Vec::with_capacity(read.len());
            for (file, size, chunk) in read {
                // A scan fills a column a file lacks with nulls; a column the scan's schema
                // declares non-null cannot hold them, so such a lake is scanned, not held.
                let Ok(chunk) = RecordBatch::try_new(schema.clone(), chunk.columns().to_vec())
                else {
                    return Ok(None);
                };
                chunks.push(chunk);
                held.files.insert(file, size);
            }
            held.chunks.extend(merged(&schema, chunks)?);
            tracing::info!(
                table = table.name(),
                files = held.files.len(),
                parquet_bytes = held.files.values().sum::<u64>(),
                held_bytes = held
                    .chunks
                    .iter()
                    .map(RecordBatch::get_array_memory_size)
                    .sum::<usize>(),
                "lake table held in memory"
            );
        }
        Ok(self
            .tables
            .get(table.name())
            .map(|held| (held.schema.clone(), held.chunks.clone())))
    }
}

/// The columns a scan of `table`'s files gives (registering them in `ctx` as the raw table),
/// but `extra`.
async fn scan_schema(
    ctx: &SessionContext,
    lake: &Lake,
    table: Table,
    at: &LakeTable,
) -> Result<SchemaRef> {
    let mut at = at.clone();
    at.name = crate::snapshot::raw_name(table);
    register_table(ctx, lake, &at).await?;
    let schema = ctx.table(&at.name).await?.schema().as_arrow().clone();
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .filter(|f| f.name() != Table::EXTRA_COLUMN)
        .cloned()
        .collect();
    Ok(Arc::new(Schema::new(fields)))
}

/// `chunks` in order, runs of neighbouring chunks of fewer than [`SMALL_FILE_ROWS`] rows
/// merged into batches of at least [`HELD_BATCH_ROWS`] rows (but a run's last); larger chunks
/// stay as they are.
fn merged(schema: &SchemaRef, chunks: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
    let mut batches = Vec::new();
    let mut pending: Vec<RecordBatch> = Vec::new();
    for chunk in chunks {
        if chunk.num_rows() >= SMALL_FILE_ROWS {
            flush(schema, &mut pending, &mut batches)?;
            batches.push(chunk);
            continue;
        }
        pending.push(chunk);
        if pending.iter().map(RecordBatch::num_rows).sum::<usize>() >= HELD_BATCH_ROWS {
            flush(schema, &mut pending, &mut batches)?;
        }
    }
    flush(schema, &mut pending, &mut batches)?;
    Ok(batches)
}

/// Appends the `pending` chunks to `batches` as one batch (none when there are none).
fn flush(
    schema: &SchemaRef,
    pending: &mut Vec<RecordBatch>,
    batches: &mut Vec<RecordBatch>,
) -> Result<()> {
    match pending.len() {
        0 => {}
        1 => batches.extend(pending.pop()),
        _ => batches.push(
            arrow::compute::concat_batches(schema, pending.iter())
                .map_err(datafusion::error::DataFusionError::from)?,
        ),
    }
    pending.clear();
    Ok(())
}

/// `chunks` as `partitions` runs of neighbouring chunks with about as many rows each, so that
/// each partition reads the files in their order, as a scan's partitions do.
fn split(chunks: Vec<RecordBatch>, partitions: usize) -> Vec<Vec<RecordBatch>> {
    let total: usize = chunks.iter().map(RecordBatch::num_rows).sum();
    let per_partition = total.div_ceil(partitions).max(1);
    let mut runs: Vec<Vec<RecordBatch>> = vec![Vec::new()];
    let mut rows_in_run = 0;
    for chunk in chunks {
        if rows_in_run >= per_partition {
            runs.push(Vec::new());
            rows_in_run = 0;
        }
        rows_in_run += chunk.num_rows();
        runs.last_mut().expect("one run at least").push(chunk);
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int32Array;
    use arrow::datatypes::{DataType, Field};

    fn chunk(rows: i32) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, false)]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int32Array::from_iter_values(0..rows))],
        )
        .unwrap()
    }

    #[test]
    fn small_chunks_are_merged_in_order_into_batches_of_the_held_size() {
        let small: Vec<RecordBatch> = (0..1000).map(|_| chunk(67)).collect();
        let schema = small[0].schema();
        let batches = merged(&schema, small).unwrap();
        let sizes: Vec<usize> = batches.iter().map(RecordBatch::num_rows).collect();
        // 123 chunks of 67 rows reach 8,192 rows (8,241); the rest is the last batch.
        assert_eq!(
            sizes,
            vec![8241; 8]
                .into_iter()
                .chain([67_000 - 8 * 8241])
                .collect::<Vec<_>>()
        );
        let values: Vec<i32> = batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int32Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect();
        let expected: Vec<i32> = (0..1000).flat_map(|_| 0..67).collect();
        assert_eq!(values, expected);
        let mixed = vec![chunk(5), chunk(6), chunk(2_000), chunk(7), chunk(8)];
        let sizes: Vec<usize> = merged(&schema, mixed)
            .unwrap()
            .iter()
            .map(RecordBatch::num_rows)
            .collect();
        assert_eq!(sizes, vec![11, 2_000, 15]);
        assert!(merged(&schema, Vec::new()).unwrap().is_empty());
    }

    #[test]
    fn split_keeps_file_order_and_balances_rows() {
        let chunks = vec![chunk(10), chunk(10), chunk(10), chunk(10), chunk(5)];
        let runs = split(chunks, 2);
        let sizes: Vec<Vec<usize>> = runs
            .iter()
            .map(|run| run.iter().map(RecordBatch::num_rows).collect())
            .collect();
        assert_eq!(sizes, vec![vec![10, 10, 10], vec![10, 5]]);
        assert_eq!(split(Vec::new(), 2).len(), 1);
    }
}
