//! A batch's runs: its rows in day order, a buffer at a time, so that the merge can write
//! every date partition's file of the batch at once. A full buffer's blocks, each in day order
//! already, are gathered in day order across blocks ([`RunBlocks`]) into batches held in
//! memory or, beyond the run memory, written straight to a spilled run, an Arrow IPC stream. A
//! spilled run is written once and read once, a moment later, by the same process: Parquet's
//! encoding (dictionaries, pages, statistics) bought nothing there and took most of the
//! spilling thread's time, which parsing then waited for. IPC writes the arrays' buffers as
//! they are.

use std::sync::Arc;

use arrow::array::{
    ArrayData, ArrayRef, Capacities, Int32Array, MutableArrayData, RecordBatch, UInt32Array,
    UInt64Array, make_array, new_null_array,
};
use arrow::buffer::Buffer;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::reader::StreamDecoder;
use arrow::ipc::writer::StreamWriter;
use churn_core::Lake;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::ObjectStoreExt;
use object_store::buffered::BufWriter;
use tokio::io::AsyncWriteExt;

use crate::error::{IngestError, Result};
use crate::rows::{HeldRows, day_order};

/// Columns a run adds after the table's: each row's sequence number in the batch (see
/// [`crate::dedup`]) and its partition day, which comes last.
pub const SEQ_COLUMN: &str = "__seq";
pub const DAY_COLUMN: &str = "__day";

/// Rows per IPC message: what the merge holds of each run at a time (at 1M customers, 16.5M
/// rows in 17 runs, 64k-row messages peaked 110 MB higher for 3% less time).
pub const RUN_BATCH_ROWS: usize = 16 * 1024;
/// Bytes fetched per read of a run (two in flight per run).
const RUN_READ_BYTES: u64 = 1 << 20;

/// A run's read or write failure, naming the run: the maker of a `map_err` closure.
fn run_error<E: std::fmt::Display>(rel: &str) -> impl Fn(E) -> IngestError + '_ {
    move |reason| IngestError::Run {
        path: rel.to_string(),
        reason: reason.to_string(),
    }
}

/// The schema of a run of `table_schema`'s rows: the table's columns, then
/// [`SEQ_COLUMN`] and [`DAY_COLUMN`].
pub fn run_schema(table_schema: &Schema) -> SchemaRef {
    let mut fields: Vec<Arc<Field>> = table_schema.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(SEQ_COLUMN, DataType::UInt64, false)));
    fields.push(Arc::new(Field::new(DAY_COLUMN, DataType::Int32, false)));
    Arc::new(Schema::new(fields))
}

/// A full buffer's blocks, each in day order (blocks of CSV records come so already), to be
/// read in day order across blocks ([`RunBlocks::into_batches`]). Each stretch of a block's
/// rows of one day is copied range by range into batches of [`RUN_BATCH_ROWS`] rows: slicing
/// every stretch (a few dozen rows at 1M customers) into arrays of its own and concatenating
/// them into one run was a sixth of a large ingest's CPU time. A spilled run is written from
/// those batches as they are gathered, never held whole.
pub struct RunBlocks {
    schema: SchemaRef,
    blocks: Vec<DaySortedBlock>,
    /// Per table column, its array in each block.
    column_data: Vec<Vec<ArrayData>>,
    /// Per table column, when no block has a value in it, an array of [`RUN_BATCH_ROWS`]
    /// nulls that every gathered batch takes a slice of. A source without extra columns
    /// leaves `extra` null on every row: gathered like the others, its offsets (4 bytes a row,
    /// 66 MB over 16.5M transactions) were memory the system had to hand over and zero.
    all_null: Vec<Option<ArrayRef>>,
    /// Each row's day, block after block (each block's rows in its day order).
    row_days: Vec<i32>,
    /// The distinct days of the run's rows, in order.
    days: Vec<i32>,
}

