//! `churn triggers`: the day's action list. Each action rule's predicate runs over the
//! customer view of D; customers who have not opted in (when the rule asks for it) and those
//! the same rule reached within its cooldown are left out, the rest are ranked by value at
//! risk and cut at the rule's daily cap, and the actions go to `<lake>/triggers/as_of=D/`.
//!
//! The history that cooldowns look at is the triggers table itself, before D, and the live
//! actions of the stream (`triggers_live`) before D: re-running a day replaces that day's
//! actions and never counts them against themselves. Live rules (`live = true`) run in the
//! stream, not here (see `live_rules`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema};
use chrono::NaiveDate;
use churn_core::Lake;
use churn_core::session::{SessionOptions, lake_session};
use churn_features::write::PartitionManifest;
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use crate::arrays::{bools, floats, strings};
use crate::error::Result;
use crate::rules::{Activation, Rule};
use crate::segment::{check_rules, rule_rows};
use crate::view::{highest_first, register_customer_view, require_segments};

/// What one rule did on the day.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleOutcome {
    pub rule: String,
    /// Customers matching the predicate.
    pub matched: u64,
    /// Left out: `marketing_opt_in` is not true.
    pub not_opted_in: u64,
    /// Left out: the rule reached them within its cooldown.
    pub in_cooldown: u64,
    /// Left out: beyond the daily cap.
    pub over_cap: u64,
    /// Actions for matching customers.
    pub actions: u64,
    /// Actions for their referrers (`include_referrer`).
    pub referrer_actions: u64,
}

/// What `churn triggers` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TriggersSummary {
    pub kind: String,
    pub as_of: String,
    /// Rows of the action list.
    pub actions: u64,
    pub rules: Vec<RuleOutcome>,
    /// Whether the lake had scores of D (rules on score columns see nulls without them).
    pub scores: bool,
    /// Whether the lake had a customers table (opt-in, referrers).
    pub profiles: bool,
    pub rules_file: String,
    pub output: String,
    pub duration_ms: u64,
}

/// A customer matching a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub customer_id: String,
    pub value_at_risk: Option<f64>,
    pub opted_in: Option<bool>,
    pub referrer_id: Option<String>,
}

/// One row of the action list.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub rule: String,
    pub customer_id: String,
    /// `customer`, or `referrer` for the referrer of `about_customer_id`.
    pub recipient: &'static str,
    pub about_customer_id: String,
    pub priority: u32,
    pub value_at_risk: Option<f64>,
}

/// Whether the rule reached the customer too recently: last action on `last`, blocked while
/// fewer than `cooldown_days` days have passed.
pub fn in_cooldown(last: Option<NaiveDate>, as_of: NaiveDate, cooldown_days: i64) -> bool {
    last.is_some_and(|l| (as_of - l).num_days() < cooldown_days)
}

