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

/// Dedup keys of every row the lake holds for a date-partitioned table. Each batch's keys
/// are hashed as it arrives, so memory holds the 16-byte keys and one batch, as the README
/// promises, not the lake's ids.
pub async fn existing_keys(lake: &Lake, table: Table) -> Result<KeySet> {
    let mut keys = KeySet::default();
    let columns: &[&str] = match table {
        Table::Transactions => &["transaction_id"],
        Table::CampaignEvents => &["customer_id", "campaign_id", "ts", "event"],
        Table::Customers => return Ok(keys),
    };
    for meta in lake.list_parquet(table.name()).await? {
        let mut batches = file_batches(lake, &meta.location, Some(columns)).await?;
        while let Some(batch) = batches.try_next().await? {
            match table {
                Table::Transactions => {
                    let ids = batch.column(0).as_string::<i32>();
                    keys.extend(
                        ids.iter()
                            .map(|id| dedup_key(table, id.unwrap_or(""), "", 0, "")),
                    );
                }
                _ => {
                    let col = |name: &str| {
                        batch.column(batch.schema().index_of(name).expect("projected column"))
                    };
                    let (customers, campaigns, events) = (
                        col("customer_id").as_string::<i32>(),
                        col("campaign_id").as_string::<i32>(),
                        col("event").as_string::<i32>(),
                    );
                    let ts = col("ts").as_primitive::<TimestampMicrosecondType>();
                    for i in 0..batch.num_rows() {
                        keys.insert(dedup_key(
                            table,
                            customers.value(i),
                            campaigns.value(i),
                            ts.value(i),
                            events.value(i),
                        ));
                    }
                }
            }
        }
    }
    Ok(keys)
}
