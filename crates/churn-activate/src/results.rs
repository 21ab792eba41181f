//! `churn campaigns results`: did a campaign work? Once its window has passed, the customers
//! it contacted on D (treated) are compared with those it held out (control): the share who
//! bought in `[D, D + window)` and the net revenue per customer, with the difference and its
//! 95 % confidence interval (normal approximation, unequal variances).

use std::time::Instant;

use chrono::NaiveDate;
use churn_core::Lake;
use churn_core::session::{SessionOptions, lake_session};
use serde::{Deserialize, Serialize};

use crate::arrays::{floats, ints, strings};
use crate::error::{ActivateError, Result};

/// z of a two-sided 95 % interval.
const Z_95: f64 = 1.959_963_984_540_054;

/// One group's outcome over the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupOutcome {
    pub customers: u64,
    /// Customers with at least one purchase in the window.
    pub buyers: u64,
    pub purchase_rate: f64,
    /// Net spend (purchases minus refunds) per customer, buyers or not.
    pub revenue_per_customer: f64,
    /// Sample standard deviation of the net spend per customer.
    pub revenue_sd: f64,
}

/// Treated minus control, with its 95 % confidence interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    pub estimate: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// The interval excludes zero.
    pub significant: bool,
}

/// What `churn campaigns results` found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CampaignResults {
    pub kind: String,
    pub campaign: String,
    pub as_of: String,
    pub window_days: u32,
    pub treated: GroupOutcome,
    pub control: GroupOutcome,
    /// `None` when either group is empty (or holds a single customer, for revenue).
    pub purchase_rate_uplift: Option<Difference>,
    pub revenue_uplift: Option<Difference>,
    pub duration_ms: u64,
}

/// A group's outcome from each customer's (purchases, net spend) in the window.
pub fn group_outcome(customers: &[(i64, f64)]) -> GroupOutcome {
    let n = customers.len();
    if n == 0 {
        return GroupOutcome::default();
    }
    let buyers = customers.iter().filter(|(p, _)| *p > 0).count();
    let mean = customers.iter().map(|(_, v)| v).sum::<f64>() / n as f64;
    let var = if n > 1 {
        customers
            .iter()
            .map(|(_, v)| (v - mean).powi(2))
            .sum::<f64>()
            / (n - 1) as f64
    } else {
        0.0
    };
    GroupOutcome {
        customers: n as u64,
        buyers: buyers as u64,
        purchase_rate: buyers as f64 / n as f64,
        revenue_per_customer: mean,
        revenue_sd: var.sqrt(),
    }
}

fn difference(estimate: f64, se: f64) -> Difference {
    let (ci_low, ci_high) = (estimate - Z_95 * se, estimate + Z_95 * se);
    Difference {
        estimate,
        ci_low,
        ci_high,
        significant: ci_low > 0.0 || ci_high < 0.0,
    }
}

/// Uplift of the purchase rate and of revenue per customer, treated minus control.
pub fn uplifts(t: &GroupOutcome, c: &GroupOutcome) -> (Option<Difference>, Option<Difference>) {
    if t.customers == 0 || c.customers == 0 {
        return (None, None);
    }
    let (nt, nc) = (t.customers as f64, c.customers as f64);
    let rate_se = (t.purchase_rate * (1.0 - t.purchase_rate) / nt
        + c.purchase_rate * (1.0 - c.purchase_rate) / nc)
        .sqrt();
    let rate = difference(t.purchase_rate - c.purchase_rate, rate_se);
    let revenue = (t.customers > 1 && c.customers > 1).then(|| {
        let se = (t.revenue_sd.powi(2) / nt + c.revenue_sd.powi(2) / nc).sqrt();
        difference(t.revenue_per_customer - c.revenue_per_customer, se)
    });
    (Some(rate), revenue)
}

