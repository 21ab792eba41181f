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
fn training_whose_frames_exceed_half_the_memory_limit_keeps_a_hashed_share_of_customers() {
    let dir = tempfile::tempdir().unwrap();
    let (_, lake, unlimited) = demo_lake();
    assert!(unlimited["sampling"].is_null(), "{unlimited}");
    let model = model_file(dir.path(), "churn", "sampled", &[]);
    let report = CHURN.json(&[
        "train",
        "--json",
        "--lake",
        s(lake),
        "--model",
        s(&model),
        "--as-of",
        TEST_SNAPSHOT,
        "--memory-limit",
        "8MiB",
    ]);
    let sampling = &report["sampling"];
    let share = sampling["kept_share"].as_f64().unwrap();
    assert!(share > 0.05 && share < 1.0, "{sampling}");
    assert_eq!(sampling["frame_budget_bytes"], 4 << 20, "{sampling}");
    assert!(
        (share * sampling["estimated_bytes"].as_f64().unwrap() - (4 << 20) as f64).abs() < 1.0,
        "{sampling}"
    );
    // The test customers are exactly the labelled customers of the test snapshot whose id
    // hashes (FNV-1a, then MurmurHash3's finaliser, top 53 bits) below the share, as Python
    // computes it from what DuckDB reads.
    let script = r#"
import sys, duckdb
scores, labels, features, share = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
M = (1 << 64) - 1
def kept(customer_id):
    h = 0xcbf29ce484222325
    for b in customer_id.encode():
        h = ((h ^ b) * 0x100000001b3) & M
    for m in (0xff51afd7ed558ccd, 0xc4ceb9fe1a85ec53):
        h ^= h >> 33
        h = (h * m) & M
    h ^= h >> 33
    return (h >> 11) / (1 << 53) < share
labelled = [r[0] for r in duckdb.sql(f"SELECT l.customer_id FROM read_parquet('{labels}') l JOIN read_parquet('{features}') f USING (customer_id)").fetchall()]
expected = {c for c in labelled if kept(c)}
tested = {r[0] for r in duckdb.sql(f"SELECT customer_id FROM read_parquet('{scores}')").fetchall()}
assert tested == expected, (len(tested), len(expected), len(tested ^ expected))
print(len(tested), len(labelled))
"#;
    let counted = python_stdout([
        "-c",
        script,
        &format!(
            "{}test_scores.parquet",
            report["registry_path"].as_str().unwrap()
        ),
        &format!("{}/labels/as_of={TEST_SNAPSHOT}/*.parquet", lake.display()),
        &format!(
            "{}/features/as_of={TEST_SNAPSHOT}/*.parquet",
            lake.display()
        ),
        &share.to_string(),
    ]);
    let v: Vec<f64> = counted
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(report["test"]["customers"].as_f64(), Some(v[0]), "{report}");
    // Binomial: within five standard deviations of the share.
    let sd = (v[1] * share * (1.0 - share)).sqrt();
    assert!(
        (v[0] - v[1] * share).abs() < 5.0 * sd,
        "{counted} at share {share}"
    );
    assert!(
        report["model"]["roc_auc"].as_f64().unwrap() > 0.8,
        "{report}"
    );
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

/// Live scores after a stream batch: for every customer the batch touched, the probability,
/// band, reasons and model a full `churn score` gives at the same moment; P(alive) from the
/// newest night's BG/NBD parameters (the closed form, computed by DuckDB from the lake); the
/// percentile within the night's population; the customer's newest event in the batch. A
/// restart gives live scores to a committed batch that has none.
#[test]
fn live_scores_after_a_stream_batch_equal_a_full_score_of_the_touched_customers() {
    let (_, demo, _) = demo_lake();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    copy_dir(demo, &lake);
    // Without BTYD features the probability does not depend on the population's BTYD
    // parameters, which a full score refits and a live score takes from the night.
    let model = model_file(
        dir.path(),
        "churn",
        "live",
        &[
            ("btyd = true", "btyd = false"),
            ("iterations = 200", "iterations = 40"),
        ],
    );
    let (lake_s, model_s) = (s(&lake), s(&model));
    CHURN.ok(&[
        "train",
        "--lake",
        lake_s,
        "--model",
        model_s,
        "--as-of",
        TEST_SNAPSHOT,
    ]);
    CHURN.ok(&[
        "score",
        "--lake",
        lake_s,
        "--as-of",
        "2026-11-01",
        "--model",
        "live",
    ]);

    // The night's twelve riskiest and twelve safest customers buy on 2026-11-01, one of them
    // also returns something later that day, and a new customer makes a first purchase.
    let nightly = lake.join("scores/as_of=2026-11-01");
    let picked = python_stdout([
        "-c",
        "import sys, duckdb\nq = \"SELECT customer_id FROM read_parquet('\" + sys.argv[1] + \"/*.parquet')\"\nids = [r[0] for o in ('DESC', 'ASC') for r in duckdb.sql(q + ' ORDER BY churn_probability ' + o + ', customer_id LIMIT 12').fetchall()]\nprint(' '.join(ids))",
        s(&nightly),
    ]);
    let mut ids: Vec<&str> = picked.split_whitespace().collect();
    ids.push("C9999999");
    let mut lines = vec![
        "transaction_id,customer_id,ts,amount,quantity,product_category,store_id,channel,discount,is_return".to_string(),
    ];
    for (k, id) in ids.iter().enumerate() {
        lines.push(format!(
            "LIVE{k:04},{id},2026-11-01 {:02}:15:00,25.00,1,Dairy,S01,store,0.00,false",
            8 + k % 10
        ));
    }
    lines.push(format!(
        "LIVE9999,{},2026-11-01 21:30:00,-5.00,1,Dairy,S01,store,0.00,true",
        ids[0]
    ));
    let landing = dir.path().join("landing");
    std::fs::create_dir_all(&landing).unwrap();
    std::fs::write(landing.join("till-2026-11-01.csv"), lines.join("\n") + "\n").unwrap();
    let pipeline = dir.path().join("stream.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[lake]\npath = {lake_s:?}\ntimezone = \"UTC\"\n\n[sources.till]\ntable = \"transactions\"\npath = {:?}\n\n\
             [sources.events]\ntable = \"campaign_events\"\npath = {:?}\n\n[stream]\nsettle_secs = 0\n\n\
             [activate]\nrules = {:?}\n",
            s(&landing),
            s(&dir.path().join("events")),
            s(&repo_root().join("pipelines/rules.toml")),
        ),
    )
    .unwrap();

    let stream = CHURN.json(&["stream", s(&pipeline), "--once", "--json"]);
    let live = &stream["recent_batches"][0]["live"];
    assert_eq!(live["as_of"], "2026-11-02", "{stream}");
    assert_eq!(live["nightly_as_of"], "2026-11-01", "{stream}");
    assert_eq!(live["customers_touched"], 25, "{stream}");
    assert_eq!(live["scored"], 25, "{stream}");
    assert_eq!(stream["live_scored"], 25, "{stream}");
    // The live rule "welcome back" reaches the buyers the night rated high risk who opted in.
    let welcomed = live_actions(&lake, "welcome_back_high_risk");
    let expected = python_stdout([
        "-c",
        "import sys, duckdb\nl, ids = sys.argv[1], sys.argv[2].split(',')\nprint(' '.join(r[0] for r in duckdb.sql(f\"SELECT s.customer_id FROM read_parquet('{l}/scores/as_of=2026-11-01/*.parquet') s JOIN read_parquet('{l}/customers/*.parquet') c USING (customer_id) WHERE s.risk_band = 'high' AND c.marketing_opt_in AND list_contains($ids, s.customer_id) ORDER BY 1\", params={'ids': ids}).fetchall()))",
        lake_s,
        &ids.join(","),
    ]);
    assert!(
        !expected.trim().is_empty(),
        "no high-risk opted-in buyer to welcome back"
    );
    assert_eq!(welcomed, expected.trim(), "{stream}");
    // A stream stopped between the batch's commit and its live scores gives them (and its
    // live rules, again, not twice) at restart.
    std::fs::remove_dir_all(lake.join("scores_live")).unwrap();
    let restart = CHURN.json(&["stream", s(&pipeline), "--once", "--json"]);
    assert_eq!(restart["batches"], 0, "{restart}");
    assert_eq!(restart["live_scored"], 25, "{restart}");
    assert_eq!(live_actions(&lake, "welcome_back_high_risk"), welcomed);
    let status = CHURN.json(&["stream", "status", s(&pipeline), "--json"]);
    assert_eq!(status["live_scores"]["batches"], 1, "{status}");
    assert_eq!(
        status["sources"][0]["last_batch_live_scored"], true,
        "{status}"
    );
    assert_every_field_is_documented(&[&stream, &status]);

    CHURN.ok(&[
        "score",
        "--lake",
        lake_s,
        "--as-of",
        "2026-11-02",
        "--model",
        "live@1",
    ]);
    let checks = python_stdout(["-c", LIVE_CHECKS, lake_s, &ids.join(","), s(&nightly)]);
    assert_eq!(
        checks.trim(),
        "rows 25 touched 25 same_as_full 25 p_alive_closed_form 25 percentile_in_night 25 event_time 25 as_of 25",
        "live scores differ"
    );

    // The full score was for comparison only: the newest night is 2026-11-01 again. The
    // same customers buy again that evening: the welcome-back rule is in its 30-day
    // cooldown. Two customers redeem an offer: only the one who opted in is thanked.
    std::fs::remove_dir_all(lake.join("scores/as_of=2026-11-02")).unwrap();
    let again: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(k, id)| {
            format!("LATE{k:04},{id},2026-11-01 22:00:00,9.00,1,Dairy,S01,store,0.00,false")
        })
        .collect();
    std::fs::write(
        landing.join("till-2026-11-01-late.csv"),
        format!("{}\n{}\n", lines[0], again.join("\n")),
    )
    .unwrap();
    let redeemers = python_stdout([
        "-c",
        "import sys, duckdb\nq = \"SELECT customer_id FROM read_parquet('\" + sys.argv[1] + \"/customers/*.parquet') WHERE customer_id NOT IN (SELECT unnest($ids)) AND marketing_opt_in = \"\nprint(' '.join(duckdb.sql(q + b + ' ORDER BY 1 LIMIT 1', params={'ids': sys.argv[2].split(',')}).fetchone()[0] for b in ('true', 'false')))",
        lake_s,
        &ids.join(","),
    ]);
    let redeemers: Vec<&str> = redeemers.split_whitespace().collect();
    let events = dir.path().join("events");
    std::fs::create_dir_all(&events).unwrap();
    std::fs::write(
        events.join("events-2026-11-01.csv"),
        format!(
            "customer_id,campaign_id,ts,event\n{0},win_back,2026-11-01 22:30:00,redeemed\n{1},win_back,2026-11-01 22:40:00,redeemed\n",
            redeemers[0], redeemers[1]
        ),
    )
    .unwrap();
    let later = CHURN.json(&["stream", s(&pipeline), "--once", "--json"]);
    let outcome = |batch: usize, rule: &str| {
        later["recent_batches"][batch]["live_rules"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["rule"] == rule)
            .unwrap()
            .clone()
    };
    let welcome = outcome(0, "welcome_back_high_risk");
    let welcomed_count = welcomed.split_whitespace().count() as u64;
    assert_eq!(welcome["actions"], 0, "{later}");
    assert_eq!(welcome["in_cooldown"], welcomed_count, "{later}");
    let thanks = outcome(1, "thank_you_redeemed");
    assert_eq!(
        (
            thanks["matched"].as_u64(),
            thanks["not_opted_in"].as_u64(),
            thanks["actions"].as_u64()
        ),
        (Some(2), Some(1), Some(1)),
        "{later}"
    );
    assert_eq!(live_actions(&lake, "thank_you_redeemed"), redeemers[0]);
}

