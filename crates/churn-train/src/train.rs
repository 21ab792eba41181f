//! `churn train`: a model file becomes a registered model. The schedule of snapshots is
//! checked against the lake's days, snapshots the lake lacks are built (by
//! `churn-features`, the one code path that builds them), frames are read and given BTYD
//! features, the pure backtest of `churn-model` runs, and the result is registered.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::time::Instant;

use chrono::NaiveDate;
use churn_core::Lake;
use churn_features::{
    FeatureOptions, beside_each_other, ensure_labels, ensure_snapshot, for_each_date,
    lake_transaction_days, on_own_task,
};
use churn_model::ModelSpec;
use churn_model::artifact::Artifact;
use churn_model::backtest::{
    Backtest, Fitted, Grade, RuleBaseline, Schedule, SliceSummary, Slices, add_btyd_columns,
    backtest, check_classes, check_schedule, fit_artifact, slice_summary,
};
use churn_model::btyd::CustomerOutlook;
use churn_model::dataset::Frame;
use churn_model::metrics::Metrics;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::frames::{ReadFrame, labelled_shape, read_labelled_snapshot};
use crate::outlook::{outlooks, outlooks_at_dates};
use crate::registry::{self, ManifestSnapshots, ScoringFit, TrainingManifest};

/// Everything a training run measured and where it put the result (`metrics.json` of the
/// version, and what `churn train --json` prints).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    pub kind: String,
    pub name: String,
    pub version: u32,
    pub algorithm: String,
    pub as_of: String,
    pub horizon_days: u32,
    pub training: SliceSummary,
    pub calibration: Option<SliceSummary>,
    pub test: SliceSummary,
    pub features: Vec<String>,
    /// Feature-table columns a glob selected but a model cannot use, with their types.
    pub skipped_features: Vec<String>,
    /// Snapshots whose features or labels were built by this run.
    pub built: Vec<String>,
    /// The refit on the newest labelled snapshots that the registered artifact holds (absent
    /// with `--backtest-only`: the artifact is then the backtested model).
    #[serde(default)]
    pub scoring_fit: Option<ScoringFit>,
    /// Metrics of the model on the test snapshot.
    pub model: Metrics,
    pub baseline_rule: RuleBaseline,
    /// 1 − P(alive) of BG/NBD, fitted on the history before the test snapshot.
    pub baseline_bgnbd: Metrics,
    pub grade: Grade,
    pub registry_path: String,
    /// Present when the snapshots' frames would not fit in the memory budget and the run
    /// trained, calibrated and tested on a share of the customers instead.
    #[serde(default)]
    pub sampling: Option<Sampling>,
    /// Wall time of the learner's fit alone.
    pub fit_ms: u64,
    pub duration_ms: u64,
}

/// How a training run kept its frames within `--memory-limit`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sampling {
    /// Share of the customers kept, the same customers in every snapshot (a fixed hash of
    /// the customer id).
    pub kept_share: f64,
    /// What the frames may take: half of the memory limit (the other half is the query
    /// engine's and the process's).
    pub frame_budget_bytes: u64,
    /// What the frames held at once would take unsampled (the backtest's snapshots, or the
    /// scoring fit's with the test snapshot, whichever takes more), estimated from their rows
    /// and columns.
    pub estimated_bytes: u64,
}

/// Estimated frame bytes per row and column: the frame's value, the learner's matrix and the
/// learner's working copy (binned columns, gradients) of it.
const BYTES_PER_VALUE: u64 = 3 * 8;
/// Estimated frame bytes per row besides its values: the customer id and its bookkeeping.
const BYTES_PER_ROW: u64 = 64;

