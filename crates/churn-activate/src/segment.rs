//! `churn segment`: RFM scores and named segments, lifecycle stages, a suggested membership
//! tier and rule tags for every customer of D's population, from the feature snapshot of D
//! (built if missing), into `<lake>/segments/as_of=D/`. The definitions (README, "Segments
//! and rules") are plain functions here so that they can be checked by hand.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use chrono::NaiveDate;
use churn_core::Lake;
use churn_core::session::lake_session;
use churn_features::write::PartitionManifest;
use churn_features::{FeatureOptions, ensure_snapshot};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use crate::arrays::{floats, ints, strings};
use crate::error::{ActivateError, Result};
use crate::lang::{Lang, lifecycle_label, rfm_segment_label};
use crate::rules::{Activation, LifecycleThresholds, Rule, TierRule};
use crate::view::{VIEW, register_customer_view};

/// Scores 1–5 by quintile: 1 + ⌊5 × (customers with a worse value) / n⌋, so equal values get
/// equal scores and the best fifth scores 5. Worse is lower, or higher when `lower_is_better`.
pub fn quintile_scores(values: &[f64], lower_is_better: bool) -> Vec<i32> {
    let mut sorted: Vec<f64> = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = values.len();
    values
        .iter()
        .map(|v| {
            let worse = if lower_is_better {
                n - sorted.partition_point(|x| x.total_cmp(v).is_le())
            } else {
                sorted.partition_point(|x| x.total_cmp(v).is_lt())
            };
            1 + (5 * worse / n) as i32
        })
        .collect()
}

/// The frequency-and-monetary score: the mean of F and M, rounded up.
pub fn fm_score(f: i32, m: i32) -> i32 {
    (f + m + 1) / 2
}

/// The named RFM segment (its code) of an R score and an FM score; every one of the 25 cells
/// has exactly one segment (README table).
pub fn rfm_segment(r: i32, fm: i32) -> &'static str {
    match (r, fm) {
        (5, 4..) => "champions",
        (3..=4, 4..) => "loyal",
        (4..=5, 2..=3) => "potential_loyalist",
        (5, _) => "new",
        (4, _) => "promising",
        (3, 3) => "need_attention",
        (3, _) => "about_to_sleep",
        (..=2, 5..) => "cant_lose_them",
        (..=2, 3..=4) => "at_risk",
        (1, ..=1) => "lost",
        _ => "hibernating",
    }
}

/// What the lifecycle stage of a customer is decided from (days before D).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Activity {
    /// Days from the last purchase day before D to D.
    pub recency_days: i64,
    /// Days from the first purchase day to D.
    pub tenure_days: i64,
    /// Days between the last two purchase days; `None` with one purchase day.
    pub last_gap_days: Option<i64>,
}

/// The lifecycle stage (its code): `new` (first purchase within `new_within_days`), then
/// `reactivated` (bought within `at_risk_after_days` after a gap of at least
/// `dormant_after_days`), then by days without a purchase: `active`, `at_risk`, `dormant`,
/// `lost`.
pub fn lifecycle_stage(a: Activity, t: &LifecycleThresholds) -> &'static str {
    if a.tenure_days <= t.new_within_days {
        "new"
    } else if a.recency_days < t.at_risk_after_days
        && a.last_gap_days.is_some_and(|g| g >= t.dormant_after_days)
    {
        "reactivated"
    } else if a.recency_days < t.at_risk_after_days {
        "active"
    } else if a.recency_days < t.dormant_after_days {
        "at_risk"
    } else if a.recency_days < t.lost_after_days {
        "dormant"
    } else {
        "lost"
    }
}

/// The first tier (highest first) whose thresholds the customer meets; the last tier has
/// none, so every customer gets one.
pub fn suggested_tier(net_spend_365d: f64, purchases_365d: i64, tiers: &[TierRule]) -> &TierRule {
    tiers
        .iter()
        .find(|t| net_spend_365d >= t.min_net_spend_365d && purchases_365d >= t.min_purchases_365d)
        .unwrap_or_else(|| tiers.last().expect("a checked activation has tiers"))
}

