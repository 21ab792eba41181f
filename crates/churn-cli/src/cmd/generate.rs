//! `churn generate`: write a synthetic store with ground truth.

use std::path::PathBuf;

use anyhow::Context;
use churn_synth::{GenerateOptions, OutputFormat};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Number of customers.
    #[arg(long)]
    customers: u64,
    /// Random seed; the same seed gives the same store.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// First simulated day.
    #[arg(long, default_value = "2024-11-01", value_parser = super::parse_date)]
    start: chrono::NaiveDate,
    /// Number of simulated days.
    #[arg(long, default_value_t = 730)]
    days: u32,
    /// Output format of the three tables.
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    format: Format,
    /// Inject realistic dirt into transactions.csv and write mess_manifest.json.
    #[arg(long)]
    mess: bool,
    /// Also write transactions_gb18030.csv, a Chinese till export of the same transactions.
    #[arg(long)]
    chinese_export: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Csv,
    Parquet,
}

pub fn run(args: Args, json: bool) -> anyhow::Result<()> {
    let options = GenerateOptions {
        customers: args.customers,
        seed: args.seed,
        start: args.start,
        days: args.days,
        format: match args.format {
            Format::Csv => OutputFormat::Csv,
            Format::Parquet => OutputFormat::Parquet,
        },
        mess: args.mess,
        chinese_export: args.chinese_export,
        out: args.out.clone(),
    };
    let summary = churn_synth::generate(&options)
        .with_context(|| format!("generating a store into {}", args.out.display()))?;
    crate::output::emit(json, &summary, || {
        let mut text = format!(
            "Generated {} customers ({} alive at the end), {} transactions and {} campaign events, {} to {}, in {:.1} s:\n",
            summary.customers,
            summary.alive_at_end,
            summary.transactions,
            summary.campaign_events,
            summary.first_day,
            summary.last_day,
            summary.duration_ms as f64 / 1000.0
        );
        for f in &summary.files {
            text.push_str(&format!("  {f}\n"));
        }
        text
    })
}
