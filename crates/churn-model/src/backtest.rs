//! The time-based backtest as a pure computation: given the frames of the training,
//! calibration and test snapshots (read from the lake by the caller), fit the learner on the
//! training rows, calibrate it on the calibration rows, score the test rows and measure the
//! model next to two baselines on the same rows: the best "no purchase in N days" rule (N
//! tuned on the training rows) and 1 − P(alive) of BG/NBD fitted before the test snapshot.
//!
//! With test snapshot D and horizon H, training snapshots are D − H − k·every_days
//! (k = 0 … snapshots − 1), so every training label is observed before D. With calibration,
//! the newest training snapshot (D − H) is held out for the calibrator.

use std::collections::HashMap;
use std::time::Instant;

use chrono::{Duration, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::artifact::{ARTIFACT_SCHEMA_VERSION, Artifact};
use crate::btyd::CustomerOutlook;
use crate::calibrate::Calibrator;
use crate::classifier;
use crate::dataset::{Frame, Preprocessor, Values};
use crate::error::{ModelError, Result};
use crate::explain::{Directions, ReasonTexts, predict_and_reason_texts};
use crate::metrics::{self, Metrics};
use crate::spec::{Calibration, ClassWeight, ModelSpec};

/// Descriptions of the buy-till-you-die feature columns.
pub const BTYD_FEATURES: [(&str, &str); 3] = [
    (
        "btyd_p_alive",
        "BG/NBD probability that the customer is still active",
    ),
    (
        "btyd_expected_purchases",
        "BG/NBD expected purchase days over the horizon",
    ),
    (
        "btyd_expected_value",
        "expected purchases over the horizon times Gamma-Gamma expected spend",
    ),
];

/// Customers and churners of a slice of snapshots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceSummary {
    pub snapshots: Vec<String>,
    pub customers: u64,
    pub churners: u64,
}

/// The tuned rule baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleBaseline {
    /// Flag a customer when their last purchase is at least this many days before D.
    pub no_purchase_days: u32,
    /// Churn rate of flagged and unflagged customers in training: the rule's probabilities.
    #[serde(deserialize_with = "crate::metrics::f64_or_nan")]
    pub flagged_churn_rate: f64,
    #[serde(deserialize_with = "crate::metrics::f64_or_nan")]
    pub unflagged_churn_rate: f64,
    pub metrics: Metrics,
    /// Precision and recall of the rule's flags on the test snapshot.
    #[serde(deserialize_with = "crate::metrics::f64_or_nan")]
    pub precision: f64,
    #[serde(deserialize_with = "crate::metrics::f64_or_nan")]
    pub recall: f64,
}

/// A: recall at the rule's precision beats the rule's by at least 10 %; B: beats it;
/// C: does not (the rule is the better choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GradeLetter {
    A,
    B,
    C,
}

impl std::fmt::Display for GradeLetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GradeLetter::A => "A",
            GradeLetter::B => "B",
            GradeLetter::C => "C",
        })
    }
}

/// The model's grade against the rule baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grade {
    pub grade: GradeLetter,
    #[serde(deserialize_with = "crate::metrics::f64_or_nan")]
    pub rule_precision: f64,
    #[serde(deserialize_with = "crate::metrics::f64_or_nan")]
    pub rule_recall: f64,
    #[serde(deserialize_with = "crate::metrics::f64_or_nan")]
    pub model_recall_at_rule_precision: f64,
    pub verdict: String,
}

/// The snapshot dates of a run: training (oldest first), calibration, test.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub fit: Vec<NaiveDate>,
    pub calibration: Option<NaiveDate>,
    pub test: NaiveDate,
}

impl Schedule {
    pub fn new(spec: &ModelSpec, test: NaiveDate) -> Schedule {
        let newest = test - Duration::days(spec.horizon_days as i64);
        let mut training: Vec<NaiveDate> = (0..spec.training_snapshots)
            .map(|k| newest - Duration::days(k as i64 * spec.every_days as i64))
            .collect();
        training.reverse();
        let calibration = (spec.calibration != Calibration::None).then(|| {
            training
                .pop()
                .expect("validated: at least two training snapshots")
        });
        Schedule {
            fit: training,
            calibration,
            test,
        }
    }