/// The customers a live rule reached, in order, space-separated (DuckDB over `triggers_live`).
fn live_actions(lake: &Path, rule: &str) -> String {
    python_stdout([
        "-c",
        "import sys, duckdb\nprint(' '.join(r[0] for r in duckdb.sql(f\"SELECT customer_id FROM read_parquet('{sys.argv[1]}/triggers_live/*/*.parquet') WHERE rule = '{sys.argv[2]}' ORDER BY 1\").fetchall()))",
        s(lake),
        rule,
    ])
    .trim()
    .to_string()
}

/// DuckDB's checks of the live scores (argv: lake, touched ids, the night's scores folder).
const LIVE_CHECKS: &str = r#"
import glob, json, sys, duckdb
lake, ids, nightly = sys.argv[1], sys.argv[2].split(','), sys.argv[3]
night_file = glob.glob(nightly + '/*.parquet')[0].split('/')[-1]
manifest = next(m for m in (json.load(open(p)) for p in glob.glob(lake + '/_runs/*.json'))
                if m.get('kind') == 'score' and m.get('file', '').endswith(night_file))
b = manifest['btyd']['bgnbd']
con = duckdb.connect()
con.execute(f"CREATE VIEW live AS SELECT * FROM read_parquet('{lake}/scores_live/*/*.parquet')")
con.execute(f"CREATE VIEW full_scores AS SELECT * FROM read_parquet('{lake}/scores/as_of=2026-11-02/*.parquet')")
con.execute(f"CREATE VIEW night AS SELECT * FROM read_parquet('{nightly}/*.parquet')")
con.execute(f"CREATE VIEW tx AS SELECT * FROM read_parquet('{lake}/transactions/*/*.parquet', hive_partitioning = true)")
con.execute("CREATE TABLE touched AS SELECT unnest($1::VARCHAR[]) AS customer_id", [ids])
def one(sql):
    return con.execute(sql).fetchone()[0]
