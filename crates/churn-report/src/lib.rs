//! Retention marts and the report. `churn report --as-of D` reads the lake as it was before D
//! and writes the marts BI tools query (`<lake>/marts/<mart>/as_of=D/`: cohort retention,
//! new-customer repeat rate, churn trend, headline figures, repeat rate and value at risk by
//! group, segment migration, campaign reach and uplift, model history, calibration, lift and
//! influential features) and one self-contained HTML page for the store owner
//! (`<lake>/reports/as_of=D/index.html`), all committed together.

pub mod charts;
pub mod error;
pub mod html;
pub mod i18n;
pub mod marts;
pub mod session;

use std::time::Instant;

use arrow::array::RecordBatch;
use bytes::Bytes;
use chrono::NaiveDate;
use churn_activate::Lang;
use churn_activate::arrays::{floats, strings};
use churn_core::Lake;
use churn_core::commit::{CommitPlan, commit, job_id, staging_dir};
use churn_core::session::SessionOptions;
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

pub use error::{ReportError, Result};
pub use session::Available;

use crate::html::AtRisk;
use crate::marts::Mart;

/// Default days after an export over which a campaign's purchases count.
pub const DEFAULT_CAMPAIGN_WINDOW_DAYS: u32 = 30;

/// How the report is made.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Language of the page's labels.
    pub lang: Lang,
    /// The churn trend's horizon: a month's buyer churned with no purchase in this many days.
    pub horizon_days: u32,
    /// Days after an export over which its campaign's purchases count.
    pub campaign_window_days: u32,
    pub session: SessionOptions,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            lang: Lang::En,
            horizon_days: churn_features::DEFAULT_HORIZON_DAYS,
            campaign_window_days: DEFAULT_CAMPAIGN_WINDOW_DAYS,
            session: SessionOptions::default(),
        }
    }
}

/// One written mart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MartSummary {
    pub name: String,
    pub rows: u64,
    /// The mart's file, relative to the lake root.
    pub file: String,
}

/// What `churn report` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportSummary {
    pub kind: String,
    pub as_of: String,
    pub lang: Lang,
    pub marts: Vec<MartSummary>,
    /// The HTML page, relative to the lake root.
    pub report: String,
    /// The HTML page where a user opens it: a local path, or a URL.
    pub report_location: String,
    pub report_bytes: u64,
    /// What the report says is missing (in its language).
    pub missing: Vec<String>,
    pub available: Available,
    pub duration_ms: u64,
}

/// The customers of D with the highest value at risk, with their segment and main reason.
async fn top_at_risk(ctx: &SessionContext, as_of: NaiveDate, limit: usize) -> Result<Vec<AtRisk>> {
    let sql = format!(
        "SELECT s.customer_id, s.churn_probability, s.risk_band, s.value_at_risk, g.rfm_segment, s.reason_1 \
         FROM scores s LEFT JOIN (SELECT customer_id, rfm_segment FROM segments WHERE as_of = DATE '{as_of}') g \
           ON g.customer_id = s.customer_id \
         WHERE s.as_of = DATE '{as_of}' \
         ORDER BY s.value_at_risk DESC NULLS LAST, s.churn_probability DESC, s.customer_id LIMIT {limit}"
    );
    let mut out = Vec::new();
    for b in ctx.sql(&sql).await?.collect().await? {
        let c = |i: usize| b.column(i);
        let (ids, p, band, var, seg, reason) = (
            strings(c(0))?,
            floats(c(1))?,
            strings(c(2))?,
            floats(c(3))?,
            strings(c(4))?,
            strings(c(5))?,
        );
        for i in 0..b.num_rows() {
            out.push(AtRisk {
                customer_id: ids[i].clone().unwrap_or_default(),
                churn_probability: p[i].unwrap_or(f64::NAN),
                risk_band: band[i].clone().unwrap_or_default(),
                value_at_risk: var[i],
                segment: seg[i].clone(),
                reason: reason[i].clone(),
            });
        }
    }
    Ok(out)
}