/// The day's actions of one rule from its matching customers: opt-in, cooldown, rank, cap,
/// then the referrers of those reached (once each, with the same opt-in and cooldown).
pub fn select_actions(
    rule: &Rule,
    as_of: NaiveDate,
    mut candidates: Vec<Candidate>,
    last_action: &HashMap<(String, String), NaiveDate>,
    referrer_opt_in: &HashMap<String, Option<bool>>,
) -> (Vec<Action>, RuleOutcome) {
    let mut outcome = RuleOutcome {
        rule: rule.name.clone(),
        matched: candidates.len() as u64,
        ..RuleOutcome::default()
    };
    let cooling = |id: &str| {
        in_cooldown(
            last_action
                .get(&(rule.name.clone(), id.to_string()))
                .copied(),
            as_of,
            rule.cooldown_days,
        )
    };
    candidates.retain(|c| {
        if rule.requires_opt_in && c.opted_in != Some(true) {
            outcome.not_opted_in += 1;
            false
        } else if cooling(&c.customer_id) {
            outcome.in_cooldown += 1;
            false
        } else {
            true
        }
    });
    candidates.sort_by(|a, b| {
        highest_first(
            (a.value_at_risk, &a.customer_id),
            (b.value_at_risk, &b.customer_id),
        )
    });
    if let Some(cap) = rule.daily_cap
        && candidates.len() as u64 > cap
    {
        outcome.over_cap = candidates.len() as u64 - cap;
        candidates.truncate(cap as usize);
    }
    let mut actions: Vec<Action> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| Action {
            rule: rule.name.clone(),
            customer_id: c.customer_id.clone(),
            recipient: "customer",
            about_customer_id: c.customer_id.clone(),
            priority: i as u32 + 1,
            value_at_risk: c.value_at_risk,
        })
        .collect();
    outcome.actions = actions.len() as u64;
    if rule.include_referrer {
        let mut reached: HashSet<&str> =
            candidates.iter().map(|c| c.customer_id.as_str()).collect();
        for c in &candidates {
            let Some(referrer) = c.referrer_id.as_deref() else {
                continue;
            };
            let opted_in = referrer_opt_in.get(referrer).copied().flatten();
            // Referrers' actions count against the daily cap too.
            if rule
                .daily_cap
                .is_some_and(|cap| actions.len() as u64 >= cap)
            {
                outcome.over_cap += 1;
                continue;
            }
            if reached.contains(referrer)
                || (rule.requires_opt_in && opted_in != Some(true))
                || cooling(referrer)
            {
                continue;
            }
            reached.insert(referrer);
            actions.push(Action {
                rule: rule.name.clone(),
                customer_id: referrer.to_string(),
                recipient: "referrer",
                about_customer_id: c.customer_id.clone(),
                priority: actions.len() as u32 + 1,
                value_at_risk: None,
            });
            outcome.referrer_actions += 1;
        }
    }
    (actions, outcome)
}

pub(crate) async fn candidates(
    ctx: &SessionContext,
    rule: &Rule,
    file: &str,
) -> Result<Vec<Candidate>> {
    let columns = "customer_id, value_at_risk, marketing_opt_in, referrer_id";
    let batches = rule_rows(ctx, rule, file, columns).await?;
    let mut out = Vec::new();
    for b in &batches {
        let ids = strings(b.column(0))?;
        let values = floats(b.column(1))?;
        let opt_in = bools(b.column(2))?;
        let referrers = strings(b.column(3))?;
        for i in 0..b.num_rows() {
            out.push(Candidate {
                customer_id: ids[i].clone().unwrap_or_default(),
                value_at_risk: values[i],
                opted_in: opt_in[i],
                referrer_id: referrers[i].clone(),
            });
        }
    }
    Ok(out)
}

/// The last day before `before` on which each (rule, customer) got an action, nightly
/// (`triggers`, by `as_of`) or live (`triggers_live`, by `date`; the actions of
/// `excluding_batch` left out, so that redoing a batch does not count its own actions).
pub(crate) async fn history(
    ctx: &SessionContext,
    has_triggers: bool,
    has_live: bool,
    before: NaiveDate,
    excluding_batch: Option<&str>,
) -> Result<HashMap<(String, String), NaiveDate>> {
    let mut last = HashMap::new();
    let mut parts = Vec::new();
    if has_triggers {
        parts.push(format!(
            "SELECT rule, customer_id, as_of AS day FROM triggers WHERE as_of < DATE '{before}'"
        ));
    }
    if has_live {
        let other = excluding_batch.map_or(String::new(), |b| {
            format!(" AND batch_id <> '{}'", b.replace('\'', "''"))
        });
        parts.push(format!(
            "SELECT rule, customer_id, date AS day FROM {} WHERE date < DATE '{before}'{other}",
            crate::live_rules::LIVE_TRIGGERS_FOLDER
        ));
    }
    if parts.is_empty() {
        return Ok(last);
    }
    let sql = format!(
        "SELECT rule, customer_id, CAST(max(day) AS VARCHAR) FROM ({}) h GROUP BY rule, customer_id",
        parts.join(" UNION ALL ")
    );
    for b in ctx.sql(&sql).await?.collect().await? {
        let rules = strings(b.column(0))?;
        let ids = strings(b.column(1))?;
        let days = strings(b.column(2))?;
        for i in 0..b.num_rows() {
            if let (Some(r), Some(id), Some(day)) = (&rules[i], &ids[i], &days[i])
                && let Ok(day) = NaiveDate::parse_from_str(day, "%Y-%m-%d")
            {
                last.insert((r.clone(), id.clone()), day);
            }
        }
    }
    Ok(last)
}

