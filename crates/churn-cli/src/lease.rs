//! Commands that write to a lake hold its writer lease (`churn_core::lease`) for their whole
//! run, so that two writers never commit into one lake at once; readers (`sql`, `models`)
//! never take it. The global `--wait-secs` and `--lease-ttl-secs` flags say how long to wait
//! for another writer and how long a lease lasts without renewal.

use std::sync::OnceLock;
use std::time::Duration;

use churn_core::lease::DEFAULT_TTL;
use churn_core::{Lake, LeaseOptions, WriterLease};

/// (wait, time to live), set once from the command line.
static SETTINGS: OnceLock<(Duration, Duration)> = OnceLock::new();

pub fn configure(wait_secs: u64, ttl_secs: u64) {
    let _ = SETTINGS.set((
        Duration::from_secs(wait_secs),
        Duration::from_secs(ttl_secs.max(1)),
    ));
}

/// The lease `holder` asks for, with the command line's wait and time to live.
pub fn options(holder: &str) -> LeaseOptions {
    let (wait, ttl) = SETTINGS
        .get()
        .copied()
        .unwrap_or((Duration::ZERO, DEFAULT_TTL));
    LeaseOptions {
        holder: holder.to_string(),
        wait,
        ttl,
    }
}

/// Runs `job` on `lake` under its writer lease (as `holder`), and gives the lease back
/// whether the job succeeds or fails.
pub async fn writing<T>(
    lake: &Lake,
    holder: &str,
    job: impl AsyncFnOnce(&Lake) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let lease = WriterLease::acquire(lake, &options(holder)).await?;
    let result = job(&lake.under_lease(&lease)).await;
    let released = lease.release().await;
    let value = result?;
    released?;
    Ok(value)
}
