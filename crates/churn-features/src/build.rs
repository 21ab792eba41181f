//! Building feature snapshots: run every feature file against the point-in-time view of the
//! lake, join them onto the population, check the one-row-per-customer grain on the joined
//! result and write the snapshot.

use std::collections::HashMap;
use std::time::Instant;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use chrono::NaiveDate;
use churn_core::Lake;
use churn_core::engine::Engine;
use churn_core::session::SessionOptions;
use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::btyd_input::{BtydInput, Grain, Method, btyd_inputs_in};
use crate::error::{FeatureError, Result};
use crate::history::EventHistory;
use crate::snapshot::{
    Scope, hold_population, hold_view, register_empty_tables, register_snapshot_views,
    snapshot_session,
};
use crate::sqlfile::FeatureFile;
use crate::write::{PartitionManifest, job_id, stage_partition, write_parquet};

/// How to build features.
#[derive(Debug, Clone)]
pub struct FeatureOptions {
    /// Population window in days (default 365).
    pub lookback_days: u32,
    pub session: SessionOptions,
    pub files: Vec<FeatureFile>,
}

/// One written snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotSummary {
    pub as_of: String,
    pub customers: u64,
    pub columns: usize,
    pub files_used: Vec<String>,
    /// Files skipped because a table they require is not in the lake, with the reason.
    pub files_skipped: Vec<String>,
    pub output: String,
    pub duration_ms: u64,
}

/// What `churn features` did (and what `churn features --json` prints, read back by the
/// benchmarks).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeaturesSummary {
    pub kind: String,
    pub lake: String,
    pub snapshots: Vec<SnapshotSummary>,
    pub duration_ms: u64,
}

/// An entry of the feature catalogue.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogueEntry {
    pub name: String,
    pub data_type: String,
    pub description: String,
    pub source: String,
}

async fn scalar_i64(ctx: &SessionContext, sql: &str) -> Result<i64> {
    Ok(first_i64(&ctx.sql(sql).await?.collect().await?, 0))
}

/// Rows and rows without a customer id of the materialised feature file `view`: answered from
/// its Parquet statistics, without a scan.
async fn rows_and_missing_ids(ctx: &SessionContext, view: &str) -> Result<(i64, i64)> {
    two_counts(
        ctx,
        &format!("SELECT count(*), count(*) - count(customer_id) FROM {view}"),
    )
    .await
}

/// Rows and distinct customer ids of the materialised feature file `view` among the
/// population's customers (a scan).
async fn population_rows_and_distinct_ids(ctx: &SessionContext, view: &str) -> Result<(i64, i64)> {
    two_counts(
        ctx,
        &format!(
            "SELECT count(*), count(DISTINCT customer_id) FROM {view} \
             WHERE customer_id IN (SELECT customer_id FROM population)"
        ),
    )
    .await
}

/// The two integers of the one-row result of `sql`.
async fn two_counts(ctx: &SessionContext, sql: &str) -> Result<(i64, i64)> {
    let counts = ctx.sql(sql).await?.collect().await?;
    Ok((first_i64(&counts, 0), first_i64(&counts, 1)))
}

/// The value of `column` in the first row of a one-row query result of integers.
fn first_i64(batches: &[RecordBatch], column: usize) -> i64 {
    batches
        .first()
        .map_or(0, |b| b.column(column).as_primitive::<Int64Type>().value(0))
}

