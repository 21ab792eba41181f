//! The activation file (`pipelines/rules.toml`): how customers are segmented (lifecycle
//! thresholds, membership tiers) and the retention rules, as data. Parsed raw, then validated
//! into a checked [`Activation`] with every problem reported at once.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ActivateError, Result};

/// The shipped playbook, used when no file is given and `pipelines/rules.toml` is absent.
pub const BUILT_IN: &str = include_str!("../../../pipelines/rules.toml");

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawActivation {
    #[serde(default)]
    segments: RawSegments,
    #[serde(default)]
    rules: Vec<RawRule>,
}

/// `[segments]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSegments {
    #[serde(default)]
    lifecycle: LifecycleThresholds,
    /// `[[segments.tiers]]`, highest first. Default: diamond, gold, silver (see
    /// [`default_tiers`]).
    tiers: Option<Vec<TierRule>>,
}

/// `[segments.lifecycle]`: the day thresholds of the lifecycle stages, on `recency_days`
/// (days since the last purchase before D) and `tenure_days` (days since the first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleThresholds {
    /// `new` while the first purchase is at most this many days before D. Default 30.
    #[serde(default = "default_new_within_days")]
    pub new_within_days: i64,
    /// `at_risk` from this many days without a purchase; `active` below. Default 60.
    #[serde(default = "default_at_risk_after_days")]
    pub at_risk_after_days: i64,
    /// `dormant` from this many days without a purchase. Default 90. Also the gap before the
    /// last purchase that makes a returning customer `reactivated`.
    #[serde(default = "default_dormant_after_days")]
    pub dormant_after_days: i64,
    /// `lost` from this many days without a purchase. Default 180.
    #[serde(default = "default_lost_after_days")]
    pub lost_after_days: i64,
}

impl Default for LifecycleThresholds {
    fn default() -> LifecycleThresholds {
        LifecycleThresholds {
            new_within_days: default_new_within_days(),
            at_risk_after_days: default_at_risk_after_days(),
            dormant_after_days: default_dormant_after_days(),
            lost_after_days: default_lost_after_days(),
        }
    }
}

fn default_new_within_days() -> i64 {
    30
}
fn default_at_risk_after_days() -> i64 {
    60
}
fn default_dormant_after_days() -> i64 {
    90
}
fn default_lost_after_days() -> i64 {
    180
}

/// One suggested membership tier: a customer gets the first tier (highest first) whose
/// thresholds they meet over the 365 days before D.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierRule {
    /// Code of the tier (`tier` in the segments table). Required.
    pub name: String,
    /// English label. Default: the name.
    pub label_en: Option<String>,
    /// Chinese label. Default: the name.
    pub label_zh: Option<String>,
    /// Least net spend in the 365 days before D (currency units). Default 0.
    #[serde(default)]
    pub min_net_spend_365d: f64,
    /// Least purchases in the 365 days before D. Default 0.
    #[serde(default)]
    pub min_purchases_365d: i64,
}

impl TierRule {
    pub fn label(&self, lang: crate::Lang) -> &str {
        let label = match lang {
            crate::Lang::En => &self.label_en,
            crate::Lang::ZhCn => &self.label_zh,
        };
        label.as_deref().unwrap_or(&self.name)
    }
}

/// Diamond (2,000 spent and 24 purchases a year), gold (800 and 12), silver (everyone else).
pub fn default_tiers() -> Vec<TierRule> {
    let tier = |name: &str, en: &str, zh: &str, spend: f64, purchases: i64| TierRule {
        name: name.into(),
        label_en: Some(en.into()),
        label_zh: Some(zh.into()),
        min_net_spend_365d: spend,
        min_purchases_365d: purchases,
    };
    vec![
        tier("diamond", "Diamond", "钻石会员", 2000.0, 24),
        tier("gold", "Gold", "金卡会员", 800.0, 12),
        tier("silver", "Silver", "银卡会员", 0.0, 0),
    ]
}

/// `[[rules]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    /// Unique name, e.g. `win_back_30d`. Required.
    name: Option<String>,
    /// What the rule is for. Default: empty.
    #[serde(default)]
    description: String,
    /// SQL predicate over the customer view (see the README). Required.
    when: Option<String>,
    /// Action text for the day's action list. Default: none (a tag-only rule).
    action: Option<String>,
    /// Tag given to every matching customer, listed in the segments table. Default: none.
    tag: Option<String>,
    /// An action reaches a customer at most once in this many days. Default 30.
    #[serde(default = "default_cooldown_days")]
    cooldown_days: i64,
    /// Most actions of this rule in one day, highest value at risk first. Default: no cap.
    daily_cap: Option<i64>,
    /// Also act on the customer's referrer (e.g. a coupon for both). Default false.
    #[serde(default)]
    include_referrer: bool,
    /// Only customers with `marketing_opt_in = true` get the action. Default true.
    #[serde(default = "default_true")]
    requires_opt_in: bool,
    /// Run after each stream micro-batch over the customers it touched (the live customer
    /// view, see the README), instead of nightly. Default false.
    #[serde(default)]
    live: bool,
}

