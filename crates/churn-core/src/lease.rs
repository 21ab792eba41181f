//! One writer per lake at a time. Two jobs committing into the same lake at once could each
//! finish the other's interrupted commit, or replace a partition the other just wrote; so
//! every command that writes takes the lake's writer lease first, and readers never look at
//! it.
//!
//! The lease works on any object store, because it needs nothing but a create-if-absent put
//! (a hard link on local disks, `If-None-Match: *` on S3): a holder owns generation `n` by
//! creating `_lease/<n>.json`, which nobody else can then create. While it works it renews the
//! file's expiry in the background; when it is done it marks the file released. A lease that
//! is released, whose expiry has passed, or whose holder ran on this host and is no longer
//! running (killed, crashed), is free: the next writer takes it by creating generation
//! `n + 1` and removes the older files. A holder that finds a newer generation (it stalled past its expiry and was taken
//! over) has lost the lease and stops committing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::{PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::lake::Lake;

/// Folder of the lease files, relative to the lake root.
pub const LEASE_DIR: &str = "_lease";

/// How long a lease lasts without renewal unless told otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(120);

/// What a lease file says about its holder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub generation: u64,
    /// The command holding the lake, e.g. `churn ingest`.
    pub holder: String,
    pub host: String,
    pub pid: u32,
    /// RFC 3339, for people.
    pub acquired_at: String,
    /// The lease is stale from this moment (milliseconds since 1970-01-01 UTC) unless renewed.
    pub expires_at_unix_ms: i64,
    /// Given back by its holder. The file stays, so that generation numbers never repeat
    /// and a holder that stalled can always tell that a newer one exists.
    #[serde(default)]
    pub released: bool,
}

impl LeaseRecord {
    /// Whether nobody holds the lake through this record any more at `now`.
    fn is_stale(&self, now: DateTime<Utc>) -> bool {
        self.released
            || self.expires_at_unix_ms <= now.timestamp_millis()
            || (self.host == host_name() && !process_is_running(self.pid))
    }
}

/// How to take the lease.
#[derive(Debug, Clone)]
pub struct LeaseOptions {
    /// Who is asking (shown to a writer that has to wait).
    pub holder: String,
    /// How long to wait for another writer to finish; zero fails at once.
    pub wait: Duration,
    /// How long the lease lasts without renewal; it is renewed every third of this.
    pub ttl: Duration,
}

impl LeaseOptions {
    pub fn new(holder: &str) -> LeaseOptions {
        LeaseOptions {
            holder: holder.to_string(),
            wait: Duration::ZERO,
            ttl: DEFAULT_TTL,
        }
    }
}

/// The lake's writer lease, held until [`WriterLease::release`].
#[derive(Debug)]
pub struct WriterLease {
    lake: Lake,
    record: LeaseRecord,
    lost: Arc<AtomicBool>,
    renewal: Renewal,
}