/// Plans every usable file and registers it as `feature_<name>`; returns the output columns
/// per file in order, and the files skipped.
async fn register_feature_views(
    ctx: &SessionContext,
    files: &[FeatureFile],
    present: &[churn_core::Table],
) -> Result<(Vec<(String, Vec<String>)>, Vec<String>)> {
    let mut owner: HashMap<String, String> =
        [("customer_id", "the snapshot"), ("as_of", "the snapshot")]
            .into_iter()
            .map(|(c, f)| (c.to_string(), f.to_string()))
            .collect();
    let mut used = Vec::new();
    let mut skipped = Vec::new();
    for file in files {
        let missing: Vec<&String> = file
            .requires
            .iter()
            .filter(|t| !present.iter().any(|p| p.name() == t.as_str()))
            .collect();
        if !missing.is_empty() {
            skipped.push(format!(
                "{} (needs {:?}, not in the lake)",
                file.origin, missing
            ));
            continue;
        }
        let df = ctx
            .sql(&file.sql)
            .await
            .map_err(|source| query_error(&file.origin, source))?;
        let names: Vec<String> = df
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        if !names.iter().any(|n| n == "customer_id") {
            return Err(FeatureError::InvalidFile {
                file: file.origin.clone(),
                problem: format!("the result has no customer_id column (columns: {names:?})"),
            });
        }
        let mut columns = Vec::new();
        for name in names.iter().filter(|n| *n != "customer_id") {
            if let Some(first) = owner.get(name) {
                return Err(FeatureError::ColumnClash {
                    column: name.clone(),
                    first: first.clone(),
                    second: file.origin.clone(),
                });
            }
            if !file.columns.iter().any(|c| &c.name == name) {
                return Err(FeatureError::InvalidFile {
                    file: file.origin.clone(),
                    problem: format!("column {name} is not documented in the header comment"),
                });
            }
            owner.insert(name.clone(), file.origin.clone());
            columns.push(name.clone());
        }
        if let Some(doc) = file.columns.iter().find(|c| !names.contains(&c.name)) {
            return Err(FeatureError::InvalidFile {
                file: file.origin.clone(),
                problem: format!("documented column {} is not in the result", doc.name),
            });
        }
        ctx.register_table(format!("feature_{}", file.name), df.into_view())?;
        used.push((file.name.clone(), columns));
    }
    Ok((used, skipped))
}

/// SQL joining every feature view onto the population.
fn final_select(used: &[(String, Vec<String>)]) -> String {
    let mut select = vec!["p.customer_id".to_string()];
    let mut joins = String::new();
    for (i, (name, columns)) in used.iter().enumerate() {
        select.extend(columns.iter().map(|c| format!("f{i}.\"{c}\"")));
        joins.push_str(&format!(
            " LEFT JOIN feature_{name} f{i} ON f{i}.customer_id = p.customer_id"
        ));
    }
    format!(
        "SELECT {} FROM population p{joins} ORDER BY p.customer_id",
        select.join(", ")
    )
}

/// Whether an error while planning or running a feature file's query is the file's fault: SQL
/// that does not parse, plan or type-check (including SQL the engine does not support), or a
/// value the SQL cannot compute (a failed cast or parse, a division by zero, an overflow).
/// An allow-list: anything else (memory, I/O, the object store, Parquet, an internal or
/// execution error of the engine) is not blamed on the file and keeps its own kind.
fn is_query_error(error: &datafusion::error::DataFusionError) -> bool {
    use datafusion::arrow::error::ArrowError as A;
    use datafusion::error::DataFusionError as E;
    match error.find_root() {
        E::SQL(..) | E::Plan(_) | E::SchemaError(..) | E::NotImplemented(_) => true,
        E::ArrowError(arrow, _) => matches!(
            **arrow,
            A::CastError(_)
                | A::ParseError(_)
                | A::ComputeError(_)
                | A::DivideByZero
                | A::ArithmeticOverflow(_)
        ),
        _ => false,
    }
}

/// A feature file's query error, blamed on the file when it is the file's fault.
fn query_error(file: &str, source: datafusion::error::DataFusionError) -> FeatureError {
    if is_query_error(&source) {
        FeatureError::Query {
            file: file.to_string(),
            source,
        }
    } else {
        FeatureError::DataFusion(source)
    }
}

