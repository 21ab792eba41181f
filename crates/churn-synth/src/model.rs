//! The simulated store: how one customer lives, buys, answers campaigns and leaves.
//!
//! Per customer (all drawn from a per-customer random stream, so any customer can be
//! generated alone and the output does not depend on chunking):
//! - acquisition day: member ids are sequential, so later ids join later; the first fifth
//!   of members is the existing base, active from the first weeks;
//! - purchase rate λ ~ Gamma (mean one purchase per 21 days), modulated by weekday;
//! - lifetime ~ Exponential(μ), μ ~ Gamma (mean 1/450 per day): the hidden dropout;
//! - each redeemed campaign postpones the dropout by an Exponential(120 days) extension;
//! - during the 60 days before dropout the customer drifts: half the purchase rate,
//!   smaller baskets, more returns;
//! - basket value ~ Gamma around a customer-specific mean spend; categories follow a
//!   personal preference; online share is personal.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution, Exp, Gamma};

pub const CATEGORIES: &[&str] = &[
    "Fresh Food",
    "Bakery",
    "Dairy",
    "Beverages",
    "Snacks",
    "Household",
    "Beauty",
    "Baby",
    "Pet",
    "Apparel",
    "Electronics",
    "Home & Garden",
];
const STORES: &[&str] = &["S01", "S02", "S03", "S04", "S05", "S06", "S07", "S08"];
const WEB_STORE: &str = "WEB";
/// Relative purchase intensity Monday..Sunday.
const WEEKDAY_WEIGHT: [f64; 7] = [0.85, 0.85, 0.9, 0.95, 1.1, 1.35, 1.25];
const MAX_WEEKDAY_WEIGHT: f64 = 1.35;
const DRIFT_DAYS: f64 = 60.0;

/// One transaction of a customer.
#[derive(Debug, Clone)]
pub struct Transaction {
    pub id: String,
    pub ts: NaiveDateTime,
    pub amount: f64,
    pub quantity: u32,
    pub category: &'static str,
    pub store: &'static str,
    pub channel: &'static str,
    pub discount: f64,
    pub is_return: bool,
}

/// One campaign event of a customer.
#[derive(Debug, Clone)]
pub struct CampaignEvent {
    pub campaign_id: String,
    pub ts: NaiveDateTime,
    pub event: &'static str,
}

/// Everything generated for one customer.
#[derive(Debug, Clone)]
pub struct Customer {
    pub index: u64,
    pub id: String,
    pub signup: NaiveDate,
    pub birthday: NaiveDate,
    pub tier: &'static str,
    pub referrer: Option<String>,
    pub email: String,
    pub phone: String,
    pub opt_in: bool,
    pub transactions: Vec<Transaction>,
    pub campaign_events: Vec<CampaignEvent>,
    pub alive_at_end: bool,
    /// Day the customer dropped out, if within the simulated period.
    pub dropout: Option<NaiveDate>,
    pub purchase_rate_per_day: f64,
    pub dropout_rate_per_day: f64,
    pub mean_spend: f64,
}

struct Campaign {
    id: String,
    day: f64,
}

/// The store: period, campaign calendar and seed.
pub struct StoreModel {
    seed: u64,
    start: NaiveDate,
    days: u32,
    customers: u64,
    campaigns: Vec<Campaign>,
}

