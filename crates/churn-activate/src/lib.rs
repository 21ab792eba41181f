//! Acting on the model. `score` applies a registered model to every customer of a date's
//! population and writes `<lake>/scores/as_of=D/`: churn probability, risk band and
//! percentile, the buy-till-you-die outlook (P(alive), expected purchases, discounted
//! 12-month value), value at risk and the main reasons, so marketing gets a ranked,
//! explained list. `segment` gives every customer RFM scores and a named segment, a
//! lifecycle stage, a suggested tier and rule tags (`segments/as_of=D/`); `triggers` runs the
//! retention rules of the activation file into the day's action list (`triggers/as_of=D/`);
//! `export` writes campaign lists with control groups for CRMs (`exports/as_of=D/`), and
//! `results` measures a campaign's uplift once its window has passed. `live` re-scores the
//! customers a micro-batch touched (`scores_live/`).

pub mod arrays;
pub mod error;
pub mod export;
pub mod lang;
pub mod live;
pub mod live_rules;
pub mod pii;
pub mod results;
pub mod rules;
pub mod score;
pub mod segment;
pub mod triggers;
pub mod view;

pub use error::{ActivateError, Result};
pub use export::{Campaign, ExportSummary, RawCampaign, export};
pub use lang::Lang;
pub use live::{
    LiveScoreSummary, LiveScored, LiveScorer, Touched, refresh_history, touched_customers,
};
pub use live_rules::{LiveRulesSummary, fire_live_rules};
pub use results::{CampaignResults, campaign_results};
pub use rules::Activation;
pub use score::{ScoreSummary, score};
pub use segment::{SegmentSummary, segment};
pub use triggers::{TriggersSummary, triggers};