/// What `churn segment` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SegmentSummary {
    pub kind: String,
    pub as_of: String,
    pub lang: Lang,
    pub customers: u64,
    /// Customers per RFM segment code.
    pub rfm_segments: std::collections::BTreeMap<String, u64>,
    /// Customers per lifecycle stage code.
    pub lifecycle_stages: std::collections::BTreeMap<String, u64>,
    /// Customers per suggested tier.
    pub tiers: std::collections::BTreeMap<String, u64>,
    /// Customers per tag.
    pub tags: std::collections::BTreeMap<String, u64>,
    pub built_features: bool,
    pub rules_file: String,
    pub output: String,
    pub duration_ms: u64,
}

/// The inputs of the segments, one entry per customer of the snapshot.
struct Inputs {
    customer_ids: Vec<String>,
    recency_days: Vec<i64>,
    tenure_days: Vec<i64>,
    last_gap_days: Vec<Option<i64>>,
    frequency_365d: Vec<i64>,
    monetary_365d: Vec<f64>,
}

async fn read_inputs(ctx: &SessionContext, as_of: NaiveDate) -> Result<Inputs> {
    let sql = format!(
        "SELECT customer_id, recency_days, tenure_days, last_gap_days, frequency_365d, \
         monetary_365d FROM features WHERE as_of = DATE '{as_of}' ORDER BY customer_id"
    );
    let mut inputs = Inputs {
        customer_ids: Vec::new(),
        recency_days: Vec::new(),
        tenure_days: Vec::new(),
        last_gap_days: Vec::new(),
        frequency_365d: Vec::new(),
        monetary_365d: Vec::new(),
    };
    for b in ctx.sql(&sql).await?.collect().await? {
        let c = |i: usize| b.column(i);
        inputs
            .customer_ids
            .extend(strings(c(0))?.into_iter().map(Option::unwrap_or_default));
        inputs
            .recency_days
            .extend(ints(c(1))?.into_iter().map(|v| v.unwrap_or(0)));
        inputs
            .tenure_days
            .extend(ints(c(2))?.into_iter().map(|v| v.unwrap_or(0)));
        inputs.last_gap_days.extend(ints(c(3))?);
        inputs
            .frequency_365d
            .extend(ints(c(4))?.into_iter().map(|v| v.unwrap_or(0)));
        inputs
            .monetary_365d
            .extend(floats(c(5))?.into_iter().map(|v| v.unwrap_or(0.0)));
    }
    Ok(inputs)
}

/// The segments of every customer, without tags yet.
struct Segments {
    r: Vec<i32>,
    f: Vec<i32>,
    m: Vec<i32>,
    fm: Vec<i32>,
    rfm_segment: Vec<&'static str>,
    lifecycle: Vec<&'static str>,
    tier: Vec<usize>,
}

fn compute(inputs: &Inputs, activation: &Activation) -> Segments {
    let as_f64 = |v: &[i64]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
    let r = quintile_scores(&as_f64(&inputs.recency_days), true);
    let f = quintile_scores(&as_f64(&inputs.frequency_365d), false);
    let m = quintile_scores(&inputs.monetary_365d, false);
    let fm: Vec<i32> = f.iter().zip(&m).map(|(&f, &m)| fm_score(f, m)).collect();
    let rfm_segment = r
        .iter()
        .zip(&fm)
        .map(|(&r, &fm)| rfm_segment(r, fm))
        .collect();
    let lifecycle = (0..inputs.customer_ids.len())
        .map(|i| {
            lifecycle_stage(
                Activity {
                    recency_days: inputs.recency_days[i],
                    tenure_days: inputs.tenure_days[i],
                    last_gap_days: inputs.last_gap_days[i],
                },
                &activation.lifecycle,
            )
        })
        .collect();
    let tier = (0..inputs.customer_ids.len())
        .map(|i| {
            let t = suggested_tier(
                inputs.monetary_365d[i],
                inputs.frequency_365d[i],
                &activation.tiers,
            );
            activation
                .tiers
                .iter()
                .position(|x| x.name == t.name)
                .unwrap_or(0)
        })
        .collect();
    Segments {
        r,
        f,
        m,
        fm,
        rfm_segment,
        lifecycle,
        tier,
    }
}