/// Runs each feature view once, one at a time, and swaps the view for its result, checking
/// that every row has a customer id (the one-row-per-customer grain is checked on the joined
/// snapshot). In this process without a memory limit the results are held in memory: writing
/// them to staging Parquet and reading them back for the join took 0.6-1.0 s of a 1M-customer
/// snapshot's 10.8 s, for 0.1 GB less peak memory. Under a limit or on a cluster each result
/// is written to staging Parquet, so that memory holds one query's state at a time, and the
/// final join reads those files.
async fn materialize_features(
    ctx: &SessionContext,
    lake: &Lake,
    job: &str,
    files: &[FeatureFile],
    used: &[(String, Vec<String>)],
    session: &SessionOptions,
) -> Result<()> {
    for (name, _) in used {
        let origin = origin_of(files, name);
        let view = format!("feature_{name}");
        let started = Instant::now();
        let blame_file = |e: FeatureError| match e {
            FeatureError::DataFusion(source) => query_error(&origin, source),
            other => other,
        };
        let (rows, missing) = if in_process_without_limit(session) {
            let batches = hold_view(ctx, &view)
                .await
                .map_err(|e| blame_file(e.into()))?;
            rows_and_missing_ids_of(&batches)
        } else {
            let df = ctx.table(&view).await?;
            let rel = format!("{}/{view}.parquet", churn_core::commit::staging_dir(job));
            write_parquet(lake, df, &rel).await.map_err(blame_file)?;
            ctx.deregister_table(&view)?;
            ctx.register_parquet(
                &view,
                format!("{}{rel}", lake.root_url()),
                Default::default(),
            )
            .await?;
            rows_and_missing_ids(ctx, &view).await?
        };
        tracing::debug!(file = %origin, elapsed_ms = started.elapsed().as_millis() as u64, "feature file materialised and checked");
        if missing > 0 {
            return Err(FeatureError::InvalidFile {
                file: origin,
                problem: format!(
                    "customer_id must be non-null: {missing} of {rows} rows have none"
                ),
            });
        }
    }
    Ok(())
}

/// Rows of a feature file's result held in memory, and those of them without a customer id.
fn rows_and_missing_ids_of(batches: &[RecordBatch]) -> (i64, i64) {
    batches.iter().fold((0, 0), |(rows, missing), batch| {
        let nulls = batch
            .column_by_name("customer_id")
            .map_or(0, |ids| ids.null_count());
        (rows + batch.num_rows() as i64, missing + nulls as i64)
    })
}

/// Where the feature file `name` came from (its path), for errors.
fn origin_of(files: &[FeatureFile], name: &str) -> String {
    files
        .iter()
        .find(|f| f.name == name)
        .map_or(name.to_string(), |f| f.origin.clone())
}

/// The error for a snapshot whose join gave `rows` rows for `population` customers: some
/// file gave a customer of the population more than one row. Names the first such file
/// (counting each materialised file's distinct ids, which only this failure pays for).
async fn duplicated_customers_error(
    ctx: &SessionContext,
    files: &[FeatureFile],
    used: &[(String, Vec<String>)],
    rows: u64,
    population: u64,
) -> Result<FeatureError> {
    for (name, _) in used {
        let (file_rows, distinct) =
            population_rows_and_distinct_ids(ctx, &format!("feature_{name}")).await?;
        if file_rows != distinct {
            return Ok(FeatureError::InvalidFile {
                file: origin_of(files, name),
                problem: format!(
                    "customer_id must be unique: {file_rows} rows for {distinct} customers of the population"
                ),
            });
        }
    }
    Ok(FeatureError::DataFusion(
        datafusion::error::DataFusionError::Internal(format!(
            "the feature snapshot's join gave {rows} rows for {population} customers, \
             yet every feature file has one row per customer"
        )),
    ))
}

