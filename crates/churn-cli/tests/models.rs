//! `churn train` and `churn models` on the bundled demo store, end to end with the real
//! binary: the best classifier must beat both baselines computed in the same run; the metrics
//! are recomputed independently (DuckDB reads the registered test scores, Python counts); the
//! same data and seed give byte-identical artifacts; and the refusals refuse.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use churn_test_kit::{Churn, copy_dir, json_of, output_files, python_stdout, repo_root, s};

const TEST_SNAPSHOT: &str = "2026-08-03";

const CHURN: Churn = Churn::new(env!("CARGO_BIN_EXE_churn"));

/// The demo lake, built once for every test of this binary by the demo pipeline, whose train
/// step registers `churn@1` (models/churn.toml) tested on 2026-08-03 and builds every
/// snapshot the default schedule needs, so the tests below only read them.
fn demo_lake() -> &'static (tempfile::TempDir, PathBuf, serde_json::Value) {
    static LAKE: OnceLock<(tempfile::TempDir, PathBuf, serde_json::Value)> = OnceLock::new();
    LAKE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let lake = dir.path().join("demo-lake");
        let root = repo_root();
        let summary = CHURN.json(&[
            "demo",
            "--json",
            "--pipeline",
            s(&root.join("pipelines/demo.toml")),
            "--lake",
            s(&lake),
        ]);
        let train = summary["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == "train")
            .expect("the demo pipeline trains a model")["summary"]
            .clone();
        (dir, lake, train)
    })
}