/// The segments table of D; `tags` null until the tag rules have run.
fn segments_batch(
    inputs: &Inputs,
    s: &Segments,
    activation: &Activation,
    lang: Lang,
    tags: Option<&[Option<String>]>,
) -> Result<RecordBatch> {
    let n = inputs.customer_ids.len();
    let strings = |v: Vec<&str>| -> ArrayRef { Arc::new(StringArray::from(v)) };
    let ints = |v: &[i32]| -> ArrayRef { Arc::new(Int32Array::from(v.to_vec())) };
    let cells: Vec<String> = (0..n)
        .map(|i| format!("{}{}{}", s.r[i], s.f[i], s.m[i]))
        .collect();
    let tiers: Vec<&TierRule> = s.tier.iter().map(|&k| &activation.tiers[k]).collect();
    let tags: StringArray = match tags {
        Some(t) => t.iter().map(|x| x.as_deref()).collect(),
        None => std::iter::repeat_n(None::<&str>, n).collect(),
    };
    let fields = vec![
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("recency_days", DataType::Int64, false),
        Field::new("frequency_365d", DataType::Int64, false),
        Field::new("monetary_365d", DataType::Float64, false),
        Field::new("r_score", DataType::Int32, false),
        Field::new("f_score", DataType::Int32, false),
        Field::new("m_score", DataType::Int32, false),
        Field::new("fm_score", DataType::Int32, false),
        Field::new("rfm_cell", DataType::Utf8, false),
        Field::new("rfm_segment", DataType::Utf8, false),
        Field::new("rfm_segment_label", DataType::Utf8, false),
        Field::new("lifecycle_stage", DataType::Utf8, false),
        Field::new("lifecycle_label", DataType::Utf8, false),
        Field::new("suggested_tier", DataType::Utf8, false),
        Field::new("suggested_tier_label", DataType::Utf8, false),
        Field::new("tags", DataType::Utf8, true),
        Field::new("lang", DataType::Utf8, false),
    ];
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(&inputs.customer_ids)),
        Arc::new(Int64Array::from(inputs.recency_days.clone())),
        Arc::new(Int64Array::from(inputs.frequency_365d.clone())),
        Arc::new(Float64Array::from(inputs.monetary_365d.clone())),
        ints(&s.r),
        ints(&s.f),
        ints(&s.m),
        ints(&s.fm),
        Arc::new(StringArray::from_iter_values(&cells)),
        strings(s.rfm_segment.clone()),
        strings(
            s.rfm_segment
                .iter()
                .map(|c| rfm_segment_label(c, lang))
                .collect(),
        ),
        strings(s.lifecycle.clone()),
        strings(
            s.lifecycle
                .iter()
                .map(|c| lifecycle_label(c, lang))
                .collect(),
        ),
        strings(tiers.iter().map(|t| t.name.as_str()).collect()),
        strings(tiers.iter().map(|t| t.label(lang)).collect()),
        Arc::new(tags),
        strings(vec![lang.code(); n]),
    ];
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(datafusion::error::DataFusionError::from)?)
}

/// `columns` of the customer view's rows that match a rule's predicate; an error names the
/// rule.
pub(crate) async fn rule_rows(
    ctx: &SessionContext,
    rule: &Rule,
    file: &str,
    columns: &str,
) -> Result<Vec<RecordBatch>> {
    let rule_error = |error| ActivateError::RuleSql {
        rule: rule.name.clone(),
        file: file.to_string(),
        when: rule.when.clone(),
        source: error,
    };
    let sql = format!("SELECT {columns} FROM {VIEW} WHERE ({})", rule.when);
    match ctx.sql(&sql).await {
        Ok(df) => df.collect().await.map_err(rule_error),
        Err(e) => Err(rule_error(e)),
    }
}

