//! A DataFusion session that sees the whole lake: every folder of Parquet files becomes a
//! table, with its Hive partition folders (`date=…`, `as_of=…`, `batch=…`) as columns. The
//! `sql` command, feature building and reports all query the lake through this one place.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Schema};
use datafusion::datasource::file_format::options::ReadOptions;
use datafusion::datasource::listing::{ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::execution::cache::cache_manager::{
    CacheManagerConfig, CachedFileMetadataEntry, DEFAULT_METADATA_CACHE_LIMIT, FileMetadataCache,
};
use datafusion::execution::cache::default_cache::DefaultCache;
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::optimizer::{Optimizer, OptimizerRule};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};

use crate::engine::{Engine, context_on};
use crate::error::Result;
use crate::lake::Lake;
use crate::parquet_io::with_string_kind;

/// Resource limits of a lake session.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// Memory budget for query operators; beyond it, sorts and aggregations spill to disk.
    /// `None` means no limit.
    pub memory_limit_bytes: Option<usize>,
    /// Folder for spill files; the system temp folder when `None`.
    pub spill_dir: Option<std::path::PathBuf>,
    /// The most memory a process may hold the lake's contract tables in, to query them
    /// without opening their files again (`churn_features::held`); `None`: a quarter of
    /// `memory_limit_bytes`, or 1 GiB without a limit. `Some(0)` always scans the files.
    pub hold_tables_max_bytes: Option<u64>,
    /// Where the queries run: in this process (default) or on a Ballista cluster.
    pub engine: Engine,
}

impl SessionOptions {
    /// A memory budget (or none) and the system temp folder for spills.
    pub fn with_memory_limit(memory_limit_bytes: Option<usize>) -> SessionOptions {
        SessionOptions {
            memory_limit_bytes,
            ..SessionOptions::default()
        }
    }

    /// These options with `engine` as the query engine.
    pub fn on(self, engine: Engine) -> SessionOptions {
        SessionOptions { engine, ..self }
    }

    /// These options with the queries in this process, for steps that only run there (they
    /// query tables held in memory, or were not made to run distributed).
    pub fn in_process(&self) -> SessionOptions {
        self.clone().on(Engine::InProcess)
    }
}

/// A table found in the lake: its SQL name, folder and partition columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeTable {
    pub name: String,
    pub folder: String,
    pub partition_columns: Vec<String>,
}

/// Type of a Hive partition column: dates for `date` and `as_of`, text otherwise.
fn partition_type(column: &str) -> DataType {
    match column {
        "date" | "as_of" => DataType::Date32,
        _ => DataType::Utf8,
    }
}

/// Finds every table in the lake. A table is a folder of Parquet files, possibly below
/// `key=value` partition folders; its SQL name is the folder path joined with `_`
/// (`quarantine/transactions` → `quarantine_transactions`). Folders starting with `_` or `.`
/// (staging, run manifests, models) are not tables.
pub async fn discover_tables(lake: &Lake) -> Result<Vec<LakeTable>> {
    let mut tables: BTreeMap<String, LakeTable> = BTreeMap::new();
    for meta in lake.list_parquet("").await? {
        let rel = lake.relative(&meta.location);
        let parts: Vec<&str> = rel.split('/').collect();
        let dirs = &parts[..parts.len().saturating_sub(1)];
        if dirs.is_empty()
            || dirs
                .iter()
                .any(|d| d.starts_with('_') || d.starts_with('.'))
        {
            continue;
        }
        let split = dirs
            .iter()
            .position(|d| d.contains('='))
            .unwrap_or(dirs.len());
        if split == 0 {
            continue;
        }
        let folder = dirs[..split].join("/");
        let partition_columns: Vec<String> = dirs[split..]
            .iter()
            .filter_map(|d| d.split_once('=').map(|(k, _)| k.to_string()))
            .collect();
        tables.entry(folder.clone()).or_insert_with(|| LakeTable {
            name: dirs[..split].join("_"),
            folder,
            partition_columns,
        });
    }
    Ok(tables.into_values().collect())
}

/// The Parquet footers the sessions of this process have read, per lake store, for the next
/// session. Each step opens a new session over the same lake files, and registering a table
/// reads the footer of every file of it (730 for two years of daily partitions); so do scans.
/// An entry is used only while the file's size and modification time are those it was read
/// at, and the lake never rewrites a file in place. At most DataFusion's default 50 MiB per
/// store, the least recently used entries going first.
static PARQUET_FOOTERS: LazyLock<std::sync::Mutex<BTreeMap<String, Arc<FileMetadataCache>>>> =
    LazyLock::new(Default::default);