    /// Every snapshot of the schedule, oldest first.
    pub fn all(&self) -> Vec<NaiveDate> {
        let mut all = self.fit.clone();
        all.extend(self.calibration);
        all.push(self.test);
        all
    }
}

/// Refuses a schedule that a lake whose transactions run from `first` to `last` (local
/// days) cannot support, before any work.
pub fn check_schedule(
    spec: &ModelSpec,
    schedule: &Schedule,
    first: NaiveDate,
    last: NaiveDate,
) -> Result<()> {
    let needs_through = schedule.test + Duration::days(spec.horizon_days as i64 - 1);
    if needs_through > last {
        return Err(ModelError::TestLabelsNotObservable {
            as_of: schedule.test,
            horizon_days: spec.horizon_days,
            needs_through,
            lake_ends: last,
            newest: last - Duration::days(spec.horizon_days as i64 - 1),
        });
    }
    let oldest = schedule.fit[0];
    if oldest <= first {
        return Err(ModelError::SnapshotBeforeData {
            as_of: oldest,
            lake_starts: first,
            what: "the oldest training snapshot",
        });
    }
    Ok(())
}

/// Adds the buy-till-you-die feature columns from per-customer outlooks (NaN for a customer
/// without one). Each row's outlook is looked up once for the three columns: a map by
/// customer per column, each cloning every id, took about 2 s of every 800,000-customer
/// snapshot a training read.
pub fn add_btyd_columns(frame: &mut Frame, outlooks: &HashMap<String, CustomerOutlook>) {
    let pick: [fn(&CustomerOutlook) -> f64; 3] = [
        |o| o.p_alive,
        |o| o.expected_purchases,
        |o| o.expected_value,
    ];
    // On every core: a training run looks up millions of ids (3.6M at 1M customers), and
    // these lookups were a second of its reads on one core.
    let found: Vec<Option<&CustomerOutlook>> =
        crate::parallel::map(&frame.customer_ids, |id| outlooks.get(id));
    for ((name, _), value) in BTYD_FEATURES.iter().zip(pick) {
        let column = found.iter().map(|o| o.map_or(f64::NAN, value)).collect();
        frame.add_numeric(name, column);
    }
}

/// The model's input features: the frame's columns selected by the file, in name order.
fn select_features(
    spec: &ModelSpec,
    frame: &Frame,
    unusable: &[(String, String)],
) -> Result<(Vec<String>, Vec<String>)> {
    let matcher = |patterns: &[String]| -> globset::GlobSet {
        let mut set = globset::GlobSetBuilder::new();
        for p in patterns {
            set.add(globset::Glob::new(p).expect("validated glob"));
        }
        set.build().expect("validated globs")
    };
    let include = matcher(&spec.include);
    let exclude = matcher(&spec.exclude);
    let is_glob = |p: &str| p.contains(['*', '?', '[', '{']);
    for name in spec.include.iter().filter(|p| !is_glob(p)) {
        if let Some((_, t)) = unusable.iter().find(|(n, _)| n == name) {
            return Err(ModelError::FeatureMismatch {
                feature: name.clone(),
                problem: format!("its type {t} cannot be a model input"),
            });
        }
        if !frame.columns.contains_key(name) {
            let known: Vec<&str> = frame.columns.keys().map(String::as_str).collect();
            return Err(ModelError::FeatureMismatch {
                feature: name.clone(),
                problem: format!(
                    "the features table has no such column (it has: {})",
                    known.join(", ")
                ),
            });
        }
    }
    let features: Vec<String> = frame
        .columns
        .keys()
        .filter(|n| include.is_match(n.as_str()) && !exclude.is_match(n.as_str()))
        .cloned()
        .collect();
    if features.is_empty() {
        return Err(ModelError::FeatureMismatch {
            feature: spec.include.join(", "),
            problem: "selects no usable column of the features table".into(),
        });
    }
    let skipped = unusable
        .iter()
        .filter(|(n, _)| include.is_match(n.as_str()) && !exclude.is_match(n.as_str()))
        .map(|(n, t)| format!("{n} ({t})"))
        .collect();
    Ok((features, skipped))
}

