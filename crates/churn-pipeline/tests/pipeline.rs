//! Pipeline files and runs: validation reports every problem at once, steps run in order with
//! typed outcomes, a date the data cannot label yet is a skipped step, re-running a date adds
//! nothing, and errors keep their kind through the runner. The fixture is small enough to
//! count by hand.

use std::path::Path;

use churn_core::{ErrorKind, Lake};
use churn_ingest::IngestOptions;
use churn_pipeline::{Pipeline, PipelineError, RunStatus, Start, StepOutcome};

/// Six transactions written by hand (see the module comment of each test for the counts).
const TRANSACTIONS: &str = "\
transaction_id,customer_id,ts,amount,is_return
t1,c1,2026-01-05 10:00:00,10.00,false
t2,c1,2026-02-10 10:00:00,20.00,false
t3,c1,2026-03-20 10:00:00,30.00,false
t4,c2,2026-01-15 09:00:00,15.00,false
t5,c3,2026-02-28 12:00:00,-5.00,true
t6,c4,2026-03-31 18:00:00,40.00,false
";

fn write_pipeline(dir: &Path, extra: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("transactions.csv"), TRANSACTIONS).unwrap();
    let path = dir.join("pipeline.toml");
    std::fs::write(
        &path,
        format!(
            "[lake]\npath = \"lake\"\ntimezone = \"UTC\"\n\n\
             [sources.tx]\ntable = \"transactions\"\npath = \"transactions.csv\"\n\n\
             [features]\nlookback_days = 365\n\n[labels]\nhorizon_days = 30\n{extra}"
        ),
    )
    .unwrap();
    path
}

async fn run(
    pipeline: &Pipeline,
    as_of: &str,
) -> Result<churn_pipeline::RunSummary, PipelineError> {
    start(pipeline, as_of, Start::Fresh).await
}

async fn start(
    pipeline: &Pipeline,
    as_of: &str,
    start: Start,
) -> Result<churn_pipeline::RunSummary, PipelineError> {
    let lake = Lake::open(pipeline.lake.as_deref().unwrap()).unwrap();
    churn_pipeline::run(
        pipeline,
        &lake,
        as_of.parse().unwrap(),
        &IngestOptions::default(),
        start,
        &churn_pipeline::Unobserved,
    )
    .await
}

#[test]
fn a_pipeline_file_reports_every_problem_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[lake]\ntimezone = \"Mars/Base\"\n[labels]\nhorizon_days = 0\n\
         [sources.tx]\ntable = \"orders\"\npath = \"x.csv\"\n\
         [activate]\nrules = \"no-such-rules.toml\"\nlang = \"fr\"\n",
    )
    .unwrap();
    let err = Pipeline::load(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let text = err.to_string();
    for needle in [
        "Mars/Base",
        "horizon_days",
        "sources.tx",
        "orders",
        "no-such-rules.toml",
        "\"fr\"",
    ] {
        assert!(text.contains(needle), "{needle} missing from: {text}");
    }
}

#[test]
fn the_lakes_memory_budget_reaches_every_step_and_the_command_line_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(
        &path,
        "[lake]\nmemory_limit_mib = 64\n[features]\n[report]\n",
    )
    .unwrap();
    let pipeline = Pipeline::load(&path).unwrap();
    let budgets = |p: &Pipeline| {
        [
            p.memory_limit_bytes,
            p.features.as_ref().unwrap().session.memory_limit_bytes,
            p.report.as_ref().unwrap().session.memory_limit_bytes,
            p.feature_options().unwrap().session.memory_limit_bytes,
        ]
    };
    assert_eq!(budgets(&pipeline), [Some(64 * 1024 * 1024); 4]);
    assert_eq!(
        budgets(&pipeline.with_memory_limit(1 << 30)),
        [Some(1 << 30); 4]
    );

    // Zero is refused; the budget is the lake's, not the features section's.
    for (file, named) in [
        (
            "[lake]\nmemory_limit_mib = 0\n",
            "lake.memory_limit_mib: must be at least 1",
        ),
        ("[features]\nmemory_limit_mib = 8\n", "memory_limit_mib"),
    ] {
        std::fs::write(&path, file).unwrap();
        let text = Pipeline::load(&path).unwrap_err().to_string();
        assert!(text.contains(named), "{text}");
    }
}

#[test]
fn a_campaign_audience_naming_a_live_rule_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(
        &path,
        "[activate]\n\n[campaigns.thanks]\naction = \"x\"\n\n\
         [campaigns.thanks.audience]\nrules = [\"thank_you_redeemed\"]\n",
    )
    .unwrap();
    let err = Pipeline::load(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        err.to_string()
            .contains("\"thank_you_redeemed\" is a live rule"),
        "{err}"
    );
}

#[test]
fn paths_in_a_pipeline_file_are_relative_to_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Pipeline::load(&write_pipeline(dir.path(), "")).unwrap();
    assert_eq!(
        pipeline.lake.as_deref(),
        Some(dir.path().join("lake").to_str().unwrap())
    );
}

