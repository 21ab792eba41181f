//! `churn bench stream`: how long a till file takes from landing to its customers' live
//! scores on the benchmark lake, file after file (the first lands while the service is still
//! reading the lake into its customer history; the later ones should cost what their rows
//! cost, whatever the lake's size), and the rows per second the stream keeps up with when files land faster
//! than it takes them. Beside them, the nightly `churn score` of every customer of the same
//! lake: what a store would have to run again without the stream.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use churn_stream::{CheckpointRecord, StreamSummary};
use serde::Serialize;

use crate::run::{Run, measure};
use crate::store::remove;
use crate::{BenchError, Result, Setup};

/// The model the stream's live scores use: a logistic regression (trained once on the
/// benchmark lake, untimed; the algorithm does not change what a live score costs).
const MODEL: &str = "bench-stream";
/// The test snapshot of that model and the nightly scores' date (the store ends 2026-10-31).
const TRAIN_AS_OF: &str = "2026-08-03";
const NIGHT: &str = "2026-11-01";
/// Files per micro-batch while files land faster than the stream takes them.
const BURST_BATCH_FILES: usize = 4;
/// Longest wait for one file's live scores.
const WAIT: Duration = Duration::from_secs(900);

/// One landed file's way to its live scores.
#[derive(Debug, Clone, Serialize)]
pub struct LiveLatency {
    pub rows: u64,
    pub customers_scored: u64,
    /// From the file landing (its modification time) to its rows committed.
    pub commit_lag_seconds: f64,
    /// From the file landing to its live scores written.
    pub live_lag_seconds: f64,
    /// Of which: the live scores themselves (history brought up to date, features, scores).
    pub live_seconds: f64,
}

/// The stream's figures and the nightly score's.
#[derive(Debug, Clone, Serialize)]
pub struct StreamFigures {
    pub kind: &'static str,
    pub customers: u64,
    /// Rows per landed file.
    pub file_rows: u64,
    /// `churn score` of every customer of the lake on the night.
    pub nightly_score_seconds: f64,
    pub nightly_score_peak_rss_mib: f64,
    pub nightly_customers: u64,
    /// Files landed one at a time, each once the previous one had its live scores; the
    /// first lands as the service starts, so it also waits for the lake to be read into the
    /// stream's customer history.
    pub one_by_one: Vec<LiveLatency>,
    /// Files landed at once, taken `burst_batch_files` per micro-batch.
    pub burst_files: usize,
    pub burst_batch_files: usize,
    pub burst_rows: u64,
    /// From the first file landing to the last batch's live scores written.
    pub burst_seconds: f64,
    pub burst_rows_per_second: f64,
    /// The stream process's peak memory (the customer history is most of it).
    pub stream_peak_rss_mib: f64,
}