/// Customers and churners of a frame of labelled snapshots.
pub fn slice_summary(frame: &Frame, dates: &[NaiveDate]) -> SliceSummary {
    SliceSummary {
        snapshots: dates.iter().map(|d| d.to_string()).collect(),
        customers: frame.rows() as u64,
        churners: frame.churned.iter().sum::<f64>() as u64,
    }
}

/// Refuses a slice with too few churners or non-churners for `purpose`.
pub fn check_classes(
    spec: &ModelSpec,
    slice: &'static str,
    summary: &SliceSummary,
    purpose: &'static str,
) -> Result<()> {
    let positives = summary.churners as usize;
    let negatives = (summary.customers - summary.churners) as usize;
    let needed = spec.min_class_rows as usize;
    if positives < needed || negatives < needed {
        return Err(ModelError::TooFewOfAClass {
            slice,
            snapshots: summary.snapshots.join(", "),
            positives,
            negatives,
            needed,
            purpose,
        });
    }
    Ok(())
}

/// Sample weights: with balanced weighting each class weighs half the rows.
fn sample_weights(kind: ClassWeight, labels: &[f64]) -> Vec<f64> {
    let n = labels.len() as f64;
    let positives: f64 = labels.iter().sum();
    match kind {
        ClassWeight::None => vec![1.0; labels.len()],
        ClassWeight::Balanced => {
            let (wp, wn) = (n / (2.0 * positives), n / (2.0 * (n - positives)));
            labels
                .iter()
                .map(|&y| if y > 0.5 { wp } else { wn })
                .collect()
        }
    }
}

fn numeric<'a>(frame: &'a Frame, name: &str) -> Result<&'a [f64]> {
    match frame.columns.get(name) {
        Some(Values::Numeric(v)) => Ok(v),
        _ => Err(ModelError::FeatureMismatch {
            feature: name.to_string(),
            problem:
                "is needed by the rule baseline but is not a numeric column of the features table"
                    .into(),
        }),
    }
}

/// Tunes N of "no purchase in the last N days" on training rows (those of every frame of
/// `train`) by churner F1, then measures the rule on the test rows.
fn rule_baseline(train: &[&Frame], test: &Frame) -> Result<RuleBaseline> {
    // Only these two columns are read: the frames are not copied into one (at 1M customers a
    // copy of every column of the fit and calibration slices, about a gigabyte).
    let mut recency = Vec::new();
    let mut labels = Vec::new();
    // A schedule without a calibration snapshot has an empty calibration frame, no columns.
    for frame in train.iter().filter(|f| f.rows() > 0) {
        recency.extend_from_slice(numeric(frame, "recency_days")?);
        labels.extend_from_slice(&frame.churned);
    }
    let positives: f64 = labels.iter().sum();
    let mut pairs: Vec<(f64, f64)> = recency
        .iter()
        .copied()
        .zip(labels.iter().copied())
        .collect();
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut flagged, mut hits, mut best) = (0.0, 0.0, (f64::MIN, f64::INFINITY));
    let mut i = 0;
    while i < pairs.len() {
        let value = pairs[i].0;
        while i < pairs.len() && pairs[i].0 == value {
            flagged += 1.0;
            hits += pairs[i].1;
            i += 1;
        }
        let f1 = 2.0 * hits / (flagged + positives);
        if f1 > best.0 {
            best = (f1, value);
        }
    }
    let n_days = best.1.max(1.0).ceil();
    let rate = |flag: bool| {
        let (mut n, mut pos) = (0.0, 0.0);
        for (r, y) in recency.iter().zip(&labels) {
            if (*r >= n_days) == flag {
                n += 1.0;
                pos += y;
            }
        }
        if n > 0.0 { pos / n } else { 0.0 }
    };
    let (flagged_rate, unflagged_rate) = (rate(true), rate(false));
    let test_recency = numeric(test, "recency_days")?;
    let scores: Vec<f64> = test_recency
        .iter()
        .map(|&r| {
            if r >= n_days {
                flagged_rate
            } else {
                unflagged_rate
            }
        })
        .collect();
    let flags: Vec<f64> = test_recency
        .iter()
        .map(|&r| f64::from(u8::from(r >= n_days)))
        .collect();
    let (precision, recall) = metrics::precision_recall_at(&flags, &test.churned, 1.0);
    Ok(RuleBaseline {
        no_purchase_days: n_days as u32,
        flagged_churn_rate: flagged_rate,
        unflagged_churn_rate: unflagged_rate,
        metrics: metrics::evaluate(&scores, &test.churned),
        precision,
        recall,
    })
}

