//! Writing accepted rows into Hive date partitions with bounded memory. Rows arrive in any
//! order (a backfill export is often sorted by customer, not by day). Each full buffer is
//! sorted by day as a "run", held in memory while the runs held fit the run memory and
//! spilled to staging after that; at the end the runs are merged day by day, so that every
//! date partition receives one file per ingest batch however large the input, and memory holds
//! one buffer, the runs held, and one row group per spilled run and per day being written.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use arrow::array::{Array, AsArray, BooleanArray, Int32Array, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{Date32Type, UInt64Type};
use churn_core::parquet_io::{LakeParquetWriter, object_writer};
use churn_core::{Lake, Table};
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::ObjectMeta;

use crate::dedup::{BatchKeys, Duplicates};
use crate::error::{IngestError, Result};
use crate::existing::{KeySet, files_keys, row_keys};
use crate::rows::HeldRows;
use crate::runs::{RunBlocks, SEQ_COLUMN, read_run, write_run};

/// Date partitions whose keys are read ahead of the merge.
const KEY_READS_AHEAD: usize = 4;
/// Date partitions' files written at once while the merge gathers the next day. Each is
/// encoded and then uploaded: on object storage the upload is a request's latency, so with two
/// at a time the demo store's 730 days took 10.6-11.2 s into an S3 lake behind 10 ms of
/// latency, 6.8-7.0 s with eight (16.5M transactions on local disk: 11.0-11.9 s and
/// 10.4-10.5 s, at the same peak memory). A day larger than a row group is written while it is
/// gathered, so each task holds at most a row group of rows.
const DAYS_WRITING: usize = 8;

/// A data file written to staging, to be moved to its final place at commit.
#[derive(Debug, Clone)]
pub struct StagedFile {
    /// Path relative to the lake root, under `_staging/<batch>/`.
    pub staged: String,
    /// Final path relative to the lake root.
    pub target: String,
    pub rows: u64,
}

/// Writes one table's accepted rows of a batch into date partitions.
pub struct PartitionWriter {
    lake: Lake,
    table: Table,
    batch_id: String,
    staging: String,
    /// Every run so far, in the order of their rows' arrival.
    runs: Vec<SortedRun>,
    /// Bytes the runs held in memory may take before the next ones are spilled.
    run_memory_bytes: usize,
    /// Bytes the runs held in memory take.
    held_bytes: usize,
    /// Rows handed over so far: the sequence number of the next buffer's first row.
    rows: u64,
    /// Every partition day of the batch's rows so far.
    days: BTreeSet<i32>,
    /// The run being sorted (and spilled) in the background while the next buffer fills (at
    /// most one, so memory holds at most two buffers).
    in_flight: Option<RunTask>,
}

/// The background task sorting (and spilling) a run: the distinct days of its rows, the run,
/// and the bytes it holds in memory (0 when spilled).
type RunTask = tokio::task::JoinHandle<Result<(Vec<i32>, SortedRun, usize)>>;

/// A day-sorted run of a batch's rows (with the sequence and day columns).
enum SortedRun {
    /// Held in memory, in batches of at most [`crate::runs::RUN_BATCH_ROWS`] rows.
    Held(Vec<RecordBatch>),
    /// Spilled to staging, at this path relative to the lake root.
    Spilled(String),
}

fn parquet_error(path: &str) -> impl Fn(parquet::errors::ParquetError) -> IngestError + '_ {
    move |source| IngestError::Parquet {
        path: path.to_string(),
        source,
    }
}

impl PartitionWriter {
    /// A writer of `table`'s rows of batch `batch_id`, staged under `staging`, holding runs in
    /// memory up to `run_memory_bytes` in all.
    pub fn new(
        lake: Lake,
        table: Table,
        batch_id: &str,
        staging: &str,
        run_memory_bytes: usize,
    ) -> Self {
        Self {
            lake,
            table,
            batch_id: batch_id.to_string(),
            staging: staging.to_string(),
            runs: Vec::new(),
            run_memory_bytes,
            held_bytes: 0,
            rows: 0,
            days: BTreeSet::new(),
            in_flight: None,
        }
    }