/// Builds and writes the feature snapshot of one date.
pub async fn build_snapshot(
    lake: &Lake,
    as_of: NaiveDate,
    options: &FeatureOptions,
) -> Result<SnapshotSummary> {
    let started = Instant::now();
    let (ctx, present) = snapshot_session(
        lake,
        as_of,
        options.lookback_days,
        &options.session,
        Scope::Everyone,
    )
    .await?;
    hold_population(&ctx, &options.session).await?;
    let session_ms = started.elapsed().as_millis() as u64;
    let (used, skipped) = register_feature_views(&ctx, &options.files, &present).await?;
    let planned_ms = started.elapsed().as_millis() as u64;
    let job = job_id("features", &as_of.to_string());
    materialize_features(&ctx, lake, &job, &options.files, &used, &options.session).await?;
    let materialized_ms = started.elapsed().as_millis() as u64;
    let population = scalar_i64(&ctx, "SELECT count(*) FROM population").await? as u64;
    let df = ctx.sql(&final_select(&used)).await?;
    let columns = df.schema().fields().len() + 1;
    let folder = format!("features/as_of={as_of}");
    let manifest = PartitionManifest::new("features", as_of)
        .with("lookback_days", options.lookback_days)
        .with("population", population);
    // Each file's rows are joined onto the population, so a file that gives a customer two
    // rows shows as more rows than customers: the grain is checked here, before the commit,
    // rather than by counting every file's distinct ids.
    let staged = stage_partition(lake, df, &folder, &job).await?;
    if staged.rows != population {
        return Err(duplicated_customers_error(
            &ctx,
            &options.files,
            &used,
            staged.rows,
            population,
        )
        .await?);
    }
    let written = staged.commit(lake, manifest).await?;
    tracing::debug!(as_of = %as_of, session_ms, planned_ms, materialized_ms, "feature snapshot phases (ms since its start)");
    tracing::info!(as_of = %as_of, customers = written.rows, columns, "feature snapshot written");
    Ok(SnapshotSummary {
        as_of: as_of.to_string(),
        customers: written.rows,
        columns,
        files_used: used.iter().map(|(n, _)| n.clone()).collect(),
        files_skipped: skipped,
        output: written.path,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// What scoring needs of some customers at D: their feature rows and their BTYD summaries.
pub struct CustomerInputs {
    /// Customer order, the snapshot's columns but `as_of` (one empty batch when none).
    pub features: Vec<RecordBatch>,
    /// At daily grain, as `btyd_inputs` gives them.
    pub btyd: Vec<BtydInput>,
}

/// The feature rows of D for `customers` (those of them in D's population), computed in
/// memory by the same feature files as a snapshot, and their BTYD summaries, over only these
/// customers' rows as `history` holds them (refresh it first): what the snapshot of D and
/// `btyd_inputs` would hold for them, at a cost that follows these customers' rows.
pub async fn inputs_for(
    lake: &Lake,
    as_of: NaiveDate,
    options: &FeatureOptions,
    customers: &[String],
    history: &EventHistory,
) -> Result<CustomerInputs> {
    let (ctx, present) = snapshot_session(
        lake,
        as_of,
        options.lookback_days,
        &options.session,
        Scope::Customers {
            ids: customers,
            history,
        },
    )
    .await?;
    let (used, _) = register_feature_views(&ctx, &options.files, &present).await?;
    let df = ctx.sql(&final_select(&used)).await?;
    let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
    let mut batches = df.collect().await?;
    if batches.is_empty() {
        batches.push(RecordBatch::new_empty(schema));
    }
    let mut seen = std::collections::HashSet::new();
    for batch in &batches {
        let ids = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8)
            .map_err(datafusion::error::DataFusionError::from)?;
        let ids = ids.as_string::<i32>();
        if let Some(id) = ids.iter().flatten().find(|id| !seen.insert(id.to_string())) {
            let origin = options
                .files
                .iter()
                .map(|f| f.origin.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(FeatureError::InvalidFile {
                file: origin,
                problem: format!("customer_id must be unique: customer {id} has more than one row"),
            });
        }
    }
    let btyd = btyd_inputs_in(&ctx, Grain::Day, Method::for_session(&options.session)).await?;
    Ok(CustomerInputs {
        features: batches,
        btyd,
    })
}

/// Builds the feature snapshot of `as_of` unless the lake has one; returns whether it built
/// it. Training and scoring use this; the features command and pipeline step rebuild.
pub async fn ensure_snapshot(
    lake: &Lake,
    as_of: NaiveDate,
    options: &FeatureOptions,
) -> Result<bool> {
    if !lake
        .list_parquet(&format!("features/as_of={as_of}"))
        .await?
        .is_empty()
    {
        return Ok(false);
    }
    build_snapshot(lake, as_of, options).await?;
    Ok(true)
}

/// How many snapshots to build at once: two on the in-process engine without a memory
/// limit, one otherwise. Much of a small store's snapshot is planning and small queries on one
/// thread, so a second snapshot uses the idle core (the demo's seven training snapshots took
/// 4.2 s one at a time); under a limit each session's pool would have the whole limit, and a
/// cluster schedules its own work.
pub fn snapshots_at_once(session: &SessionOptions) -> usize {
    if in_process_without_limit(session) {
        2
    } else {
        1
    }
}

/// Whether `session` runs queries in this process without a memory limit: then work may
/// hold what it needs in memory and run several sessions at once.
pub(crate) fn in_process_without_limit(session: &SessionOptions) -> bool {
    matches!(
        (&session.engine, session.memory_limit_bytes),
        (Engine::InProcess, None)
    )
}

/// Runs `first` and `second` beside each other where [`snapshots_at_once`] is more than one,
/// one after the other otherwise (under a memory limit each session's pool has the whole
/// limit).
pub async fn beside_each_other<A, B, E>(
    session: &SessionOptions,
    first: impl Future<Output = std::result::Result<A, E>>,
    second: impl Future<Output = std::result::Result<B, E>>,
) -> std::result::Result<(A, B), E> {
    if snapshots_at_once(session) > 1 {
        futures::future::try_join(first, second).await
    } else {
        Ok((first.await?, second.await?))
    }
}

/// Runs `job` for every date, [`snapshots_at_once`] of them at a time (each on its own task,
/// so on its own core), and returns the results in the dates' order. A failure stops the
/// dates not started and cancels those under way; their staging is removed by the next job's
/// recovery.
pub async fn for_each_date<T, E, Job>(
    dates: &[NaiveDate],
    session: &SessionOptions,
    job: impl Fn(NaiveDate) -> Job,
) -> std::result::Result<Vec<T>, E>
where
    Job: Future<Output = std::result::Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    futures::stream::iter(dates)
        .map(|&d| CancelOnDrop(tokio::spawn(job(d))))
        .buffered(snapshots_at_once(session))
        .try_collect()
        .await
}

/// Runs `job` on a task of its own, so on another core than the caller's work, and cancels it
/// when its result is no longer wanted.
pub async fn on_own_task<T: Send + 'static>(job: impl Future<Output = T> + Send + 'static) -> T {
    CancelOnDrop(tokio::spawn(job)).await
}

/// A spawned job that is cancelled when its result is no longer wanted.
struct CancelOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for CancelOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for CancelOnDrop<T> {
    type Output = T;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<T> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|joined| {
            // Only dropping the handle cancels the task, so a finished join is its result or
            // its panic, which goes on up as the panic it was.
            joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        })
    }
}

