//! The customer view that rules are written against: one row per customer of D's population
//! with every feature column of the snapshot of D, the scores of D, the segments of D and
//! the profile. Inputs the lake lacks (no scores yet, no customers table) appear as typed
//! null columns, so a rule's SQL means the same on every lake.

use chrono::NaiveDate;
use churn_core::session::LakeTable;
use datafusion::prelude::SessionContext;

use churn_core::Lake;

use crate::error::{ActivateError, Result};

/// The view's name in SQL.
pub const VIEW: &str = "customer_view";

/// Columns taken from the scores of D, with their SQL types for a lake without scores.
pub(crate) const SCORE_COLUMNS: &[(&str, &str)] = &[
    ("churn_probability", "DOUBLE"),
    ("risk_band", "VARCHAR"),
    ("risk_percentile", "DOUBLE"),
    ("p_alive", "DOUBLE"),
    ("expected_purchases_90d", "DOUBLE"),
    ("expected_value_12m", "DOUBLE"),
    ("value_at_risk", "DOUBLE"),
    ("reason_1", "VARCHAR"),
    ("reason_2", "VARCHAR"),
    ("reason_3", "VARCHAR"),
    ("model_name", "VARCHAR"),
    ("model_version", "INT UNSIGNED"),
];

/// Columns taken from the segments of D.
pub(crate) const SEGMENT_COLUMNS: &[(&str, &str)] = &[
    ("r_score", "INT"),
    ("f_score", "INT"),
    ("m_score", "INT"),
    ("fm_score", "INT"),
    ("rfm_cell", "VARCHAR"),
    ("rfm_segment", "VARCHAR"),
    ("rfm_segment_label", "VARCHAR"),
    ("lifecycle_stage", "VARCHAR"),
    ("lifecycle_label", "VARCHAR"),
    ("suggested_tier", "VARCHAR"),
    ("suggested_tier_label", "VARCHAR"),
    ("tags", "VARCHAR"),
];

/// Profile columns that are not features already; contact details (e-mail, phone) are left
/// out on purpose: rules decide who, exports decide how to reach them.
pub(crate) const PROFILE_COLUMNS: &[(&str, &str)] = &[
    ("signup_date", "DATE"),
    ("birthday", "DATE"),
    ("referrer_id", "VARCHAR"),
    ("marketing_opt_in", "BOOLEAN"),
];

/// Feature columns that only exist when the lake has a customers table (profile.sql) or
/// campaign events (campaigns.sql): null on lakes without them, so that the same rules run
/// on every lake.
pub(crate) const OPTIONAL_FEATURE_COLUMNS: &[(&str, &str)] = &[
    ("age_years", "BIGINT"),
    ("tier", "VARCHAR"),
    ("has_referrer", "BOOLEAN"),
    ("referrals_converted", "BIGINT"),
    ("days_to_birthday", "BIGINT"),
    ("campaign_sent_90d", "BIGINT"),
    ("campaign_opened_90d", "BIGINT"),
    ("campaign_clicked_90d", "BIGINT"),
    ("campaign_redeemed_90d", "BIGINT"),
    ("days_since_last_redeem", "BIGINT"),
];

/// Which inputs the view found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewInputs {
    pub scores: bool,
    pub profiles: bool,
}

/// `alias.col` for each column when the table is present, else typed nulls.
pub(crate) fn select_list(columns: &[(&str, &str)], alias: &str, present: bool) -> Vec<String> {
    columns
        .iter()
        .map(|(name, ty)| {
            if present {
                format!("{alias}.{name}")
            } else {
                format!("CAST(NULL AS {ty}) AS {name}")
            }
        })
        .collect()
}

/// The view's SQL. `segments` is a table holding only the segments of D (the day's being
/// built), or `None` for the lake's `segments` table.
fn view_sql(
    as_of: NaiveDate,
    segments: Option<&str>,
    inputs: ViewInputs,
    missing_features: &[(&str, &str)],
) -> String {
    let day = format!("DATE '{as_of}'");
    let mut columns = vec!["f.*".to_string()];
    columns.extend(select_list(missing_features, "f", false));
    columns.extend(select_list(SCORE_COLUMNS, "s", inputs.scores));
    columns.extend(select_list(SEGMENT_COLUMNS, "g", true));
    columns.extend(select_list(PROFILE_COLUMNS, "c", inputs.profiles));
    let segments = match segments {
        Some(table) => table.to_string(),
        None => format!("(SELECT * FROM segments WHERE as_of = {day})"),
    };
    let mut sql = format!(
        "SELECT {} FROM (SELECT * FROM features WHERE as_of = {day}) f\n\
         LEFT JOIN {segments} g ON g.customer_id = f.customer_id",
        columns.join(", ")
    );
    if inputs.scores {
        sql.push_str(&format!(
            "\nLEFT JOIN (SELECT * FROM scores WHERE as_of = {day}) s ON s.customer_id = f.customer_id"
        ));
    }
    if inputs.profiles {
        sql.push_str("\nLEFT JOIN customers c ON c.customer_id = f.customer_id");
    }
    sql
}

/// Registers [`VIEW`] for D in a session that has the lake's tables (and `segments`, the
/// day's segments table, when given).
pub async fn register_customer_view(
    ctx: &SessionContext,
    tables: &[LakeTable],
    as_of: NaiveDate,
    segments: Option<&str>,
) -> Result<ViewInputs> {
    let has = |name: &str| tables.iter().any(|t| t.name == name);
    let inputs = ViewInputs {
        scores: has("scores"),
        profiles: has("customers"),
    };
    let features = ctx.table("features").await?;
    let missing_features: Vec<(&str, &str)> = OPTIONAL_FEATURE_COLUMNS
        .iter()
        .copied()
        .filter(|(name, _)| features.schema().field_with_unqualified_name(name).is_err())
        .collect();
    let df = ctx
        .sql(&view_sql(as_of, segments, inputs, &missing_features))
        .await?;
    ctx.register_table(VIEW, df.into_view())?;
    Ok(inputs)
}

/// Refuses (a data error naming `churn segment`) when the lake has no segments of D.
pub async fn require_segments(lake: &Lake, as_of: NaiveDate) -> Result<()> {
    if lake
        .list_parquet(&format!("segments/as_of={as_of}"))
        .await?
        .is_empty()
    {
        return Err(ActivateError::MissingInput {
            table: "segments",
            command: "segment",
            as_of: as_of.to_string(),
        });
    }
    Ok(())
}

/// The order of a ranked list: the highest value first, unknown (or not finite) values
/// last, then customer id, so that every run ranks alike.
pub fn highest_first(a: (Option<f64>, &str), b: (Option<f64>, &str)) -> std::cmp::Ordering {
    let finite = |v: Option<f64>| v.filter(|v| v.is_finite());
    match (finite(a.0), finite(b.0)) {
        (Some(x), Some(y)) => y.total_cmp(&x),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
    .then_with(|| a.1.cmp(b.1))
}