    /// Makes a full buffer a run, in the background: parsing goes on while the run is put in
    /// day order and, when the runs held would take more than the run memory with it, spilled
    /// to staging. Runs written to staging and read back once were a large ingest's most
    /// variable cost: 1.9 GB of 16.5M transactions went through the page cache twice.
    pub async fn add_run(&mut self, rows: HeldRows) -> Result<()> {
        self.wait_for_run().await?;
        let first_seq = self.rows;
        self.rows += rows.days.len() as u64;
        let rel = format!("{}/runs/run-{:05}.arrows", self.staging, self.runs.len());
        let room = self.run_memory_bytes.saturating_sub(self.held_bytes);
        let (lake, schema) = (self.lake.clone(), self.table.file_schema());
        self.in_flight = Some(tokio::spawn(async move {
            let run = RunBlocks::new(&schema, rows, first_seq)?;
            let days = run.days().to_vec();
            if run.memory_size() <= room {
                let (batches, bytes) = run.gathered()?;
                return Ok((days, SortedRun::Held(batches), bytes));
            }
            let run_schema = run.schema().clone();
            write_run(&lake, &rel, &run_schema, run.into_batches()).await?;
            Ok((days, SortedRun::Spilled(rel), 0))
        }));
        Ok(())
    }

    /// Runs spilled to staging so far, counting the one being made in the background (it is
    /// waited for: a count taken without it missed the batch's last run).
    pub async fn spilled_runs(&mut self) -> Result<usize> {
        self.wait_for_run().await?;
        Ok(self
            .runs
            .iter()
            .filter(|run| matches!(run, SortedRun::Spilled(_)))
            .count())
    }

    /// Waits for the run in the background, if any, and adds it to the runs.
    async fn wait_for_run(&mut self) -> Result<()> {
        if let Some(handle) = self.in_flight.take() {
            let (days, run, held_bytes) = join(handle).await?;
            self.days.extend(days);
            self.held_bytes += held_bytes;
            self.runs.push(run);
        }
        Ok(())
    }