/// The treated and control outcomes of `campaign` exported on `as_of`, over purchases in
/// `[as_of, end)`. `ctx` must have `campaign_assignments` and `transactions` (with `date`,
/// `amount`, `is_return`) registered; both groups are empty when the export does not exist.
pub async fn group_outcomes(
    ctx: &datafusion::prelude::SessionContext,
    campaign: &str,
    as_of: NaiveDate,
    end: NaiveDate,
) -> Result<(GroupOutcome, GroupOutcome)> {
    let name = campaign.replace('\'', "''");
    let sql = format!(
        "WITH a AS (SELECT customer_id, \"group\" FROM campaign_assignments \
                    WHERE as_of = DATE '{as_of}' AND campaign = '{name}'), \
         t AS (SELECT customer_id, \
                 sum(CASE WHEN NOT coalesce(is_return, false) AND amount > 0 THEN 1 ELSE 0 END) AS purchases, \
                 sum(CASE WHEN NOT coalesce(is_return, false) AND amount > 0 THEN amount \
                          WHEN coalesce(is_return, false) OR amount < 0 THEN -abs(amount) ELSE 0 END) AS net \
               FROM transactions WHERE date >= DATE '{as_of}' AND date < DATE '{end}' GROUP BY customer_id) \
         SELECT a.\"group\", coalesce(t.purchases, 0), coalesce(t.net, 0.0) \
         FROM a LEFT JOIN t ON t.customer_id = a.customer_id"
    );
    let mut treated = Vec::new();
    let mut control = Vec::new();
    for b in ctx.sql(&sql).await?.collect().await? {
        let groups = strings(b.column(0))?;
        let purchases = ints(b.column(1))?;
        let net = floats(b.column(2))?;
        for i in 0..b.num_rows() {
            let row = (purchases[i].unwrap_or(0), net[i].unwrap_or(0.0));
            match groups[i].as_deref() {
                Some("control") => control.push(row),
                _ => treated.push(row),
            }
        }
    }
    Ok((group_outcome(&treated), group_outcome(&control)))
}

/// The results of `campaign` exported on `as_of`, over the `window_days` from D.
pub async fn campaign_results(
    lake: &Lake,
    campaign: &str,
    as_of: NaiveDate,
    window_days: u32,
    session: &SessionOptions,
) -> Result<CampaignResults> {
    let started = Instant::now();
    churn_core::commit::recover(lake).await?;
    let (ctx, tables) = lake_session(lake, session).await?;
    let unknown = || ActivateError::UnknownCampaignExport {
        campaign: campaign.to_string(),
        as_of: as_of.to_string(),
    };
    if !tables.iter().any(|t| t.name == "campaign_assignments") {
        return Err(unknown());
    }
    let end = as_of
        .checked_add_signed(chrono::Duration::days(window_days as i64))
        .ok_or(ActivateError::WindowTooLong(window_days))?;
    let last_day = strings(
        ctx.sql("SELECT CAST(max(date) AS VARCHAR) FROM transactions")
            .await?
            .collect()
            .await?
            .first()
            .map(|b| b.column(0))
            .ok_or_else(unknown)?,
    )?
    .into_iter()
    .next()
    .flatten()
    .and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok());
    let needs = end - chrono::Duration::days(1);
    if last_day.is_none_or(|d| d < needs) {
        return Err(ActivateError::ResultsNotObservable {
            campaign: campaign.to_string(),
            needs_through: needs.to_string(),
            lake_ends: last_day.map_or_else(|| "none".into(), |d| d.to_string()),
        });
    }
    let (treated, control) = group_outcomes(&ctx, campaign, as_of, end).await?;
    if treated.customers == 0 && control.customers == 0 {
        return Err(unknown());
    }
    let (purchase_rate_uplift, revenue_uplift) = uplifts(&treated, &control);
    Ok(CampaignResults {
        kind: "campaign_results".into(),
        campaign: campaign.to_string(),
        as_of: as_of.to_string(),
        window_days,
        treated,
        control,
        purchase_rate_uplift,
        revenue_uplift,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_and_uplift_follow_the_textbook_formulas() {
        // Treated: 2 of 4 bought (10 and 30); control: 1 of 4 (20).
        let t = group_outcome(&[(1, 10.0), (0, 0.0), (2, 30.0), (0, 0.0)]);
        let c = group_outcome(&[(1, 20.0), (0, 0.0), (0, 0.0), (0, 0.0)]);
        assert_eq!(
            (t.buyers, t.purchase_rate, t.revenue_per_customer),
            (2, 0.5, 10.0)
        );
        // Sample variance of 10, 0, 30, 0 around 10: (0 + 100 + 400 + 100) / 3 = 200.
        assert!((t.revenue_sd - 200f64.sqrt()).abs() < 1e-12);
        let (rate, revenue) = uplifts(&t, &c);
        let rate = rate.unwrap();
        // 0.5 - 0.25, se = sqrt(0.25/4 + 0.1875/4).
        let se = (0.25f64 / 4.0 + 0.1875 / 4.0).sqrt();
        assert!((rate.estimate - 0.25).abs() < 1e-12);
        assert!((rate.ci_high - (0.25 + 1.959_963_984_540_054 * se)).abs() < 1e-12);
        assert!(!rate.significant);
        assert!((revenue.unwrap().estimate - 5.0).abs() < 1e-12);
        assert_eq!(uplifts(&t, &GroupOutcome::default()), (None, None));
    }
}