fn default_cooldown_days() -> i64 {
    30
}
fn default_true() -> bool {
    true
}

/// Refuses a predicate that would not stay one expression once wrapped in parentheses inside
/// a query (a `)` closing more than was opened, unbalanced quotes, a `;`), so that a rule or an
/// audience can only filter the customer view, never add rows or columns to it.
pub fn check_predicate(sql: &str) -> Result<(), String> {
    let mut depth = 0i64;
    let mut quote: Option<char> = None;
    let mut previous = ' ';
    for c in sql.chars() {
        let after = std::mem::replace(&mut previous, c);
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => {
                depth -= 1;
                if depth < 0 {
                    return Err("a `)` closes more than the predicate opened".into());
                }
            }
            (None, ';') => return Err("`;` is not allowed in a predicate".into()),
            (None, '-') if after == '-' => {
                return Err("comments (`--`) are not allowed in a predicate".into());
            }
            _ => {}
        }
    }
    if quote.is_some() {
        return Err("a quote is not closed".into());
    }
    if depth != 0 {
        return Err("a `(` is not closed".into());
    }
    Ok(())
}

/// A checked rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub name: String,
    pub description: String,
    pub when: String,
    pub action: Option<String>,
    pub tag: Option<String>,
    pub cooldown_days: i64,
    pub daily_cap: Option<u64>,
    pub include_referrer: bool,
    pub requires_opt_in: bool,
    /// Runs after each micro-batch, not nightly.
    pub live: bool,
}

/// A checked activation file.
#[derive(Debug, Clone, PartialEq)]
pub struct Activation {
    /// Where it came from (a path, or `built-in`), for messages.
    pub source: String,
    pub lifecycle: LifecycleThresholds,
    pub tiers: Vec<TierRule>,
    pub rules: Vec<Rule>,
}

impl Activation {
    /// Reads and checks a file.
    pub fn load(path: &Path) -> Result<Activation> {
        let text = std::fs::read_to_string(path).map_err(|source| ActivateError::ReadRules {
            path: path.display().to_string(),
            source,
        })?;
        Activation::parse(&text, &path.display().to_string())
    }

    /// The shipped playbook.
    pub fn built_in() -> Result<Activation> {
        Activation::parse(BUILT_IN, "built-in pipelines/rules.toml")
    }