/// The sampling that keeps the frames a run holds at once (`phases`: the snapshots held
/// together, phase by phase; the largest phase counts) within half the session's memory
/// limit; `None` without a limit or when they fit.
async fn sampling_for(
    lake: &Lake,
    phases: &[Vec<NaiveDate>],
    features: &FeatureOptions,
) -> Result<Option<Sampling>> {
    let Some(limit) = features.session.memory_limit_bytes else {
        return Ok(None);
    };
    let mut shapes: HashMap<NaiveDate, (u64, u64)> = HashMap::new();
    for &as_of in phases.iter().flatten() {
        if let Entry::Vacant(e) = shapes.entry(as_of) {
            e.insert(labelled_shape(lake, as_of, &features.session).await?);
        }
    }
    let estimated_bytes = phases
        .iter()
        .map(|held| {
            held.iter()
                .map(|as_of| {
                    let (rows, columns) = shapes[as_of];
                    // BTYD columns and the label come on top of the snapshot's columns.
                    rows * ((columns + 5) * BYTES_PER_VALUE + BYTES_PER_ROW)
                })
                .sum::<u64>()
        })
        .max()
        .unwrap_or(0);
    let frame_budget_bytes = limit as u64 / 2;
    Ok((estimated_bytes > frame_budget_bytes).then(|| Sampling {
        kept_share: frame_budget_bytes as f64 / estimated_bytes as f64,
        frame_budget_bytes,
        estimated_bytes,
    }))
}

/// Builds the features and labels of every date the lake lacks, several dates at once (see
/// `snapshots_at_once`); returns what it built, oldest date first.
async fn ensure_snapshots(
    lake: &Lake,
    dates: &[NaiveDate],
    horizon_days: u32,
    features: &FeatureOptions,
) -> Result<Vec<String>> {
    let built = for_each_date(dates, &features.session, |as_of| {
        let (lake, features) = (lake.clone(), features.clone());
        async move {
            let mut built = Vec::new();
            if ensure_snapshot(&lake, as_of, &features).await? {
                built.push(format!("features/as_of={as_of}"));
            }
            let lookback = features.lookback_days;
            if ensure_labels(&lake, as_of, horizon_days, lookback, &features.session).await? {
                built.push(format!("labels/as_of={as_of}"));
            }
            Ok::<_, churn_features::FeatureError>(built)
        }
    })
    .await?;
    Ok(built.concat())
}

/// The outlooks a run needs: with BTYD columns, those of every date of the run, all from one
/// query over the history (see [`outlooks_at_dates`]); without, BG/NBD's alone at the test
/// snapshot, for the baseline.
async fn btyd_outlooks(
    lake: &Lake,
    spec: &ModelSpec,
    every_date: &[NaiveDate],
    test: NaiveDate,
    features: &FeatureOptions,
) -> Result<HashMap<NaiveDate, HashMap<String, CustomerOutlook>>> {
    if spec.btyd_features {
        return outlooks_at_dates(lake, every_date, spec.horizon_days, &features.session).await;
    }
    // On a task of its own, so on a core of its own beside the reads.
    let (lake, session, horizon_days) = (lake.clone(), features.session.clone(), spec.horizon_days);
    let baseline =
        on_own_task(async move { outlooks(&lake, test, horizon_days, false, &session).await })
            .await?;
    Ok(HashMap::from([(test, baseline)]))
}

/// Frames of single snapshots this run has read already, by date, for the scoring fit: those
/// it may take (the backtest's calibration slice, which nothing needs after the backtest) and
/// those it may only borrow (the test slice, whose rows the registry's test scores follow).
/// Copying them instead was a second of a 1M-customer run per snapshot on one core, and held
/// each snapshot twice.
#[derive(Default)]
struct ReadFrames<'a> {
    taken: Vec<(NaiveDate, Frame)>,
    borrowed: Vec<(NaiveDate, &'a Frame)>,
    /// Snapshots read from the lake already, without their BTYD columns yet.
    fetched: Vec<(NaiveDate, ReadFrame)>,
}

impl<'a> ReadFrames<'a> {
    fn borrowed(&self, as_of: NaiveDate) -> Option<&'a Frame> {
        self.borrowed
            .iter()
            .find(|(d, _)| *d == as_of)
            .map(|(_, f)| *f)
    }

    fn take(&mut self, as_of: NaiveDate) -> Option<Frame> {
        let at = self.taken.iter().position(|(d, _)| *d == as_of)?;
        Some(self.taken.swap_remove(at).1)
    }

    fn take_fetched(&mut self, as_of: NaiveDate) -> Option<ReadFrame> {
        let at = self.fetched.iter().position(|(d, _)| *d == as_of)?;
        Some(self.fetched.swap_remove(at).1)
    }
}

