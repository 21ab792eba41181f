//! The retention marts: tables a BI tool queries, one folder per mart under
//! `<lake>/marts/<mart>/as_of=D/`. Marts over the lake's events are SQL files (`sql/`, one
//! model per file, grain and columns in the header); marts over campaign exports and the model
//! registry are computed here from the same definitions `churn campaigns results` and
//! `churn train` use. Column types are fixed by the files' casts and normalised (plain UTF-8
//! strings, every column nullable) so a BI tool sees the same schema on every run.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray,
};
use arrow::datatypes::{DataType, Date32Type, Field, Schema, SchemaRef};
use chrono::NaiveDate;
use churn_activate::arrays::{floats, strings};
use churn_core::Lake;
use datafusion::prelude::SessionContext;

use crate::error::{ReportError, Result};

/// A mart's rows, ready to write.
#[derive(Debug, Clone)]
pub struct Mart {
    pub name: &'static str,
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl Mart {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// A mart defined by a SQL file, and the order its rows are written in (column, descending).
pub struct SqlMart {
    pub name: &'static str,
    pub sql: &'static str,
    pub order: &'static [(&'static str, bool)],
}

/// The SQL marts, in the order the report reads them.
pub const SQL_MARTS: &[SqlMart] = &[
    SqlMart {
        name: "kpis",
        sql: include_str!("../sql/kpis.sql"),
        order: &[("display_order", false)],
    },
    SqlMart {
        name: "cohort_retention",
        sql: include_str!("../sql/cohort_retention.sql"),
        order: &[("cohort_month", false), ("month_offset", false)],
    },
    SqlMart {
        name: "repeat_rate",
        sql: include_str!("../sql/repeat_rate.sql"),
        order: &[("cohort_month", false)],
    },
    SqlMart {
        name: "churn_trend",
        sql: include_str!("../sql/churn_trend.sql"),
        order: &[("month", false)],
    },
    SqlMart {
        name: "value_by_group",
        sql: include_str!("../sql/value_by_group.sql"),
        order: &[("dimension", false), ("customers", true), ("code", false)],
    },
    SqlMart {
        name: "segment_migration",
        sql: include_str!("../sql/segment_migration.sql"),
        order: &[
            ("dimension", false),
            ("from_code", false),
            ("to_code", false),
        ],
    },
    SqlMart {
        name: "campaign_funnel",
        sql: include_str!("../sql/campaign_funnel.sql"),
        order: &[("first_sent", false), ("campaign_id", false)],
    },
];

/// Plain strings instead of views or large strings, and every column nullable: the written
/// schema must not depend on how an input happened to be stored.
fn normalised_type(t: &DataType) -> DataType {
    match t {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        other => other.clone(),
    }
}