fn grade(scores: &[f64], labels: &[f64], rule: &RuleBaseline) -> Grade {
    let model_recall = metrics::recall_at_precision(scores, labels, rule.precision);
    let (grade, verdict) = if model_recall >= 1.1 * rule.recall {
        (
            GradeLetter::A,
            "beats the rule baseline by at least 10 % on churner recall at the rule's precision",
        )
    } else if model_recall > rule.recall {
        (
            GradeLetter::B,
            "beats the rule baseline on churner recall at the rule's precision, by less than 10 %",
        )
    } else {
        (
            GradeLetter::C,
            "does NOT beat the rule baseline on churner recall at the rule's precision: do not use it over the rule",
        )
    };
    Grade {
        grade,
        rule_precision: rule.precision,
        rule_recall: rule.recall,
        model_recall_at_rule_precision: model_recall,
        verdict: verdict.to_string(),
    }
}

/// A stable hash of the rows a model saw: ids, dates, labels and the input columns' values.
fn fingerprint(frames: &[&Frame], features: &[String]) -> String {
    let mut h = BlockHasher::default();
    for frame in frames {
        // A frame's rows come a snapshot after another: each date is formatted once per run
        // of rows, not once per row.
        let mut date = (None, String::new());
        for (id, d) in frame.customer_ids.iter().zip(&frame.as_of) {
            h.write(id.as_bytes());
            h.write(&[0]);
            if date.0 != Some(*d) {
                date = (Some(*d), d.to_string());
            }
            h.write(date.1.as_bytes());
        }
        for y in &frame.churned {
            h.write(&y.to_le_bytes());
        }
        for name in features {
            h.write(name.as_bytes());
            match frame.columns.get(name) {
                Some(Values::Numeric(v)) => v.iter().for_each(|x| h.write(&x.to_le_bytes())),
                Some(Values::Categorical(v)) => v.iter().for_each(|x| {
                    h.write(x.as_deref().unwrap_or("\0null").as_bytes());
                    h.write(&[0]);
                }),
                None => h.write(b"\0absent"),
            }
        }
    }
    format!("xxh3-128:{:032x}", h.digest128())
}

/// Bytes handed to xxh3 a block at a time: the fingerprint writes a few bytes per value
/// (3.6M rows of 42 columns in a 1M-customer run), and a streaming update per value cost more
/// than the hashing. The same bytes in the same order, so the same digest.
#[derive(Default)]
struct BlockHasher {
    hasher: xxhash_rust::xxh3::Xxh3,
    block: Vec<u8>,
}

impl BlockHasher {
    const BLOCK_BYTES: usize = 64 * 1024;

    fn write(&mut self, bytes: &[u8]) {
        self.block.extend_from_slice(bytes);
        if self.block.len() >= Self::BLOCK_BYTES {
            self.hasher.update(&self.block);
            self.block.clear();
        }
    }

    fn digest128(mut self) -> u128 {
        self.hasher.update(&self.block);
        self.hasher.digest128()
    }
}

/// Feature descriptions (from the feature files' headers) with the BTYD features added.
fn with_btyd_descriptions(descriptions: &HashMap<String, String>) -> HashMap<String, String> {
    let mut map = descriptions.clone();
    for (name, text) in BTYD_FEATURES {
        map.insert(name.to_string(), text.to_string());
    }
    map
}

/// The rows of a backtest: training, calibration (empty without calibration) and test
/// frames, labelled, with the BTYD columns already added when the spec asks for them.
#[derive(Debug, Clone, Default)]
pub struct Slices {
    pub fit: Frame,
    pub calibration: Frame,
    pub test: Frame,
    /// Feature-table columns of types a model cannot use, with their types.
    pub unusable: Vec<(String, String)>,
}