/// Customer ids matching a rule's predicate over the customer view.
async fn matching_customers(ctx: &SessionContext, rule: &Rule, file: &str) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    for b in rule_rows(ctx, rule, file, "customer_id").await? {
        ids.extend(strings(b.column(0))?.into_iter().flatten());
    }
    Ok(ids)
}

/// Plans every nightly rule's SQL over the customer view, so that all rules that cannot run
/// are named at once, before anything is written.
pub async fn check_rules(ctx: &SessionContext, activation: &Activation) -> Result<()> {
    check_rules_over_view(ctx, activation.nightly_rules(), &activation.source).await
}

/// Plans each of `rules` over the session's customer view ([`VIEW`]), naming every rule that
/// cannot run at once.
pub(crate) async fn check_rules_over_view<'a>(
    ctx: &SessionContext,
    rules: impl Iterator<Item = &'a Rule>,
    file: &str,
) -> Result<()> {
    let mut failures = Vec::new();
    for rule in rules {
        let sql = format!("SELECT customer_id FROM {VIEW} WHERE ({})", rule.when);
        if let Err(e) = ctx.sql(&sql).await {
            failures.push(format!("rule {:?}: `{}`: {e}", rule.name, rule.when));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(ActivateError::RulesDoNotRun {
            file: file.to_string(),
            failures,
        })
    }
}

/// The tags of each customer (in rule order, `; `-separated), from the tag rules.
async fn tags_of(
    ctx: &SessionContext,
    activation: &Activation,
    customer_ids: &[String],
) -> Result<(Vec<Option<String>>, std::collections::BTreeMap<String, u64>)> {
    let index: HashMap<&str, usize> = customer_ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut tags: Vec<Vec<&str>> = vec![Vec::new(); customer_ids.len()];
    let mut counts = std::collections::BTreeMap::new();
    for rule in activation.tag_rules() {
        let tag = rule.tag.as_deref().unwrap_or_default();
        for id in matching_customers(ctx, rule, &activation.source).await? {
            if let Some(&i) = index.get(id.as_str())
                && !tags[i].contains(&tag)
            {
                tags[i].push(tag);
                *counts.entry(tag.to_string()).or_insert(0) += 1;
            }
        }
    }
    let joined = tags
        .into_iter()
        .map(|t| (!t.is_empty()).then(|| t.join("; ")))
        .collect();
    Ok((joined, counts))
}

fn count<'a>(values: impl Iterator<Item = &'a str>) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    for v in values {
        *out.entry(v.to_string()).or_insert(0) += 1;
    }
    out
}