/// What a run's reads share: the share of customers kept, the BTYD outlooks computed once
/// per date, and the columns set aside as unusable.
struct Reads {
    keep: Option<f64>,
    /// The outlooks of the dates not read yet. A run reads each date once, so a date's
    /// outlooks (an id and three numbers per customer of the lake, about 80 MB a date at 1M
    /// customers) are let go once its frame has their columns; but those of `baseline_date`.
    outlooks: HashMap<NaiveDate, HashMap<String, CustomerOutlook>>,
    /// The test snapshot, whose outlooks the BG/NBD baseline takes after the reads.
    baseline_date: NaiveDate,
    unusable: Vec<(String, String)>,
}

/// Reads the labelled snapshots of `dates` into one frame (the kept customers when
/// sampling), with BTYD columns when the spec asks for them; outlooks are computed once per
/// date. A date in `already_read` is taken or copied from there instead of read again, and a
/// slice of one date that may only be borrowed is that frame itself.
async fn read_slice<'a>(
    lake: &Lake,
    spec: &ModelSpec,
    dates: &[NaiveDate],
    already_read: &mut ReadFrames<'a>,
    features: &FeatureOptions,
    reads: &mut Reads,
) -> Result<Cow<'a, Frame>> {
    if let [as_of] = dates
        && let Some(read) = already_read.borrowed(*as_of)
    {
        return Ok(Cow::Borrowed(read));
    }
    let mut frame = Frame::default();
    for &as_of in dates {
        if let Some(read) = already_read.take(as_of) {
            frame.append(read)?;
            continue;
        }
        if let Some(read) = already_read.borrowed(as_of) {
            frame.append(read.clone())?;
            continue;
        }
        let read = match already_read.take_fetched(as_of) {
            Some(read) => read,
            None => read_date(lake, as_of, features, reads.keep).await?,
        };
        frame.append(with_btyd_columns(lake, spec, as_of, read, features, reads).await?)?;
    }
    Ok(Cow::Owned(frame))
}

/// Reads the labelled snapshot of `as_of` (the kept customers when sampling), as it is in
/// the lake: no BTYD columns yet.
async fn read_date(
    lake: &Lake,
    as_of: NaiveDate,
    features: &FeatureOptions,
    keep: Option<f64>,
) -> Result<ReadFrame> {
    let reading = Instant::now();
    // On a task of the runtime rather than on the thread driving the run: there its
    // conversion to a frame was a third thread beside the query's tasks on two cores (a
    // scoring fit's read took 1.2-1.9 s, on a task 0.8 s).
    let (lake, session) = (lake.clone(), features.session.clone());
    let read =
        on_own_task(async move { read_labelled_snapshot(&lake, as_of, &session, keep).await })
            .await?;
    tracing::debug!(%as_of, rows = read.frame.customer_ids.len(), elapsed_ms = reading.elapsed().as_millis() as u64, "labelled snapshot read");
    Ok(read)
}

/// The frame of a read of `as_of` with the date's BTYD columns when the spec asks for them
/// (its outlooks taken from `reads`, computed when missing, and let go but for the
/// baseline's date); notes the read's unusable columns in `reads`.
async fn with_btyd_columns(
    lake: &Lake,
    spec: &ModelSpec,
    as_of: NaiveDate,
    read: ReadFrame,
    features: &FeatureOptions,
    reads: &mut Reads,
) -> Result<Frame> {
    let ReadFrame {
        mut frame,
        unusable,
    } = read;
    if spec.btyd_features {
        let found = match reads.outlooks.remove(&as_of) {
            Some(found) => found,
            None => outlooks(lake, as_of, spec.horizon_days, true, &features.session).await?,
        };
        add_btyd_columns(&mut frame, &found);
        if as_of == reads.baseline_date {
            reads.outlooks.insert(as_of, found);
        } else {
            drop_elsewhere(found);
        }
    }
    for column in unusable {
        if !reads.unusable.contains(&column) {
            reads.unusable.push(column);
        }
    }
    Ok(frame)
}