rows = one("SELECT count(*) FROM live")
touched = one("SELECT count(*) FROM live WHERE customer_id IN (SELECT customer_id FROM touched)")
same = one("""SELECT count(*) FROM live l JOIN full_scores f USING (customer_id)
  WHERE l.churn_probability = f.churn_probability AND l.risk_band = f.risk_band
    AND l.reason_1 IS NOT DISTINCT FROM f.reason_1 AND l.reason_2 IS NOT DISTINCT FROM f.reason_2
    AND l.reason_3 IS NOT DISTINCT FROM f.reason_3 AND l.model_name = f.model_name
    AND l.model_version = f.model_version""")
p_alive = one(f"""WITH days AS (
    SELECT DISTINCT customer_id, CAST(date AS DATE) AS d FROM tx
    WHERE NOT is_return AND amount > 0 AND CAST(date AS DATE) < DATE '2026-11-02'),
  s AS (SELECT customer_id, count(*) - 1 AS x, (max(d) - min(d)) / 7.0 AS t_x,
          (DATE '2026-11-01' - min(d)) / 7.0 AS big_t FROM days GROUP BY customer_id),
  e AS (SELECT customer_id, CASE WHEN x = 0 THEN 1.0 ELSE
          1.0 / (1.0 + {b['a']} / ({b['b']} + x - 1) * power(({b['alpha']} + big_t) / ({b['alpha']} + t_x), {b['r']} + x)) END AS p
        FROM s)
  SELECT count(*) FROM live l JOIN e USING (customer_id) WHERE abs(l.p_alive - e.p) < 1e-9""")