/// Member id of a customer index.
pub fn customer_id(index: u64) -> String {
    format!("C{index:07}")
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn round_cents(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

impl StoreModel {
    pub fn new(seed: u64, start: NaiveDate, days: u32, customers: u64) -> Self {
        let mut campaigns = Vec::new();
        let mut month =
            NaiveDate::from_ymd_opt(start.year(), start.month(), 5).expect("valid date");
        while (month - start).num_days() < days as i64 {
            let day = (month - start).num_days();
            if day >= 14 {
                campaigns.push(Campaign {
                    id: format!("CMP-{}", month.format("%Y%m")),
                    day: day as f64 + 0.4,
                });
            }
            month = month
                .checked_add_months(chrono::Months::new(1))
                .expect("valid date");
        }
        Self {
            seed,
            start,
            days,
            customers,
            campaigns,
        }
    }

    pub fn last_day(&self) -> NaiveDate {
        self.start + Duration::days(self.days as i64 - 1)
    }

    /// Tills record whole seconds.
    fn datetime(&self, day: f64) -> NaiveDateTime {
        self.start.and_time(NaiveTime::MIN) + Duration::seconds((day * 86_400.0).floor() as i64)
    }

    fn weekday_weight(&self, day: f64) -> f64 {
        let date = self.start + Duration::days(day.floor() as i64);
        WEEKDAY_WEIGHT[date.weekday().num_days_from_monday() as usize]
    }

    /// A time of day within opening hours (9:00–21:00), busiest at lunch and after work.
    fn shop_time(rng: &mut ChaCha8Rng, day: f64) -> f64 {
        let peak = if rng.random::<f64>() < 0.45 {
            12.5
        } else {
            18.0
        };
        let hour = (peak
            + 1.8 * (rng.random::<f64>() + rng.random::<f64>() + rng.random::<f64>() - 1.5))
            .clamp(9.0, 20.99);
        day.floor() + hour / 24.0
    }

    pub fn customer(&self, index: u64) -> Customer {
        let mut rng = ChaCha8Rng::seed_from_u64(splitmix(self.seed ^ splitmix(index)));
        let horizon = self.days as f64;
        let base_share = 0.2;
        let position = index as f64 / self.customers.max(1) as f64;
        let acquired = if position < base_share {
            rng.random::<f64>() * 21.0
        } else {
            ((position - base_share) / (1.0 - base_share) * 0.92 * horizon
                + rng.random::<f64>() * 7.0)
                .min(horizon - 1.0)
        };
        let acquired = Self::shop_time(&mut rng, acquired);

        let rate: f64 = Gamma::new(1.3, 1.0 / 21.0 / 1.3)
            .expect("valid")
            .sample(&mut rng);
        let rate = rate.max(1.0 / 400.0);
        let dropout_rate: f64 = Gamma::new(0.9, 1.0 / 450.0 / 0.9)
            .expect("valid")
            .sample(&mut rng);
        let mut dropout = acquired
            + Exp::new(dropout_rate.max(1e-6))
                .expect("valid")
                .sample(&mut rng);
        let mean_spend: f64 = Gamma::new(3.0, 45.0 / 3.0).expect("valid").sample(&mut rng);
        let online_share: f64 = Beta::new(0.8, 3.0).expect("valid").sample(&mut rng);
        let home_store = STORES[rng.random_range(0..STORES.len())];
        let favourites = [
            rng.random_range(0..CATEGORIES.len()),
            rng.random_range(0..CATEGORIES.len()),
            rng.random_range(0..CATEGORIES.len()),
        ];
        let opt_in = rng.random::<f64>() < 0.8;
        let id = customer_id(index);

        // Campaigns, in time order: redemptions postpone the dropout.
        let mut campaign_events = Vec::new();
        let mut redemptions = Vec::new();
        for campaign in &self.campaigns {
            if !opt_in || campaign.day <= acquired || rng.random::<f64>() >= 0.35 {
                continue;
            }
            let alive = campaign.day < dropout;
            let sent = campaign.day + rng.random::<f64>() * 0.05;
            campaign_events.push((campaign.id.clone(), sent, "sent"));
            let (p_open, p_click, p_redeem) = if alive {
                (0.45, 0.35, 0.5)
            } else {
                (0.1, 0.1, 0.0)
            };
            if rng.random::<f64>() >= p_open {
                continue;
            }
            let opened = sent + rng.random::<f64>() * 2.0;
            campaign_events.push((campaign.id.clone(), opened, "opened"));
            if rng.random::<f64>() >= p_click {
                continue;
            }
            let clicked = opened + rng.random::<f64>() * 0.2;
            campaign_events.push((campaign.id.clone(), clicked, "clicked"));
            if rng.random::<f64>() >= p_redeem {
                continue;
            }
            let delay = 1.0 + rng.random::<f64>() * 9.0;
            let redeemed = Self::shop_time(&mut rng, clicked + delay);
            if redeemed < horizon {
                campaign_events.push((campaign.id.clone(), redeemed, "redeemed"));
                redemptions.push(redeemed);
                dropout =
                    dropout.max(redeemed) + Exp::new(1.0 / 120.0).expect("valid").sample(&mut rng);
            }
        }

        // Purchases: weekday-modulated Poisson process by thinning, slower while drifting.
        let end = dropout.min(horizon);
        let mut purchase_days = vec![acquired];
        let mut t = acquired.floor() + 1.0;
        let exp = Exp::new(rate * MAX_WEEKDAY_WEIGHT).expect("valid");
        loop {
            t += exp.sample(&mut rng);
            if t >= end {
                break;
            }
            let drifting = dropout - t < DRIFT_DAYS;
            let accept =
                self.weekday_weight(t) / MAX_WEEKDAY_WEIGHT * if drifting { 0.5 } else { 1.0 };
            if rng.random::<f64>() < accept {
                purchase_days.push(Self::shop_time(&mut rng, t));
            }
        }
        let mut purchases: Vec<(f64, bool)> =
            purchase_days.into_iter().map(|d| (d, false)).collect();
        purchases.extend(redemptions.iter().map(|d| (*d, true)));
        purchases.sort_by(|a, b| a.0.total_cmp(&b.0));

        let mut transactions = Vec::new();
        let mut returns = Vec::new();
        let mut seq = 0u32;
        let next_id = |seq: &mut u32| {
            *seq += 1;
            format!("T{index:08}{seq:04}")
        };
        for (day, redeemed) in purchases {
            let drifting = dropout - day < DRIFT_DAYS;
            let basket_mean = mean_spend * if drifting { 0.7 } else { 1.0 };
            let gross: f64 = Gamma::new(5.0, basket_mean / 5.0)
                .expect("valid")
                .sample(&mut rng);
            let gross = round_cents(gross.max(0.5));
            let discount = if redeemed {
                round_cents(gross * 0.2)
            } else if rng.random::<f64>() < 0.2 {
                round_cents(gross * rng.random_range(0.05..0.3))
            } else {
                0.0
            };
            let amount = round_cents(gross - discount);
            let category = if rng.random::<f64>() < 0.7 {
                CATEGORIES[favourites[rng.random_range(0..3)]]
            } else {
                CATEGORIES[rng.random_range(0..CATEGORIES.len())]
            };
            let (store, channel) = if rng.random::<f64>() < online_share {
                (WEB_STORE, "online")
            } else if rng.random::<f64>() < 0.85 {
                (home_store, "store")
            } else {
                (STORES[rng.random_range(0..STORES.len())], "store")
            };
            let quantity = 1 + (rng.random::<f64>() * rng.random::<f64>() * 6.0) as u32;
            let tx = Transaction {
                id: next_id(&mut seq),
                ts: self.datetime(day),
                amount,
                quantity,
                category,
                store,
                channel,
                discount,
                is_return: false,
            };
            let p_return = if drifting { 0.1 } else { 0.04 };
            let return_day = day + 1.0 + rng.random::<f64>() * 20.0;
            if rng.random::<f64>() < p_return && return_day < horizon {
                // Refunds arrive in every form the contract allows.
                let form = rng.random::<f64>();
                let (amount, is_return) = if form < 0.5 {
                    (-amount, true)
                } else if form < 0.75 {
                    (amount, true)
                } else {
                    (-amount, false)
                };
                returns.push(Transaction {
                    id: String::new(),
                    ts: self.datetime(Self::shop_time(&mut rng, return_day)),
                    amount,
                    discount: 0.0,
                    is_return,
                    ..tx.clone()
                });
            }
            transactions.push(tx);
        }
        for mut r in returns {
            r.id = next_id(&mut seq);
            transactions.push(r);
        }
        transactions.sort_by(|a, b| a.ts.cmp(&b.ts).then_with(|| a.id.cmp(&b.id)));

        let mut campaign_events: Vec<CampaignEvent> = campaign_events
            .into_iter()
            .map(|(campaign_id, day, event)| CampaignEvent {
                campaign_id,
                ts: self.datetime(day),
                event,
            })
            .collect();
        campaign_events.sort_by_key(|e| e.ts);

        let spend: f64 = transactions
            .iter()
            .map(|t| {
                if t.is_return || t.amount < 0.0 {
                    -t.amount.abs()
                } else {
                    t.amount
                }
            })
            .sum();
        let tier = if spend >= 2500.0 {
            "diamond"
        } else if spend >= 800.0 {
            "gold"
        } else {
            "silver"
        };
        let referrer = (position >= base_share && rng.random::<f64>() < 0.15)
            .then(|| customer_id(rng.random_range(0..(index as f64 * 0.9) as u64 + 1)));
        let age_days = rng.random_range(18 * 365..75 * 365);
        let birthday = self.start - Duration::days(age_days);
        let signup = (self.start + Duration::days(acquired.floor() as i64))
            - Duration::days(rng.random_range(0..3));
        let phone = format!("+86 13{:09}", splitmix(index ^ self.seed) % 1_000_000_000);
        Customer {
            index,
            email: format!("{}@example.com", id.to_lowercase()),
            id,
            signup,
            birthday,
            tier,
            referrer,
            phone,
            opt_in,
            transactions,
            campaign_events,
            alive_at_end: dropout >= horizon,
            dropout: (dropout < horizon)
                .then(|| self.start + Duration::days(dropout.floor() as i64)),
            purchase_rate_per_day: rate,
            dropout_rate_per_day: dropout_rate,
            mean_spend,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> StoreModel {
        StoreModel::new(7, NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(), 730, 1000)
    }

    #[test]
    fn a_customer_is_the_same_whenever_it_is_generated() {
        let m = model();
        let a = m.customer(42);
        let b = m.customer(42);
        assert_eq!(a.transactions.len(), b.transactions.len());
        assert_eq!(
            a.transactions.first().map(|t| t.amount),
            b.transactions.first().map(|t| t.amount)
        );
    }

    #[test]
    fn purchases_stop_at_dropout_and_stay_in_the_period() {
        let m = model();
        for i in 0..300 {
            let c = m.customer(i);
            assert!(!c.transactions.is_empty());
            let last_purchase = c
                .transactions
                .iter()
                .filter(|t| !t.is_return && t.amount > 0.0)
                .map(|t| t.ts.date())
                .max()
                .unwrap();
            if let Some(d) = c.dropout {
                assert!(last_purchase <= d, "customer {i} bought after dropping out");
            }
            assert!(c.transactions.iter().all(|t| t.ts.date() <= m.last_day()));
        }
    }

    #[test]
    fn drifting_customers_buy_less_often_before_they_leave() {
        // Across many churners, gaps in the last 60 days before dropout are longer than
        // gaps earlier in life.
        let m = model();
        let (mut early, mut late) = (Vec::new(), Vec::new());
        for i in 0..1000 {
            let c = m.customer(i);
            let Some(d) = c.dropout else { continue };
            let days: Vec<NaiveDate> = c
                .transactions
                .iter()
                .filter(|t| !t.is_return && t.amount > 0.0)
                .map(|t| t.ts.date())
                .collect();
            for w in days.windows(2) {
                let gap = (w[1] - w[0]).num_days() as f64;
                if (d - w[1]).num_days() < 60 {
                    late.push(gap)
                } else {
                    early.push(gap)
                }
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!(
            mean(&late) > mean(&early),
            "late {} early {}",
            mean(&late),
            mean(&early)
        );
    }
}