/// The feature descriptions from the feature files' headers, by column.
fn descriptions(features: &FeatureOptions) -> HashMap<String, String> {
    features
        .files
        .iter()
        .flat_map(|f| &f.columns)
        .map(|c| (c.name.clone(), c.description.clone()))
        .collect()
}

/// What to register after the backtest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Register {
    /// Refit the spec on the newest labelled snapshots (the test snapshot included) and
    /// register that fit to score with: a model trained today is then not two horizons old.
    ScoringFit,
    /// Register the backtested model itself.
    BacktestOnly,
}

/// Refits `spec` on the schedule whose newest labelled snapshot is `as_of` (the backtest's
/// test snapshot), with the features the backtest selected; `train` has built its snapshots
/// and computed their BTYD outlooks.
async fn scoring_fit(
    lake: &Lake,
    spec: &ModelSpec,
    as_of: NaiveDate,
    selected: &[String],
    mut already_read: ReadFrames<'_>,
    features: &FeatureOptions,
    reads: &mut Reads,
) -> Result<(Artifact, ScoringFit)> {
    let schedule = scoring_schedule(spec, as_of);
    let fit = read_slice(
        lake,
        spec,
        &schedule.fit,
        &mut already_read,
        features,
        reads,
    )
    .await?;
    let cal_dates: Vec<NaiveDate> = schedule.calibration.into_iter().collect();
    let calibration =
        read_slice(lake, spec, &cal_dates, &mut already_read, features, reads).await?;
    let training = slice_summary(&fit, &schedule.fit);
    check_classes(spec, "scoring fit", &training, "refit the model")?;
    let calibration_summary = schedule
        .calibration
        .map(|_| slice_summary(&calibration, &cal_dates));
    if let Some(c) = &calibration_summary {
        check_classes(spec, "scoring calibration", c, "calibrate the refit")?;
    }
    let Fitted { artifact, .. } =
        fit_artifact(spec, selected, &fit, &calibration, &descriptions(features))?;
    for slice in [fit, calibration] {
        if let Cow::Owned(frame) = slice {
            drop_elsewhere(frame);
        }
    }
    Ok((
        artifact,
        ScoringFit {
            training,
            calibration: calibration_summary,
        },
    ))
}

/// The schedule of the scoring fit: that of a test snapshot one horizon after `as_of`, whose
/// training ends at `as_of`.
fn scoring_schedule(spec: &ModelSpec, as_of: NaiveDate) -> Schedule {
    Schedule::new(
        spec,
        as_of + chrono::Duration::days(spec.horizon_days as i64),
    )
}

/// The snapshots a run holds frames of at once, phase by phase: the backtest's slices, then
/// (when it refits) the scoring fit's with the backtest's test slice, which it borrows as its
/// calibration (the backtest's calibration slice it takes into its fit slice, and the
/// backtest's fit slice is dropped before).
fn frames_held(
    spec: &ModelSpec,
    schedule: &Schedule,
    as_of: NaiveDate,
    register: Register,
) -> Vec<Vec<NaiveDate>> {
    let mut phases = vec![schedule.all()];
    if register == Register::ScoringFit {
        let scoring = scoring_schedule(spec, as_of);
        let mut refit = scoring.fit.clone();
        refit.extend(scoring.calibration.filter(|d| *d != schedule.test));
        refit.push(schedule.test);
        phases.push(refit);
    }
    phases
}