/// A fitted model and how long its learner took.
pub struct Fitted {
    pub artifact: Artifact,
    pub fit_ms: u64,
}

/// Fits the learner on `fit` and, when the spec calibrates, the calibrator on `calibration`.
pub fn fit_artifact(
    spec: &ModelSpec,
    features: &[String],
    fit: &Frame,
    calibration: &Frame,
    descriptions: &HashMap<String, String>,
) -> Result<Fitted> {
    let preprocessor = Preprocessor::fit(fit, features, &with_btyd_descriptions(descriptions));
    if calibration.rows() > 0 {
        preprocessor.check(calibration)?;
    }
    let x_fit = preprocessor.transform_for(fit, &spec.learner)?;
    let weights = sample_weights(spec.class_weight, &fit.churned);
    let started = Instant::now();
    let model = classifier::fit(&spec.learner, &x_fit, &fit.churned, &weights, spec.seed)?;
    let fit_ms = started.elapsed().as_millis() as u64;
    tracing::info!(
        algorithm = spec.learner.algorithm().name(),
        rows = x_fit.nrows(),
        columns = x_fit.ncols(),
        ms = fit_ms,
        "model fitted"
    );
    let calibrator = if spec.calibration != Calibration::None && calibration.rows() > 0 {
        let x_cal = preprocessor.transform_for(calibration, &spec.learner)?;
        Calibrator::fit(
            spec.calibration,
            &model.predict(&x_cal),
            &calibration.churned,
        )
    } else {
        Calibrator::Identity
    };
    Ok(Fitted {
        artifact: Artifact {
            schema_version: ARTIFACT_SCHEMA_VERSION,
            name: spec.name.clone(),
            spec: spec.clone(),
            preprocessor,
            classifier: model,
            calibrator,
        },
        fit_ms,
    })
}

/// Everything a backtest measured, and the model it measured.
pub struct Backtest {
    pub artifact: Artifact,
    pub features: Vec<String>,
    /// Feature-table columns a glob selected but a model cannot use, with their types.
    pub skipped_features: Vec<String>,
    pub training: SliceSummary,
    pub calibration: Option<SliceSummary>,
    pub test: SliceSummary,
    /// Metrics of the model on the test snapshot.
    pub model: Metrics,
    pub baseline_rule: RuleBaseline,
    /// 1 − P(alive) of BG/NBD, fitted on the history before the test snapshot.
    pub baseline_bgnbd: Metrics,
    pub grade: Grade,
    /// Calibrated scores of the test rows, in the test frame's order, with their reasons.
    pub test_scores: Vec<f64>,
    pub reasons: ReasonTexts,
    /// A stable hash of the rows the model saw: ids, dates, labels and design matrices.
    pub data_fingerprint: String,
    /// Wall time of the learner's fit alone.
    pub fit_ms: u64,
}