percentile = one("""SELECT count(*) FROM live l WHERE abs(l.risk_percentile - 100.0 *
  ((SELECT count(*) FROM night n WHERE n.churn_probability < l.churn_probability)
   + (SELECT count(*) FROM night n WHERE n.churn_probability = l.churn_probability) / 2.0)
  / (SELECT count(*) FROM night)) < 1e-9""")
event_time = one("""SELECT count(*) FROM live l JOIN (
    SELECT customer_id, max(ts) AS newest FROM tx WHERE transaction_id LIKE 'LIVE%' GROUP BY customer_id
  ) t USING (customer_id) WHERE l.event_time = t.newest""")
as_of = one("SELECT count(*) FROM live WHERE as_of = DATE '2026-11-02'")
print(f"rows {rows} touched {touched} same_as_full {same} p_alive_closed_form {p_alive} percentile_in_night {percentile} event_time {event_time} as_of {as_of}")
"#;

/// Each field name that `values` (the stream's and its status's JSON) contain, at any depth,
/// is in the README's table of what they print.
fn assert_every_field_is_documented(values: &[&serde_json::Value]) {
    fn names(value: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, inner) in map {
                    out.insert(key.clone());
                    names(inner, out);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| names(v, out)),
            _ => {}
        }
    }
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let start = readme
        .find("**What `churn stream --json` and `churn stream status --json` print.**")
        .expect("the README documents the stream's JSON");
    let section = &readme[start..];
    let section = &section[..section.find("\n### ").unwrap_or(section.len())];
    let mut printed = std::collections::BTreeSet::new();
    values.iter().for_each(|v| names(v, &mut printed));
    let undocumented: Vec<&String> = printed
        .iter()
        .filter(|name| !section.contains(&format!("`{name}`")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "fields the stream prints that the README's table does not list: {undocumented:?}"
    );
}