/// Runs the backtest of `spec` with test snapshot `as_of`, refits for scoring unless told
/// not to, and registers the model.
pub async fn train(
    lake: &Lake,
    spec: &ModelSpec,
    as_of: NaiveDate,
    features: &FeatureOptions,
    register: Register,
) -> Result<TrainReport> {
    let started = Instant::now();
    churn_core::commit::recover(lake).await?;
    let schedule = Schedule::new(spec, as_of);
    let (first, last) = lake_transaction_days(lake, &features.session).await?;
    check_schedule(spec, &schedule, first, last)?;
    // The scoring fit's snapshots are built with the backtest's, so that all of them share
    // the cores.
    let held = frames_held(spec, &schedule, as_of, register);
    let mut every_date: Vec<NaiveDate> = held.iter().flatten().copied().collect();
    every_date.sort();
    every_date.dedup();
    let built = ensure_snapshots(lake, &every_date, spec.horizon_days, features).await?;
    let sampling = sampling_for(lake, &held, features).await?;
    if let Some(s) = &sampling {
        tracing::warn!(
            kept_share = s.kept_share,
            estimated_bytes = s.estimated_bytes,
            frame_budget_bytes = s.frame_budget_bytes,
            "the snapshots' frames exceed half the memory limit: training on a share of the customers"
        );
    }

    let keep = sampling.as_ref().map(|s| s.kept_share);
    let cal_dates: Vec<NaiveDate> = schedule.calibration.into_iter().collect();
    let slice_dates = [schedule.fit.as_slice(), &cal_dates, &[schedule.test]];
    // The backtest's snapshots are read beside the BTYD outlooks (or the BG/NBD baseline
    // alone when the spec has no BTYD columns): the reads leave a core a third idle and the
    // outlooks' summaries and fits a quarter (on the 1M bench store 5 s and 8 s one after
    // the other).
    let read_dates = async {
        let mut read = Vec::new();
        for &as_of in slice_dates.iter().copied().flatten() {
            read.push((as_of, read_date(lake, as_of, features, keep).await?));
        }
        Ok::<_, TrainError>(read)
    };
    // With BTYD columns, those of the scoring fit's dates too: one query gives them all.
    // Under a memory limit (one after the other) the outlooks come first, so that their
    // query does not run while the frames are held.
    let btyd = btyd_outlooks(lake, spec, &every_date, schedule.test, features);
    let (outlooks, read) = beside_each_other(&features.session, btyd, read_dates).await?;
    let mut reads = Reads {
        keep,
        outlooks,
        baseline_date: schedule.test,
        unusable: Vec::new(),
    };
    let mut read = ReadFrames {
        fetched: read,
        ..ReadFrames::default()
    };
    let mut slice = async |dates: &[NaiveDate]| {
        read_slice(lake, spec, dates, &mut read, features, &mut reads)
            .await
            .map(Cow::into_owned)
    };
    let fit = slice(&schedule.fit).await?;
    let calibration = slice(&cal_dates).await?;
    let test = slice(&[schedule.test]).await?;
    let slices = Slices {
        fit,
        calibration,
        test,
        unusable: std::mem::take(&mut reads.unusable),
    };
    let outlooks_at_test =
        reads
            .outlooks
            .remove(&schedule.test)
            .ok_or(TrainError::MissingTestOutlooks {
                as_of: schedule.test,
            })?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "backtest inputs ready"
    );
    let result = backtest(
        spec,
        &schedule,
        &slices,
        &outlooks_at_test,
        &descriptions(features),
    )?;
    drop_elsewhere(outlooks_at_test);
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        fit_ms = result.fit_ms,
        "backtest done"
    );
    // The scoring fit's schedule is one horizon later: its calibration snapshot is this test
    // snapshot, and this calibration snapshot is among its fit snapshots (every_days divides
    // horizon_days); those are not read again. The backtest's fit slice is not needed any
    // more: dropped before the scoring fit reads its snapshots.
    let Slices {
        fit: backtest_fit,
        calibration: backtest_calibration,
        test,
        ..
    } = slices;
    drop(backtest_fit);
    let already_read = ReadFrames {
        taken: schedule
            .calibration
            .map(|date| (date, backtest_calibration))
            .into_iter()
            .collect(),
        borrowed: vec![(schedule.test, &test)],
        fetched: Vec::new(),
    };
    let refit = match register {
        Register::ScoringFit => {
            let (artifact, fit) = scoring_fit(
                lake,
                spec,
                as_of,
                &result.features,
                already_read,
                features,
                &mut reads,
            )
            .await?;
            Some((artifact, fit))
        }
        Register::BacktestOnly => None,
    };
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "scoring fit done"
    );
    let version = registry::next_version(lake, &spec.name).await?;
    let mut report = report(spec, as_of, &result, built, version, lake, started);
    report.scoring_fit = refit.as_ref().map(|(_, f)| f.clone());
    report.sampling = sampling;
    let manifest = TrainingManifest {
        name: spec.name.clone(),
        version,
        algorithm: report.algorithm.clone(),
        as_of: as_of.to_string(),
        horizon_days: spec.horizon_days,
        seed: spec.seed,
        snapshots: ManifestSnapshots {
            training: result.training.clone(),
            calibration: result.calibration.clone(),
            test: result.test.clone(),
        },
        scoring_fit: report.scoring_fit.clone(),
        data_fingerprint: result.data_fingerprint.clone(),
        code_version: concat!("churn ", env!("CARGO_PKG_VERSION")).to_string(),
        features: result.features.clone(),
        skipped_features: result.skipped_features.clone(),
        trained_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    registry::write(
        lake,
        registry::Entry {
            artifact: refit.as_ref().map_or(&result.artifact, |(a, _)| a),
            backtest_artifact: refit.as_ref().map(|_| &result.artifact),
            manifest: &manifest,
            report: &report,
            test_frame: &test,
            test_scores: &result.test_scores,
            reasons: &result.reasons,
        },
    )
    .await?;
    drop_elsewhere((test, result));
    Ok(report)
}