/// One block of a run, in day order (its arrays are in [`RunBlocks::column_data`]).
struct DaySortedBlock {
    rows: usize,
    /// Where its rows' days start in [`RunBlocks::row_days`].
    start: usize,
    /// The sequence number of the block's first row to arrive.
    first_seq: u64,
    /// `None` when its rows are in arrival order; else each row's place in it.
    arrival: Option<Vec<u32>>,
}

impl DaySortedBlock {
    /// Appends the sequence numbers of the block's `rows` to `seqs`.
    fn push_seqs(&self, rows: std::ops::Range<usize>, seqs: &mut Vec<u64>) {
        match &self.arrival {
            None => {
                seqs.extend(self.first_seq + rows.start as u64..self.first_seq + rows.end as u64)
            }
            Some(arrival) => {
                seqs.extend(arrival[rows].iter().map(|&k| self.first_seq + u64::from(k)))
            }
        }
    }
}

impl RunBlocks {
    /// The run of the rows held, numbered from `first_seq` in arrival order. Blocks whose
    /// rows are not in day order yet (rows taken one by one) are put in it (stable).
    pub fn new(table_schema: &SchemaRef, rows: HeldRows, first_seq: u64) -> Result<RunBlocks> {
        let HeldRows {
            batches,
            days: mut row_days,
            arrival,
        } = rows;
        let mut blocks = Vec::with_capacity(batches.len());
        let mut column_data: Vec<Vec<ArrayData>> = vec![Vec::new(); table_schema.fields().len()];
        let mut start = 0;
        for (batch, arrival) in batches.into_iter().zip(arrival) {
            let n = batch.num_rows();
            let block_days = &mut row_days[start..start + n];
            let (batch, arrival) = if block_days.is_sorted() {
                (batch, arrival)
            } else {
                let order = day_order(block_days);
                let sorted_days: Vec<i32> = order.iter().map(|&k| block_days[k as usize]).collect();
                block_days.copy_from_slice(&sorted_days);
                let arrival = order
                    .iter()
                    .map(|&k| arrival.as_ref().map_or(k, |a| a[k as usize]))
                    .collect();
                let batch = arrow::compute::take_record_batch(&batch, &UInt32Array::from(order))?;
                (batch, Some(arrival))
            };
            for (c, column) in batch.columns().iter().enumerate() {
                column_data[c].push(column.to_data());
            }
            blocks.push(DaySortedBlock {
                rows: n,
                start,
                first_seq: first_seq + start as u64,
                arrival,
            });
            start += n;
        }
        // Each block's distinct days come in order, one scan each: sorting every row's day (a
        // million a run) was most of what making a run took (19 of its 27 profile samples).
        let mut days: Vec<i32> = blocks
            .iter()
            .flat_map(|b| {
                let block_days = &row_days[b.start..b.start + b.rows];
                block_days
                    .iter()
                    .enumerate()
                    .filter(|(k, day)| *k == 0 || block_days[k - 1] != **day)
                    .map(|(_, day)| *day)
            })
            .collect();
        days.sort_unstable();
        days.dedup();
        let all_null = column_data
            .iter()
            .zip(table_schema.fields())
            .map(|(arrays, field)| {
                arrays
                    .iter()
                    .all(|a| a.null_count() == a.len())
                    .then(|| new_null_array(field.data_type(), RUN_BATCH_ROWS))
            })
            .collect();
        Ok(RunBlocks {
            schema: run_schema(table_schema),
            blocks,
            column_data,
            all_null,
            row_days,
            days,
        })
    }

    /// The schema of the run's batches ([`run_schema`]).
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The distinct days of the run's rows, in order.
    pub fn days(&self) -> &[i32] {
        &self.days
    }

    /// Bytes the run holds in memory.
    pub fn memory_size(&self) -> usize {
        let arrays: usize = self
            .column_data
            .iter()
            .flatten()
            .map(ArrayData::get_array_memory_size)
            .sum();
        let arrival: usize = self
            .blocks
            .iter()
            .map(|b| b.arrival.as_ref().map_or(0, Vec::len))
            .sum();
        arrays + (arrival + self.row_days.len() + self.days.len()) * std::mem::size_of::<u32>()
    }