/// Builds the segments of D (and the feature snapshot of D first when the lake lacks it) and
/// writes `segments/as_of=D/`, replacing an earlier run's.
pub async fn segment(
    lake: &Lake,
    as_of: NaiveDate,
    activation: &Activation,
    lang: Lang,
    features: &FeatureOptions,
) -> Result<SegmentSummary> {
    let started = Instant::now();
    churn_core::commit::recover(lake).await?;
    let built_features = ensure_snapshot(lake, as_of, features).await?;
    let (ctx, tables) = lake_session(lake, &features.session).await?;
    let inputs = read_inputs(&ctx, as_of).await?;
    let segments = compute(&inputs, activation);

    // Tag rules see the day's segments, so they are registered before the table is written.
    let untagged = segments_batch(&inputs, &segments, activation, lang, None)?;
    let day = MemTable::try_new(untagged.schema(), vec![vec![untagged]])?;
    ctx.register_table("segments_of_day", Arc::new(day))?;
    register_customer_view(&ctx, &tables, as_of, Some("segments_of_day")).await?;
    check_rules(&ctx, activation).await?;
    let (tags, tag_counts) = tags_of(&ctx, activation, &inputs.customer_ids).await?;
    let batch = segments_batch(&inputs, &segments, activation, lang, Some(&tags))?;

    let df = SessionContext::new().read_batch(batch)?;
    let job = churn_core::commit::job_id("segment", &as_of.to_string());
    let manifest = PartitionManifest::new("segment", as_of)
        .with("lang", lang.code())
        .with("rules", &activation.source);
    let written = churn_features::write::write_partition(
        lake,
        df,
        &format!("segments/as_of={as_of}"),
        &job,
        manifest,
    )
    .await?;
    tracing::info!(as_of = %as_of, customers = written.rows, "segments written");
    Ok(SegmentSummary {
        kind: "segment".into(),
        as_of: as_of.to_string(),
        lang,
        customers: written.rows,
        rfm_segments: count(segments.rfm_segment.iter().copied()),
        lifecycle_stages: count(segments.lifecycle.iter().copied()),
        tiers: count(
            segments
                .tier
                .iter()
                .map(|&k| activation.tiers[k].name.as_str()),
        ),
        tags: tag_counts,
        built_features,
        rules_file: activation.source.clone(),
        output: written.path,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quintiles_give_the_best_fifth_five_and_ties_one_score() {
        // Ten values: two per fifth. Higher is better.
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(quintile_scores(&v, false), [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
        // Lower is better (recency): the smallest values score 5.
        assert_eq!(quintile_scores(&v, true), [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]);
        // Ties: four equal lowest values all have nobody worse.
        assert_eq!(
            quintile_scores(&[0.0, 0.0, 0.0, 0.0, 7.0], false),
            [1, 1, 1, 1, 5]
        );
    }

    #[test]
    fn every_rfm_cell_has_one_segment_and_all_eleven_are_used() {
        let mut used = std::collections::BTreeSet::new();
        for r in 1..=5 {
            for fm in 1..=5 {
                used.insert(rfm_segment(r, fm));
            }
        }
        let all: std::collections::BTreeSet<&str> = crate::lang::rfm_segment_codes().collect();
        assert_eq!(used, all);
        assert_eq!(rfm_segment(5, 5), "champions");
        assert_eq!(rfm_segment(1, 5), "cant_lose_them");
        assert_eq!(rfm_segment(1, 1), "lost");
        assert_eq!(rfm_segment(2, 1), "hibernating");
        assert_eq!(rfm_segment(5, 1), "new");
        assert_eq!(fm_score(4, 5), 5);
        assert_eq!(fm_score(3, 4), 4);
        assert_eq!(fm_score(1, 2), 2);
    }

    #[test]
    fn lifecycle_stages_follow_the_thresholds() {
        let t = LifecycleThresholds::default();
        let a = |recency_days, tenure_days, last_gap_days| Activity {
            recency_days,
            tenure_days,
            last_gap_days,
        };
        assert_eq!(lifecycle_stage(a(3, 30, None), &t), "new");
        assert_eq!(lifecycle_stage(a(3, 31, Some(5)), &t), "active");
        assert_eq!(lifecycle_stage(a(59, 400, Some(90)), &t), "reactivated");
        assert_eq!(lifecycle_stage(a(59, 400, Some(89)), &t), "active");
        assert_eq!(lifecycle_stage(a(60, 400, Some(10)), &t), "at_risk");
        assert_eq!(lifecycle_stage(a(90, 400, Some(10)), &t), "dormant");
        assert_eq!(lifecycle_stage(a(180, 400, Some(10)), &t), "lost");
    }

    #[test]
    fn tiers_go_to_the_first_whose_thresholds_are_met() {
        let tiers = crate::rules::default_tiers();
        assert_eq!(suggested_tier(2500.0, 30, &tiers).name, "diamond");
        // Enough spend but too few purchases for diamond.
        assert_eq!(suggested_tier(2500.0, 12, &tiers).name, "gold");
        assert_eq!(suggested_tier(100.0, 50, &tiers).name, "silver");
    }
}