/// Frees `value` on a thread of its own. A run's frames and scores are millions of small
/// allocations (an id per row): freeing them took the run's one busy core a second or more at
/// the end of each fit, while the rest of the run could go on (and a process that ends
/// meanwhile need not wait for it).
fn drop_elsewhere<T: Send + 'static>(value: T) {
    if let Err(error) = std::thread::Builder::new()
        .name("churn-free".into())
        .spawn(move || drop(value))
    {
        // Without a thread the value was dropped with the closure, here; nothing is lost.
        tracing::debug!(%error, "no thread to free memory on");
    }
}

fn report(
    spec: &ModelSpec,
    as_of: NaiveDate,
    result: &Backtest,
    built: Vec<String>,
    version: u32,
    lake: &Lake,
    started: Instant,
) -> TrainReport {
    TrainReport {
        kind: "train".into(),
        name: spec.name.clone(),
        version,
        algorithm: spec.learner.algorithm().name().to_string(),
        as_of: as_of.to_string(),
        horizon_days: spec.horizon_days,
        training: result.training.clone(),
        calibration: result.calibration.clone(),
        test: result.test.clone(),
        features: result.features.clone(),
        skipped_features: result.skipped_features.clone(),
        built,
        scoring_fit: None,
        sampling: None,
        model: result.model.clone(),
        baseline_rule: result.baseline_rule.clone(),
        baseline_bgnbd: result.baseline_bgnbd.clone(),
        grade: result.grade.clone(),
        registry_path: registry::version_path(lake, &spec.name, version),
        fit_ms: result.fit_ms,
        duration_ms: started.elapsed().as_millis() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days(texts: &[&str]) -> Vec<NaiveDate> {
        texts.iter().map(|t| t.parse().unwrap()).collect()
    }

    #[test]
    fn a_refit_holds_its_new_snapshots_beside_the_backtests_test_slice_and_no_copies() {
        // 90-day horizon, a snapshot every 30 days, three fit snapshots (the defaults).
        let spec = ModelSpec::parse("", "m", "test").unwrap();
        let as_of: NaiveDate = "2026-08-03".parse().unwrap();
        let schedule = Schedule::new(&spec, as_of);
        let backtest = days(&[
            "2026-02-04",
            "2026-03-06",
            "2026-04-05",
            "2026-05-05",
            "2026-08-03",
        ]);
        // The refit's fit slice takes 2026-05-05 from the backtest's calibration slice and
        // borrows the test slice as its calibration: each is held once.
        let refit = days(&["2026-05-05", "2026-06-04", "2026-07-04", "2026-08-03"]);
        assert_eq!(
            frames_held(&spec, &schedule, as_of, Register::ScoringFit),
            [backtest.clone(), refit]
        );
        assert_eq!(
            frames_held(&spec, &schedule, as_of, Register::BacktestOnly),
            [backtest]
        );
    }
}
