//! Writing accepted rows into Hive date partitions with bounded memory. Rows arrive in any
//! order (a backfill export is often sorted by customer, not by day). Each full buffer is
//! sorted by day and spilled to staging as a "run"; at the end the runs are merged day by day,
//! so that every date partition receives one file per ingest batch however large the input,
//! and memory holds one buffer plus one row group per run.

use std::sync::Arc;

use arrow::array::{Array, Int32Array, RecordBatch};
use arrow::compute::{SortOptions, sort_to_indices, take_record_batch};
use arrow::datatypes::{DataType, Field, Schema};
use churn_core::parquet_io::{ObjectStoreReader, object_writer};
use churn_core::{Lake, Table};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::error::{IngestError, Result};
use crate::value::date_from_days;

const DAY_COLUMN: &str = "__day";
const RUN_ROW_GROUP_ROWS: usize = 64 * 1024;

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
    runs: Vec<String>,
}

fn parquet_error(path: &str) -> impl Fn(parquet::errors::ParquetError) -> IngestError + '_ {
    move |source| IngestError::Parquet {
        path: path.to_string(),
        source,
    }
}

impl PartitionWriter {
    pub fn new(lake: Lake, table: Table, batch_id: &str, staging: &str) -> Self {
        Self {
            lake,
            table,
            batch_id: batch_id.to_string(),
            staging: staging.to_string(),
            runs: Vec::new(),
        }
    }

    /// The batch with a day column appended, sorted by day (stable, so file order is kept
    /// within a day).
    fn sorted_by_day(batch: &RecordBatch, days: Vec<i32>) -> Result<RecordBatch> {
        let days = Int32Array::from(days);
        let order = sort_to_indices(
            &days,
            Some(SortOptions {
                descending: false,
                nulls_first: false,
            }),
            None,
        )?;
        let mut fields: Vec<Arc<Field>> = batch.schema().fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new(DAY_COLUMN, DataType::Int32, false)));
        let mut columns = batch.columns().to_vec();
        columns.push(Arc::new(days));
        let with_day = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        Ok(take_record_batch(&with_day, &order)?)
    }

    /// Sorts a full buffer by day and spills it to staging.
    pub async fn spill(&mut self, batch: &RecordBatch, days: Vec<i32>) -> Result<()> {
        let sorted = Self::sorted_by_day(batch, days)?;
        let rel = format!("{}/runs/run-{:05}.parquet", self.staging, self.runs.len());
        let path = self.lake.path(&rel);
        let props = WriterProperties::builder()
            .set_compression(Compression::UNCOMPRESSED)
            .set_max_row_group_row_count(Some(RUN_ROW_GROUP_ROWS))
            .build();
        let mut writer = object_writer(self.lake.store().clone(), path, sorted.schema(), props)
            .map_err(parquet_error(&rel))?;
        writer.write(&sorted).await.map_err(parquet_error(&rel))?;
        writer.close().await.map_err(parquet_error(&rel))?;
        self.runs.push(rel);
        Ok(())
    }

    /// Merges the spilled runs and the last buffer into one staged file per date.
    pub async fn finish(self, last: RecordBatch, last_days: Vec<i32>) -> Result<Vec<StagedFile>> {
        let mut cursors = Vec::new();
        for rel in &self.runs {
            let reader = ObjectStoreReader::new(self.lake.store().clone(), self.lake.path(rel));
            let stream = ParquetRecordBatchStreamBuilder::new(reader)
                .await
                .map_err(parquet_error(rel))?
                .with_batch_size(RUN_ROW_GROUP_ROWS)
                .build()
                .map_err(parquet_error(rel))?;
            let rel = rel.clone();
            cursors.push(RunCursor::new(
                stream
                    .map_err(move |e| IngestError::Parquet {
                        path: rel.clone(),
                        source: e,
                    })
                    .boxed(),
            ));
        }
        if last.num_rows() > 0 {
            let sorted = Self::sorted_by_day(&last, last_days)?;
            cursors.push(RunCursor::new(futures::stream::iter([Ok(sorted)]).boxed()));
        }
        let mut staged = Vec::new();
        loop {
            let mut next_day: Option<i32> = None;
            for cursor in cursors.iter_mut() {
                if let Some(day) = cursor.current_day().await? {
                    next_day = Some(next_day.map_or(day, |d| d.min(day)));
                }
            }
            let Some(day) = next_day else { break };
            staged.push(self.write_day(day, &mut cursors).await?);
        }
        for rel in &self.runs {
            self.lake.delete(&self.lake.path(rel)).await?;
        }
        Ok(staged)
    }

    async fn write_day(&self, day: i32, cursors: &mut [RunCursor]) -> Result<StagedFile> {
        let partition = format!(
            "{}/{}={}",
            self.table.name(),
            Table::DATE_PARTITION,
            date_from_days(day).format("%Y-%m-%d")
        );
        let file = format!("part-{}.parquet", self.batch_id);
        let staged = format!("{}/{partition}/{file}", self.staging);
        let target = format!("{partition}/{file}");
        let mut writer = object_writer(
            self.lake.store().clone(),
            self.lake.path(&staged),
            self.table.file_schema(),
            churn_core::lake::writer_properties(),
        )
        .map_err(parquet_error(&staged))?;
        let mut rows = 0u64;
        for cursor in cursors.iter_mut() {
            while let Some(slice) = cursor.take_day(day).await? {
                rows += slice.num_rows() as u64;
                writer.write(&slice).await.map_err(parquet_error(&staged))?;
            }
        }
        writer.close().await.map_err(parquet_error(&staged))?;
        Ok(StagedFile {
            staged,
            target,
            rows,
        })
    }
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
            stream,
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

    /// The next contiguous rows of `day` (without the day column), if any.
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
        let slice = batch.slice(start, end - start);
        Ok(Some(slice.project(
            &(0..slice.num_columns() - 1).collect::<Vec<_>>(),
        )?))
    }
}