    /// Parses and checks a file's text; `source` names it in messages.
    pub fn parse(text: &str, source: &str) -> Result<Activation> {
        let invalid = |problems| ActivateError::InvalidRules {
            path: source.to_string(),
            problems,
        };
        let raw: RawActivation = toml::from_str(text).map_err(|e| invalid(vec![e.to_string()]))?;
        let mut problems = Vec::new();
        let lifecycle = raw.segments.lifecycle;
        let l = &lifecycle;
        if !(0 < l.at_risk_after_days
            && l.at_risk_after_days < l.dormant_after_days
            && l.dormant_after_days < l.lost_after_days)
        {
            problems.push(format!(
                "[segments.lifecycle]: expected 0 < at_risk_after_days < dormant_after_days < lost_after_days, got {}, {}, {}",
                l.at_risk_after_days, l.dormant_after_days, l.lost_after_days
            ));
        }
        if l.new_within_days < 0 {
            problems.push(format!(
                "[segments.lifecycle] new_within_days: expected 0 or more, got {}",
                l.new_within_days
            ));
        }
        let tiers = raw.segments.tiers.unwrap_or_else(default_tiers);
        if tiers.is_empty() {
            problems.push("[[segments.tiers]]: expected at least one tier".into());
        }
        for (i, t) in tiers.iter().enumerate() {
            if t.name.trim().is_empty() {
                problems.push(format!("[[segments.tiers]] #{}: name is empty", i + 1));
            }
            if !t.min_net_spend_365d.is_finite() || t.min_purchases_365d < 0 {
                problems.push(format!(
                    "tier {:?}: expected a finite min_net_spend_365d and min_purchases_365d >= 0",
                    t.name
                ));
            }
        }
        if let Some(last) = tiers.last()
            && (last.min_net_spend_365d > 0.0 || last.min_purchases_365d > 0)
        {
            problems.push(format!(
                "tier {:?}: the last tier is everyone else's and must have no thresholds",
                last.name
            ));
        }
        let mut rules = Vec::new();
        for (i, r) in raw.rules.into_iter().enumerate() {
            let label = r
                .name
                .clone()
                .unwrap_or_else(|| format!("[[rules]] #{}", i + 1));
            let mut missing = |what: &str| problems.push(format!("rule {label:?}: {what}"));
            let name = r.name.clone().unwrap_or_default();
            if name.trim().is_empty() {
                missing("name is required");
            } else if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                missing("name: use letters, digits, _ and - only");
            }
            let when = r.when.clone().unwrap_or_default();
            if when.trim().is_empty() {
                missing("when (an SQL predicate) is required");
            } else if let Err(p) = check_predicate(&when) {
                missing(&format!("when: {p}"));
            }
            if r.action.is_none() && r.tag.is_none() {
                missing("give an action, a tag or both");
            }
            if r.cooldown_days < 0 {
                missing(&format!(
                    "cooldown_days: expected 0 or more, got {}",
                    r.cooldown_days
                ));
            }
            if let Some(cap) = r.daily_cap
                && cap < 1
            {
                missing(&format!("daily_cap: expected 1 or more, got {cap}"));
            }
            if r.include_referrer && r.action.is_none() {
                missing("include_referrer needs an action");
            }
            if r.live && r.action.is_none() {
                missing("a live rule needs an action (its tag goes with the action)");
            }
            if rules.iter().any(|x: &Rule| x.name == name) {
                missing("the name is used twice");
            }
            rules.push(Rule {
                name,
                description: r.description,
                when,
                action: r.action,
                tag: r.tag,
                cooldown_days: r.cooldown_days,
                daily_cap: r.daily_cap.map(|c| c.max(0) as u64),
                include_referrer: r.include_referrer,
                requires_opt_in: r.requires_opt_in,
                live: r.live,
            });
        }
        if !problems.is_empty() {
            return Err(invalid(problems));
        }
        Ok(Activation {
            source: source.to_string(),
            lifecycle,
            tiers,
            rules,
        })
    }

    /// Nightly rules (over the customer view of D).
    pub fn nightly_rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(|r| !r.live)
    }

    /// Nightly rules that give an action (the day's action list).
    pub fn action_rules(&self) -> impl Iterator<Item = &Rule> {
        self.nightly_rules().filter(|r| r.action.is_some())
    }

    /// Nightly rules that give a tag (in the segments table).
    pub fn tag_rules(&self) -> impl Iterator<Item = &Rule> {
        self.nightly_rules().filter(|r| r.tag.is_some())
    }

    /// Live rules (after each micro-batch, over the customers it touched).
    pub fn live_rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(|r| r.live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_playbook_parses_with_the_six_retention_rules() {
        let a = Activation::built_in().unwrap();
        assert_eq!(a.lifecycle, LifecycleThresholds::default());
        assert_eq!(a.tiers, default_tiers());
        let names: Vec<&str> = a.action_rules().map(|r| r.name.as_str()).collect();
        for expected in [
            "win_back_30d",
            "churn_warning_60d",
            "vip_birthday",
            "referral_first_purchase",
            "lapsed_high_spender",
            "call_list_high_risk_high_value",
        ] {
            assert!(
                names.contains(&expected),
                "{expected} missing from {names:?}"
            );
        }
        assert!(
            a.tag_rules()
                .any(|r| r.tag.as_deref() == Some("seed customer"))
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = r#"
            [segments.lifecycle]
            at_risk_after_days = 100
            dormant_after_days = 90

            [[rules]]
            name = "a"
            when = "true"

            [[rules]]
            name = "a"
            when = ""
            action = "x"
            daily_cap = 0
        "#;
        let Err(ActivateError::InvalidRules { problems, .. }) = Activation::parse(text, "t.toml")
        else {
            panic!("expected invalid rules");
        };
        assert_eq!(problems.len(), 5, "{problems:#?}");
        let all = problems.join("\n");
        for needle in [
            "at_risk_after_days",
            "action, a tag",
            "twice",
            "when",
            "daily_cap",
        ] {
            assert!(all.contains(needle), "{needle} not in {all}");
        }
    }

    #[test]
    fn a_predicate_cannot_escape_its_parentheses() {
        assert!(check_predicate("recency_days >= 30 AND (tier = 'a)b' OR tier IS NULL)").is_ok());
        assert!(check_predicate("recency_days - 1 > 0 AND tier <> 'a--b'").is_ok());
        for bad in [
            "FALSE) UNION ALL SELECT * FROM customers WHERE (TRUE",
            "x) OR (TRUE",
            "TRUE; DROP TABLE x",
            "tier = 'open",
            "(TRUE",
            "TRUE -- comment",
        ] {
            assert!(check_predicate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn live_rules_run_only_in_the_stream_and_need_an_action() {
        let a = Activation::built_in().unwrap();
        let live: Vec<&str> = a.live_rules().map(|r| r.name.as_str()).collect();
        assert_eq!(live, ["welcome_back_high_risk", "thank_you_redeemed"]);
        assert!(a.nightly_rules().all(|r| !r.live));
        assert!(a.action_rules().chain(a.tag_rules()).all(|r| !r.live));
        let err = Activation::parse(
            "[[rules]]\nname = \"a\"\nwhen = \"redeemed_in_batch\"\ntag = \"t\"\nlive = true\n",
            "t.toml",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("live rule needs an action"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Activation::parse(
            "[[rules]]\nname = \"a\"\nwhen = \"1=1\"\ntag = \"t\"\ncooldown = 3\n",
            "t.toml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("cooldown"), "{err}");
    }
}