/// Runs the backtest on `slices`. `bgnbd_at_test` gives BG/NBD's outlook at the test
/// snapshot by customer id, whose P(alive) is the baseline's (a customer it lacks scores 0
/// on that baseline).
pub fn backtest(
    spec: &ModelSpec,
    schedule: &Schedule,
    slices: &Slices,
    bgnbd_at_test: &HashMap<String, CustomerOutlook>,
    descriptions: &HashMap<String, String>,
) -> Result<Backtest> {
    let Slices {
        fit,
        calibration: cal,
        test,
        unusable,
    } = slices;
    let (features, skipped_features) = select_features(spec, fit, unusable)?;
    let training = slice_summary(fit, &schedule.fit);
    check_classes(spec, "training", &training, "fit a model")?;
    let cal_dates: Vec<NaiveDate> = schedule.calibration.into_iter().collect();
    let calibration = schedule.calibration.map(|_| slice_summary(cal, &cal_dates));
    if let Some(c) = &calibration {
        check_classes(spec, "calibration", c, "calibrate the scores")?;
    }
    let test_summary = slice_summary(test, &[schedule.test]);
    check_classes(spec, "test", &test_summary, "measure the model")?;

    // What does not depend on the model (the baselines and the rows' fingerprint, about a
    // second of one core at 1M customers) is measured on a thread of its own beside the fit,
    // whose preprocessing leaves a core idle.
    let (beside, fitted) = crate::parallel::beside(
        || -> Result<_> {
            let rule = rule_baseline(&[fit, cal], test)?;
            let bgnbd: Vec<f64> = test
                .customer_ids
                .iter()
                .map(|id| bgnbd_at_test.get(id).map_or(0.0, |o| 1.0 - o.p_alive))
                .collect();
            let baseline_bgnbd = metrics::evaluate(&bgnbd, &test.churned);
            Ok((
                rule,
                baseline_bgnbd,
                fingerprint(&[fit, cal, test], &features),
            ))
        },
        || fit_artifact(spec, &features, fit, cal, descriptions),
    );
    let Fitted { artifact, fit_ms } = fitted?;
    let (rule, baseline_bgnbd, data_fingerprint) = beside?;
    let preprocessor = &artifact.preprocessor;
    let x_test = preprocessor.transform_for(test, &spec.learner)?;
    let (probabilities, reasons) = predict_and_reason_texts(
        preprocessor,
        &artifact.classifier,
        test,
        &x_test,
        Directions::UpAndDown,
    );
    let scores: Vec<f64> = probabilities
        .into_iter()
        .map(|s| artifact.calibrator.apply(s))
        .collect();
    let model_metrics = metrics::evaluate(&scores, &test.churned);

    let grade = grade(&scores, &test.churned, &rule);
    Ok(Backtest {
        artifact,
        features,
        skipped_features,
        training,
        calibration,
        test: test_summary,
        model: model_metrics,
        baseline_rule: rule,
        baseline_bgnbd,
        grade,
        test_scores: scores,
        reasons,
        data_fingerprint,
        fit_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recency_frame(recency: &[f64], churned: &[f64]) -> Frame {
        Frame {
            customer_ids: (0..recency.len()).map(|i| format!("c{i}")).collect(),
            as_of: vec![NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(); recency.len()],
            churned: churned.to_vec(),
            columns: [(
                "recency_days".to_string(),
                Values::Numeric(recency.to_vec()),
            )]
            .into(),
            types: Default::default(),
        }
    }

    #[test]
    fn btyd_columns_follow_the_frames_rows_and_are_missing_for_customers_without_an_outlook() {
        // Rows c0, c1, c2, c1 again (another snapshot); outlooks for c1 and c2 only.
        let mut frame = recency_frame(&[1.0, 2.0, 3.0, 4.0], &[0.0, 1.0, 0.0, 1.0]);
        frame.customer_ids[3] = "c1".into();
        let outlook = |p_alive, expected_purchases, expected_value| CustomerOutlook {
            p_alive,
            expected_purchases,
            expected_value,
        };
        let outlooks: HashMap<String, CustomerOutlook> = [
            ("c2".to_string(), outlook(0.25, 3.0, 40.0)),
            ("c1".to_string(), outlook(0.5, 1.5, f64::NAN)),
        ]
        .into();
        add_btyd_columns(&mut frame, &outlooks);
        let column = |name: &str| match &frame.columns[name] {
            Values::Numeric(v) => v.iter().map(|x| x.to_bits()).collect::<Vec<u64>>(),
            other => panic!("{name}: {other:?}"),
        };
        let bits = |values: [f64; 4]| values.map(f64::to_bits).to_vec();
        let nan = f64::NAN;
        assert_eq!(column("btyd_p_alive"), bits([nan, 0.5, 0.25, 0.5]));
        assert_eq!(
            column("btyd_expected_purchases"),
            bits([nan, 1.5, 3.0, 1.5])
        );
        assert_eq!(column("btyd_expected_value"), bits([nan, nan, 40.0, nan]));
        assert_eq!(frame.types["btyd_expected_value"], "Float64");
    }

    #[test]
    fn the_fingerprint_is_xxh3_of_ids_dates_labels_and_feature_values_in_order() {
        // Rows enough for the hashed bytes to span several blocks.
        let rows = 10_000;
        let recency: Vec<f64> = (0..rows)
            .map(|i| if i % 7 == 0 { f64::NAN } else { i as f64 })
            .collect();
        let churned: Vec<f64> = (0..rows).map(|i| (i % 2) as f64).collect();
        let mut frame = recency_frame(&recency, &churned);
        let later = NaiveDate::from_ymd_opt(2026, 2, 1).unwrap();
        frame.as_of[rows / 2..].fill(later);
        let tier: Vec<Option<String>> = (0..rows)
            .map(|i| (i % 3 != 0).then(|| format!("tier{}", i % 3)))
            .collect();
        frame
            .columns
            .insert("tier".to_string(), Values::Categorical(tier.clone()));
        let features = ["recency_days", "tier", "gone"].map(String::from);
        // The byte stream written out value by value, hashed in one call.
        let mut bytes = Vec::new();
        for i in 0..rows {
            bytes.extend(format!("c{i}").as_bytes());
            bytes.push(0);
            bytes.extend(
                if i < rows / 2 {
                    "2026-01-01"
                } else {
                    "2026-02-01"
                }
                .as_bytes(),
            );
        }
        for y in &churned {
            bytes.extend(y.to_le_bytes());
        }
        bytes.extend(b"recency_days");
        for x in &recency {
            bytes.extend(x.to_le_bytes());
        }
        bytes.extend(b"tier");
        for t in &tier {
            bytes.extend(t.as_deref().unwrap_or("\0null").as_bytes());
            bytes.push(0);
        }
        bytes.extend(b"gone\0absent");
        assert!(bytes.len() > 2 * BlockHasher::BLOCK_BYTES);
        let expected = format!(
            "xxh3-128:{:032x}",
            xxhash_rust::xxh3::xxh3_128(&[bytes.clone(), bytes].concat())
        );
        assert_eq!(fingerprint(&[&frame, &frame], &features), expected);
    }

    #[test]
    fn the_rule_baseline_is_tuned_on_the_rows_of_every_training_frame_and_skips_empty_ones() {
        let fit = recency_frame(&[10.0, 50.0, 100.0], &[0.0, 1.0, 1.0]);
        let calibration = recency_frame(&[5.0, 80.0], &[0.0, 1.0]);
        let test = recency_frame(&[60.0, 20.0, 55.0], &[1.0, 0.0, 0.0]);
        // By hand: 3 churners; flagging recency >= 100, 80, 50, 10, 5 gives F1 2/4, 4/5, 6/6,
        // 6/7, 6/8, so N = 50; churn rates 3/3 flagged, 0/2 not; test flags 60 and 55, one of
        // them a churner: precision 1/2, recall 1/1.
        let rule = rule_baseline(&[&fit, &Frame::default(), &calibration], &test).unwrap();
        assert_eq!(rule.no_purchase_days, 50);
        assert_eq!(rule.flagged_churn_rate, 1.0);
        assert_eq!(rule.unflagged_churn_rate, 0.0);
        assert_eq!((rule.precision, rule.recall), (0.5, 1.0));
        // From the calibration rows alone (flagging >= 80 finds the one churner: F1 1), N = 80.
        let alone = rule_baseline(&[&calibration], &test).unwrap();
        assert_eq!(alone.no_purchase_days, 80);
    }

    #[test]
    fn schedule_keeps_every_training_label_before_the_test_snapshot() {
        let spec = ModelSpec::parse("", "m", "t").unwrap();
        let d = NaiveDate::from_ymd_opt(2026, 8, 1).unwrap();
        let s = Schedule::new(&spec, d);
        let day = |m, dd| NaiveDate::from_ymd_opt(2026, m, dd).unwrap();
        assert_eq!(s.fit, [day(2, 2), day(3, 4), day(4, 3)]);
        assert_eq!(s.calibration, Some(day(5, 3)));
        assert_eq!(s.calibration.unwrap() + Duration::days(90), d);
    }

    #[test]
    fn balanced_weights_give_each_class_half_the_rows() {
        let w = sample_weights(ClassWeight::Balanced, &[1.0, 0.0, 0.0, 0.0]);
        assert_eq!(w, [2.0, 2.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0]);
    }
}