/// Lands `files` files of `file_rows` rows one by one, then `burst_files` at once, into a
/// copy of the benchmark lake that has nightly scores, with one `churn stream` service
/// running throughout.
pub fn bench_stream(
    setup: &Setup,
    file_rows: u64,
    files: usize,
    burst_files: usize,
    progress: &dyn Fn(&str),
) -> Result<StreamFigures> {
    let lake = setup.lake(progress)?;
    train_model_once(setup, &lake, progress)?;
    let copy = setup
        .work
        .join(format!("stream-lake-{}-{}", setup.customers, setup.seed));
    remove(&copy)?;
    progress(&format!("copying the lake to {} ...", copy.display()));
    measure(Command::new("cp").arg("-a").arg(&lake).arg(&copy))?;

    progress(&format!("scoring every customer as of {NIGHT} ..."));
    let nightly = measure(
        Command::new(&setup.churn)
            .args([
                "score", "--json", "--as-of", NIGHT, "--model", MODEL, "--lake",
            ])
            .arg(&copy),
    )?;
    let nightly_customers = json_count(&nightly, "customers")?;

    let landing = setup.work.join("stream-landing");
    remove(&landing)?;
    std::fs::create_dir_all(&landing).map_err(|e| BenchError::io(&landing, e))?;
    let pipeline = setup.work.join("stream-bench.toml");
    let text = format!(
        "[lake]\npath = {:?}\ntimezone = \"UTC\"\n\n[sources.till]\ntable = \"transactions\"\npath = {:?}\n\n\
         [stream]\ninterval_secs = 1\nsettle_secs = 0\nmax_batch_files = {BURST_BATCH_FILES}\n",
        copy.display().to_string(),
        landing.display().to_string()
    );
    std::fs::write(&pipeline, text).map_err(|e| BenchError::io(&pipeline, e))?;
    let customer_ids = customer_ids(&setup.store(progress)?)?;
    let mut rows = RowMaker::new(setup.seed, customer_ids);

    let log = setup.work.join("stream-bench.log");
    let log_file = std::fs::File::create(&log).map_err(|e| BenchError::io(&log, e))?;
    let mut stream = Command::new(&setup.churn);
    stream
        .arg("stream")
        .arg(&pipeline)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(log_file);
    progress(&format!(
        "streaming (log in {}); landing {files} files of {file_rows} rows one by one ...",
        log.display()
    ));
    let service = Service::start(&mut stream)?;
    let mut landed = Vec::new();
    for k in 0..files {
        let name = format!("till-{k:04}.csv");
        land(&landing, &[(name.clone(), rows.file(file_rows))])?;
        landed.push(name);
        wait_for_live(&copy, &landed)?;
        progress(&format!("file {} of {files} has its live scores", k + 1));
    }
    progress(&format!("landing {burst_files} files at once ..."));
    let burst: Vec<(String, String)> = (0..burst_files)
        .map(|k| (format!("burst-{k:04}.csv"), rows.file(file_rows)))
        .collect();
    let started = Instant::now();
    land(&landing, &burst)?;
    landed.extend(burst.iter().map(|(name, _)| name.clone()));
    wait_for_live(&copy, &landed)?;
    let burst_seconds = started.elapsed().as_secs_f64();
    let (summary, stream_peak_rss_mib) = service.stop()?;

    let batches = &summary.recent_batches;
    let one_by_one = batches
        .iter()
        .take(files)
        .map(|b| LiveLatency {
            rows: b.accepted,
            customers_scored: b.live.as_ref().map_or(0, |l| l.scored),
            commit_lag_seconds: b.lag_ms as f64 / 1000.0,
            live_lag_seconds: b.live_lag_ms.unwrap_or(0) as f64 / 1000.0,
            live_seconds: b.live.as_ref().map_or(0, |l| l.duration_ms) as f64 / 1000.0,
        })
        .collect();
    let burst_rows = file_rows * burst_files as u64;
    Ok(StreamFigures {
        kind: "bench_stream",
        customers: setup.customers,
        file_rows,
        nightly_score_seconds: nightly.wall_seconds,
        nightly_score_peak_rss_mib: nightly.peak_rss_mib,
        nightly_customers,
        one_by_one,
        burst_files,
        burst_batch_files: BURST_BATCH_FILES,
        burst_rows,
        burst_seconds,
        burst_rows_per_second: burst_rows as f64 / burst_seconds,
        stream_peak_rss_mib,
    })
}

/// Registers the benchmark's model on the benchmark lake unless it is there.
fn train_model_once(setup: &Setup, lake: &Path, progress: &dyn Fn(&str)) -> Result<()> {
    if lake.join("_models").join(MODEL).is_dir() {
        return Ok(());
    }
    let models = setup.work.join("bench-models");
    std::fs::create_dir_all(&models).map_err(|e| BenchError::io(&models, e))?;
    let file = models.join(format!("{MODEL}.toml"));
    std::fs::write(
        &file,
        format!("name = \"{MODEL}\"\nalgorithm = \"logistic\"\n[features]\nexclude = [\"tier\"]\n"),
    )
    .map_err(|e| BenchError::io(&file, e))?;
    progress("training the model the live scores use (once, untimed) ...");
    measure(
        Command::new(&setup.churn)
            .args(["train", "--json", "--as-of", TRAIN_AS_OF, "--lake"])
            .arg(lake)
            .arg("--model")
            .arg(&file),
    )?;
    Ok(())
}

/// A count field of a child's JSON output.
fn json_count(run: &Run, field: &'static str) -> Result<u64> {
    let value: serde_json::Value = run.json("the score summary")?;
    value[field].as_u64().ok_or_else(|| BenchError::Count {
        what: field,
        text: value[field].to_string(),
    })
}

/// The store's customer ids (first column of `customers.csv`).
fn customer_ids(store: &Path) -> Result<Vec<String>> {
    let path = store.join("customers.csv");
    let text = std::fs::read_to_string(&path).map_err(|e| BenchError::io(&path, e))?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|line| line.split(',').next())
        .map(str::to_string)
        .collect())
}

/// Till files of purchases by the store's customers on the night's day, each row new.
struct RowMaker {
    state: u64,
    customers: Vec<String>,
    next_id: u64,
}