#[tokio::test]
async fn a_run_ingests_builds_features_and_labels_in_order_and_a_rerun_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Pipeline::load(&write_pipeline(dir.path(), "")).unwrap();
    for attempt in 0..2 {
        let summary = run(&pipeline, "2026-04-01").await.unwrap();
        let steps: Vec<&str> = summary.steps.iter().map(|s| s.step.as_str()).collect();
        assert_eq!(steps, ["ingest", "features", "labels"]);
        let StepOutcome::Ingest(ingest) = &summary.steps[0].outcome else {
            panic!("ingest step: {:?}", summary.steps[0].outcome)
        };
        assert_eq!(ingest.rows_read, 6);
        // Second run: every row is already in the lake.
        let (accepted, duplicates) = if attempt == 0 { (6, 0) } else { (0, 6) };
        assert_eq!((ingest.accepted, ingest.duplicates), (accepted, duplicates));
        // Population of 2026-04-01: customers with a purchase before it (c1, c2, c4; c3 only
        // returned something).
        let StepOutcome::Features(features) = &summary.steps[1].outcome else {
            panic!("features step: {:?}", summary.steps[1].outcome)
        };
        assert_eq!(features.snapshots[0].customers, 3);
        // Labels of 2026-03-02 (30 days before): c1 bought again on 03-20, c2 did not; c4's
        // first purchase is after 03-02, so c4 is not in that population.
        assert_eq!(summary.steps[2].name, "2026-03-02");
        let StepOutcome::Labels(labels) = &summary.steps[2].outcome else {
            panic!("labels step: {:?}", summary.steps[2].outcome)
        };
        assert_eq!(
            (labels.snapshots[0].customers, labels.snapshots[0].churned),
            (2, 1)
        );
        assert_manifests_read_back_typed(dir.path(), &summary);
    }
}

#[tokio::test]
async fn a_failed_run_names_its_step_and_a_resumed_run_continues_from_it() {
    let dir = tempfile::tempdir().unwrap();
    // A second source whose file has not arrived yet.
    let path = write_pipeline(
        dir.path(),
        "\n[sources.late]\ntable = \"transactions\"\npath = \"late.csv\"\n",
    );
    let pipeline = Pipeline::load(&path).unwrap();
    let err = run(&pipeline, "2026-04-01").await.unwrap_err();
    assert!(
        matches!(&err, PipelineError::Ingest { source_name, .. } if source_name == "late"),
        "{err}"
    );
    let lake = Lake::open(pipeline.lake.as_deref().unwrap()).unwrap();
    let failed = churn_pipeline::run_manifests(&lake).await.unwrap();
    assert_eq!(failed.len(), 1);
    let failed = &failed[0];
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(failed.failed_step.as_deref(), Some("ingest:late"));
    assert_eq!(failed.completed, ["ingest:tx"]);
    assert!(failed.error.as_deref().unwrap().contains("late"));
    // The manifest names the pipeline file by its SHA-256 (as `sha256sum` computes it).
    let sha = std::process::Command::new("sha256sum")
        .arg(&path)
        .output()
        .unwrap();
    let sha = String::from_utf8_lossy(&sha.stdout);
    assert_eq!(
        failed.pipeline_sha256,
        sha.split_whitespace().next().unwrap()
    );

    // The file arrives (one more purchase); the resumed run does not ingest tx again.
    std::fs::write(
        dir.path().join("late.csv"),
        "transaction_id,customer_id,ts,amount\nt7,c2,2026-03-25 10:00:00,12.00\n",
    )
    .unwrap();
    let resumed = start(&pipeline, "2026-04-01", Start::Resume).await.unwrap();
    assert_eq!(resumed.status, RunStatus::Succeeded);
    assert_eq!(
        resumed.resumed_from.as_deref(),
        Some(failed.run_id.as_str())
    );
    let names: Vec<(&str, &str)> = resumed
        .steps
        .iter()
        .map(|s| (s.step.as_str(), s.name.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("ingest", "tx"),
            ("ingest", "late"),
            ("features", "2026-04-01"),
            ("labels", "2026-03-02")
        ]
    );
    // The tx step is the failed run's own (same batch), carried over.
    let batch = |s: &churn_pipeline::StepSummary| match &s.outcome {
        StepOutcome::Ingest(i) => i.batch_id.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(batch(&resumed.steps[0]), batch(&failed.steps[0]));
    let StepOutcome::Features(features) = &resumed.steps[2].outcome else {
        panic!("{:?}", resumed.steps[2].outcome)
    };
    assert_eq!(features.snapshots[0].customers, 3);

    // Resuming again finds the date done: the same run, nothing executed.
    let again = start(&pipeline, "2026-04-01", Start::Resume).await.unwrap();
    assert_eq!(again.run_id, resumed.run_id);
    assert_eq!(churn_pipeline::run_manifests(&lake).await.unwrap().len(), 2);
}

/// The run's manifest reads back as the summary the run returned, each step as the outcome
/// its step names; the feature snapshot's partition manifest reads back typed too.
fn assert_manifests_read_back_typed(dir: &Path, summary: &churn_pipeline::RunSummary) {
    let lake = dir.join("lake");
    assert!(summary.manifest.starts_with("_runs/run-2026-04-01-"));
    let text = std::fs::read_to_string(lake.join(&summary.manifest)).unwrap();
    let stored: churn_pipeline::RunSummary = serde_json::from_str(&text).unwrap();
    assert_eq!(
        serde_json::to_value(&stored).unwrap(),
        serde_json::to_value(summary).unwrap()
    );
    assert_eq!(
        (stored.kind.as_str(), stored.as_of.as_str()),
        ("run", "2026-04-01")
    );
    let kinds: Vec<(&str, &str)> = stored
        .steps
        .iter()
        .map(|s| {
            let outcome = match &s.outcome {
                StepOutcome::Ingest(_) => "ingest",
                StepOutcome::Features(_) => "features",
                StepOutcome::Labels(_) => "labels",
                StepOutcome::Train(_) => "train",
                StepOutcome::Score(_) => "score",
                StepOutcome::Segment(_) => "segment",
                StepOutcome::Triggers(_) => "triggers",
                StepOutcome::Export(_) => "export",
                StepOutcome::Report(_) => "report",
                StepOutcome::Skipped { .. } => "skipped",
                StepOutcome::Reused(_) => "reused",
            };
            (s.step.as_str(), outcome)
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("ingest", "ingest"),
            ("features", "features"),
            ("labels", "labels")
        ]
    );
    let StepOutcome::Features(features) = &stored.steps[1].outcome else {
        panic!("features step: {:?}", stored.steps[1].outcome)
    };
    let output = &features.snapshots[0].output;
    let job = output
        .strip_prefix("features/as_of=2026-04-01/part-")
        .and_then(|f| f.strip_suffix(".parquet"))
        .unwrap_or_else(|| panic!("snapshot file {output}"));
    let text = std::fs::read_to_string(lake.join(format!("_runs/{job}.json"))).unwrap();
    let manifest: churn_features::write::PartitionManifest = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (
            manifest.kind.as_str(),
            manifest.as_of.as_str(),
            manifest.rows
        ),
        ("features", "2026-04-01", 3)
    );
    assert_eq!(&manifest.file, output);
    assert_eq!(manifest.details["lookback_days"], 365);
    assert_eq!(manifest.details["population"], 3);
}

