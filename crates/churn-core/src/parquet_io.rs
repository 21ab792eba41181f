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

use arrow::datatypes::SchemaRef;
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

/// A Parquet writer that streams to an object (multipart upload on object stores).
pub fn object_writer(
    store: Arc<dyn ObjectStore>,
    path: Path,
    schema: SchemaRef,
    properties: WriterProperties,
) -> Result<AsyncArrowWriter<BufWriter>> {
    AsyncArrowWriter::try_new(BufWriter::new(store, path), schema, Some(properties))
}
