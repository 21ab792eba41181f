//! The point-in-time view of the lake that feature SQL sees. For a snapshot at D the session
//! exposes `transactions` and `campaign_events` holding only events before D (by local date,
//! so partitions after D are never read), `customers`, a one-row `snapshot` table and the
//! snapshot's `population`. Feature files cannot see anything at or after D: leakage is
//! excluded by construction, not by each file's care.

use std::sync::Arc;

use arrow::datatypes::{DataType, Date32Type, Field, Schema};
use chrono::{Datelike, NaiveDate};
use churn_core::session::{
    LakeTable, SessionOptions, discover_tables, new_session, register_table, use_scan_batches,
};
use churn_core::{Lake, Table};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

use crate::error::{FeatureError, Result};
use crate::history::EventHistory;

/// Default population window: customers with a purchase in the last 365 days.
pub const DEFAULT_LOOKBACK_DAYS: u32 = 365;

/// Name under which a raw lake table is registered, beside its point-in-time view.
pub fn raw_name(table: Table) -> String {
    format!("lake_{}", table.name())
}

/// Registers the raw lake tables that exist and returns which ones do (the transactions at
/// least): from memory when the process holds them or they fit its budget (see
/// [`crate::held`]), else over the files.
pub async fn register_lake_tables(
    ctx: &SessionContext,
    lake: &Lake,
    options: &SessionOptions,
) -> Result<Vec<Table>> {
    let found = discover_tables(lake).await?;
    let present = register_contract_tables(ctx, lake, &found, options).await?;
    if !present.contains(&Table::Transactions) {
        return Err(FeatureError::NoTransactions);
    }
    Ok(present)
}

/// Registers the contract tables among `tables` (the lake's, as `discover_tables` found them)
/// as raw tables, whichever they are, and returns which ones they are (see
/// [`register_lake_tables`]).
pub async fn register_contract_tables(
    ctx: &SessionContext,
    lake: &Lake,
    tables: &[LakeTable],
    options: &SessionOptions,
) -> Result<Vec<Table>> {
    let mut found = Vec::new();
    for mut at in tables.iter().cloned() {
        let Ok(table) = at.name.parse::<Table>() else {
            continue;
        };
        at.name = raw_name(table);
        found.push((table, at));
    }
    if !crate::held::register_held_tables(ctx, lake, &found, options).await? {
        use_scan_batches(ctx, options);
        for (_, at) in &found {
            register_table(ctx, lake, at).await?;
        }
    }
    Ok(found.into_iter().map(|(table, _)| table).collect())
}

/// Registers empty raw tables of every contract table (for planning without a lake).
pub fn register_empty_tables(ctx: &SessionContext) -> Result<Vec<Table>> {
    for table in Table::ALL {
        register_empty_table(ctx, table)?;
    }
    Ok(Table::ALL.to_vec())
}

/// The columns of a raw lake table as a session registers it: the file schema, plus the
/// `date` partition column of the date-partitioned tables.
pub(crate) fn raw_schema(table: Table) -> Schema {
    let mut fields: Vec<Arc<Field>> = table.file_schema().fields().iter().cloned().collect();
    if table.is_date_partitioned() {
        fields.push(Arc::new(Field::new(
            Table::DATE_PARTITION,
            DataType::Date32,
            false,
        )));
    }
    Schema::new(fields)
}

/// Registers an empty raw table of `table`, with its file schema and partition column.
pub fn register_empty_table(ctx: &SessionContext, table: Table) -> Result<()> {
    let schema = Arc::new(raw_schema(table));
    ctx.register_table(
        raw_name(table),
        Arc::new(MemTable::try_new(schema, vec![vec![]])?),
    )?;
    Ok(())
}

/// Which customers a point-in-time session sees.
#[derive(Clone, Copy)]
pub enum Scope<'a> {
    /// Every customer, read from the lake's files: nightly snapshots, labels, BTYD fits.
    Everyone,
    /// These customers (live scores after a micro-batch), their rows taken from `history`
    /// (refreshed by the caller) instead of the lake's files. Their population is the ones
    /// among them who qualify on D; events are those of these customers and of the customers
    /// they referred (so that a referrer's `referrals_converted` counts right). Feature files
    /// that compare a customer with the rest of the population would see only these.
    Customers {
        ids: &'a [String],
        history: &'a EventHistory,
    },
}

/// Table holding the customer ids of [`Scope::Customers`].
const SCOPE_TOUCHED: &str = "scope_touched";

/// Registers the rows the history holds of the scope's customers as the raw tables (events
/// before D only) and returns the tables the lake has and the SQL condition that restricts
/// the population to those customers.
fn register_held(
    ctx: &SessionContext,
    ids: &[String],
    history: &EventHistory,
    as_of: NaiveDate,
) -> Result<(Vec<Table>, String)> {
    if !history.has_transactions() {
        return Err(FeatureError::NoTransactions);
    }
    register_ids(ctx, SCOPE_TOUCHED, ids.iter())?;
    let mut present = Vec::new();
    for (table, rows) in history.rows_of(ids, as_of)? {
        let schema = rows.schema();
        ctx.register_table(
            raw_name(table),
            Arc::new(MemTable::try_new(schema, vec![vec![rows]])?),
        )?;
        present.push(table);
    }
    let in_population = format!(" AND customer_id IN (SELECT customer_id FROM {SCOPE_TOUCHED})");
    Ok((present, in_population))
}