/// The footer cache of the store at `url` (paths are only unique within a store).
fn parquet_footers(url: &url::Url) -> Arc<FileMetadataCache> {
    let mut caches = PARQUET_FOOTERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    caches
        .entry(url.to_string())
        .or_insert_with(|| {
            Arc::new(
                DefaultCache::<object_store::path::Path, CachedFileMetadataEntry>::new(
                    DEFAULT_METADATA_CACHE_LIMIT,
                )
                .with_name("lake footers"),
            )
        })
        .clone()
}

/// Rows per batch of a session that scans a lake's files without a memory budget (see
/// [`use_scan_batches`]). DataFusion's default is 8,192; every operator pays per batch, and the
/// per-customer groupings of the feature files over 16.5M transactions (a 1M-customer store)
/// did 7 % less work with 32k-row batches: a snapshot 10.35-10.45 s instead of 10.97-11.83 s
/// (16k: 10.39-10.61 s), 17 instead of 18-20 CPU-seconds, at 830-900 MB peak instead of
/// 800-815 MB.
pub const SCAN_BATCH_ROWS: usize = 32 * 1024;

/// Memory budget per row of a batch in a session with a budget (see [`budget_batch_rows`]).
const BUDGET_BYTES_PER_BATCH_ROW: usize = 64 * 1024;

/// The fewest rows per batch of a session with a memory budget.
const MIN_BUDGET_BATCH_ROWS: usize = 1024;

/// Rows per batch of a session with a memory budget of `limit_bytes`: one row for every
/// 64 KiB of the budget, at least [`MIN_BUDGET_BATCH_ROWS`] and at most [`SCAN_BATCH_ROWS`]
/// (so 1,024 up to 64 MiB, 4,096 at 256 MiB, 32,768 from 2 GiB). Small batches lower the
/// least memory each of the many operators must hold before it can spill (the budget is
/// shared fairly between them), which a small budget needs; a large one does not, and every
/// operator pays per batch. A 1M-customer store's feature snapshot (release builds
/// alternating) took 23.1-23.9 s with 1,024-row batches under an 8 GiB budget and 13.2-13.4 s
/// with 32,768 (8,192: 14.6 s; 10.6 s without a budget); under 256 MiB 25.9-26.8 s with 1,024
/// and 19.7-20.8 s with 4,096 rows, at 384-393 and 422-449 MB peak.
pub fn budget_batch_rows(limit_bytes: usize) -> usize {
    (limit_bytes / BUDGET_BYTES_PER_BATCH_ROW).clamp(MIN_BUDGET_BATCH_ROWS, SCAN_BATCH_ROWS)
}

/// Sets `ctx`, a session made with `options` that scans the lake's files rather than tables
/// held in memory (so a large lake), to batches of [`SCAN_BATCH_ROWS`] rows for its next
/// queries, unless `options` set a memory budget (its sessions keep the batches that fit the
/// budget, see [`budget_batch_rows`]). Small lakes keep DataFusion's default: with 32k-row
/// batches for every session the demo took 2-3 % longer (dev build, six runs each alternately).
pub fn use_scan_batches(ctx: &SessionContext, options: &SessionOptions) {
    if options.memory_limit_bytes.is_some() {
        return;
    }
    let state = ctx.state_ref();
    let mut state = state.write();
    let config = state.config_mut();
    *config = config.clone().with_batch_size(SCAN_BATCH_ROWS);
}

/// A session with the lake's object store registered and no tables yet, whose queries run on
/// `options.engine`.
pub async fn new_session(lake: &Lake, options: &SessionOptions) -> Result<SessionContext> {
    let footers = parquet_footers(&lake.object_store_url());
    let mut runtime = RuntimeEnvBuilder::new()
        .with_cache_manager(CacheManagerConfig::default().with_file_metadata_cache(Some(footers)));
    if let Some(bytes) = options.memory_limit_bytes {
        // Tracking names the biggest consumers when the budget is exceeded.
        let pool = TrackConsumersPool::new(
            FairSpillPool::new(bytes),
            std::num::NonZeroUsize::new(5).expect("non-zero"),
        );
        runtime = runtime.with_memory_pool(Arc::new(pool));
    }
    if let Some(dir) = &options.spill_dir {
        runtime = runtime.with_temp_file_path(dir);
    }
    let runtime = runtime.build_arc()?;
    let mut config = SessionConfig::new().with_information_schema(true);
    if let Some(limit) = options.memory_limit_bytes {
        // Hash joins cannot spill; sort-merge joins can, so a memory budget needs them. Batches
        // sized to the budget and smaller merge reservations lower the least memory each of
        // the many operators must hold before it can spill (the budget is shared fairly
        // between them).
        config = config.with_batch_size(budget_batch_rows(limit));
        let optimizer = &mut config.options_mut().optimizer;
        optimizer.prefer_hash_join = false;
        let execution = &mut config.options_mut().execution;
        execution.sort_spill_reservation_bytes =
            execution.sort_spill_reservation_bytes.min(limit / 64);
    }
    // Text is read as plain strings, not string views. A view shares its whole read buffer, so
    // every batch a join passes on carries (and accounts for) each buffer it points into: a
    // join of 1M customers with their segments and scores was stopped after 20 CPU-minutes
    // with views and takes 10 s without, and under a memory budget a small batch could account
    // for megabytes. Feature snapshots and the demo measured the same speed either way.
    config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
    runtime.register_object_store(&lake.object_store_url(), lake.committed_store().clone());
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .with_optimizer_rules(optimizer_rules())
        .build();
    let state = crate::sql_functions::with_churn_functions(state)?;
    context_on(&options.engine, state).await
}

