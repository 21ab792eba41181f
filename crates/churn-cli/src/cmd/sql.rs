//! `churn sql`: run a query against every lake table.

use anyhow::Context;
use arrow::record_batch::RecordBatch;
use churn_core::Lake;
use churn_core::session::{SessionOptions, lake_session};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Lake root: a local path or a URL.
    #[arg(long)]
    lake: String,
    /// The query, e.g. "SELECT date, count(*) FROM transactions GROUP BY date".
    query: String,
    /// Output format of the rows.
    #[arg(long, value_enum, default_value_t = SqlFormat::Table)]
    format: SqlFormat,
    /// Memory budget of the query (e.g. 2GiB); beyond it, sorts, joins and aggregations
    /// spill to disk.
    #[arg(long, value_parser = super::parse_bytes)]
    memory_limit: Option<usize>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SqlFormat {
    Table,
    Csv,
    Json,
}

fn json_rows(batches: &[RecordBatch]) -> anyhow::Result<serde_json::Value> {
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    writer.write_batches(&refs)?;
    writer.finish()?;
    let bytes = writer.into_inner();
    Ok(if bytes.is_empty() {
        serde_json::Value::Array(vec![])
    } else {
        serde_json::from_slice(&bytes)?
    })
}

pub async fn run(args: Args, json: bool) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let lake = Lake::open(&args.lake)?;
    let (ctx, tables) =
        lake_session(&lake, &SessionOptions::with_memory_limit(args.memory_limit)).await?;
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    let df = ctx.sql(&args.query).await.with_context(|| {
        format!(
            "planning the query (lake tables: {})",
            if names.is_empty() {
                "none yet".into()
            } else {
                names.join(", ")
            }
        )
    })?;
    let schema = df.schema().as_arrow().clone();
    let batches = df.collect().await.context("running the query")?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    if json {
        let summary = serde_json::json!({
            "kind": "sql",
            "row_count": rows,
            "columns": schema.fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>(),
            "rows": json_rows(&batches)?,
            "duration_ms": started.elapsed().as_millis() as u64,
        });
        println!("{summary}");
        return Ok(());
    }
    match args.format {
        SqlFormat::Table => println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?),
        SqlFormat::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(std::io::stdout());
            for b in &batches {
                writer.write(b)?;
            }
        }
        SqlFormat::Json => println!("{}", json_rows(&batches)?),
    }
    Ok(())
}