/// Every customer's opt-in, for referrers (who need not be in D's population).
pub(crate) async fn opt_ins(
    ctx: &SessionContext,
    has_table: bool,
) -> Result<HashMap<String, Option<bool>>> {
    let mut out = HashMap::new();
    if !has_table {
        return Ok(out);
    }
    for b in ctx
        .sql("SELECT customer_id, marketing_opt_in FROM customers")
        .await?
        .collect()
        .await?
    {
        let ids = strings(b.column(0))?;
        let opt_in = bools(b.column(1))?;
        for (id, o) in ids.into_iter().zip(opt_in) {
            if let Some(id) = id {
                out.insert(id, o);
            }
        }
    }
    Ok(out)
}

pub(crate) fn actions_batch(actions: &[Action], activation: &Activation) -> Result<RecordBatch> {
    let rule_of: HashMap<&str, &Rule> = activation
        .rules
        .iter()
        .map(|r| (r.name.as_str(), r))
        .collect();
    let text = |f: &dyn Fn(&Action) -> Option<String>| -> ArrayRef {
        Arc::new(actions.iter().map(f).collect::<StringArray>())
    };
    let rule = |a: &Action| rule_of[a.rule.as_str()];
    let fields = vec![
        Field::new("rule", DataType::Utf8, false),
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("recipient", DataType::Utf8, false),
        Field::new("about_customer_id", DataType::Utf8, false),
        Field::new("priority", DataType::UInt32, false),
        Field::new("action", DataType::Utf8, false),
        Field::new("tag", DataType::Utf8, true),
        Field::new("value_at_risk", DataType::Float64, true),
        Field::new("rule_description", DataType::Utf8, false),
    ];
    let columns: Vec<ArrayRef> = vec![
        text(&|a| Some(a.rule.clone())),
        text(&|a| Some(a.customer_id.clone())),
        text(&|a| Some(a.recipient.to_string())),
        text(&|a| Some(a.about_customer_id.clone())),
        Arc::new(UInt32Array::from_iter_values(
            actions.iter().map(|a| a.priority),
        )),
        text(&|a| rule(a).action.clone()),
        text(&|a| rule(a).tag.clone()),
        Arc::new(
            actions
                .iter()
                .map(|a| a.value_at_risk)
                .collect::<Float64Array>(),
        ),
        text(&|a| Some(rule(a).description.clone())),
    ];
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(datafusion::error::DataFusionError::from)?)
}