    /// Merges the spilled runs and the last buffer into one staged file per date, leaving
    /// out later copies of a key within the batch and rows whose key the lake's partition of
    /// that date already holds. `keys` are the keys of every row handed over, in order.
    /// Returns the staged files and, per input file (in the order of `keys`), the rows left
    /// out.
    pub async fn finish(
        mut self,
        last: HeldRows,
        keys: BatchKeys,
    ) -> Result<(Vec<StagedFile>, Vec<u64>)> {
        // The later copies are found on another thread while the last runs are sorted.
        let finding = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            (keys.into_duplicates(), started.elapsed())
        });
        self.wait_for_run().await?;
        if !last.days.is_empty() {
            let run = RunBlocks::new(&self.table.file_schema(), last, self.rows)?;
            self.days.extend(run.days().iter().copied());
            self.runs.push(SortedRun::Held(run.gathered()?.0));
        }
        let (duplicates, took) = finding.await?;
        tracing::debug!(
            table = %self.table,
            later_copies = duplicates.per_file.iter().sum::<u64>(),
            duration_ms = took.as_millis() as u64,
            "later copies within the batch found"
        );
        let merging = std::time::Instant::now();
        let mut lake_keys = LakeKeyReads::start(&self.lake, self.table, &self.days).await?;
        let mut cursors = Vec::new();
        let mut spilled = Vec::new();
        for run in std::mem::take(&mut self.runs) {
            cursors.push(match run {
                SortedRun::Held(batches) => {
                    RunCursor::new(futures::stream::iter(batches.into_iter().map(Ok)).boxed())
                }
                SortedRun::Spilled(rel) => {
                    let cursor = RunCursor::new(read_run(&self.lake, &rel).await?);
                    spilled.push(rel);
                    cursor
                }
            });
        }
        let mut staged = Vec::new();
        let mut left_out = duplicates.per_file.clone();
        // Days are encoded, compressed and uploaded in background tasks, at most
        // `DAYS_WRITING` at a time, while the merge gathers the next day.
        let mut writing: std::collections::VecDeque<tokio::task::JoinHandle<Result<StagedFile>>> =
            Default::default();
        loop {
            let mut next_day: Option<i32> = None;
            for cursor in cursors.iter_mut() {
                if let Some(day) = cursor.current_day().await? {
                    next_day = Some(next_day.map_or(day, |d| d.min(day)));
                }
            }
            let Some(day) = next_day else { break };
            if writing.len() >= DAYS_WRITING {
                staged.push(join(writing.pop_front().expect("tasks in flight")).await?);
            }
            let known = DayDedup {
                lake_keys: lake_keys.keys_of(day).await?,
                duplicates: &duplicates,
            };
            if let Some(task) = self
                .write_day(day, &mut cursors, &known, &mut left_out)
                .await?
            {
                writing.push_back(task);
            }
        }
        for task in writing {
            staged.push(join(task).await?);
        }
        for rel in &spilled {
            self.lake.delete(&self.lake.path(rel)).await?;
        }
        tracing::debug!(
            table = %self.table,
            files = staged.len(),
            runs = cursors.len(),
            duration_ms = merging.elapsed().as_millis() as u64,
            "date partitions staged"
        );
        Ok((staged, left_out))
    }

    /// The partition folder of `day`, relative to the lake root.
    fn partition(&self, day: i32) -> Result<String> {
        // Days come from parsed dates, so they are always in chrono's range; an error rather
        // than a panic all the same.
        let date = Date32Type::to_naive_date_opt(day).ok_or_else(|| {
            IngestError::Arrow(arrow::error::ArrowError::ComputeError(format!(
                "partition day {day} is not a representable date"
            )))
        })?;
        Ok(format!(
            "{}/{}={}",
            self.table.name(),
            Table::DATE_PARTITION,
            date.format("%Y-%m-%d")
        ))
    }

    /// Gathers one day's rows from every run, without those the lake's partition holds, and
    /// starts writing its file (none when every row was already there). Days larger than a
    /// row group are written while they are gathered, so memory stays bounded.
    async fn write_day(
        &self,
        day: i32,
        cursors: &mut [RunCursor],
        known: &DayDedup<'_>,
        left_out: &mut [u64],
    ) -> Result<Option<tokio::task::JoinHandle<Result<StagedFile>>>> {
        let partition = self.partition(day)?;
        let file = format!("part-{}.parquet", self.batch_id);
        // Staged beside the other days rather than in a folder of its own: creating a folder
        // costs the file system far more than a file (on ext4 a new folder searches for a
        // free inode group), and a batch of two years has 730 days.
        let staged = format!("{}/{partition}.parquet", self.staging);
        let target = format!("{partition}/{file}");
        let mut writer = None;
        let mut gathered: Vec<RecordBatch> = Vec::new();
        let mut gathered_rows = 0usize;
        let mut rows = 0u64;
        for cursor in cursors.iter_mut() {
            while let Some(slice) = cursor.take_day(day).await? {
                let slice = known.new_rows(self.table, slice, left_out)?;
                if slice.num_rows() == 0 {
                    continue;
                }
                rows += slice.num_rows() as u64;
                gathered_rows += slice.num_rows();
                gathered.push(slice);
                if gathered_rows >= churn_core::lake::ROW_GROUP_ROWS {
                    let writer = match &mut writer {
                        Some(w) => w,
                        None => writer.insert(self.day_writer(&staged, gathered_rows)?),
                    };
                    for batch in gathered.drain(..) {
                        writer.write(&batch).await.map_err(parquet_error(&staged))?;
                    }
                    gathered_rows = 0;
                }
            }
        }
        if rows == 0 {
            return Ok(None);
        }
        let mut writer = match writer {
            Some(w) => w,
            None => self.day_writer(&staged, gathered_rows)?,
        };
        Ok(Some(tokio::spawn(async move {
            for batch in &gathered {
                writer.write(batch).await.map_err(parquet_error(&staged))?;
            }
            writer.close().await.map_err(parquet_error(&staged))?;
            Ok(StagedFile {
                staged,
                target,
                rows,
            })
        })))
    }

    /// The writer of a day's file; `rows` is the day's row count when all of it is gathered,
    /// or a lower bound (row-group size) when the day is larger.
    fn day_writer(&self, staged: &str, rows: usize) -> Result<LakeParquetWriter> {
        object_writer(
            self.lake.store().clone(),
            self.lake.path(staged),
            self.table.file_schema(),
            churn_core::lake::table_writer_properties(self.table, rows),
        )
        .map_err(parquet_error(staged))
    }
}

/// The dedup keys the lake holds in the partitions a batch writes to, read a few days ahead
/// of the merge, each day on its own task, so that reading them overlaps merging and writing.
struct LakeKeyReads {
    lake: Lake,
    table: Table,
    /// Days of the batch whose partition has files, with those files; reads not started.
    waiting: VecDeque<(i32, Vec<ObjectMeta>)>,
    started: VecDeque<(i32, tokio::task::JoinHandle<Result<KeySet>>)>,
}

impl LakeKeyReads {
    /// Finds the lake's files in the partitions of `days` and starts reading the first ones.
    /// The table is listed once rather than a folder per day: a first load of two years would
    /// otherwise list 730 folders that do not exist.
    async fn start(lake: &Lake, table: Table, days: &BTreeSet<i32>) -> Result<Self> {
        let mut by_day: BTreeMap<i32, Vec<ObjectMeta>> = BTreeMap::new();
        for meta in lake.list_parquet(table.name()).await? {
            if let Some(day) = Table::partition_date(&lake.relative(&meta.location))
                .map(Date32Type::from_naive_date)
                && days.contains(&day)
            {
                by_day.entry(day).or_default().push(meta);
            }
        }
        let mut reads = Self {
            lake: lake.clone(),
            table,
            waiting: by_day.into_iter().collect(),
            started: VecDeque::new(),
        };
        reads.start_reads();
        Ok(reads)
    }

