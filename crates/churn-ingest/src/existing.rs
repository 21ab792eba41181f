//! What the lake already holds: dedup keys of existing rows, and a table file's batches as a
//! stream (the customers upsert filters the current table through it).

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::TimestampMicrosecondType;
use churn_core::parquet_io::ObjectStoreReader;
use churn_core::{Lake, Table};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectMeta;
use object_store::path::Path;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};

use crate::error::{IngestError, Result};
use crate::rows::dedup_key;

/// Keys are already uniform 128-bit hashes, so the set uses their low bits directly.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes.iter().take(8) {
            self.0 = (self.0 << 8) | *b as u64;
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

pub type KeySet = HashSet<u128, BuildHasherDefault<KeyHasher>>;

/// The record batches of one lake file (selected columns, or all), read as they are
/// consumed: callers keep what they derive from each batch, never the whole table.
pub async fn file_batches(
    lake: &Lake,
    location: &Path,
    columns: Option<&[&str]>,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    let display = lake.relative(location);
    let err = |source| IngestError::Parquet {
        path: display.clone(),
        source,
    };
    let reader = ObjectStoreReader::new(lake.store().clone(), location.clone());
    let mut builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(err)?;
    if let Some(columns) = columns {
        let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
        builder = builder.with_projection(mask);
    }
    let stream = builder.build().map_err(err)?;
    Ok(stream
        .map_err(move |source| IngestError::Parquet {
            path: display.clone(),
            source,
        })
        .boxed())
}

/// The columns a table's dedup key is made of, in the order [`row_keys`] reads them.
fn key_columns(table: Table) -> &'static [&'static str] {
    match table {
        Table::Transactions => &["transaction_id"],
        Table::CampaignEvents => &["customer_id", "campaign_id", "ts", "event"],
        Table::Customers => &["customer_id"],
    }
}

/// The dedup key of every row of `batch` (which has at least the table's key columns, found
/// by name).
pub fn row_keys(table: Table, batch: &RecordBatch) -> Result<Vec<u128>> {
    let col = |name: &str| -> Result<&arrow::array::ArrayRef> {
        let index = batch.schema().index_of(name)?;
        Ok(batch.column(index))
    };
    Ok(match table {
        Table::Transactions | Table::Customers => {
            let ids = col(key_columns(table)[0])?.as_string::<i32>();
            ids.iter()
                .map(|id| dedup_key(table, id.unwrap_or(""), "", 0, ""))
                .collect()
        }
        Table::CampaignEvents => {
            let (customers, campaigns, events) = (
                col("customer_id")?.as_string::<i32>(),
                col("campaign_id")?.as_string::<i32>(),
                col("event")?.as_string::<i32>(),
            );
            let ts = col("ts")?.as_primitive::<TimestampMicrosecondType>();
            (0..batch.num_rows())
                .map(|i| {
                    dedup_key(
                        table,
                        customers.value(i),
                        campaigns.value(i),
                        ts.value(i),
                        events.value(i),
                    )
                })
                .collect()
        }
    })
}

/// Dedup keys of the rows of `files` (one date partition's files, e.g. those of
/// `transactions/date=2026-05-01`). Ingest checks a batch against the partitions it writes to
/// only, so memory and time follow the batch, not the lake. Each file's keys are hashed as its
/// batches arrive: memory holds the 16-byte keys and one batch.
pub async fn files_keys(lake: &Lake, table: Table, files: &[ObjectMeta]) -> Result<KeySet> {
    let mut keys = KeySet::default();
    for meta in files {
        let mut batches = file_batches(lake, &meta.location, Some(key_columns(table))).await?;
        while let Some(batch) = batches.try_next().await? {
            keys.extend(row_keys(table, &batch)?);
        }
    }
    Ok(keys)
}
