//! `churn demo`: build the bundled demo store end to end from the committed files and say
//! where to look.

use std::path::PathBuf;

use anyhow::Context;

use crate::exit::UsageError;

/// Logical date of the demo run: the day after the bundled store's last day.
pub const DEMO_AS_OF: &str = "2026-11-01";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The demo pipeline file.
    #[arg(long, default_value = "pipelines/demo.toml")]
    pipeline: PathBuf,
    /// Where to build the demo lake; an existing demo lake there is rebuilt from scratch.
    #[arg(long, default_value = "demo-lake")]
    lake: PathBuf,
}

pub async fn run(args: Args, json: bool) -> anyhow::Result<()> {
    if !args.pipeline.exists() {
        return Err(UsageError(format!(
            "{} not found: run `churn demo` from the repository root, or pass --pipeline",
            args.pipeline.display()
        ))
        .into());
    }
    if args.lake.exists() {
        if !args.lake.join(churn_core::lake::SETTINGS_FILE).exists() {
            return Err(UsageError(format!(
                "{} exists and is not a churn lake; choose another --lake",
                args.lake.display()
            ))
            .into());
        }
        std::fs::remove_dir_all(&args.lake)
            .with_context(|| format!("removing the previous demo lake {}", args.lake.display()))?;
    }
    let as_of = super::parse_date(DEMO_AS_OF).map_err(UsageError)?;
    let lake = args.lake.display().to_string();
    let summary = super::run::run_pipeline(
        &args.pipeline,
        super::run::Overrides {
            lake: Some(&lake),
            ..Default::default()
        },
        as_of,
        churn_pipeline::Start::Fresh,
        json,
    )
    .await?;
    crate::output::emit(json, &summary, || {
        let mut text = super::run::human(&summary);
        text.push_str(&campaign_lists(&lake, &summary));
        text.push_str(&format!(
            "\nThe demo lake is in {lake}/. Look at it with:\n  \
             churn sql --lake {lake} \"SELECT date_trunc('month', ts) AS month, count(*) AS transactions, sum(amount) AS revenue FROM transactions GROUP BY 1 ORDER BY 1\"\n  \
             churn sql --lake {lake} \"SELECT tier, count(*) AS customers, avg(recency_days) AS avg_recency FROM features GROUP BY 1\"\n  \
             churn sql --lake {lake} \"SELECT churned, count(*) FROM labels GROUP BY 1\"\n  \
             churn sql --lake {lake} \"SELECT customer_id, churn_probability, risk_band, value_at_risk, reason_1 FROM scores ORDER BY value_at_risk DESC LIMIT 10\"\n  \
             churn sql --lake {lake} \"SELECT rfm_segment_label, lifecycle_label, count(*) AS customers FROM segments GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 10\"\n  \
             churn sql --lake {lake} \"SELECT rule, recipient, customer_id, action, value_at_risk FROM triggers ORDER BY rule, priority LIMIT 20\"\n  \
             churn sql --lake {lake} \"SELECT cohort_month, month_offset, retention_rate FROM marts_cohort_retention WHERE month_offset <= 3 ORDER BY 1, 2 LIMIT 12\"\n  \
             churn models show --lake {lake} churn\n  \
             duckdb -c \"SELECT * FROM '{lake}/_models/churn/1/test_scores.parquet' ORDER BY churn_probability DESC LIMIT 10\"\n  \
             duckdb -c \"SELECT count(*) FROM read_parquet('{lake}/transactions/*/*.parquet', hive_partitioning = true)\"\n"
        ));
        text.push_str(&report_page(&lake, &summary));
        text
    })
}

/// Where the retention report and its marts are: the last thing the demo prints.
fn report_page(lake: &str, summary: &churn_pipeline::RunSummary) -> String {
    summary
        .steps
        .iter()
        .find_map(|step| match &step.outcome {
            churn_pipeline::StepOutcome::Report(r) => Some(format!(
                "\nThe retention report (open it in a browser): {}\nIts marts for BI tools: {lake}/marts/\n",
                r.report_location
            )),
            _ => None,
        })
        .unwrap_or_default()
}

/// Where the day's campaign lists are, with their first rows.
fn campaign_lists(lake: &str, summary: &churn_pipeline::RunSummary) -> String {
    let mut text = String::new();
    for step in &summary.steps {
        let churn_pipeline::StepOutcome::Export(export) = &step.outcome else {
            continue;
        };
        for c in &export.campaigns {
            let Some(csv) = c.files.iter().find(|f| f.ends_with(".csv")) else {
                continue;
            };
            let path = std::path::Path::new(lake).join(csv);
            text.push_str(&format!(
                "\nCampaign {} ({} to contact, {} held out as control): {}\n",
                c.campaign,
                c.treated,
                c.control,
                path.display()
            ));
            let content = std::fs::read_to_string(&path).unwrap_or_default();
            for line in content.trim_start_matches('\u{feff}').lines().take(4) {
                let shown: String = line.chars().take(160).collect();
                text.push_str(&format!("  {shown}\n"));
            }
        }
    }
    text
}