/// Registers a one-column table `name` of customer ids.
fn register_ids<'a>(
    ctx: &SessionContext,
    name: &str,
    ids: impl Iterator<Item = &'a String>,
) -> Result<()> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "customer_id",
        DataType::Utf8,
        false,
    )]));
    let batch = arrow::array::RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(arrow::array::StringArray::from_iter_values(ids))],
    )
    .map_err(datafusion::error::DataFusionError::from)?;
    ctx.register_table(
        name,
        Arc::new(MemTable::try_new(schema, vec![vec![batch]])?),
    )?;
    Ok(())
}

/// Creates the point-in-time views for snapshot `as_of` over the raw tables of `present`.
pub async fn register_snapshot_views(
    ctx: &SessionContext,
    as_of: NaiveDate,
    lookback_days: u32,
    present: &[Table],
) -> Result<()> {
    register_views(ctx, as_of, lookback_days, present, "").await
}

/// Creates the point-in-time views; `in_population` (empty, or ` AND <condition>`) narrows
/// the population.
async fn register_views(
    ctx: &SessionContext,
    as_of: NaiveDate,
    lookback_days: u32,
    present: &[Table],
    in_population: &str,
) -> Result<()> {
    let d = as_of.format("%Y-%m-%d");
    let views = [
        format!(
            "CREATE VIEW transactions AS SELECT transaction_id, customer_id, ts, amount, quantity, product_category, \
             store_id, channel, discount, is_return, date, CAST(date AS INT) AS day, \
             (NOT is_return AND amount > 0) AS is_purchase, (is_return OR amount < 0) AS is_refund \
             FROM {} WHERE date < DATE '{d}'",
            raw_name(Table::Transactions)
        ),
        format!(
            "CREATE VIEW snapshot AS SELECT DATE '{d}' AS as_of, CAST({} AS INT) AS as_of_day, CAST({} AS INT) AS as_of_year, \
             CAST({} AS INT) AS as_of_month, CAST({} AS INT) AS as_of_day_of_month, CAST({lookback_days} AS INT) AS lookback_days",
            Date32Type::from_naive_date(as_of),
            as_of.year(),
            as_of.month(),
            as_of.day()
        ),
        format!(
            "CREATE VIEW population AS SELECT DISTINCT customer_id FROM transactions \
             WHERE is_purchase AND day >= {}{in_population}",
            Date32Type::from_naive_date(as_of) - lookback_days as i32
        ),
    ];
    for view in views {
        ctx.sql(&view).await?;
    }
    if present.contains(&Table::CampaignEvents) {
        ctx.sql(&format!(
            "CREATE VIEW campaign_events AS SELECT customer_id, campaign_id, ts, event, date, CAST(date AS INT) AS day \
             FROM {} WHERE date < DATE '{d}'",
            raw_name(Table::CampaignEvents)
        ))
        .await?;
    }
    if present.contains(&Table::Customers) {
        ctx.sql(&format!(
            "CREATE VIEW customers AS SELECT customer_id, signup_date, birthday, tier, referrer_id, email, phone, marketing_opt_in FROM {}",
            raw_name(Table::Customers)
        ))
        .await?;
    }
    Ok(())
}

/// A session over the lake, seen as of `as_of` for the customers of `scope`.
pub async fn snapshot_session(
    lake: &Lake,
    as_of: NaiveDate,
    lookback_days: u32,
    options: &SessionOptions,
    scope: Scope<'_>,
) -> Result<(SessionContext, Vec<Table>)> {
    // Some customers' rows are tables in this process's memory: they are queried here.
    let options = match scope {
        Scope::Everyone => options.clone(),
        Scope::Customers { .. } => options.in_process(),
    };
    let ctx = new_session(lake, &options).await?;
    let (present, in_population) = match scope {
        Scope::Everyone => (
            register_lake_tables(&ctx, lake, &options).await?,
            String::new(),
        ),
        Scope::Customers { ids, history } => register_held(&ctx, ids, history, as_of)?,
    };
    register_views(&ctx, as_of, lookback_days, &present, &in_population).await?;
    Ok((ctx, present))
}

/// Computes the `population` view once and puts its rows in its place, so that the feature
/// files, the final join and the count that all read it do not each run its `DISTINCT` over a
/// year of transactions again (on a 1M-customer store, seven such scans and string hash
/// aggregations of 8M rows per snapshot). The rows are one id per customer of the
/// population, a few tens of MB at a million customers. Not on Ballista, whose executors
/// cannot see this process's memory.
pub async fn hold_population(ctx: &SessionContext, options: &SessionOptions) -> Result<()> {
    if options.engine.is_ballista() {
        return Ok(());
    }
    hold_view(ctx, "population").await?;
    Ok(())
}

/// Runs the view `name` once and registers its result in its place, held in memory; returns
/// the held batches (sharing their buffers with the table). The table takes the batches' own
/// schema: a feature file's plan can state another (`profile.sql`'s did, and the held table
/// was refused).
pub(crate) async fn hold_view(
    ctx: &SessionContext,
    name: &str,
) -> datafusion::error::Result<Vec<arrow::array::RecordBatch>> {
    let df = ctx.table(name).await?;
    let planned = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    let schema = batches.first().map_or(planned, |b| b.schema());
    ctx.deregister_table(name)?;
    let held = MemTable::try_new(schema, vec![batches.clone()])?;
    ctx.register_table(name, Arc::new(held))?;
    Ok(batches)
}