fn normalise(name: &'static str, schema: SchemaRef, batches: Vec<RecordBatch>) -> Result<Mart> {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| Field::new(f.name(), normalised_type(f.data_type()), true))
        .collect();
    let target = Arc::new(Schema::new(fields));
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        let columns = b
            .columns()
            .iter()
            .zip(target.fields())
            .map(|(c, f)| arrow::compute::cast(c, f.data_type()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        out.push(RecordBatch::try_new(target.clone(), columns)?);
    }
    Ok(Mart {
        name,
        schema: target,
        batches: out,
    })
}

/// Runs one SQL mart in the report session, its rows in the mart's order.
pub async fn sql_mart(ctx: &SessionContext, mart: &SqlMart) -> Result<Mart> {
    let failed = |source| ReportError::Mart {
        mart: mart.name.to_string(),
        source,
    };
    let order = mart
        .order
        .iter()
        .map(|(c, descending)| datafusion::prelude::col(*c).sort(!descending, true))
        .collect();
    let df = ctx
        .sql(mart.sql)
        .await
        .and_then(|df| df.sort(order))
        .map_err(failed)?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await.map_err(failed)?;
    normalise(mart.name, schema, batches)
}

/// A mart built column by column in Rust.
struct Columns {
    fields: Vec<Field>,
    arrays: Vec<ArrayRef>,
}

impl Columns {
    fn new() -> Self {
        Columns {
            fields: Vec::new(),
            arrays: Vec::new(),
        }
    }

    fn add(mut self, name: &str, array: ArrayRef) -> Self {
        self.fields
            .push(Field::new(name, array.data_type().clone(), true));
        self.arrays.push(array);
        self
    }

    fn text<S: AsRef<str>>(self, name: &str, v: impl IntoIterator<Item = Option<S>>) -> Self {
        let a: StringArray = v.into_iter().collect();
        self.add(name, Arc::new(a))
    }

    fn float(self, name: &str, v: impl IntoIterator<Item = Option<f64>>) -> Self {
        let a: Float64Array = v.into_iter().collect();
        self.add(name, Arc::new(a))
    }

    fn int(self, name: &str, v: impl IntoIterator<Item = Option<i64>>) -> Self {
        let a: Int64Array = v.into_iter().collect();
        self.add(name, Arc::new(a))
    }

    fn int32(self, name: &str, v: impl IntoIterator<Item = Option<i32>>) -> Self {
        let a: Int32Array = v.into_iter().collect();
        self.add(name, Arc::new(a))
    }

    fn flag(self, name: &str, v: impl IntoIterator<Item = Option<bool>>) -> Self {
        let a: BooleanArray = v.into_iter().collect();
        self.add(name, Arc::new(a))
    }

    fn date(self, name: &str, v: impl IntoIterator<Item = Option<NaiveDate>>) -> Self {
        let a: Date32Array = v
            .into_iter()
            .map(|d| d.map(Date32Type::from_naive_date))
            .collect();
        self.add(name, Arc::new(a))
    }

    fn finish(self, name: &'static str) -> Result<Mart> {
        let schema = Arc::new(Schema::new(self.fields));
        let batch = RecordBatch::try_new(schema.clone(), self.arrays)?;
        Ok(Mart {
            name,
            schema,
            batches: vec![batch],
        })
    }
}

/// One campaign export's outcome, as the campaign mart holds it.
#[derive(Debug, Clone)]
pub struct CampaignRow {
    pub export_as_of: NaiveDate,
    pub campaign: String,
    pub observable: bool,
    pub treated: churn_activate::results::GroupOutcome,
    pub control: churn_activate::results::GroupOutcome,
    pub purchase_rate_uplift: Option<churn_activate::results::Difference>,
    pub revenue_uplift: Option<churn_activate::results::Difference>,
}

/// Every campaign export on or before D with its treated-versus-control outcome over the
/// `window_days` after it; outcomes are unknown until that window ended before D.
pub async fn campaign_rows(
    ctx: &SessionContext,
    as_of: NaiveDate,
    window_days: u32,
) -> Result<Vec<CampaignRow>> {
    let exports = ctx
        .sql(&format!(
            "SELECT DISTINCT as_of, campaign FROM campaign_assignments \
             WHERE as_of <= DATE '{as_of}' ORDER BY as_of, campaign"
        ))
        .await?
        .collect()
        .await?;
    let mut rows = Vec::new();
    for b in &exports {
        let dates = arrow::compute::cast(b.column(0), &DataType::Date32)?;
        let dates = dates
            .as_any()
            .downcast_ref::<Date32Array>()
            .expect("cast to Date32");
        let names = strings(b.column(1))?;
        for (i, name) in names.into_iter().enumerate() {
            let (Some(export_as_of), Some(campaign)) = (dates.value_as_date(i), name) else {
                continue;
            };
            let end = export_as_of
                .checked_add_signed(chrono::Duration::days(window_days as i64))
                .ok_or(ReportError::WindowTooLong(window_days))?;
            let observable = end <= as_of;
            let (treated, control) =
                churn_activate::results::group_outcomes(ctx, &campaign, export_as_of, end).await?;
            let (purchase_rate_uplift, revenue_uplift) = if observable {
                churn_activate::results::uplifts(&treated, &control)
            } else {
                (None, None)
            };
            rows.push(CampaignRow {
                export_as_of,
                campaign,
                observable,
                treated,
                control,
                purchase_rate_uplift,
                revenue_uplift,
            });
        }
    }
    Ok(rows)
}

/// The `campaign_results` mart.
pub fn campaign_mart(rows: &[CampaignRow], window_days: u32) -> Result<Mart> {
    let seen = |r: &CampaignRow, v: f64| r.observable.then_some(v);
    let diff =
        |d: &Option<churn_activate::results::Difference>,
         f: fn(&churn_activate::results::Difference) -> f64| { d.as_ref().map(f) };
    Columns::new()
        .date("export_as_of", rows.iter().map(|r| Some(r.export_as_of)))
        .text("campaign", rows.iter().map(|r| Some(&r.campaign)))
        .int32("window_days", rows.iter().map(|_| Some(window_days as i32)))
        .flag("observable", rows.iter().map(|r| Some(r.observable)))
        .int(
            "treated_customers",
            rows.iter().map(|r| Some(r.treated.customers as i64)),
        )
        .int(
            "control_customers",
            rows.iter().map(|r| Some(r.control.customers as i64)),
        )
        .int(
            "treated_buyers",
            rows.iter()
                .map(|r| r.observable.then_some(r.treated.buyers as i64)),
        )
        .int(
            "control_buyers",
            rows.iter()
                .map(|r| r.observable.then_some(r.control.buyers as i64)),
        )
        .float(
            "treated_purchase_rate",
            rows.iter().map(|r| seen(r, r.treated.purchase_rate)),
        )
        .float(
            "control_purchase_rate",
            rows.iter().map(|r| seen(r, r.control.purchase_rate)),
        )
        .float(
            "purchase_rate_uplift",
            rows.iter()
                .map(|r| diff(&r.purchase_rate_uplift, |d| d.estimate)),
        )
        .float(
            "purchase_rate_uplift_ci_low",
            rows.iter()
                .map(|r| diff(&r.purchase_rate_uplift, |d| d.ci_low)),
        )
        .float(
            "purchase_rate_uplift_ci_high",
            rows.iter()
                .map(|r| diff(&r.purchase_rate_uplift, |d| d.ci_high)),
        )
        .flag(
            "purchase_rate_uplift_significant",
            rows.iter()
                .map(|r| r.purchase_rate_uplift.as_ref().map(|d| d.significant)),
        )
        .float(
            "treated_revenue_per_customer",
            rows.iter().map(|r| seen(r, r.treated.revenue_per_customer)),
        )
        .float(
            "control_revenue_per_customer",
            rows.iter().map(|r| seen(r, r.control.revenue_per_customer)),
        )
        .float(
            "revenue_uplift",
            rows.iter().map(|r| diff(&r.revenue_uplift, |d| d.estimate)),
        )
        .float(
            "revenue_uplift_ci_low",
            rows.iter().map(|r| diff(&r.revenue_uplift, |d| d.ci_low)),
        )
        .float(
            "revenue_uplift_ci_high",
            rows.iter().map(|r| diff(&r.revenue_uplift, |d| d.ci_high)),
        )
        .flag(
            "revenue_uplift_significant",
            rows.iter()
                .map(|r| r.revenue_uplift.as_ref().map(|d| d.significant)),
        )
        .finish("campaign_results")
}

/// One registered model version, as the model marts hold it.
#[derive(Debug, Clone)]
pub struct ModelVersion {
    pub manifest: churn_train::registry::TrainingManifest,
    pub report: churn_train::TrainReport,
    pub deciles: Vec<Decile>,
    /// (feature, test customers for whom it is one of the reasons up), most frequent first.
    pub reasons: Vec<(String, u64)>,
}

/// One tenth of a test snapshot, ranked by churn probability (highest first).
#[derive(Debug, Clone, PartialEq)]
pub struct Decile {
    pub decile: u32,
    pub customers: u64,
    pub churners: u64,
    pub churn_rate: f64,
    /// churn_rate over the test snapshot's churn rate.
    pub lift: f64,
    /// Churners in this and the higher deciles over all churners.
    pub cumulative_capture: f64,
}

/// Deciles of `(churn probability, churned)` pairs: ranked by probability, highest first
/// (ties by their given order), decile d holds ranks ⌊(d−1)n/10⌋ to ⌊dn/10⌋ − 1.
pub fn deciles(scored: &[(f64, bool)]) -> Vec<Decile> {
    let n = scored.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| scored[b].0.total_cmp(&scored[a].0).then(a.cmp(&b)));
    let total_churners = scored.iter().filter(|s| s.1).count();
    let base_rate = total_churners as f64 / n.max(1) as f64;
    let mut cumulative = 0usize;
    (1..=10)
        .filter_map(|d| {
            let (lo, hi) = ((d - 1) * n / 10, d * n / 10);
            if hi == lo {
                return None;
            }
            let churners = order[lo..hi].iter().filter(|&&i| scored[i].1).count();
            cumulative += churners;
            let churn_rate = churners as f64 / (hi - lo) as f64;
            Some(Decile {
                decile: d as u32,
                customers: (hi - lo) as u64,
                churners: churners as u64,
                churn_rate,
                lift: if base_rate > 0.0 {
                    churn_rate / base_rate
                } else {
                    f64::NAN
                },
                cumulative_capture: if total_churners > 0 {
                    cumulative as f64 / total_churners as f64
                } else {
                    f64::NAN
                },
            })
        })
        .collect()
}