/// Runs every action rule for D over the lake's features, scores, segments and profiles and
/// writes the day's actions to `triggers/as_of=D/`, replacing an earlier run of D.
pub async fn triggers(
    lake: &Lake,
    as_of: NaiveDate,
    activation: &Activation,
    session: &SessionOptions,
) -> Result<TriggersSummary> {
    let started = Instant::now();
    churn_core::commit::recover(lake).await?;
    require_segments(lake, as_of).await?;
    let (ctx, tables) = lake_session(lake, session).await?;
    let inputs = register_customer_view(&ctx, &tables, as_of, None).await?;
    if !inputs.scores {
        tracing::warn!(as_of = %as_of, "the lake has no scores: rules on score columns match nobody");
    }
    check_rules(&ctx, activation).await?;
    let has = |name: &str| tables.iter().any(|t| t.name == name);
    let last_action = history(
        &ctx,
        has("triggers"),
        has(crate::live_rules::LIVE_TRIGGERS_FOLDER),
        as_of,
        None,
    )
    .await?;
    let referrer_opt_in = if activation.action_rules().any(|r| r.include_referrer) {
        opt_ins(&ctx, inputs.profiles).await?
    } else {
        HashMap::new()
    };
    let mut actions = Vec::new();
    let mut outcomes = Vec::new();
    for rule in activation.action_rules() {
        let found = candidates(&ctx, rule, &activation.source).await?;
        let (mut a, outcome) = select_actions(rule, as_of, found, &last_action, &referrer_opt_in);
        tracing::info!(rule = %rule.name, matched = outcome.matched, actions = outcome.actions, "rule ran");
        actions.append(&mut a);
        outcomes.push(outcome);
    }
    let batch = actions_batch(&actions, activation)?;
    let df = SessionContext::new().read_batch(batch)?;
    let job = churn_core::commit::job_id("triggers", &as_of.to_string());
    let manifest = PartitionManifest::new("triggers", as_of).with("rules", &activation.source);
    let written = churn_features::write::write_partition(
        lake,
        df,
        &format!("triggers/as_of={as_of}"),
        &job,
        manifest,
    )
    .await?;
    Ok(TriggersSummary {
        kind: "triggers".into(),
        as_of: as_of.to_string(),
        actions: written.rows,
        rules: outcomes,
        scores: inputs.scores,
        profiles: inputs.profiles,
        rules_file: activation.source.clone(),
        output: written.path,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(cap: Option<u64>, include_referrer: bool) -> Rule {
        Rule {
            name: "r".into(),
            description: String::new(),
            when: "true".into(),
            action: Some("a".into()),
            tag: None,
            cooldown_days: 30,
            daily_cap: cap,
            include_referrer,
            requires_opt_in: true,
            live: false,
        }
    }

    fn c(
        id: &str,
        value: Option<f64>,
        opted_in: Option<bool>,
        referrer: Option<&str>,
    ) -> Candidate {
        Candidate {
            customer_id: id.into(),
            value_at_risk: value,
            opted_in,
            referrer_id: referrer.map(str::to_string),
        }
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn a_cooldown_blocks_until_that_many_days_have_passed() {
        let d = day("2026-11-30");
        assert!(in_cooldown(Some(day("2026-11-01")), d, 30));
        assert!(!in_cooldown(Some(day("2026-10-31")), d, 30));
        assert!(!in_cooldown(None, d, 30));
        assert!(!in_cooldown(Some(day("2026-11-29")), d, 0));
    }

    #[test]
    fn opted_out_and_cooling_customers_are_left_out_and_the_cap_keeps_the_most_valuable() {
        let d = day("2026-11-30");
        let history = HashMap::from([(("r".to_string(), "B".to_string()), day("2026-11-20"))]);
        let found = vec![
            c("A", Some(10.0), Some(true), None),
            c("B", Some(99.0), Some(true), None),
            c("C", Some(50.0), Some(false), None),
            c("D", None, None, None),
            c("E", Some(30.0), Some(true), None),
            c("F", None, Some(true), None),
        ];
        let (actions, outcome) =
            select_actions(&rule(Some(2), false), d, found, &history, &HashMap::new());
        let ids: Vec<&str> = actions.iter().map(|a| a.customer_id.as_str()).collect();
        assert_eq!(ids, ["E", "A"]);
        assert_eq!(
            outcome,
            RuleOutcome {
                rule: "r".into(),
                matched: 6,
                not_opted_in: 2,
                in_cooldown: 1,
                over_cap: 1,
                actions: 2,
                referrer_actions: 0,
            }
        );
    }

    #[test]
    fn referrers_get_one_action_each_when_opted_in() {
        let d = day("2026-11-30");
        let found = vec![
            c("N1", Some(1.0), Some(true), Some("R1")),
            c("N2", Some(2.0), Some(true), Some("R1")),
            c("N3", Some(3.0), Some(true), Some("R2")),
        ];
        let opt_in = HashMap::from([
            ("R1".to_string(), Some(true)),
            ("R2".to_string(), Some(false)),
        ]);
        let (actions, outcome) =
            select_actions(&rule(None, true), d, found, &HashMap::new(), &opt_in);
        let referrers: Vec<(&str, &str)> = actions
            .iter()
            .filter(|a| a.recipient == "referrer")
            .map(|a| (a.customer_id.as_str(), a.about_customer_id.as_str()))
            .collect();
        assert_eq!(referrers, [("R1", "N2")]);
        assert_eq!(outcome.referrer_actions, 1);
        assert_eq!(outcome.actions, 3);
        // A cap of one leaves no room for the referrer.
        let found = vec![c("N1", Some(1.0), Some(true), Some("R1"))];
        let (actions, outcome) =
            select_actions(&rule(Some(1), true), d, found, &HashMap::new(), &opt_in);
        assert_eq!(actions.len(), 1);
        assert_eq!((outcome.referrer_actions, outcome.over_cap), (0, 1));
    }
}