#[tokio::test]
async fn labels_the_data_cannot_observe_yet_are_a_skipped_step_not_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Pipeline::load(&write_pipeline(dir.path(), "")).unwrap();
    // Labels of 2026-04-15 need transactions through 2026-05-14; the data ends on 03-31.
    let summary = run(&pipeline, "2026-05-15").await.unwrap();
    let StepOutcome::Skipped { kind, skipped } = &summary.steps[2].outcome else {
        panic!("labels step: {:?}", summary.steps[2].outcome)
    };
    assert_eq!(*kind, "labels");
    assert!(skipped.contains("2026-05-14"), "{skipped}");
}

#[tokio::test]
async fn a_time_zone_mismatch_keeps_its_configuration_kind_through_the_runner() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Pipeline::load(&write_pipeline(dir.path(), "")).unwrap();
    run(&pipeline, "2026-04-01").await.unwrap();
    let mut other_zone = pipeline.clone();
    other_zone.timezone = Some("Asia/Shanghai".into());
    let err = run(&other_zone, "2026-04-01").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
}

/// With `[activate]` and the built-in playbook, a lake with transactions only (no profiles, no
/// campaigns, no scores) is segmented and its rules run: the profile columns the rules use are
/// null there, and nobody has opted in, so no one gets an action. The manifest reads back
/// with typed segment and triggers outcomes.
#[tokio::test]
async fn the_built_in_playbook_runs_on_a_lake_without_profiles_and_contacts_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Pipeline::load(&write_pipeline(dir.path(), "[activate]\n")).unwrap();
    let summary = run(&pipeline, "2026-04-01").await.unwrap();
    let steps: Vec<&str> = summary.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(
        steps,
        ["ingest", "features", "labels", "segment", "triggers"]
    );
    let text = std::fs::read_to_string(dir.path().join("lake").join(&summary.manifest)).unwrap();
    let stored: churn_pipeline::RunSummary = serde_json::from_str(&text).unwrap();
    let StepOutcome::Segment(segments) = &stored.steps[3].outcome else {
        panic!("segment step: {:?}", stored.steps[3].outcome)
    };
    // c1 (last purchase 12 days before), c2 (76 days: at risk), c4 (1 day, first purchase).
    assert_eq!(segments.customers, 3);
    assert_eq!(segments.lifecycle_stages.get("at_risk"), Some(&1));
    assert_eq!(segments.lifecycle_stages.get("new"), Some(&1));
    let StepOutcome::Triggers(triggers) = &stored.steps[4].outcome else {
        panic!("triggers step: {:?}", stored.steps[4].outcome)
    };
    assert_eq!(triggers.actions, 0);
    assert!(!triggers.profiles && !triggers.scores);
    let warning = triggers
        .rules
        .iter()
        .find(|r| r.rule == "churn_warning_60d")
        .unwrap();
    assert_eq!((warning.matched, warning.not_opted_in), (1, 1));
}