/// The model that scored D, when D has scores.
async fn scoring_model(ctx: &SessionContext, as_of: NaiveDate) -> Result<Option<String>> {
    let batches = ctx
        .sql(&format!(
            "SELECT CAST(model_name AS VARCHAR) FROM scores WHERE as_of = DATE '{as_of}' LIMIT 1"
        ))
        .await?
        .collect()
        .await?;
    let mut names = Vec::new();
    for b in &batches {
        names.extend(strings(b.column(0))?);
    }
    Ok(names.into_iter().next().flatten())
}

/// Builds every mart and the page of D and commits them together, replacing an earlier
/// report of D.
pub async fn report(
    lake: &Lake,
    as_of: NaiveDate,
    options: &ReportOptions,
) -> Result<ReportSummary> {
    let started = Instant::now();
    churn_core::commit::recover(lake).await?;
    let ctx = session::report_session(lake, as_of, options.horizon_days, &options.session).await?;
    let available = session::available(&ctx, as_of).await?;
    let mut all: Vec<Mart> = Vec::new();
    for mart in marts::SQL_MARTS {
        tracing::debug!(mart = mart.name, "building mart");
        all.push(marts::sql_mart(&ctx, mart).await?);
    }
    let campaigns = marts::campaign_rows(&ctx, as_of, options.campaign_window_days).await?;
    all.push(marts::campaign_mart(
        &campaigns,
        options.campaign_window_days,
    )?);
    let models = marts::model_versions(lake).await?;
    all.extend(marts::model_marts(&models)?);
    let at_risk = top_at_risk(&ctx, as_of, 20).await?;
    let scoring = scoring_model(&ctx, as_of).await?;
    let page = html::Page {
        as_of,
        lake: lake.display(),
        lang: options.lang,
        available: &available,
        marts: &all,
        campaigns: &campaigns,
        models: &models,
        at_risk: &at_risk,
    };
    let (page, missing) = html::render(&page, scoring.as_deref())?;

    let job = job_id("report", &as_of.to_string());
    let staging = staging_dir(&job);
    let mut moves = Vec::new();
    let mut deletes = Vec::new();
    let mut written = Vec::new();
    for mart in &all {
        let folder = format!("marts/{}/as_of={as_of}", mart.name);
        let file = format!("{folder}/part-{job}.parquet");
        let staged = format!("{staging}/{file}");
        let batches = if mart.batches.is_empty() {
            vec![RecordBatch::new_empty(mart.schema.clone())]
        } else {
            mart.batches.clone()
        };
        lake.write_parquet(&lake.path(&staged), &batches).await?;
        deletes.extend(
            lake.list(&folder)
                .await?
                .iter()
                .map(|m| lake.relative(&m.location)),
        );
        moves.push((staged, file.clone()));
        written.push(MartSummary {
            name: mart.name.to_string(),
            rows: mart.rows() as u64,
            file,
        });
    }
    let report_folder = format!("reports/as_of={as_of}");
    let report_file = format!("{report_folder}/index.html");
    let staged = format!("{staging}/{report_file}");
    let report_bytes = page.len() as u64;
    lake.put(&lake.path(&staged), Bytes::from(page)).await?;
    // The page keeps its name, so the move replaces it; anything else there is stale.
    deletes.extend(
        lake.list(&report_folder)
            .await?
            .iter()
            .map(|m| lake.relative(&m.location))
            .filter(|rel| *rel != report_file),
    );
    moves.push((staged, report_file.clone()));
    let summary = ReportSummary {
        kind: "report".into(),
        as_of: as_of.to_string(),
        lang: options.lang,
        marts: written,
        report_location: format!("{}/{report_file}", lake.display().trim_end_matches('/')),
        report: report_file,
        report_bytes,
        missing,
        available,
        duration_ms: started.elapsed().as_millis() as u64,
    };
    let manifest_path = format!("_runs/{job}.json");
    let manifest =
        serde_json::to_value(&summary).map_err(|source| churn_core::CoreError::Json {
            path: manifest_path.clone(),
            source,
        })?;
    commit(
        lake,
        &CommitPlan {
            batch_id: job,
            moves,
            deletes,
            manifest_path,
            manifest,
        },
        None,
    )
    .await?;
    tracing::info!(as_of = %as_of, marts = summary.marts.len(), "report written");
    Ok(summary)
}