    /// The run's rows gathered in day order ([`RunBlocks::into_batches`]), and the bytes they
    /// take; the blocks are freed once gathered.
    pub fn gathered(self) -> Result<(Vec<RecordBatch>, usize)> {
        // The all-null arrays the batches share are counted once.
        let shared: usize = self
            .all_null
            .iter()
            .flatten()
            .map(|a| a.get_array_memory_size())
            .sum();
        let own_column: Vec<bool> = self.all_null.iter().map(Option::is_none).collect();
        let batches = self.into_batches().collect::<Result<Vec<_>>>()?;
        // The run's own columns (sequence numbers, days) come after the table's.
        let own_bytes: usize = batches
            .iter()
            .flat_map(|b| b.columns().iter().enumerate())
            .filter(|(c, _)| own_column.get(*c).copied().unwrap_or(true))
            .map(|(_, column)| column.get_array_memory_size())
            .sum();
        Ok((batches, shared + own_bytes))
    }

    /// The run's rows in day order (stable: arrival order within a day), in batches of at most
    /// [`RUN_BATCH_ROWS`] rows in the run's schema ([`run_schema`]).
    pub fn into_batches(self) -> DayOrderBatches {
        let read = vec![0; self.blocks.len()];
        DayOrderBatches {
            run: self,
            next_day: 0,
            read,
        }
    }
}

/// The batches of [`RunBlocks::into_batches`], gathered as they are asked for.
pub struct DayOrderBatches {
    run: RunBlocks,
    /// Index in the run's days of the day being gathered.
    next_day: usize,
    /// Per block, its rows gathered so far.
    read: Vec<usize>,
}

impl DayOrderBatches {
    /// The next rows in day order, at most [`RUN_BATCH_ROWS`]; `None` when all were gathered.
    fn gather(&mut self) -> Result<Option<RecordBatch>> {
        let run = &self.run;
        // (block, first row, end) of each stretch of rows gathered, in order.
        let mut ranges: Vec<(usize, usize, usize)> = Vec::new();
        let mut seqs: Vec<u64> = Vec::with_capacity(RUN_BATCH_ROWS);
        let mut days: Vec<i32> = Vec::with_capacity(RUN_BATCH_ROWS);
        while seqs.len() < RUN_BATCH_ROWS && self.next_day < run.days.len() {
            let day = run.days[self.next_day];
            let before = seqs.len();
            for (b, (block, read)) in run.blocks.iter().zip(self.read.iter_mut()).enumerate() {
                let from = *read;
                let block_days = &run.row_days[block.start + from..block.start + block.rows];
                let of_day = block_days.partition_point(|d| *d <= day);
                let take = of_day.min(RUN_BATCH_ROWS - seqs.len());
                if take == 0 {
                    continue;
                }
                ranges.push((b, from, from + take));
                block.push_seqs(from..from + take, &mut seqs);
                days.extend_from_slice(&block_days[..take]);
                *read = from + take;
                if seqs.len() == RUN_BATCH_ROWS {
                    break;
                }
            }
            if seqs.len() == before {
                self.next_day += 1;
            }
        }
        if seqs.is_empty() {
            return Ok(None);
        }
        // Copied range by range from the blocks' arrays: slicing each stretch into arrays of
        // its own and concatenating those cost as much again (a few dozen rows a stretch).
        let mut columns = Vec::with_capacity(run.schema.fields().len());
        for (blocks, all_null) in run.column_data.iter().zip(&run.all_null) {
            if let Some(nulls) = all_null {
                columns.push(nulls.slice(0, seqs.len()));
                continue;
            }
            let mut column = MutableArrayData::with_capacities(
                blocks.iter().collect(),
                false,
                gathered_capacity(blocks, &ranges, seqs.len()),
            );
            for &(block, from, to) in &ranges {
                column.try_extend(block, from, to)?;
            }
            columns.push(make_array(column.freeze()));
        }
        columns.push(Arc::new(UInt64Array::from(seqs)));
        columns.push(Arc::new(Int32Array::from(days)));
        Ok(Some(RecordBatch::try_new(run.schema.clone(), columns)?))
    }
}

