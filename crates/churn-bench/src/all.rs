//! `churn bench all`: every benchmark on one generated store, one after the other, and a
//! summary with one row per step: churn's time and peak memory beside the other tool's from
//! the same run, and their ratio. The figures the speed issue tracks, from one command.

use serde::Serialize;

use crate::{
    BtydFigures, FeaturesFigures, IngestFigures, IngestMemory, Result, Setup, StreamFigures,
    TrainResults, bench_btyd, bench_features, bench_ingest, bench_stream, bench_train,
};

/// Rounds of the ingest benchmark, each side's median round in the summary: its ratio is the
/// one nearest 1, and this machine's speed from minute to minute moved one round's by 0.86-1.04
/// in five rounds (2026-12-08).
pub const INGEST_ROUNDS: usize = 3;
/// Snapshot the feature benchmark builds (the store spans 2024-11-01 to 2026-10-31).
pub const FEATURES_AS_OF: &str = "2026-06-01";
/// End of calibration of the BTYD fits.
pub const BTYD_AS_OF: &str = "2026-06-01";
/// BTYD models fitted: Pareto/NBD is left out, lifetimes takes about twenty minutes on it at
/// 1M customers (`churn bench btyd --models pareto-nbd` runs it).
pub const BTYD_MODELS: &[&str] = &["bgnbd", "gamma-gamma"];
/// Test snapshot of the training benchmark.
pub const TRAIN_AS_OF: &str = "2026-08-03";
/// The stream benchmark's till files.
#[derive(Debug, Clone, Copy)]
pub struct StreamFiles {
    pub rows: u64,
    /// Landed one at a time.
    pub files: usize,
    /// Then landed at once.
    pub burst_files: usize,
}

/// One step: churn's figure, the other tool's from the same run, and their ratio.
#[derive(Debug, Clone, Serialize)]
pub struct SummaryRow {
    pub step: String,
    /// Seconds, or a ROC AUC for the accuracy rows.
    pub churn: f64,
    pub churn_peak_rss_mib: Option<f64>,
    pub other_tool: String,
    pub other: Option<f64>,
    pub other_peak_rss_mib: Option<f64>,
    /// churn over the other tool: below 1 churn takes less time (for an AUC, above 1 churn
    /// ranks better).
    pub ratio: Option<f64>,
}

impl SummaryRow {
    fn new(step: &str, churn: f64, other_tool: &str, other: Option<f64>) -> SummaryRow {
        SummaryRow {
            step: step.to_string(),
            churn,
            churn_peak_rss_mib: None,
            other_tool: other_tool.to_string(),
            other,
            other_peak_rss_mib: None,
            ratio: other.filter(|o| *o > 0.0).map(|o| churn / o),
        }
    }

    fn peaks(mut self, churn: Option<f64>, other: Option<f64>) -> SummaryRow {
        self.churn_peak_rss_mib = churn;
        self.other_peak_rss_mib = other;
        self
    }
}

/// Every benchmark's figures and the summary.
#[derive(Debug, Clone, Serialize)]
pub struct AllFigures {
    pub kind: &'static str,
    pub customers: u64,
    pub seed: u64,
    pub ingest: IngestFigures,
    pub features: FeaturesFigures,
    pub btyd: BtydFigures,
    /// logistic and gbdt on the columns LightGBM sees (no BTYD columns).
    pub train: TrainResults,
    /// The default model's learner with its BTYD columns.
    pub default_model: TrainResults,
    pub stream: StreamFigures,
    pub summary: Vec<SummaryRow>,
}

/// Runs every benchmark on `setup`'s store.
pub fn bench_all(
    setup: &Setup,
    stream_files: StreamFiles,
    progress: &dyn Fn(&str),
) -> Result<AllFigures> {
    progress("bench all: ingest");
    let ingest = bench_ingest(setup, IngestMemory::default(), INGEST_ROUNDS, progress)?;
    progress("bench all: features");
    let features = bench_features(setup, FEATURES_AS_OF, None, progress)?;
    progress("bench all: btyd");
    let btyd = bench_btyd(setup, BTYD_AS_OF, BTYD_MODELS, progress)?;
    progress("bench all: train");
    let train = bench_train(setup, TRAIN_AS_OF, &["logistic", "gbdt"], false, progress)?;
    progress("bench all: the default model (gbdt with BTYD columns)");
    let default_model = bench_train(setup, TRAIN_AS_OF, &["gbdt"], true, progress)?;
    progress("bench all: stream");
    let stream = bench_stream(
        setup,
        stream_files.rows,
        stream_files.files,
        stream_files.burst_files,
        progress,
    )?;
    let summary = summary_rows(&ingest, &features, &btyd, &train, &default_model, &stream);
    Ok(AllFigures {
        kind: "all",
        customers: setup.customers,
        seed: setup.seed,
        ingest,
        features,
        btyd,
        train,
        default_model,
        stream,
        summary,
    })
}

