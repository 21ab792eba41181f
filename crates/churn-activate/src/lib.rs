//! Acting on the model. `score` applies a registered model to every customer of a date's
//! population and writes `<lake>/scores/as_of=D/`: churn probability, risk band and
//! percentile, the buy-till-you-die outlook (P(alive), expected purchases, discounted
//! 12-month value), value at risk and the main reasons, so marketing gets a ranked,
//! explained list.

pub mod score;

pub use score::{ScoreSummary, score};