/// The background renewal: a thread with a small runtime of its own, so that a job keeping
/// the command's runtime busy with computation (a model fit) cannot delay it past the expiry.
#[derive(Debug)]
struct Renewal {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Renewal {
    fn start(lake: Lake, record: LeaseRecord, ttl: Duration, lost: Arc<AtomicBool>) -> Renewal {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("churn-lease".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(renew(lake, record, ttl, lost, flag)),
                    Err(e) => tracing::error!(error = %e, "cannot start the lease renewal"),
                }
            })
            .ok();
        Renewal { stop, thread }
    }

    /// Stops renewing and waits for an renewal in flight.
    fn finish(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Renewal {
    fn drop(&mut self) {
        // Not released (the job failed or was cancelled): stop renewing, so that the lease
        // expires and the next writer can take over.
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// What a lake handle keeps of its writer lease: whether it is still held.
#[derive(Debug, Clone)]
pub struct LeaseGuard {
    lake: String,
    generation: u64,
    lost: Arc<AtomicBool>,
}

impl LeaseGuard {
    /// An error when another writer has taken the lake over (the holder stalled past its
    /// expiry).
    pub fn ensure_held(&self) -> Result<()> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(CoreError::LeaseLost {
                lake: self.lake.clone(),
                generation: self.generation,
            });
        }
        Ok(())
    }
}

fn lease_file(generation: u64) -> String {
    // Zero-padded so that names sort by generation.
    format!("{LEASE_DIR}/{generation:020}.json")
}

/// The name of this machine (to tell whether a holder's process can be checked here).
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes a NUL-terminated name.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Whether a process with this id runs on this machine.
fn process_is_running(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The newest lease record and every generation present (oldest first).
async fn lease_state(lake: &Lake) -> Result<(Option<LeaseRecord>, Vec<u64>)> {
    let mut generations: Vec<u64> = lake
        .list(LEASE_DIR)
        .await?
        .iter()
        .filter_map(|m| {
            m.location
                .filename()?
                .strip_suffix(".json")?
                .parse::<u64>()
                .ok()
        })
        .collect();
    generations.sort_unstable();
    let Some(&newest) = generations.last() else {
        return Ok((None, generations));
    };
    let path = lake.path(&lease_file(newest));
    match lake.read_json::<LeaseRecord>(&path).await {
        Ok(record) => Ok((Some(record), generations)),
        // Removed between the listing and the read by a writer taking over, whose newer file
        // the caller meets when its create fails.
        Err(CoreError::ObjectStore {
            source: object_store::Error::NotFound { .. },
            ..
        }) => Ok((None, generations)),
        // Unreadable (written by hand, truncated by a full disk): nobody can be holding the
        // lake through it, and taking over replaces it.
        Err(e @ CoreError::Json { .. }) => {
            tracing::warn!(error = %e, "ignoring an unreadable writer lease");
            Ok((None, generations))
        }
        Err(e) => Err(e),
    }
}

/// Writes `record` only if its generation's file does not exist; false when it does.
async fn create_record(lake: &Lake, record: &LeaseRecord) -> Result<bool> {
    let path = lake.path(&lease_file(record.generation));
    let bytes = serde_json::to_vec_pretty(record).map_err(|source| CoreError::Json {
        path: path.to_string(),
        source,
    })?;
    let options = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match lake
        .store()
        .put_opts(&path, PutPayload::from_bytes(Bytes::from(bytes)), options)
        .await
    {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
        Err(source) => Err(CoreError::ObjectStore {
            path: path.to_string(),
            source,
        }),
    }
}

/// Creates `record`'s generation and keeps it only while no newer generation exists; true
/// when the caller holds the lake. The create alone is not enough: a writer whose look at
/// the lease files is old can create a generation that a newer holder has already deleted
/// (it took `n + 1` and removed `n`), and would then hold the lake beside that holder (seen
/// as two lease files left by four `churn ingest`s started together). A generation is only
/// deleted by a writer that created a newer one first, so a file newer than the one created
/// is there to be found; the late writer removes its own file and looks again.
async fn take_generation(lake: &Lake, record: &LeaseRecord) -> Result<bool> {
    if !create_record(lake, record).await? {
        return Ok(false);
    }
    let (_, generations) = lease_state(lake).await?;
    if generations.last() > Some(&record.generation) {
        tracing::debug!(
            lake = %lake.display(),
            generation = record.generation,
            "a newer writer lease exists: giving this generation back"
        );
        lake.delete(&lake.path(&lease_file(record.generation)))
            .await?;
        return Ok(false);
    }
    Ok(true)
}

fn expiry(now: DateTime<Utc>, ttl: Duration) -> i64 {
    now.timestamp_millis()
        .saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
}

impl WriterLease {
    /// Takes the lake's writer lease, waiting up to `options.wait` for another holder; a lake
    /// still held after that is [`CoreError::LakeBusy`], naming the holder.
    pub async fn acquire(lake: &Lake, options: &LeaseOptions) -> Result<WriterLease> {
        let started = tokio::time::Instant::now();
        loop {
            let now = Utc::now();
            let (current, generations) = lease_state(lake).await?;
            let next = generations.last().map_or(1, |g| g + 1);
            match current {
                Some(held) if !held.is_stale(now) => {
                    let waited = started.elapsed();
                    if waited >= options.wait {
                        return Err(CoreError::LakeBusy {
                            lake: lake.display(),
                            holder: held.holder,
                            host: held.host,
                            pid: held.pid,
                            since: held.acquired_at,
                            waited_secs: waited.as_secs(),
                        });
                    }
                    let poll = Duration::from_millis(250).min(options.wait - waited);
                    tokio::time::sleep(poll).await;
                    continue;
                }
                // A released lease is the normal hand-over, not a writer that died.
                Some(released) if released.released => tracing::debug!(
                    lake = %lake.display(),
                    holder = %released.holder,
                    "the previous writer released the lake"
                ),
                Some(stale) => tracing::warn!(
                    lake = %lake.display(),
                    holder = %stale.holder,
                    host = %stale.host,
                    pid = stale.pid,
                    expires_at_unix_ms = stale.expires_at_unix_ms,
                    "taking over a stale writer lease"
                ),
                None => {}
            }
            let record = LeaseRecord {
                generation: next,
                holder: options.holder.clone(),
                host: host_name(),
                pid: std::process::id(),
                acquired_at: now.to_rfc3339(),
                expires_at_unix_ms: expiry(now, options.ttl),
                released: false,
            };
            if !take_generation(lake, &record).await? {
                // Another writer took this generation, or a newer one, first: look again.
                continue;
            }
            for older in generations {
                lake.delete(&lake.path(&lease_file(older))).await?;
            }
            tracing::info!(lake = %lake.display(), generation = next, "writer lease taken");
            let lost = Arc::new(AtomicBool::new(false));
            let renewal = Renewal::start(lake.clone(), record.clone(), options.ttl, lost.clone());
            return Ok(WriterLease {
                lake: lake.clone(),
                record,
                lost,
                renewal,
            });
        }
    }

    pub fn record(&self) -> &LeaseRecord {
        &self.record
    }

    /// What a lake handle keeps to refuse commits once the lease is lost.
    pub fn guard(&self) -> LeaseGuard {
        LeaseGuard {
            lake: self.lake.display(),
            generation: self.record.generation,
            lost: self.lost.clone(),
        }
    }

    /// An error when another writer has taken the lake over.
    pub fn ensure_held(&self) -> Result<()> {
        self.guard().ensure_held()
    }

    /// Gives the lake back to the next writer.
    pub async fn release(mut self) -> Result<()> {
        self.renewal.finish();
        // A holder that lost the lease has nothing to give back.
        if !self.lost.load(Ordering::SeqCst) {
            let path = self.lake.path(&lease_file(self.record.generation));
            let released = LeaseRecord {
                released: true,
                expires_at_unix_ms: Utc::now().timestamp_millis(),
                ..self.record.clone()
            };
            self.lake.write_json(&path, &released).await?;
        }
        Ok(())
    }
}

/// Renews the lease every third of its time to live until `stop`; marks it lost when a newer
/// generation appears.
async fn renew(
    lake: Lake,
    mut record: LeaseRecord,
    ttl: Duration,
    lost: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) {
    let every = ttl / 3;
    let tick = Duration::from_millis(50).min(every);
    loop {
        let mut waited = Duration::ZERO;
        while waited < every {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(tick).await;
            waited += tick;
        }
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let path = lake.path(&lease_file(record.generation));
        let taken_over = match lease_state(&lake).await {
            Ok((_, generations)) => generations.last() != Some(&record.generation),
            Err(e) => {
                tracing::warn!(error = %e, "cannot check the writer lease; retrying");
                continue;
            }
        };
        if taken_over {
            tracing::error!(
                lake = %lake.display(),
                generation = record.generation,
                "the writer lease was taken over by another writer; this job stops committing"
            );
            lost.store(true, Ordering::SeqCst);
            return;
        }
        record.expires_at_unix_ms = expiry(Utc::now(), ttl);
        if let Err(e) = lake.write_json(&path, &record).await {
            tracing::warn!(error = %e, "cannot renew the writer lease; retrying");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(holder: &str, ttl_ms: u64) -> LeaseOptions {
        LeaseOptions {
            holder: holder.into(),
            wait: Duration::ZERO,
            ttl: Duration::from_millis(ttl_ms),
        }
    }

    #[tokio::test]
    async fn a_second_writer_is_refused_naming_the_holder_until_the_first_releases() {
        let lake = Lake::open("memory://lease-refused").unwrap();
        let first = WriterLease::acquire(&lake, &options("churn ingest", 60_000))
            .await
            .unwrap();
        let err = WriterLease::acquire(&lake, &options("churn run", 60_000))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, CoreError::LakeBusy { holder, pid, .. } if holder == "churn ingest" && *pid == std::process::id()),
            "{err}"
        );
        assert_eq!(err.kind(), crate::ErrorKind::Busy);
        first.release().await.unwrap();
        let second = WriterLease::acquire(&lake, &options("churn run", 60_000))
            .await
            .unwrap();
        assert_eq!(second.record().generation, 2);
        second.release().await.unwrap();
    }

    #[tokio::test]
    async fn a_writer_late_to_a_generation_already_superseded_does_not_hold_the_lake() {
        let lake = Lake::open("memory://lease-late").unwrap();
        // Generation 1 was taken and released, then generation 2 taken (and 1 removed) by a
        // writer that still holds the lake; a third writer that listed the lease files before
        // any of this now creates generation 1, which no longer exists.
        let first = WriterLease::acquire(&lake, &options("first", 60_000))
            .await
            .unwrap();
        first.release().await.unwrap();
        let holder = WriterLease::acquire(&lake, &options("holder", 60_000))
            .await
            .unwrap();
        assert_eq!(holder.record().generation, 2);
        let (_, generations) = lease_state(&lake).await.unwrap();
        assert_eq!(generations, [2]);
        let late = LeaseRecord {
            generation: 1,
            holder: "late".into(),
            ..holder.record().clone()
        };
        assert!(!take_generation(&lake, &late).await.unwrap());
        let (newest, generations) = lease_state(&lake).await.unwrap();
        assert_eq!(generations, [2], "the late writer's file is removed");
        assert_eq!(newest.unwrap().holder, "holder");
        // Through `acquire`, the late writer waits for the holder like any other.
        let err = WriterLease::acquire(&lake, &options("late", 60_000))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, CoreError::LakeBusy { holder, .. } if holder == "holder"),
            "{err}"
        );
        holder.release().await.unwrap();
    }

    #[tokio::test]
    async fn a_waiting_writer_proceeds_once_the_holder_releases() {
        let lake = Lake::open("memory://lease-wait").unwrap();
        let first = WriterLease::acquire(&lake, &options("first", 60_000))
            .await
            .unwrap();
        let waiting = {
            let lake = lake.clone();
            tokio::spawn(async move {
                let mut opts = options("second", 60_000);
                opts.wait = Duration::from_secs(10);
                WriterLease::acquire(&lake, &opts).await
            })
        };
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!waiting.is_finished());
        first.release().await.unwrap();
        let second = waiting.await.unwrap().unwrap();
        assert_eq!(second.record().holder, "second");
        second.release().await.unwrap();
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over_and_its_holder_learns_it_lost() {
        let lake = Lake::open("memory://lease-stale").unwrap();
        // A holder whose renewals stall: its record expires and is not renewed in time.
        let stalled = LeaseRecord {
            generation: 7,
            holder: "stalled".into(),
            host: "another-host".into(),
            pid: 1,
            acquired_at: Utc::now().to_rfc3339(),
            expires_at_unix_ms: Utc::now().timestamp_millis() - 1_000,
            released: false,
        };
        assert!(create_record(&lake, &stalled).await.unwrap());
        let taker = WriterLease::acquire(&lake, &options("taker", 60_000))
            .await
            .unwrap();
        assert_eq!(taker.record().generation, 8);
        let (_, generations) = lease_state(&lake).await.unwrap();
        assert_eq!(generations, [8], "the stale file is removed");
        taker.release().await.unwrap();
    }

    #[tokio::test]
    async fn a_holder_taken_over_stops_committing() {
        let lake = Lake::open("memory://lease-lost").unwrap();
        let slow = WriterLease::acquire(&lake, &options("slow", 300))
            .await
            .unwrap();
        // Another writer takes over generation 2 (as it would after the expiry).
        let newer = LeaseRecord {
            generation: 2,
            ..slow.record().clone()
        };
        assert!(create_record(&lake, &newer).await.unwrap());
        tokio::time::sleep(Duration::from_millis(500)).await;
        let err = slow.ensure_held().unwrap_err();
        assert!(
            matches!(err, CoreError::LeaseLost { generation: 1, .. }),
            "{err}"
        );
        // A commit through a handle under that lease is refused.
        let guarded = lake.under_lease(&slow);
        assert!(matches!(
            guarded.ensure_writable(),
            Err(CoreError::LeaseLost { .. })
        ));
        assert!(lake.ensure_writable().is_ok());
        slow.release().await.unwrap();
        // The successor's file is untouched.
        assert!(lake.exists(&lake.path(&lease_file(2))).await.unwrap());
    }

    #[tokio::test]
    async fn the_lease_is_renewed_while_the_job_keeps_its_runtime_busy() {
        let lake = Lake::open("memory://lease-busy").unwrap();
        let holder = WriterLease::acquire(&lake, &options("fitting", 300))
            .await
            .unwrap();
        // A model fit computing on the only runtime thread for longer than the lease lasts.
        std::thread::sleep(Duration::from_millis(900));
        let (record, _) = lease_state(&lake).await.unwrap();
        assert!(
            record.unwrap().expires_at_unix_ms > Utc::now().timestamp_millis(),
            "renewed by its own thread"
        );
        assert!(matches!(
            WriterLease::acquire(&lake, &options("other", 300)).await,
            Err(CoreError::LakeBusy { .. })
        ));
        holder.release().await.unwrap();
    }

    #[test]
    fn a_record_of_a_process_gone_from_this_host_is_stale() {
        let now = Utc::now();
        let mut record = LeaseRecord {
            generation: 1,
            holder: "x".into(),
            host: host_name(),
            pid: std::process::id(),
            acquired_at: now.to_rfc3339(),
            expires_at_unix_ms: now.timestamp_millis() + 60_000,
            released: false,
        };
        assert!(!record.is_stale(now));
        assert!(
            LeaseRecord {
                released: true,
                ..record.clone()
            }
            .is_stale(now)
        );
        // Process ids are below 2^22 on Linux.
        record.pid = 4_194_304 + 17;
        assert!(record.is_stale(now));
        record.host = "elsewhere".into();
        assert!(!record.is_stale(now));
    }
}