/// DataFusion's logical optimizer rules with churn's: [`InlineConstantRow`] first, so that in
/// each pass it runs before the filters are pushed down, and [`GroupedCountDistinctText`]
/// last, so that DataFusion's own rewrite of a grouping whose only aggregates count one
/// column's distinct values (into a grouping by that column) comes first.
///
/// [`InlineConstantRow`]: crate::constant_row::InlineConstantRow
/// [`GroupedCountDistinctText`]: crate::count_distinct_text::GroupedCountDistinctText
pub fn optimizer_rules() -> Vec<Arc<dyn OptimizerRule + Send + Sync>> {
    let mut rules: Vec<Arc<dyn OptimizerRule + Send + Sync>> =
        vec![Arc::new(crate::constant_row::InlineConstantRow)];
    rules.extend(Optimizer::new().rules);
    rules.push(Arc::new(
        crate::count_distinct_text::GroupedCountDistinctText,
    ));
    rules
}

/// Registers one lake table in a session.
pub async fn register_table(ctx: &SessionContext, lake: &Lake, table: &LakeTable) -> Result<()> {
    let partitions = table
        .partition_columns
        .iter()
        .map(|c| (c.clone(), partition_type(c)))
        .collect();
    let options = ParquetReadOptions::default().table_partition_cols(partitions);
    let url = lake.folder_url(&table.folder);
    match ctx
        .register_parquet(&table.name, &url, options.clone())
        .await
    {
        Err(e) if e.to_string().contains("Fail to merge schema field") => {
            register_mixed_string_types(ctx, lake, table, options).await
        }
        registered => Ok(registered?),
    }
}

/// Registers a table whose files disagree on string types. Churn writes plain strings
/// whatever its session read (`parquet_io::object_writer`), but lakes written before that
/// recorded string views from runs without a memory budget and plain strings from runs under
/// one; DataFusion merges file schemas before it turns strings into views, and fails on such
/// a table. Here each file's schema is read on its own, its strings made the session's kind,
/// and the merged schema given explicitly: the scan casts each file's columns to it.
async fn register_mixed_string_types(
    ctx: &SessionContext,
    lake: &Lake,
    table: &LakeTable,
    options: ParquetReadOptions<'_>,
) -> Result<()> {
    let state = ctx.state();
    let views = state
        .config_options()
        .execution
        .parquet
        .schema_force_view_types;
    let listing = options.to_listing_options(&ctx.copied_config(), ctx.copied_table_options());
    let mut schemas = Vec::new();
    for file in lake.list_parquet(&table.folder).await? {
        let file_url = format!("{}{}", lake.root_url(), lake.relative(&file.location));
        let schema = listing
            .infer_schema(&state, &ListingTableUrl::parse(&file_url)?)
            .await?;
        schemas.push(with_string_kind(&schema, views));
    }
    let merged = Schema::try_merge(schemas).map_err(datafusion::error::DataFusionError::from)?;
    let config = ListingTableConfig::new(ListingTableUrl::parse(lake.folder_url(&table.folder))?)
        .with_listing_options(listing)
        .with_schema(Arc::new(merged));
    ctx.register_table(&table.name, Arc::new(ListingTable::try_new(config)?))?;
    Ok(())
}

