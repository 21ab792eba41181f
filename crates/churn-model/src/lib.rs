//! Churn models. So far: the buy-till-you-die models (BG/NBD, Pareto/NBD, Gamma-Gamma) fitted
//! by maximum likelihood with standard errors, which estimate how likely a customer is still
//! active and what they will buy, from frequency, recency and age alone.

pub mod btyd;
pub mod optim;
pub mod special;
