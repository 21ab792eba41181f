//! Spilled runs as Arrow IPC streams. A run is written once and read once, a moment later,
//! by the same process: Parquet's encoding (dictionaries, pages, statistics) bought nothing
//! there and took most of the spilling thread's time, which parsing then waited for. IPC
//! writes the arrays' buffers as they are.

use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::ipc::reader::StreamDecoder;
use arrow::ipc::writer::StreamWriter;
use churn_core::Lake;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::ObjectStoreExt;
use object_store::buffered::BufWriter;
use tokio::io::AsyncWriteExt;

use crate::error::{IngestError, Result};

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

/// Writes `sorted` to the lake at `rel` (relative to its root) in messages of
/// [`RUN_BATCH_ROWS`] rows.
pub async fn write_run(lake: &Lake, rel: &str, sorted: &RecordBatch) -> Result<()> {
    let mut upload = BufWriter::new(lake.store().clone(), lake.path(rel));
    let mut writer = StreamWriter::try_new(Vec::new(), &sorted.schema()).map_err(run_error(rel))?;
    let mut offset = 0;
    while offset < sorted.num_rows() {
        let rows = RUN_BATCH_ROWS.min(sorted.num_rows() - offset);
        writer
            .write(&sorted.slice(offset, rows))
            .map_err(run_error(rel))?;
        offset += rows;
        upload
            .write_all(writer.get_mut())
            .await
            .map_err(run_error(rel))?;
        writer.get_mut().clear();
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

    use arrow::array::{Int32Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use futures::TryStreamExt;

    use super::*;

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
        write_run(&lake, "_staging/x/runs/run-00000.arrow", &written)
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
