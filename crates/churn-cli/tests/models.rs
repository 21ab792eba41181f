//! `churn train` and `churn models` on the bundled demo store, end to end with the real
//! binary: the best classifier must beat both baselines computed in the same run; the metrics
//! are recomputed independently (DuckDB reads the registered test scores, Python counts); the
//! same data and seed give byte-identical artifacts; and the refusals refuse.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use churn_test_kit::{Churn, json_of, python_stdout, repo_root, s};

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