impl RowMaker {
    fn new(seed: u64, customers: Vec<String>) -> RowMaker {
        RowMaker {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            customers,
            next_id: 0,
        }
    }

    /// xorshift64*: reproducible without a dependency.
    fn next(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn file(&mut self, rows: u64) -> String {
        let mut text = String::from(
            "transaction_id,customer_id,ts,amount,quantity,product_category,store_id,channel,discount,is_return\n",
        );
        for _ in 0..rows {
            let pick = (self.next() % self.customers.len() as u64) as usize;
            let second = self.next() % 86_400;
            let cents = 500 + self.next() % 9_500;
            let customer = &self.customers[pick];
            self.next_id += 1;
            text.push_str(&format!(
                "STREAM{:09},{customer},{NIGHT} {:02}:{:02}:{:02},{}.{:02},1,Grocery,S01,store,0.00,false\n",
                self.next_id,
                second / 3600,
                second / 60 % 60,
                second % 60,
                cents / 100,
                cents % 100
            ));
        }
        text
    }
}

/// Writes each file under a hidden name, then renames them all into place (a rename is
/// atomic, so the stream never sees half a file).
fn land(landing: &Path, files: &[(String, String)]) -> Result<()> {
    let mut hidden = Vec::new();
    for (name, text) in files {
        let path = landing.join(format!(".{name}"));
        std::fs::write(&path, text).map_err(|e| BenchError::io(&path, e))?;
        hidden.push((path, landing.join(name)));
    }
    for (from, to) in hidden {
        std::fs::rename(&from, &to).map_err(|e| BenchError::io(&from, e))?;
    }
    Ok(())
}

/// Waits until every one of `landed` is in a checkpoint record and every record's batch
/// has its live scores.
fn wait_for_live(lake: &Path, landed: &[String]) -> Result<()> {
    let started = Instant::now();
    loop {
        if all_live(lake, landed)? {
            return Ok(());
        }
        if started.elapsed() > WAIT {
            return Err(BenchError::io(
                lake,
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("landed files without live scores after {WAIT:?}"),
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn all_live(lake: &Path, landed: &[String]) -> Result<bool> {
    let records = files_in(&lake.join("_checkpoints").join("till"), "json")?;
    let live: BTreeSet<String> = files_in(&lake.join("scores_live"), "parquet")?
        .iter()
        .filter_map(|p| p.file_name()?.to_str()?.strip_prefix("part-"))
        .map(|name| name.trim_end_matches(".parquet").to_string())
        .collect();
    let mut taken = BTreeSet::new();
    for path in records {
        // A record being moved into place may be missing or half there: look again later.
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(false);
        };
        let Ok(record) = serde_json::from_str::<CheckpointRecord>(&text) else {
            return Ok(false);
        };
        if !live.contains(&record.batch_id) {
            return Ok(false);
        }
        taken.extend(record.files.iter().filter_map(|f| {
            Path::new(&f.location)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        }));
    }
    Ok(landed.iter().all(|name| taken.contains(name)))
}

/// Files with extension `ext` anywhere below `dir` (none when it does not exist).
fn files_in(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(out);
    };
    for entry in entries {
        let path = entry.map_err(|e| BenchError::io(dir, e))?.path();
        if path.is_dir() {
            out.extend(files_in(&path, ext)?);
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
    Ok(out)
}

/// The `churn stream` service as a child process.
struct Service {
    child: std::process::Child,
    command: String,
}

impl Service {
    fn start(cmd: &mut Command) -> Result<Service> {
        let command = format!("{cmd:?}");
        let child = cmd.spawn().map_err(|source| BenchError::Start {
            command: command.clone(),
            source,
        })?;
        Ok(Service { child, command })
    }

    /// Sends SIGTERM (the service finishes its batch and prints its summary) and returns
    /// the summary and the process's peak memory.
    fn stop(mut self) -> Result<(StreamSummary, f64)> {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            std::io::Read::read_to_string(&mut out, &mut stdout).map_err(|source| {
                BenchError::Wait {
                    command: self.command.clone(),
                    source,
                }
            })?;
        }
        let (status, peak_rss_mib) = crate::run::wait_measured(pid, &self.command)?;
        if status != 0 {
            return Err(BenchError::Failed {
                command: self.command,
                status,
                stdout,
            });
        }
        let summary = serde_json::from_str(&stdout).map_err(|source| BenchError::Output {
            what: "the stream summary",
            source,
        })?;
        Ok((summary, peak_rss_mib))
    }
}
