//! `churn train`: the time-based backtest that turns a model file into a registered model.
//!
//! With test snapshot D and horizon H, training snapshots are D − H − k·every_days
//! (k = 0 … snapshots − 1), so every training label is observed before D. With calibration,
//! the newest training snapshot (D − H) is held out: the learner fits on the older ones and
//! the calibrator on it. The model is then scored on snapshot D, whose labels are observed
//! after D, next to two baselines computed on the same rows: the best "no purchase in N days"
//! rule (N tuned on the training snapshots) and 1 − P(alive) of a BG/NBD model fitted on the
//! history before D.

use std::collections::HashMap;
use std::time::Instant;

use chrono::{Duration, NaiveDate};
use churn_core::Lake;
use churn_core::session::{SessionOptions, new_session};
use churn_features::snapshot::{raw_name, register_lake_tables};
use churn_features::{FeatureFile, FeatureOptions, build_labels, build_snapshot};
use datafusion::prelude::ParquetReadOptions;
use ndarray::Array2;
use serde::Serialize;

use crate::btyd::{self, Summary};
use crate::calibrate::Calibrator;
use crate::classifier;
use crate::dataset::{Frame, Preprocessor, Values};
use crate::error::{ModelError, Result};
use crate::explain::{Explanation, explain};
use crate::metrics::{self, Metrics};
use crate::registry::{self, ARTIFACT_SCHEMA_VERSION, Artifact};
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

/// Inputs of a training run besides the model file.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub session: SessionOptions,
    /// Feature files used to build snapshots the lake lacks, and whose column descriptions
    /// name the features in explanations.
    pub feature_files: Vec<FeatureFile>,
    /// Population window of snapshots built here (days).
    pub lookback_days: u32,
}

/// Customers and churners of a slice of snapshots.
#[derive(Debug, Clone, Serialize)]
pub struct SliceSummary {
    pub snapshots: Vec<String>,
    pub customers: u64,
    pub churners: u64,
}

/// The tuned rule baseline.
#[derive(Debug, Clone, Serialize)]
pub struct RuleBaseline {
    /// Flag a customer when their last purchase is at least this many days before D.
    pub no_purchase_days: u32,
    /// Churn rate of flagged and unflagged customers in training: the rule's probabilities.
    pub flagged_churn_rate: f64,
    pub unflagged_churn_rate: f64,
    pub metrics: Metrics,
    /// Precision and recall of the rule's flags on the test snapshot.
    pub precision: f64,
    pub recall: f64,
}

/// The model's grade against the rule baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Grade {
    /// A: recall at the rule's precision beats the rule's by at least 10 %; B: beats it;
    /// C: does not.
    pub grade: String,
    pub rule_precision: f64,
    pub rule_recall: f64,
    pub model_recall_at_rule_precision: f64,
    pub verdict: String,
}

/// Everything a training run measured and where it put the result.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub kind: &'static str,
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
    /// Metrics of the model on the test snapshot.
    pub model: Metrics,
    pub baseline_rule: RuleBaseline,
    /// 1 − P(alive) of BG/NBD, fitted on the history before the test snapshot.
    pub baseline_bgnbd: Metrics,
    pub grade: Grade,
    pub registry_path: String,
    /// Wall time of the learner's fit alone.
    pub fit_ms: u64,
    pub duration_ms: u64,
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

    fn all(&self) -> Vec<NaiveDate> {
        let mut all = self.fit.clone();
        all.extend(self.calibration);
        all.push(self.test);
        all
    }
}

/// First and last local day with a transaction.
async fn lake_days(lake: &Lake, session: &SessionOptions) -> Result<(NaiveDate, NaiveDate)> {
    let ctx = new_session(lake, session)?;
    register_lake_tables(&ctx, lake).await?;
    let batches = ctx
        .sql(&format!(
            "SELECT CAST(min(date) AS DATE), CAST(max(date) AS DATE) FROM {}",
            raw_name(churn_core::Table::Transactions)
        ))
        .await?
        .collect()
        .await?;
    let day = |i: usize| -> Option<NaiveDate> {
        use arrow::array::{Array, AsArray};
        let col = batches[0]
            .column(i)
            .as_primitive::<arrow::datatypes::Date32Type>();
        (!col.is_null(0)).then(|| {
            NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid")
                + Duration::days(col.value(0) as i64)
        })
    };
    match (day(0), day(1)) {
        (Some(first), Some(last)) => Ok((first, last)),
        _ => Err(churn_features::FeatureError::NoTransactions.into()),
    }
}