/// Room for `rows` rows of a column gathered from `blocks` by `ranges`: for text, its bytes
/// as well, so that the values are not copied again as their buffer grows.
fn gathered_capacity(
    blocks: &[ArrayData],
    ranges: &[(usize, usize, usize)],
    rows: usize,
) -> Capacities {
    if blocks
        .first()
        .is_none_or(|b| b.data_type() != &DataType::Utf8)
    {
        return Capacities::Array(rows);
    }
    let bytes = ranges
        .iter()
        .map(|&(block, from, to)| {
            let offsets = blocks[block].buffer::<i32>(0);
            (offsets[to] - offsets[from]) as usize
        })
        .sum();
    Capacities::Binary(rows, Some(bytes))
}

impl Iterator for DayOrderBatches {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        self.gather().transpose()
    }
}

/// Writes a run's `batches` (in `schema`) to the lake at `rel` (relative to its root) in
/// messages of at most [`RUN_BATCH_ROWS`] rows.
pub async fn write_run(
    lake: &Lake,
    rel: &str,
    schema: &Schema,
    batches: impl Iterator<Item = Result<RecordBatch>>,
) -> Result<()> {
    let mut upload = BufWriter::new(lake.store().clone(), lake.path(rel));
    let mut writer = StreamWriter::try_new(Vec::new(), schema).map_err(run_error(rel))?;
    for batch in batches {
        let batch = batch?;
        let mut offset = 0;
        while offset < batch.num_rows() {
            let rows = RUN_BATCH_ROWS.min(batch.num_rows() - offset);
            writer
                .write(&batch.slice(offset, rows))
                .map_err(run_error(rel))?;
            offset += rows;
            upload
                .write_all(writer.get_mut())
                .await
                .map_err(run_error(rel))?;
            writer.get_mut().clear();
        }
    }
    writer.finish().map_err(run_error(rel))?;
    upload
        .write_all(writer.get_mut())
        .await
        .map_err(run_error(rel))?;
    upload.shutdown().await.map_err(run_error(rel))?;
    Ok(())
}