    fn start_reads(&mut self) {
        while self.started.len() < KEY_READS_AHEAD
            && let Some((day, files)) = self.waiting.pop_front()
        {
            let (lake, table) = (self.lake.clone(), self.table);
            let read = tokio::spawn(async move { files_keys(&lake, table, &files).await });
            self.started.push_back((day, read));
        }
    }

    /// The keys of `day`'s partition (empty when the lake has none). Days must be asked for
    /// in increasing order, as the merge visits them.
    async fn keys_of(&mut self, day: i32) -> Result<KeySet> {
        if self.started.front().is_none_or(|(first, _)| *first != day) {
            return Ok(KeySet::default());
        }
        let (_, read) = self.started.pop_front().expect("checked above");
        self.start_reads();
        join(read).await
    }
}

impl Drop for LakeKeyReads {
    fn drop(&mut self) {
        for (_, read) in &self.started {
            read.abort();
        }
    }
}

/// What one date partition already holds, and the later copies of keys within the batch.
struct DayDedup<'a> {
    lake_keys: KeySet,
    duplicates: &'a Duplicates,
}

impl DayDedup<'_> {
    /// The rows of a run's `slice` that are neither a later copy within the batch nor in the
    /// lake's partition, in the table's columns. Rows found in the lake count as duplicates
    /// of the input file they came from (later copies are counted already).
    fn new_rows(
        &self,
        table: Table,
        slice: RecordBatch,
        left_out: &mut [u64],
    ) -> Result<RecordBatch> {
        let table_columns: Vec<usize> = (0..slice.num_columns() - 2).collect();
        let seqs = slice
            .column_by_name(SEQ_COLUMN)
            .expect("runs carry the sequence column")
            .as_primitive::<UInt64Type>()
            .values();
        let any_later_copy = seqs.iter().any(|s| self.duplicates.is_later_copy(*s));
        if self.lake_keys.is_empty() && !any_later_copy {
            return Ok(slice.project(&table_columns)?);
        }
        let keys = if self.lake_keys.is_empty() {
            None
        } else {
            Some(row_keys(table, &slice)?)
        };
        let keep: BooleanArray = seqs
            .iter()
            .enumerate()
            .map(|(i, &seq)| {
                if self.duplicates.is_later_copy(seq) {
                    return Some(false);
                }
                let in_lake = keys
                    .as_ref()
                    .is_some_and(|k| self.lake_keys.contains(&k[i]));
                if in_lake {
                    left_out[self.duplicates.file_of(seq)] += 1;
                }
                Some(!in_lake)
            })
            .collect();
        Ok(filter_record_batch(&slice, &keep)?.project(&table_columns)?)
    }
}

/// The distinct days of a day-sorted run, in order.
async fn join<T>(task: tokio::task::JoinHandle<Result<T>>) -> Result<T> {
    task.await?
}

/// Read position in one day-sorted run.
struct RunCursor {
    stream: BoxStream<'static, Result<RecordBatch>>,
    batch: Option<RecordBatch>,
    offset: usize,
}

impl RunCursor {
    fn new(stream: BoxStream<'static, Result<RecordBatch>>) -> Self {
        Self {
            // Asked for its next batch again after its end (the merge asks every run for its
            // next day until all are done).
            stream: stream.fuse().boxed(),
            batch: None,
            offset: 0,
        }
    }

    fn days(batch: &RecordBatch) -> &Int32Array {
        batch
            .column(batch.num_columns() - 1)
            .as_any()
            .downcast_ref::<Int32Array>()
            .expect("runs end with the day column")
    }

    /// Day of the next unread row, loading the next batch when needed.
    async fn current_day(&mut self) -> Result<Option<i32>> {
        loop {
            if let Some(batch) = &self.batch
                && self.offset < batch.num_rows()
            {
                return Ok(Some(Self::days(batch).value(self.offset)));
            }
            match self.stream.next().await {
                Some(batch) => {
                    self.batch = Some(batch?);
                    self.offset = 0;
                }
                None => {
                    self.batch = None;
                    return Ok(None);
                }
            }
        }
    }

    /// The next contiguous rows of `day` (with the run's columns), if any.
    async fn take_day(&mut self, day: i32) -> Result<Option<RecordBatch>> {
        if self.current_day().await? != Some(day) {
            return Ok(None);
        }
        let batch = self.batch.as_ref().expect("current_day loaded a batch");
        let days = Self::days(batch);
        let start = self.offset;
        let mut end = start;
        while end < days.len() && days.value(end) == day {
            end += 1;
        }
        self.offset = end;
        Ok(Some(batch.slice(start, end - start)))
    }
}
