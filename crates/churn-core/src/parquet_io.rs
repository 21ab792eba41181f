//! Reading and writing Parquet objects through any object store: an `AsyncFileReader` over
//! `ObjectStore` (ranged reads, footer by suffix) and writers on buffered multipart uploads.
//!
//! Why not parquet's `ParquetObjectReader` / `ParquetObjectWriter`: parquet 59.2 deprecated
//! both (apache/arrow-rs#10308) and asks users to implement `AsyncFileReader` themselves and
//! to hand an `object_store::buffered::BufWriter` to `AsyncArrowWriter` directly. This module
//! is that recommendation (the reader is the one in parquet's `examples/object_store.rs`),
//! kept in one place so that no crate reaches for the deprecated types.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, TryFutureExt};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use parquet::arrow::AsyncArrowWriter;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::{AsyncFileReader, MetadataSuffixFetch};
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;

fn to_parquet_err(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

/// A Parquet file in an object store, read by ranges.
#[derive(Clone, Debug)]
pub struct ObjectStoreReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
}

impl ObjectStoreReader {
    pub fn new(store: Arc<dyn ObjectStore>, path: Path) -> Self {
        Self { store, path }
    }
}

impl AsyncFileReader for ObjectStoreReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, Result<Bytes>> {
        self.store
            .get_range(&self.path, range)
            .map_err(to_parquet_err)
            .boxed()
    }

    fn get_byte_ranges(&mut self, ranges: Vec<Range<u64>>) -> BoxFuture<'_, Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(to_parquet_err)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, Result<Arc<ParquetMetaData>>> {
        async move {
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_via_suffix_and_finish(self)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

impl MetadataSuffixFetch for &mut ObjectStoreReader {
    fn fetch_suffix(&mut self, suffix: usize) -> BoxFuture<'_, Result<Bytes>> {
        let options = GetOptions {
            range: Some(GetRange::Suffix(suffix as u64)),
            ..Default::default()
        };
        async move {
            let result = self
                .store
                .get_opts(&self.path, options)
                .await
                .map_err(to_parquet_err)?;
            result.bytes().await.map_err(to_parquet_err)
        }
        .boxed()
    }
}

/// A Parquet writer that streams to an object (multipart upload on object stores) and stores
/// strings and binaries as plain arrays whatever kind its batches hold.
///
/// Why plain: a file records its Arrow schema, and a query's batches hold string views or
/// plain strings depending on its session (views without a memory limit, plain strings under
/// one). A table written by both kinds of run would mix the two, and DataFusion merges file
/// schemas before it turns strings into views, so it could not read that table without the
/// per-file path in `session::register_table`. Readers choose the kind they want on read.
pub struct LakeParquetWriter {
    inner: AsyncArrowWriter<BufWriter>,
    /// The schema written, when it differs from the batches' (they hold views).
    plain: Option<SchemaRef>,
}

impl LakeParquetWriter {
    /// Writes one batch, its views turned into plain arrays first.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match &self.plain {
            None => self.inner.write(batch).await,
            Some(plain) => {
                let columns = batch
                    .columns()
                    .iter()
                    .zip(plain.fields())
                    .map(|(column, field)| cast(column, field.data_type()))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                let batch = RecordBatch::try_new(plain.clone(), columns)?;
                self.inner.write(&batch).await
            }
        }
    }

    /// Writes the footer and completes the upload.
    pub async fn close(self) -> Result<()> {
        self.inner.close().await.map(|_| ())
    }
}

/// A Parquet writer for a lake file at `path`: see [`LakeParquetWriter`].
pub fn object_writer(
    store: Arc<dyn ObjectStore>,
    path: Path,
    schema: SchemaRef,
    properties: WriterProperties,
) -> Result<LakeParquetWriter> {
    let plain = Arc::new(with_string_kind(&schema, false));
    let plain = (plain != schema).then_some(plain);
    let written = plain.clone().unwrap_or(schema);
    let inner = AsyncArrowWriter::try_new(BufWriter::new(store, path), written, Some(properties))?;
    Ok(LakeParquetWriter { inner, plain })
}

/// `schema` with every string and binary column as views (`views`) or plain arrays.
pub(crate) fn with_string_kind(schema: &Schema, views: bool) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let kind = match f.data_type() {
                DataType::Utf8 | DataType::Utf8View if views => DataType::Utf8View,
                DataType::Utf8 | DataType::Utf8View => DataType::Utf8,
                DataType::Binary | DataType::BinaryView if views => DataType::BinaryView,
                DataType::Binary | DataType::BinaryView => DataType::Binary,
                other => other.clone(),
            };
            f.as_ref().clone().with_data_type(kind)
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, AsArray, Int64Array, StringViewArray};
    use arrow::datatypes::Int64Type;
    use object_store::memory::InMemory;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    #[tokio::test]
    async fn string_views_are_written_as_plain_strings_with_the_same_values() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let schema = Arc::new(Schema::new(vec![
            Field::new("customer_id", DataType::Utf8View, false),
            Field::new("orders", DataType::Int64, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringViewArray::from(vec![
                "c1",
                "a customer id longer than twelve",
            ])),
            Arc::new(Int64Array::from(vec![Some(3), None])),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let path = Path::from("t/part.parquet");
        let mut writer = object_writer(
            store.clone(),
            path.clone(),
            schema,
            WriterProperties::default(),
        )
        .unwrap();
        writer.write(&batch).await.unwrap();
        writer.close().await.unwrap();

        let bytes = store.get(&path).await.unwrap().bytes().await.unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
        assert_eq!(
            reader.schema().field(0).data_type(),
            &DataType::Utf8,
            "the file's Arrow schema records plain strings"
        );
        let read: Vec<RecordBatch> = reader.build().unwrap().map(|b| b.unwrap()).collect();
        let ids = read[0].column(0).as_string::<i32>();
        assert_eq!(
            (ids.value(0), ids.value(1)),
            ("c1", "a customer id longer than twelve")
        );
        assert_eq!(read[0].column(1).as_primitive::<Int64Type>().value(0), 3);
        assert!(read[0].column(1).is_null(1));
    }
}