/// A session with every lake table registered.
pub async fn lake_session(
    lake: &Lake,
    options: &SessionOptions,
) -> Result<(SessionContext, Vec<LakeTable>)> {
    let ctx = new_session(lake, options).await?;
    let tables = discover_tables(lake).await?;
    for table in &tables {
        register_table(&ctx, lake, table).await?;
    }
    Ok((ctx, tables))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray, StringViewArray};
    use arrow::datatypes::Field;
    use object_store::buffered::BufWriter;
    use parquet::arrow::AsyncArrowWriter;

    /// Writes one Parquet file holding `ids` with the Arrow schema the array implies, past
    /// the lake's writer (which would make views plain), as older churn versions did.
    async fn write_ids_as_they_are(lake: &Lake, rel: &str, ids: ArrayRef) {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "customer_id",
            ids.data_type().clone(),
            false,
        )]));
        let batch = RecordBatch::try_new(schema.clone(), vec![ids]).unwrap();
        let upload = BufWriter::new(lake.store().clone(), lake.path(rel));
        let mut writer = AsyncArrowWriter::try_new(upload, schema, None).unwrap();
        writer.write(&batch).await.unwrap();
        writer.close().await.unwrap();
    }

    async fn customer_ids(lake: &Lake, table: &LakeTable, options: &SessionOptions) -> Vec<String> {
        let ctx = new_session(lake, options).await.unwrap();
        register_table(&ctx, lake, table).await.unwrap();
        let batches = ctx
            .sql("select arrow_cast(customer_id, 'Utf8') from customers order by 1")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        batches
            .iter()
            .flat_map(|b| b.column(0).as_string::<i32>().iter().flatten())
            .map(str::to_string)
            .collect()
    }

    #[tokio::test]
    async fn a_memory_budget_gives_batches_of_a_row_per_64_kib_between_1024_and_32768_rows() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
        const MIB: usize = 1 << 20;
        for (limit, rows) in [
            (MIB, 1024),
            (64 * MIB, 1024),
            (100 * MIB, 1600),
            (256 * MIB, 4096),
            (1024 * MIB, 16384),
            (2048 * MIB, 32768),
            (8192 * MIB, 32768),
        ] {
            let options = SessionOptions::with_memory_limit(Some(limit));
            let ctx = new_session(&lake, &options).await.unwrap();
            assert_eq!(ctx.state().config().batch_size(), rows, "{limit} bytes");
            // A scan of a large lake keeps the budget's batches.
            use_scan_batches(&ctx, &options);
            assert_eq!(ctx.state().config().batch_size(), rows, "{limit} bytes");
        }
        let unlimited = new_session(&lake, &SessionOptions::default())
            .await
            .unwrap();
        assert_eq!(unlimited.state().config().batch_size(), 8192);
        use_scan_batches(&unlimited, &SessionOptions::default());
        assert_eq!(unlimited.state().config().batch_size(), SCAN_BATCH_ROWS);
    }

    #[tokio::test]
    async fn footers_are_kept_for_the_next_session_and_a_file_written_again_is_read_again() {
        let lake = Lake::open("memory://session-footers/lake").unwrap();
        let table = LakeTable {
            name: "customers".to_string(),
            folder: "customers".to_string(),
            partition_columns: Vec::new(),
        };
        let rel = "customers/part-1.parquet";
        write_ids_as_they_are(&lake, rel, Arc::new(StringArray::from(vec!["a", "b"]))).await;
        assert_eq!(
            customer_ids(&lake, &table, &SessionOptions::default()).await,
            ["a", "b"]
        );
        let footers = parquet_footers(&lake.object_store_url());
        assert!(footers.contains_key(&lake.path(rel)));
        // Same path, other rows (and another size and time): the kept footer no longer fits.
        write_ids_as_they_are(&lake, rel, Arc::new(StringArray::from(vec!["c", "d", "e"]))).await;
        assert_eq!(
            customer_ids(&lake, &table, &SessionOptions::default()).await,
            ["c", "d", "e"]
        );
        // Another store's cache is its own.
        let other = Lake::open("memory://session-footers-other/lake").unwrap();
        assert!(!parquet_footers(&other.object_store_url()).contains_key(&lake.path(rel)));
    }

    #[tokio::test]
    async fn a_table_whose_files_mix_string_views_and_plain_strings_reads_every_row() {
        let lake = Lake::open("memory://session-mixed-strings/lake").unwrap();
        let views: ArrayRef = Arc::new(StringViewArray::from(vec!["a", "b"]));
        let plain: ArrayRef = Arc::new(StringArray::from(vec!["c"]));
        write_ids_as_they_are(&lake, "customers/part-views.parquet", views).await;
        write_ids_as_they_are(&lake, "customers/part-plain.parquet", plain).await;
        let table = LakeTable {
            name: "customers".to_string(),
            folder: "customers".to_string(),
            partition_columns: Vec::new(),
        };
        for limit in [None, Some(64 << 20)] {
            let options = SessionOptions::with_memory_limit(limit);
            let ids = customer_ids(&lake, &table, &options).await;
            assert_eq!(ids, ["a", "b", "c"], "memory limit {limit:?}");
        }
    }
}