/// One row per step of the speed issue's table.
fn summary_rows(
    ingest: &IngestFigures,
    features: &FeaturesFigures,
    btyd: &BtydFigures,
    train: &TrainResults,
    default_model: &TrainResults,
    stream: &StreamFigures,
) -> Vec<SummaryRow> {
    let mut rows = vec![
        SummaryRow::new(
            "ingest: transactions CSV -> lake",
            ingest.churn.wall_seconds,
            "DuckDB COPY to Parquet",
            ingest.duckdb.as_ref().map(|d| d.wall_seconds),
        )
        .peaks(
            Some(ingest.churn.peak_rss_mib),
            ingest.duckdb.as_ref().map(|d| d.peak_rss_mib),
        ),
        SummaryRow::new(
            &format!("features: snapshot of {}", features.as_of),
            features.churn.wall_seconds,
            "DuckDB, the contract's columns",
            features.duckdb.as_ref().map(|d| d.wall_seconds),
        )
        .peaks(
            Some(features.churn.peak_rss_mib),
            features.duckdb.as_ref().map(|d| d.peak_rss_mib),
        ),
    ];
    for model in &btyd.models {
        rows.push(
            SummaryRow::new(
                &format!("btyd: {} fit", model.model),
                model.churn_fit_seconds,
                "lifetimes 0.11 fit",
                model.lifetimes_fit_seconds,
            )
            .peaks(Some(model.churn_peak_rss_mib), btyd.python_peak_rss_mib),
        );
    }
    let find = |results: &TrainResults, prefix: &str| {
        results
            .results
            .iter()
            .find(|r| r.tool.starts_with(prefix))
            .cloned()
    };
    let lightgbm = find(train, "LightGBM");
    let sklearn = find(train, "scikit-learn");
    for (ours, theirs, name) in [
        (
            "churn train logistic",
            &sklearn,
            "scikit-learn LogisticRegression fit",
        ),
        ("churn train gbdt", &lightgbm, "LightGBM fit"),
    ] {
        let Some(ours) = find(train, ours) else {
            continue;
        };
        let theirs_fit = theirs.as_ref().map(|t| t.fit_seconds);
        rows.push(SummaryRow::new(
            &format!("train: {} fit", ours.tool),
            ours.fit_seconds,
            name,
            theirs_fit,
        ));
        rows.push(
            SummaryRow::new(
                &format!("train: {} whole process", ours.tool),
                ours.wall_seconds,
                name,
                theirs_fit,
            )
            .peaks(
                Some(ours.peak_rss_mib),
                theirs.as_ref().map(|t| t.peak_rss_mib),
            ),
        );
        rows.push(SummaryRow::new(
            &format!("test ROC AUC: {}", ours.tool),
            ours.test_roc_auc,
            &format!("{} AUC", name.trim_end_matches(" fit")),
            theirs.as_ref().map(|t| t.test_roc_auc),
        ));
    }
    if let Some(ours) = find(default_model, "churn train gbdt") {
        rows.push(
            SummaryRow::new(
                "train: the default model (gbdt + BTYD columns), whole process",
                ours.wall_seconds,
                "LightGBM fit",
                lightgbm.as_ref().map(|t| t.fit_seconds),
            )
            .peaks(Some(ours.peak_rss_mib), None),
        );
        rows.push(SummaryRow::new(
            "test ROC AUC: the default model",
            ours.test_roc_auc,
            "LightGBM AUC",
            lightgbm.as_ref().map(|t| t.test_roc_auc),
        ));
    }
    let live = stream.one_by_one.iter().skip(1).map(|l| l.live_lag_seconds);
    let live_median = median(live.collect());
    if let Some(live_median) = live_median {
        rows.push(
            SummaryRow::new(
                &format!(
                    "stream: till file of {} rows landed -> its live scores (median)",
                    stream.file_rows
                ),
                live_median,
                "nightly churn score of every customer",
                Some(stream.nightly_score_seconds),
            )
            .peaks(
                Some(stream.stream_peak_rss_mib),
                Some(stream.nightly_score_peak_rss_mib),
            ),
        );
    }
    rows
}

/// The median of `values` (None when empty).
fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(Vec::new()), None);
    }

    #[test]
    fn a_ratio_is_churn_over_the_other_tool_and_absent_without_it() {
        let row = SummaryRow::new("x", 2.0, "y", Some(8.0));
        assert_eq!(row.ratio, Some(0.25));
        assert_eq!(SummaryRow::new("x", 2.0, "y", None).ratio, None);
        assert_eq!(SummaryRow::new("x", 2.0, "y", Some(0.0)).ratio, None);
    }
}