/// Refuses a schedule the lake cannot support, before any work.
fn check_schedule(
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

/// Builds the features of `as_of` unless the lake has them, and its labels unless the lake
/// has them for this horizon. Returns what was built.
async fn ensure_snapshot(
    lake: &Lake,
    as_of: NaiveDate,
    horizon_days: u32,
    options: &TrainOptions,
) -> Result<Vec<String>> {
    let mut built = Vec::new();
    if lake
        .list_parquet(&format!("features/as_of={as_of}"))
        .await?
        .is_empty()
    {
        let feature_options = FeatureOptions {
            lookback_days: options.lookback_days,
            session: options.session.clone(),
            files: options.feature_files.clone(),
        };
        build_snapshot(lake, as_of, &feature_options).await?;
        built.push(format!("features/as_of={as_of}"));
    }
    let labels = format!("labels/as_of={as_of}");
    let current = if lake.list_parquet(&labels).await?.is_empty() {
        None
    } else {
        let ctx = new_session(lake, &options.session)?;
        ctx.register_parquet("l", lake.folder_url(&labels), ParquetReadOptions::default())
            .await?;
        let b = ctx
            .sql("SELECT CAST(min(horizon_days) AS BIGINT), CAST(max(horizon_days) AS BIGINT) FROM l")
            .await?
            .collect()
            .await?;
        use arrow::array::AsArray;
        let col = |i: usize| {
            b[0].column(i)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(0)
        };
        Some((col(0), col(1)))
    };
    if current != Some((horizon_days as i64, horizon_days as i64)) {
        build_labels(
            lake,
            &[as_of],
            horizon_days,
            options.lookback_days,
            &options.session,
        )
        .await?;
        built.push(labels);
    }
    Ok(built)
}

/// Features joined with labels for one snapshot, ordered by customer id.
async fn read_snapshot(
    lake: &Lake,
    as_of: NaiveDate,
    session: &SessionOptions,
) -> Result<(Frame, Vec<(String, String)>)> {
    let ctx = new_session(lake, session)?;
    ctx.register_parquet(
        "f",
        lake.folder_url(&format!("features/as_of={as_of}")),
        ParquetReadOptions::default(),
    )
    .await?;
    ctx.register_parquet(
        "l",
        lake.folder_url(&format!("labels/as_of={as_of}")),
        ParquetReadOptions::default(),
    )
    .await?;
    let batches = ctx
        .sql(
            "SELECT f.*, CAST(l.churned AS DOUBLE) AS churned FROM f \
             JOIN l ON f.customer_id = l.customer_id ORDER BY f.customer_id",
        )
        .await?
        .collect()
        .await?;
    Ok(Frame::from_batches(&batches, as_of))
}

/// BG/NBD and Gamma-Gamma outputs per customer, fitted on the history before `as_of`:
/// (P(alive), expected purchases over the horizon, expected value). Without `with_value`
/// only BG/NBD is fitted (the baseline needs no more) and the expected value is NaN.
async fn btyd_outputs(
    lake: &Lake,
    as_of: NaiveDate,
    horizon_days: u32,
    with_value: bool,
    session: &SessionOptions,
) -> Result<HashMap<String, [f64; 3]>> {
    let inputs =
        churn_features::btyd_inputs(lake, as_of, churn_features::Grain::Day, session).await?;
    let summaries: Vec<Summary> = inputs
        .iter()
        .map(|i| Summary {
            frequency: i.frequency,
            recency: i.recency_weeks,
            age: i.age_weeks,
            monetary: i.monetary,
        })
        .collect();
    let wrap = |source| ModelError::Btyd { as_of, source };
    let bgnbd = btyd::fit_bgnbd(&summaries).map_err(wrap)?;
    let gamma_gamma = if with_value {
        Some(btyd::fit_gamma_gamma(&summaries).map_err(wrap)?)
    } else {
        None
    };
    let horizon_weeks = horizon_days as f64 / 7.0;
    Ok(inputs
        .iter()
        .zip(&summaries)
        .map(|(i, s)| {
            let purchases = btyd::bgnbd_expected_purchases(&bgnbd, s, horizon_weeks);
            let spend = gamma_gamma
                .as_ref()
                .map_or(f64::NAN, |g| btyd::gamma_gamma_expected_spend(g, s));
            (
                i.customer_id.clone(),
                [btyd::bgnbd_p_alive(&bgnbd, s), purchases, purchases * spend],
            )
        })
        .collect())
}

fn add_btyd_columns(frame: &mut Frame, outputs: &HashMap<String, [f64; 3]>) {
    for (k, (name, _)) in BTYD_FEATURES.iter().enumerate() {
        let column: HashMap<String, f64> =
            outputs.iter().map(|(id, v)| (id.clone(), v[k])).collect();
        frame.add_numeric(name, &column);
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

fn slice_summary(frame: &Frame, dates: &[NaiveDate]) -> SliceSummary {
    SliceSummary {
        snapshots: dates.iter().map(|d| d.to_string()).collect(),
        customers: frame.rows() as u64,
        churners: frame.churned.iter().sum::<f64>() as u64,
    }
}

fn check_classes(
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

/// Tunes N of "no purchase in the last N days" on training rows by churner F1, then
/// measures the rule on the test rows.
fn rule_baseline(train: &Frame, test: &Frame) -> Result<RuleBaseline> {
    let recency = numeric(train, "recency_days")?;
    let labels = &train.churned;
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
        for (r, y) in recency.iter().zip(labels) {
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
            "A",
            "beats the rule baseline by at least 10 % on churner recall at the rule's precision",
        )
    } else if model_recall > rule.recall {
        (
            "B",
            "beats the rule baseline on churner recall at the rule's precision, by less than 10 %",
        )
    } else {
        (
            "C",
            "does NOT beat the rule baseline on churner recall at the rule's precision: do not use it over the rule",
        )
    };
    Grade {
        grade: grade.to_string(),
        rule_precision: rule.precision,
        rule_recall: rule.recall,
        model_recall_at_rule_precision: model_recall,
        verdict: verdict.to_string(),
    }
}

/// A stable hash of the rows a model saw: ids, dates, labels and design matrices.
fn fingerprint(parts: &[(&Frame, &Array2<f64>)]) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for (frame, x) in parts {
        for (id, d) in frame.customer_ids.iter().zip(&frame.as_of) {
            h.update(id.as_bytes());
            h.update(&[0]);
            h.update(d.to_string().as_bytes());
        }
        for y in &frame.churned {
            h.update(&y.to_le_bytes());
        }
        for v in x.iter() {
            h.update(&v.to_le_bytes());
        }
    }
    format!("xxh3-128:{:032x}", h.digest128())
}

fn descriptions(files: &[FeatureFile]) -> HashMap<String, String> {
    let mut map: HashMap<String, String> = files
        .iter()
        .flat_map(|f| {
            f.columns
                .iter()
                .map(|c| (c.name.clone(), c.description.clone()))
        })
        .collect();
    for (name, text) in BTYD_FEATURES {
        map.insert(name.to_string(), text.to_string());
    }
    map
}

/// Loads the snapshots of `dates` into one frame (with BTYD columns when asked).
async fn load_slice(
    lake: &Lake,
    spec: &ModelSpec,
    dates: &[NaiveDate],
    options: &TrainOptions,
    btyd_cache: &mut HashMap<NaiveDate, HashMap<String, [f64; 3]>>,
) -> Result<(Frame, Vec<(String, String)>)> {
    let mut frame = Frame::default();
    let mut unusable = Vec::new();
    for &d in dates {
        let (mut part, bad) = read_snapshot(lake, d, &options.session).await?;
        if spec.btyd_features {
            let outputs = match btyd_cache.entry(d) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(
                    btyd_outputs(lake, d, spec.horizon_days, true, &options.session).await?,
                ),
            };
            add_btyd_columns(&mut part, outputs);
        }
        for b in bad {
            if !unusable.contains(&b) {
                unusable.push(b);
            }
        }
        frame.append(part);
    }
    Ok((frame, unusable))
}

/// Runs the backtest, fits the final calibrated model and registers it.
pub async fn train(
    lake: &Lake,
    spec: &ModelSpec,
    as_of: NaiveDate,
    options: &TrainOptions,
) -> Result<TrainReport> {
    let started = Instant::now();
    churn_core::commit::recover(lake).await?;
    let schedule = Schedule::new(spec, as_of);
    let (first, last) = lake_days(lake, &options.session).await?;
    check_schedule(spec, &schedule, first, last)?;

    let mut built = Vec::new();
    for d in schedule.all() {
        built.extend(ensure_snapshot(lake, d, spec.horizon_days, options).await?);
    }
    let mut btyd_cache = HashMap::new();
    let (fit_frame, unusable) =
        load_slice(lake, spec, &schedule.fit, options, &mut btyd_cache).await?;
    let cal_dates: Vec<NaiveDate> = schedule.calibration.into_iter().collect();
    let (cal_frame, _) = load_slice(lake, spec, &cal_dates, options, &mut btyd_cache).await?;
    let (test_frame, _) =
        load_slice(lake, spec, &[schedule.test], options, &mut btyd_cache).await?;

    let (features, skipped_features) = select_features(spec, &fit_frame, &unusable)?;
    let training = slice_summary(&fit_frame, &schedule.fit);
    check_classes(spec, "training", &training, "fit a model")?;
    let calibration = schedule
        .calibration
        .map(|_| slice_summary(&cal_frame, &cal_dates));
    if let Some(c) = &calibration {
        check_classes(spec, "calibration", c, "calibrate the scores")?;
    }
    let test = slice_summary(&test_frame, &[schedule.test]);
    check_classes(spec, "test", &test, "measure the model")?;

    let preprocessor =
        Preprocessor::fit(&fit_frame, &features, &descriptions(&options.feature_files));
    for frame in [&cal_frame, &test_frame] {
        if frame.rows() > 0 {
            preprocessor
                .check(frame)
                .map_err(|(feature, problem)| ModelError::FeatureMismatch { feature, problem })?;
        }
    }
    let x_fit = preprocessor.transform(&fit_frame);
    let weights = sample_weights(spec.class_weight, &fit_frame.churned);
    let learner_started = Instant::now();
    let model = classifier::fit(
        &spec.learner,
        &x_fit,
        &fit_frame.churned,
        &weights,
        spec.seed,
    )?;
    let fit_ms = learner_started.elapsed().as_millis() as u64;
    tracing::info!(
        algorithm = spec.learner.algorithm().name(),
        rows = x_fit.nrows(),
        columns = x_fit.ncols(),
        ms = fit_ms,
        "model fitted"
    );

    let x_cal = preprocessor.transform(&cal_frame);
    let calibrator = if schedule.calibration.is_some() {
        Calibrator::fit(spec.calibration, &model.predict(&x_cal), &cal_frame.churned)
    } else {
        Calibrator::Identity
    };
    let x_test = preprocessor.transform(&test_frame);
    let scores: Vec<f64> = model
        .predict(&x_test)
        .into_iter()
        .map(|s| calibrator.apply(s))
        .collect();
    let model_metrics = metrics::evaluate(&scores, &test_frame.churned);

    let mut train_rows = fit_frame.clone();
    train_rows.append(cal_frame.clone());
    let rule = rule_baseline(&train_rows, &test_frame)?;
    let bgnbd_scores = match btyd_cache.get(&schedule.test) {
        Some(outputs) => outputs.clone(),
        None => {
            btyd_outputs(
                lake,
                schedule.test,
                spec.horizon_days,
                false,
                &options.session,
            )
            .await?
        }
    };
    let bgnbd: Vec<f64> = test_frame
        .customer_ids
        .iter()
        .map(|id| bgnbd_scores.get(id).map_or(0.0, |v| 1.0 - v[0]))
        .collect();
    let baseline_bgnbd = metrics::evaluate(&bgnbd, &test_frame.churned);
    let grade = grade(&scores, &test_frame.churned, &rule);

    let explanations: Vec<Explanation> = explain(&preprocessor, &model, &test_frame, &x_test);
    let artifact = Artifact {
        schema_version: ARTIFACT_SCHEMA_VERSION,
        name: spec.name.clone(),
        spec: spec.clone(),
        preprocessor,
        classifier: model,
        calibrator,
    };
    let manifest = serde_json::json!({
        "name": spec.name,
        "algorithm": spec.learner.algorithm().name(),
        "as_of": as_of.to_string(),
        "horizon_days": spec.horizon_days,
        "seed": spec.seed,
        "snapshots": {
            "training": training,
            "calibration": calibration,
            "test": test,
        },
        "data_fingerprint": fingerprint(&[(&fit_frame, &x_fit), (&cal_frame, &x_cal), (&test_frame, &x_test)]),
        "code_version": concat!("churn ", env!("CARGO_PKG_VERSION")),
        "features": features,
        "skipped_features": skipped_features,
        "trained_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    let mut report = TrainReport {
        kind: "train",
        name: spec.name.clone(),
        version: 0,
        algorithm: spec.learner.algorithm().name().to_string(),
        as_of: as_of.to_string(),
        horizon_days: spec.horizon_days,
        training,
        calibration,
        test,
        features,
        skipped_features,
        built,
        model: model_metrics,
        baseline_rule: rule,
        baseline_bgnbd,
        grade,
        registry_path: String::new(),
        fit_ms,
        duration_ms: 0,
    };
    report.version = registry::next_version(lake, &spec.name).await?;
    report.registry_path = registry::version_path(lake, &spec.name, report.version);
    report.duration_ms = started.elapsed().as_millis() as u64;
    let metrics = serde_json::to_value(&report).expect("reports serialise");
    let entry = registry::Entry {
        artifact: &artifact,
        manifest,
        metrics,
        test_frame: &test_frame,
        test_scores: &scores,
        explanations: &explanations,
    };
    registry::write(lake, report.version, entry).await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

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