/// The feature a reason is about: reasons read `feature = value (description)`.
pub fn reason_feature(reason: &str) -> &str {
    reason.split(" = ").next().unwrap_or(reason)
}

/// Reads a version's test scores: deciles and how often each feature is a reason up.
async fn test_score_summary(
    lake: &Lake,
    name: &str,
    version: u32,
) -> Result<(Vec<Decile>, Vec<(String, u64)>)> {
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let path = lake.path(&churn_train::registry::test_scores_path(name, version));
    let bytes = lake.get(&path).await?;
    let parquet_error = |e: datafusion::parquet::errors::ParquetError| {
        ReportError::DataFusion(datafusion::error::DataFusionError::from(e))
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(parquet_error)?
        .build()
        .map_err(parquet_error)?;
    let mut scored = Vec::new();
    let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
    for batch in reader {
        let batch = batch?;
        let column = |c: &str| batch.column_by_name(c).cloned();
        let (Some(p), Some(y)) = (column("churn_probability"), column("churned")) else {
            continue;
        };
        for (p, y) in floats(&p)?.into_iter().zip(floats(&y)?) {
            scored.push((p.unwrap_or(f64::NAN), y.is_some_and(|y| y >= 0.5)));
        }
        for k in 1..=churn_model::explain::REASONS {
            let Some(r) = column(&format!("reason_up_{k}")) else {
                continue;
            };
            for text in strings(&r)?.iter().flatten() {
                *counts.entry(reason_feature(text).to_string()).or_default() += 1;
            }
        }
    }
    let mut reasons: Vec<(String, u64)> = counts.into_iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok((deciles(&scored), reasons))
}

/// Every finished version of every registered model, oldest first.
pub async fn model_versions(lake: &Lake) -> Result<Vec<ModelVersion>> {
    let mut out = Vec::new();
    for model in churn_train::registry::list(lake).await? {
        for &version in &model.versions {
            let (manifest, report) =
                churn_train::registry::read_summary(lake, &model.name, version).await?;
            let (deciles, reasons) = test_score_summary(lake, &model.name, version).await?;
            out.push(ModelVersion {
                manifest,
                report,
                deciles,
                reasons,
            });
        }
    }
    Ok(out)
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// The `model_history`, `model_calibration`, `model_lift` and `model_features` marts.
pub fn model_marts(versions: &[ModelVersion]) -> Result<Vec<Mart>> {
    let v = versions;
    let history = Columns::new()
        .text("model_name", v.iter().map(|m| Some(&m.manifest.name)))
        .int32(
            "model_version",
            v.iter().map(|m| Some(m.manifest.version as i32)),
        )
        .text("algorithm", v.iter().map(|m| Some(&m.manifest.algorithm)))
        .date(
            "test_as_of",
            v.iter()
                .map(|m| NaiveDate::parse_from_str(&m.manifest.as_of, "%Y-%m-%d").ok()),
        )
        .text("trained_at", v.iter().map(|m| Some(&m.manifest.trained_at)))
        .int32(
            "horizon_days",
            v.iter().map(|m| Some(m.manifest.horizon_days as i32)),
        )
        .int(
            "test_customers",
            v.iter().map(|m| Some(m.report.model.customers as i64)),
        )
        .int(
            "test_churners",
            v.iter().map(|m| Some(m.report.model.churners as i64)),
        )
        .float("roc_auc", v.iter().map(|m| finite(m.report.model.roc_auc)))
        .float("pr_auc", v.iter().map(|m| finite(m.report.model.pr_auc)))
        .float(
            "top_decile_lift",
            v.iter().map(|m| finite(m.report.model.top_decile_lift)),
        )
        .float("brier", v.iter().map(|m| finite(m.report.model.brier)))
        .int32(
            "rule_no_purchase_days",
            v.iter()
                .map(|m| Some(m.report.baseline_rule.no_purchase_days as i32)),
        )
        .float(
            "rule_roc_auc",
            v.iter()
                .map(|m| finite(m.report.baseline_rule.metrics.roc_auc)),
        )
        .float(
            "rule_top_decile_lift",
            v.iter()
                .map(|m| finite(m.report.baseline_rule.metrics.top_decile_lift)),
        )
        .float(
            "bgnbd_roc_auc",
            v.iter().map(|m| finite(m.report.baseline_bgnbd.roc_auc)),
        )
        .float(
            "bgnbd_top_decile_lift",
            v.iter()
                .map(|m| finite(m.report.baseline_bgnbd.top_decile_lift)),
        )
        .text(
            "grade",
            v.iter().map(|m| Some(m.report.grade.grade.to_string())),
        )
        .text("verdict", v.iter().map(|m| Some(&m.report.grade.verdict)))
        .finish("model_history")?;

    let bins: Vec<(&ModelVersion, usize, &churn_model::metrics::CalibrationBin)> = v
        .iter()
        .flat_map(|m| {
            m.report
                .model
                .calibration
                .iter()
                .enumerate()
                .map(move |(k, b)| (m, k, b))
        })
        .collect();
    let calibration = Columns::new()
        .text(
            "model_name",
            bins.iter().map(|(m, _, _)| Some(&m.manifest.name)),
        )
        .int32(
            "model_version",
            bins.iter().map(|(m, _, _)| Some(m.manifest.version as i32)),
        )
        .int32("bin", bins.iter().map(|(_, k, _)| Some(*k as i32 + 1)))
        .float("lower", bins.iter().map(|(_, _, b)| finite(b.lower)))
        .float("upper", bins.iter().map(|(_, _, b)| finite(b.upper)))
        .int(
            "customers",
            bins.iter().map(|(_, _, b)| Some(b.customers as i64)),
        )
        .float(
            "mean_score",
            bins.iter().map(|(_, _, b)| finite(b.mean_score)),
        )
        .float(
            "churn_rate",
            bins.iter().map(|(_, _, b)| finite(b.churn_rate)),
        )
        .finish("model_calibration")?;

    let deciles: Vec<(&ModelVersion, &Decile)> = v
        .iter()
        .flat_map(|m| m.deciles.iter().map(move |d| (m, d)))
        .collect();
    let lift = Columns::new()
        .text(
            "model_name",
            deciles.iter().map(|(m, _)| Some(&m.manifest.name)),
        )
        .int32(
            "model_version",
            deciles.iter().map(|(m, _)| Some(m.manifest.version as i32)),
        )
        .int32("decile", deciles.iter().map(|(_, d)| Some(d.decile as i32)))
        .int(
            "customers",
            deciles.iter().map(|(_, d)| Some(d.customers as i64)),
        )
        .int(
            "churners",
            deciles.iter().map(|(_, d)| Some(d.churners as i64)),
        )
        .float(
            "churn_rate",
            deciles.iter().map(|(_, d)| finite(d.churn_rate)),
        )
        .float("lift", deciles.iter().map(|(_, d)| finite(d.lift)))
        .float(
            "cumulative_capture",
            deciles.iter().map(|(_, d)| finite(d.cumulative_capture)),
        )
        .finish("model_lift")?;

    let reasons: Vec<(&ModelVersion, usize, &(String, u64))> = v
        .iter()
        .flat_map(|m| m.reasons.iter().enumerate().map(move |(k, r)| (m, k, r)))
        .collect();
    let features = Columns::new()
        .text(
            "model_name",
            reasons.iter().map(|(m, _, _)| Some(&m.manifest.name)),
        )
        .int32(
            "model_version",
            reasons
                .iter()
                .map(|(m, _, _)| Some(m.manifest.version as i32)),
        )
        .int32("rank", reasons.iter().map(|(_, k, _)| Some(*k as i32 + 1)))
        .text("feature", reasons.iter().map(|(_, _, r)| Some(&r.0)))
        .int(
            "customers",
            reasons.iter().map(|(_, _, r)| Some(r.1 as i64)),
        )
        .float(
            "share",
            reasons.iter().map(|(m, _, r)| {
                let n = m.report.model.customers;
                (n > 0).then(|| r.1 as f64 / n as f64)
            }),
        )
        .finish("model_features")?;
    Ok(vec![history, calibration, lift, features])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deciles_rank_by_probability_and_lift_is_the_rate_over_the_base_rate() {
        // 20 customers, probabilities 0.95, 0.90, …; the top four churned, and one more.
        let scored: Vec<(f64, bool)> = (0..20)
            .map(|i| (1.0 - 0.05 * (i + 1) as f64, i < 4 || i == 10))
            .collect();
        let d = deciles(&scored);
        assert_eq!(d.len(), 10);
        assert_eq!((d[0].customers, d[0].churners), (2, 2));
        assert_eq!((d[1].churners, d[5].churners, d[9].churners), (2, 1, 0));
        // Base rate 5 / 20 = 0.25; decile 1 rate 1.0: lift 4.
        assert!((d[0].lift - 4.0).abs() < 1e-12);
        assert!((d[1].cumulative_capture - 0.8).abs() < 1e-12);
        assert!((d[9].cumulative_capture - 1.0).abs() < 1e-12);
    }

    #[test]
    fn deciles_of_fewer_than_ten_customers_skip_empty_tenths() {
        let d = deciles(&[(0.9, true), (0.1, false), (0.5, false)]);
        assert_eq!(d.iter().map(|x| x.customers).sum::<u64>(), 3);
        assert_eq!(d[0].churners, 1);
    }

    #[test]
    fn a_reason_names_its_feature_before_the_value() {
        assert_eq!(
            reason_feature("recency_days = 120 (days from the last purchase day before D to D)"),
            "recency_days"
        );
    }
}