/// Writes a model file: models/<base>.toml named `name`, with each (from, to) text replaced.
fn model_file(dir: &Path, base: &str, name: &str, replacements: &[(&str, &str)]) -> PathBuf {
    let mut text =
        std::fs::read_to_string(repo_root().join(format!("models/{base}.toml"))).unwrap();
    text = text.replacen(
        "horizon_days = 90",
        &format!("name = \"{name}\"\nhorizon_days = 90"),
        1,
    );
    for (from, to) in replacements {
        assert!(text.contains(from), "{from:?} not in models/{base}.toml");
        text = text.replacen(from, to, 1);
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn train(model: &Path) -> Output {
    let (_, lake, _) = demo_lake();
    CHURN.run(&[
        "train",
        "--json",
        "--lake",
        s(lake),
        "--model",
        s(model),
        "--as-of",
        TEST_SNAPSHOT,
    ])
}

/// ROC AUC (pairs, ties half) and top-decile lift (ties at the cut shared pro rata) of the
/// registered test scores, counted in Python from what DuckDB reads; plus how many rows
/// disagree with the lake's labels of the test snapshot.
fn independent_metrics(lake: &Path, version_dir: &str) -> (f64, f64, i64) {
    let script = r#"
import sys, math, duckdb
scores, labels = sys.argv[1], sys.argv[2]
rows = duckdb.sql(f"SELECT churn_probability, churned FROM read_parquet('{scores}')").fetchall()
pos = sorted(p for p, y in rows if y == 1)
neg = sorted(p for p, y in rows if y == 0)
import bisect
wins = sum(bisect.bisect_left(neg, p) + 0.5 * (bisect.bisect_right(neg, p) - bisect.bisect_left(neg, p)) for p in pos)
auc = wins / (len(pos) * len(neg))
n = len(rows); k = math.ceil(0.1 * n)
ordered = sorted((p for p, _ in rows), reverse=True)
cut = ordered[k - 1]
above = [y for p, y in rows if p > cut]
at = [y for p, y in rows if p == cut]
top = sum(above) + (k - len(above)) * sum(at) / len(at)
lift = (top / k) / (len(pos) / n)
bad = duckdb.sql(f"SELECT count(*) FROM read_parquet('{scores}') s FULL JOIN read_parquet('{labels}') l USING (customer_id) WHERE s.churned IS DISTINCT FROM CAST(l.churned AS DOUBLE)").fetchone()[0]
print(auc, lift, bad)
"#;
    let text = python_stdout([
        "-c",
        script,
        &format!("{version_dir}test_scores.parquet"),
        &format!("{}/labels/as_of={TEST_SNAPSHOT}/*.parquet", lake.display()),
    ]);
    let v: Vec<&str> = text.split_whitespace().collect();
    (
        v[0].parse().unwrap(),
        v[1].parse().unwrap(),
        v[2].parse().unwrap(),
    )
}

#[test]
fn the_best_classifier_beats_both_baselines_on_roc_auc_and_top_decile_lift() {
    let (_, lake, gbdt) = demo_lake();
    let dir = tempfile::tempdir().unwrap();
    let mut reports = vec![gbdt.clone()];
    for base in ["churn-logistic", "churn-forest"] {
        reports.push(json_of(&train(&model_file(dir.path(), base, base, &[]))));
    }
    let metric = |v: &serde_json::Value, m: &str| v[m].as_f64().unwrap();
    let beats = |r: &serde_json::Value, m: &str| {
        [&r["baseline_rule"]["metrics"], &r["baseline_bgnbd"]]
            .iter()
            .all(|baseline| metric(&r["model"], m) > metric(baseline, m))
    };
    let table: Vec<String> = reports
        .iter()
        .map(|r| {
            format!(
                "{}: roc_auc {} lift {} | rule {} {} | bgnbd {} {}",
                r["algorithm"],
                r["model"]["roc_auc"],
                r["model"]["top_decile_lift"],
                r["baseline_rule"]["metrics"]["roc_auc"],
                r["baseline_rule"]["metrics"]["top_decile_lift"],
                r["baseline_bgnbd"]["roc_auc"],
                r["baseline_bgnbd"]["top_decile_lift"]
            )
        })
        .collect();
    // Every classifier ranks better than both baselines overall ...
    assert!(reports.iter().all(|r| beats(r, "roc_auc")), "{table:#?}");
    // ... and the best one also fills the top decile with more churners than either.
    let best = reports
        .iter()
        .find(|r| beats(r, "roc_auc") && beats(r, "top_decile_lift"))
        .unwrap_or_else(|| {
            panic!("no classifier beats both baselines on both metrics: {table:#?}")
        });
    // Every model was measured on the same rows as its baselines.
    for r in &reports {
        assert_eq!(r["test"]["customers"], r["baseline_bgnbd"]["customers"]);
        assert_eq!(
            r["test"]["churners"],
            r["baseline_rule"]["metrics"]["churners"]
        );
        assert_ne!(r["grade"]["grade"], "C", "{r:#}");
    }
    // The reported metrics agree with an independent count over the registered scores, whose
    // labels are the lake's labels of the test snapshot.
    let (auc, lift, disagreements) =
        independent_metrics(lake, best["registry_path"].as_str().unwrap());
    assert_eq!(disagreements, 0);
    assert!((auc - metric(&best["model"], "roc_auc")).abs() < 1e-9);
    assert!((lift - metric(&best["model"], "top_decile_lift")).abs() < 1e-9);
}

#[test]
fn training_uses_only_snapshots_whose_labels_are_observed_before_the_test_snapshot() {
    let (_, _, gbdt) = demo_lake();
    assert_eq!(gbdt["as_of"], TEST_SNAPSHOT);
    let calibration = gbdt["calibration"]["snapshots"][0].as_str().unwrap();
    let training: Vec<&str> = gbdt["training"]["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    // 90-day horizon: the newest training snapshot's labels end the day before the test one.
    assert_eq!(calibration, "2026-05-05");
    assert_eq!(training, ["2026-02-04", "2026-03-06", "2026-04-05"]);
}

#[test]
fn the_same_data_and_seed_give_a_byte_identical_artifact() {
    let dir = tempfile::tempdir().unwrap();
    for base in ["churn", "churn-forest"] {
        let name = format!("{base}-twice");
        let model = model_file(dir.path(), base, &name, &[]);
        let first = json_of(&train(&model));
        let second = json_of(&train(&model));
        assert_eq!(
            second["version"].as_u64(),
            Some(first["version"].as_u64().unwrap() + 1)
        );
        let read = |r: &serde_json::Value| {
            std::fs::read(format!(
                "{}artifact.json",
                r["registry_path"].as_str().unwrap()
            ))
            .unwrap()
        };
        assert!(read(&first) == read(&second), "{base}: artifacts differ");
        // A different seed draws different bootstrap samples.
        if base == "churn-forest" {
            let text = std::fs::read_to_string(&model).unwrap();
            let reseeded = dir.path().join("forest-seed-7.toml");
            std::fs::write(
                &reseeded,
                text.replacen("seed = 42", "seed = 7", 1).replacen(
                    &format!("name = \"{name}\""),
                    "name = \"forest-seed-7\"",
                    1,
                ),
            )
            .unwrap();
            assert!(read(&json_of(&train(&reseeded))) != read(&first));
        }
    }
}

#[test]
fn models_list_and_show_report_what_was_registered() {
    let (_, lake, gbdt) = demo_lake();
    let list = CHURN.json(&["models", "list", "--json", "--lake", s(lake)]);
    let churn_v1 = list["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "churn" && m["version"] == 1)
        .expect("churn@1 is listed");
    assert_eq!(churn_v1["roc_auc"], gbdt["model"]["roc_auc"]);
    assert_eq!(churn_v1["grade"], gbdt["grade"]["grade"]);
    let shown = CHURN.json(&["models", "show", "--json", "--lake", s(lake), "churn@1"]);
    let features: Vec<&str> = shown["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(shown["manifest"]["features"], gbdt["features"]);
    assert!(features.contains(&"recency_days") && features.contains(&"btyd_p_alive"));
    assert!(
        !features.contains(&"tier"),
        "tier leaks the future and is excluded"
    );
    assert!(
        shown["manifest"]["data_fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("xxh3-128:")
    );
    let missing = CHURN.run(&["models", "show", "--lake", s(lake), "churn@99"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no version \"99\""));
}

#[test]
fn explanations_name_features_with_the_customers_values() {
    let (_, lake, gbdt) = demo_lake();
    let scores = format!(
        "{}test_scores.parquet",
        gbdt["registry_path"].as_str().unwrap()
    );
    let features = format!(
        "{}/features/as_of={TEST_SNAPSHOT}/*.parquet",
        lake.display()
    );
    // Every reason naming a column of the features table must state that customer's value
    // there (printed whole or to 3 decimals; "unknown" for null), read by DuckDB.
    let script = r#"
import sys, duckdb
scores, features = sys.argv[1], sys.argv[2]
rows = duckdb.sql(f"SELECT * FROM read_parquet('{scores}')").fetchall()
cols = duckdb.sql(f"SELECT * FROM read_parquet('{features}')")
table = {r[0]: dict(zip(cols.columns, r)) for r in cols.fetchall()}
checked = mismatched = without_reason = 0
for r in rows:
    reasons = [x for x in r[3:] if x is not None]
    without_reason += not reasons
    for text in reasons:
        name, rest = text.split(' = ', 1)
        value = rest.split(' (', 1)[0]
        if name not in table[r[0]]:
            continue
        truth = table[r[0]][name]
        checked += 1
        if value == 'unknown':
            mismatched += truth is not None
        else:
            mismatched += truth is None or abs(float(value) - float(truth)) > 0.0005 + 1e-9 * abs(float(truth))
print(checked, mismatched, without_reason, len(rows))
"#;
    let text = python_stdout(["-c", script, &scores, &features]);
    let v: Vec<u64> = text
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let (checked, mismatched, without_reason, rows) = (v[0], v[1], v[2], v[3]);
    assert_eq!(rows, gbdt["test"]["customers"].as_u64().unwrap());
    assert_eq!(without_reason, 0, "every customer gets at least one reason");
    assert!(checked > rows, "{checked} reasons checked");
    assert_eq!(
        mismatched, 0,
        "{mismatched} of {checked} reasons state a wrong value"
    );
}

/// A refused training exits with `code`, says `needle`, and registers nothing.
fn assert_refused(model: &Path, as_of: &str, code: i32, needle: &str) {
    let (_, lake, _) = demo_lake();
    let out = CHURN.run(&[
        "train",
        "--lake",
        s(lake),
        "--model",
        s(model),
        "--as-of",
        as_of,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    let name = model.file_stem().unwrap().to_str().unwrap();
    assert!(!lake.join("_models").join(name).exists());
}

#[test]
fn training_refuses_too_few_churners_unobservable_labels_and_unknown_features() {
    let dir = tempfile::tempdir().unwrap();
    let few = model_file(
        dir.path(),
        "churn-logistic",
        "few",
        &[("[training]\n", "[training]\nmin_class_rows = 100000\n")],
    );
    assert_refused(&few, TEST_SNAPSHOT, 3, "at least 100000 of each are needed");
    let plain = model_file(dir.path(), "churn-logistic", "late", &[]);
    assert_refused(
        &plain,
        "2026-09-01",
        3,
        "the newest --as-of this lake can test is 2026-08-03",
    );
    let long = model_file(
        dir.path(),
        "churn-logistic",
        "long",
        &[("snapshots = 4", "snapshots = 30")],
    );
    assert_refused(
        &long,
        TEST_SNAPSHOT,
        3,
        "before the lake's first transaction day",
    );
    let unknown = dir.path().join("unknown.toml");
    std::fs::write(
        &unknown,
        "algorithm = \"logistic\"\n[features]\ninclude = [\"recency_days\", \"no_such_feature\"]\n",
    )
    .unwrap();
    assert_refused(
        &unknown,
        TEST_SNAPSHOT,
        2,
        "\"no_such_feature\" is selected by the model",
    );
    let invalid = dir.path().join("invalid.toml");
    std::fs::write(&invalid, "algorithm = \"svm\"\n").unwrap();
    assert_refused(&invalid, TEST_SNAPSHOT, 2, "unknown variant `svm`");
}

/// `churn run` of `pipeline` for `as_of`: the train step's summary (`reason`, `summary`).
fn run_train_step(pipeline: &Path, as_of: &str) -> serde_json::Value {
    let run = CHURN.json(&["run", "--json", s(pipeline), "--as-of", as_of]);
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "train")
        .expect("a train step")
        .clone()
}

/// The PSI of `feature` between two feature snapshots, computed in Python from what DuckDB
/// reads, by the rule the README states (training deciles, distinct inner cuts, a cut at the
/// maximum dropped, missing values a bin of their own, shares floored at 0.0001).
fn independent_psi(lake: &Path, reference: &str, current: &str, feature: &str) -> f64 {
    let script = r#"
import sys, math, duckdb
lake, ref, cur, col = sys.argv[1:5]
def values(d):
    rows = duckdb.sql(f"SELECT CAST({col} AS DOUBLE) FROM read_parquet('{lake}/features/as_of={d}/*.parquet')").fetchall()
    return [r[0] for r in rows]
e, a = values(ref), values(cur)
present = sorted(v for v in e if v is not None)
n = len(present)
cuts = []
for k in range(1, 10):
    c = present[min(k * n // 10, n - 1)]
    if not cuts or cuts[-1] != c:
        cuts.append(c)
if cuts and cuts[-1] == present[-1]:
    cuts.pop()
def shares(vs):
    counts = [0] * (len(cuts) + 2)
    for v in vs:
        if v is None:
            counts[-1] += 1
        else:
            counts[sum(1 for c in cuts if c < v)] += 1
    return [c / len(vs) for c in counts]
psi = 0.0
for x, y in zip(shares(e), shares(a)):
    if x > 0 or y > 0:
        x, y = max(x, 1e-4), max(y, 1e-4)
        psi += (y - x) * math.log(y / x)
print(repr(psi))
"#;
    python_stdout(["-c", script, s(lake), reference, current, feature])
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_run_trains_only_when_the_model_is_due_and_reuses_the_newest_version_otherwise() {
    let (_, demo, _) = demo_lake();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    copy_dir(demo, &lake);
    let fewer_trees = [("iterations = 200", "iterations = 40")];
    let model = |psi_limit: &str, trees: &str| {
        let path = model_file(
            dir.path(),
            "churn",
            "due",
            &[
                ("iterations = 200", trees),
                (
                    "seed = 42",
                    &format!(
                        "seed = 42\nretrain_every_days = 30\nretrain_when_psi_above = {psi_limit}"
                    ),
                ),
            ],
        );
        let pipeline = dir.path().join("nightly.toml");
        std::fs::write(
            &pipeline,
            format!(
                "[lake]\npath = \"{}\"\n\n[features]\nlookback_days = 365\n\n[labels]\nhorizon_days = 90\n\n[train]\nmodels = [\"{}\"]\n",
                lake.display(),
                path.display()
            ),
        )
        .unwrap();
        pipeline
    };
    let version = |step: &serde_json::Value| {
        step["summary"]["version"]
            .as_u64()
            .unwrap_or_else(|| panic!("no version in {step}"))
    };
    let pipeline = model("5", fewer_trees[0].1);

    // No version yet: train.
    let first = run_train_step(&pipeline, "2026-10-01");
    assert_eq!(version(&first), 1, "{first}");
    assert!(
        first["reason"].as_str().unwrap().contains("no version"),
        "{first}"
    );

    // The same date again, and 20 days later with little drift: reuse version 1.
    let again = run_train_step(&pipeline, "2026-10-01");
    assert_eq!(again["summary"]["train"], false, "{again}");
    let later = run_train_step(&pipeline, "2026-10-21");
    assert_eq!(later["summary"]["train"], false, "{later}");
    let drift = &later["summary"]["drift"];
    // Version 1 was tested on 2026-07-03 and refitted on the snapshots up to it.
    assert_eq!(drift["reference_as_of"], "2026-07-03", "{drift}");
    let top = &drift["features"][0];
    let psi = top["psi"].as_f64().unwrap();
    assert!(psi > 0.0 && psi <= 5.0, "{drift}");
    let independent = independent_psi(
        &lake,
        "2026-07-03",
        "2026-10-21",
        top["feature"].as_str().unwrap(),
    );
    assert!((psi - independent).abs() < 1e-9, "{psi} vs {independent}");

    // 30 days after the date version 1 was trained for: due by age.
    let due = run_train_step(&pipeline, "2026-10-31");
    assert_eq!(version(&due), 2, "{due}");
    assert!(
        due["reason"]
            .as_str()
            .unwrap()
            .contains("retrain_every_days = 30"),
        "{due}"
    );

    // The model file changes what it trains: train, whatever the date.
    let changed = model("5", "iterations = 41");
    let retrained = run_train_step(&changed, "2026-10-31");
    assert_eq!(version(&retrained), 3, "{retrained}");
    assert!(
        retrained["reason"].as_str().unwrap().contains("differs"),
        "{retrained}"
    );

    // Only the drift limit changes (not what is trained): due by drift, not by the file.
    let sensitive = model("0.000001", "iterations = 41");
    let drifted = run_train_step(&sensitive, "2026-11-01");
    assert_eq!(version(&drifted), 4, "{drifted}");
    assert!(
        drifted["reason"].as_str().unwrap().contains("moved by PSI"),
        "{drifted}"
    );
}

#[test]
fn rerunning_a_date_reuses_its_model_and_gives_byte_identical_scores_and_exports() {
    let (_, demo, _) = demo_lake();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    copy_dir(demo, &lake);
    let day = "as_of=2026-11-01";
    let folders = [
        "scores",
        "segments",
        "triggers",
        "exports",
        "campaign_assignments",
    ];
    let before: Vec<_> = folders
        .iter()
        .map(|f| output_files(&lake.join(f).join(day)))
        .collect();
    assert!(before.iter().all(|files| !files.is_empty()));

    let run = CHURN.json(&[
        "run",
        "--json",
        s(&repo_root().join("pipelines/demo.toml")),
        "--as-of",
        "2026-11-01",
        "--lake",
        s(&lake),
    ]);
    let train = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "train")
        .unwrap();
    assert_eq!(train["summary"]["train"], false, "{train}");
    assert_eq!(train["summary"]["version"], 1, "{train}");
    for (folder, files) in folders.iter().zip(&before) {
        let after = output_files(&lake.join(folder).join(day));
        assert_eq!(
            after.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            files.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            "{folder}: other files"
        );
        for ((path, bytes), (_, again)) in files.iter().zip(&after) {
            assert!(bytes == again, "{folder}/{path} differs after a re-run");
        }
    }
}