/// The batches of the run at `rel`, decoded as its bytes arrive.
pub async fn read_run(lake: &Lake, rel: &str) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    let store = lake.store().clone();
    let path = lake.path(rel);
    let size = store.head(&path).await.map_err(run_error(rel))?.size;
    let ranges: Vec<std::ops::Range<u64>> = (0..size.div_ceil(RUN_READ_BYTES))
        .map(|i| i * RUN_READ_BYTES..((i + 1) * RUN_READ_BYTES).min(size))
        .collect();
    let rel_owned = rel.to_string();
    let chunks = futures::stream::iter(ranges)
        .map(move |range| {
            let (store, path) = (store.clone(), path.clone());
            async move { store.get_range(&path, range).await }
        })
        .buffered(2);
    let state = (
        chunks.boxed(),
        StreamDecoder::new(),
        Buffer::from(Vec::<u8>::new()),
        rel_owned,
    );
    Ok(futures::stream::try_unfold(
        state,
        |(mut chunks, mut decoder, mut pending, rel)| async move {
            loop {
                if !pending.is_empty() {
                    let decoded = decoder.decode(&mut pending).map_err(run_error(&rel))?;
                    if let Some(batch) = decoded {
                        return Ok(Some((batch, (chunks, decoder, pending, rel))));
                    }
                    continue;
                }
                match chunks.next().await {
                    Some(chunk) => {
                        pending = Buffer::from(chunk.map_err(run_error(&rel))?);
                    }
                    None => {
                        decoder.finish().map_err(run_error(&rel))?;
                        return Ok(None);
                    }
                }
            }
        },
    )
    .boxed())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, AsArray, StringArray};
    use arrow::datatypes::{Int32Type, UInt64Type};

    use futures::TryStreamExt;

    use super::*;

    fn batch(schema: &SchemaRef, ids: &[&str]) -> RecordBatch {
        let ids = StringArray::from(ids.to_vec());
        RecordBatch::try_new(schema.clone(), vec![Arc::new(ids)]).unwrap()
    }

    /// A held run's batches, and all its rows in one batch.
    fn read_held(run: RunBlocks) -> (Vec<RecordBatch>, RecordBatch) {
        let schema = run.schema().clone();
        let batches: Vec<RecordBatch> = run.into_batches().map(|b| b.unwrap()).collect();
        let all = arrow::compute::concat_batches(&schema, &batches).unwrap();
        (batches, all)
    }

    #[test]
    fn a_column_null_in_every_block_is_gathered_as_nulls_sharing_one_array_counted_once() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("extra", DataType::Utf8, true),
        ]));
        let n = RUN_BATCH_ROWS + 10;
        let ids: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
        let half = |range: std::ops::Range<usize>| {
            let ids: Vec<&str> = ids[range.clone()].iter().map(String::as_str).collect();
            let extra = StringArray::from(vec![None::<&str>; range.len()]);
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(StringArray::from(ids)), Arc::new(extra)],
            )
            .unwrap()
        };
        // Two blocks on one day, rows in arrival order.
        let rows = HeldRows {
            batches: vec![half(0..n / 2), half(n / 2..n)],
            days: vec![7; n],
            arrival: vec![None, None],
        };
        let (batches, bytes) = RunBlocks::new(&schema, rows, 0)
            .unwrap()
            .gathered()
            .unwrap();
        assert_eq!(
            batches.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
            [RUN_BATCH_ROWS, 10]
        );
        for batch in &batches {
            let extra = batch.column(1);
            assert_eq!(extra.null_count(), batch.num_rows());
            assert_eq!(extra.len(), batch.num_rows());
        }
        let gathered_ids: Vec<String> = batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_string::<i32>()
                    .iter()
                    .flatten()
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(gathered_ids, ids);
        // The shared nulls once, then each batch's id, sequence and day columns.
        let shared = new_null_array(&DataType::Utf8, RUN_BATCH_ROWS).get_array_memory_size();
        let own: usize = batches
            .iter()
            .map(|b| {
                [0, 2, 3]
                    .iter()
                    .map(|&c| b.column(c).get_array_memory_size())
                    .sum::<usize>()
            })
            .sum();
        assert_eq!(bytes, shared + own);
    }

    #[test]
    fn held_rows_read_in_day_order_in_arrival_order_within_a_day_with_their_sequence_numbers() {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)]));
        // Rows a0..a3 arrived in that order on days 5, 3, 5, 3 and are held in day order;
        // b0..b2 arrived after them on days 4, 3, 5, held as they came.
        let rows = HeldRows {
            batches: vec![
                batch(&schema, &["a1", "a3", "a0", "a2"]),
                batch(&schema, &["b0", "b1", "b2"]),
            ],
            days: vec![3, 3, 5, 5, 4, 3, 5],
            arrival: vec![Some(vec![1, 3, 0, 2]), None],
        };
        let run = RunBlocks::new(&schema, rows, 100).unwrap();
        assert_eq!(run.days(), [3, 4, 5]);
        let (_, sorted) = read_held(run);
        let column = |name: &str| sorted.column_by_name(name).unwrap().clone();
        let ids = column("id");
        let ids: Vec<&str> = ids.as_string::<i32>().iter().flatten().collect();
        assert_eq!(ids, ["a1", "a3", "b1", "b0", "a0", "a2", "b2"]);
        let seqs = column(SEQ_COLUMN);
        assert_eq!(
            seqs.as_primitive::<UInt64Type>().values().to_vec(),
            [101, 103, 105, 104, 100, 102, 106]
        );
        let days = column(DAY_COLUMN);
        assert_eq!(
            days.as_primitive::<Int32Type>().values().to_vec(),
            [3, 3, 3, 4, 5, 5, 5]
        );
    }

    #[test]
    fn a_held_run_is_read_in_batches_of_at_most_the_run_size_even_within_a_day() {
        // Two blocks in arrival order: the first has RUN_BATCH_ROWS + 3 rows of day 1 and 2
        // of day 2, the second RUN_BATCH_ROWS rows of day 1. Day 1 then has 2 * RUN_BATCH_ROWS
        // + 3 rows: the first block's, then the second's; day 2 comes after.
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)]));
        let first: Vec<String> = (0..RUN_BATCH_ROWS + 5).map(|i| format!("a{i}")).collect();
        let second: Vec<String> = (0..RUN_BATCH_ROWS).map(|i| format!("b{i}")).collect();
        fn refs(v: &[String]) -> Vec<&str> {
            v.iter().map(String::as_str).collect()
        }
        let mut days = vec![1; RUN_BATCH_ROWS + 3];
        days.extend([2, 2]);
        days.extend(vec![1; RUN_BATCH_ROWS]);
        let rows = HeldRows {
            batches: vec![
                batch(&schema, &refs(&first)),
                batch(&schema, &refs(&second)),
            ],
            days,
            arrival: vec![None, None],
        };
        let run = RunBlocks::new(&schema, rows, 0).unwrap();
        assert_eq!(run.days(), [1, 2]);
        let (batches, all) = read_held(run);
        let sizes: Vec<usize> = batches.iter().map(|b| b.num_rows()).collect();
        assert_eq!(sizes, [RUN_BATCH_ROWS, RUN_BATCH_ROWS, 5]);
        let ids = all.column(0).as_string::<i32>();
        let mut expected: Vec<&str> = refs(&first)[..RUN_BATCH_ROWS + 3].to_vec();
        expected.extend(refs(&second));
        expected.extend(refs(&first)[RUN_BATCH_ROWS + 3..].iter());
        assert_eq!(ids.iter().flatten().collect::<Vec<_>>(), expected);
        let seqs = all.column(1).as_primitive::<UInt64Type>().values();
        let mut expected_seqs: Vec<u64> = (0..RUN_BATCH_ROWS as u64 + 3).collect();
        let second_start = RUN_BATCH_ROWS as u64 + 5;
        expected_seqs.extend(second_start..second_start + RUN_BATCH_ROWS as u64);
        expected_seqs.extend([RUN_BATCH_ROWS as u64 + 3, RUN_BATCH_ROWS as u64 + 4]);
        assert_eq!(seqs.to_vec(), expected_seqs);
    }

    #[tokio::test]
    async fn a_run_reads_back_as_the_rows_written_in_batches_of_the_run_size() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
        let rows = RUN_BATCH_ROWS * 2 + 5;
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int32, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        let n = Int32Array::from_iter_values(0..rows as i32);
        let s: StringArray = (0..rows)
            .map(|i| (i % 3 != 0).then(|| format!("text {i}")))
            .collect();
        let written = RecordBatch::try_new(schema, vec![Arc::new(n), Arc::new(s)]).unwrap();
        let batches = std::iter::once(Ok(written.clone()));
        write_run(
            &lake,
            "_staging/x/runs/run-00000.arrow",
            &written.schema(),
            batches,
        )
        .await
        .unwrap();
        let batches: Vec<RecordBatch> = read_run(&lake, "_staging/x/runs/run-00000.arrow")
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let sizes: Vec<usize> = batches.iter().map(|b| b.num_rows()).collect();
        assert_eq!(sizes, vec![RUN_BATCH_ROWS, RUN_BATCH_ROWS, 5]);
        let read = arrow::compute::concat_batches(&written.schema(), &batches).unwrap();
        assert_eq!(read, written);
    }
}