/// Builds the feature snapshots of several dates.
pub async fn build_features(
    lake: &Lake,
    dates: &[NaiveDate],
    options: &FeatureOptions,
) -> Result<FeaturesSummary> {
    let started = Instant::now();
    churn_core::commit::recover(lake).await?;
    let snapshots = for_each_date(dates, &options.session, |d| {
        let (lake, options) = (lake.clone(), options.clone());
        async move { build_snapshot(&lake, d, &options).await }
    })
    .await?;
    Ok(FeaturesSummary {
        kind: "features".into(),
        lake: lake.display(),
        snapshots,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// The catalogue of feature columns (name, type, description, source file), planned against
/// an empty lake of the contract's schema, so it needs no data.
pub async fn catalogue(files: &[FeatureFile]) -> Result<Vec<CatalogueEntry>> {
    let ctx = SessionContext::new_with_state(
        churn_core::sql_functions::default_state_with_churn_functions()?,
    );
    let present = register_empty_tables(&ctx)?;
    register_snapshot_views(
        &ctx,
        NaiveDate::from_ymd_opt(2000, 1, 1).expect("valid date"),
        crate::snapshot::DEFAULT_LOOKBACK_DAYS,
        &present,
    )
    .await?;
    register_feature_views(&ctx, files, &present).await?;
    let mut entries = vec![
        CatalogueEntry {
            name: "customer_id".into(),
            data_type: "Utf8".into(),
            description: "member id".into(),
            source: "snapshot".into(),
        },
        CatalogueEntry {
            name: "as_of".into(),
            data_type: "Date32".into(),
            description: "snapshot date D (partition column)".into(),
            source: "snapshot".into(),
        },
    ];
    for file in files {
        let schema = ctx
            .table(format!("feature_{}", file.name))
            .await?
            .schema()
            .as_arrow()
            .clone();
        for doc in &file.columns {
            let data_type = schema
                .field_with_name(&doc.name)
                .map(|f| f.data_type().to_string())
                .unwrap_or_default();
            entries.push(CatalogueEntry {
                name: doc.name.clone(),
                data_type,
                description: doc.description.clone(),
                source: file.origin.clone(),
            });
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::error::ArrowError;
    use datafusion::error::DataFusionError;

    use super::*;
    use churn_core::ErrorKind;

    fn days(n: u32) -> Vec<NaiveDate> {
        let first = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        (0..n)
            .map(|i| first + chrono::Duration::days(i as i64))
            .collect()
    }

    #[tokio::test]
    async fn without_a_memory_limit_two_dates_run_at_once_and_results_keep_the_dates_order() {
        // Every job waits for a second one to be under way: one at a time would never finish.
        let both_started = std::sync::Arc::new(tokio::sync::Barrier::new(2));
        let dates = days(4);
        let results = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            for_each_date(&dates, &SessionOptions::default(), |d| {
                let both_started = both_started.clone();
                async move {
                    both_started.wait().await;
                    Ok::<_, FeatureError>(d)
                }
            }),
        )
        .await
        .expect("two dates at once")
        .unwrap();
        assert_eq!(results, dates);
    }

    #[tokio::test]
    async fn under_a_memory_limit_dates_run_one_at_a_time_and_the_first_failure_is_returned() {
        let running = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let limited = SessionOptions::with_memory_limit(Some(64 << 20));
        assert_eq!(snapshots_at_once(&limited), 1);
        let dates = days(4);
        let third = dates[2];
        let failed = for_each_date(&dates, &limited, |d| {
            let running = running.clone();
            async move {
                use std::sync::atomic::Ordering::SeqCst;
                assert_eq!(
                    running.fetch_add(1, SeqCst),
                    0,
                    "{d} overlapped another date"
                );
                tokio::task::yield_now().await;
                running.fetch_sub(1, SeqCst);
                if d == third {
                    return Err(FeatureError::InvalidFile {
                        file: d.to_string(),
                        problem: "broken".into(),
                    });
                }
                Ok(d)
            }
        })
        .await
        .unwrap_err();
        assert!(failed.to_string().contains("2026-01-03"), "{failed}");
    }

    #[test]
    fn errors_the_sql_causes_are_blamed_on_the_feature_file() {
        let arrow = |e| DataFusionError::ArrowError(Box::new(e), None);
        for error in [
            DataFusionError::Plan("no column x".into()),
            DataFusionError::NotImplemented("LATERAL".into()),
            DataFusionError::SQL(
                Box::new(
                    datafusion::sql::sqlparser::parser::ParserError::ParserError(
                        "expected FROM".into(),
                    ),
                ),
                None,
            ),
            arrow(ArrowError::CastError("'abc' to Int64".into())),
            arrow(ArrowError::DivideByZero),
            arrow(ArrowError::ArithmeticOverflow("1e308 * 10".into())),
            arrow(ArrowError::ComputeError("bad".into())),
            DataFusionError::Context(
                "while running".into(),
                Box::new(arrow(ArrowError::ParseError("x".into()))),
            ),
        ] {
            let shown = error.to_string();
            let e = query_error("f.sql", error);
            assert!(matches!(e, FeatureError::Query { .. }), "{shown}: {e:?}");
            assert_eq!(e.kind(), ErrorKind::Config, "{shown}");
            assert!(e.to_string().contains("f.sql"), "{e}");
        }
    }

    #[test]
    fn engine_and_machine_errors_are_not_blamed_on_the_feature_file() {
        for error in [
            DataFusionError::Internal("physical plan mismatch".into()),
            DataFusionError::Execution("spill file vanished".into()),
            DataFusionError::ResourcesExhausted("memory".into()),
            DataFusionError::IoError(std::io::Error::other("disk full")),
            DataFusionError::ArrowError(
                Box::new(ArrowError::IoError(
                    "read".into(),
                    std::io::Error::other("eof"),
                )),
                None,
            ),
            DataFusionError::Context(
                "while running".into(),
                Box::new(DataFusionError::Internal("bug".into())),
            ),
        ] {
            let shown = error.to_string();
            let e = query_error("f.sql", error);
            assert!(matches!(e, FeatureError::DataFusion(_)), "{shown}: {e:?}");
            assert_eq!(e.kind(), ErrorKind::Internal, "{shown}");
        }
    }
}
