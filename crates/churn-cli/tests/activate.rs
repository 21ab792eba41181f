//! Acting on the model: `churn score` on the demo store. Scores are checked against an
//! independent recomputation (Python reading the registered artifact and the features with
//! DuckDB), the derived columns against their definitions (by DuckDB), and a model whose
//! inputs the features table lacks is refused naming each missing column.

use std::path::{Path, PathBuf};

use churn_test_kit::{Churn, duckdb_fetchall, python_stdout, repo_root, s};

const CHURN: Churn = Churn::new(env!("CARGO_BIN_EXE_churn"));

/// A logistic model without BTYD features, so its scores can be recomputed from the
/// features table and the artifact alone.
fn logistic_model(dir: &Path) -> PathBuf {
    let path = dir.join("plain-logistic.toml");
    std::fs::write(
        &path,
        "algorithm = \"logistic\"\n[training]\nsnapshots = 3\n\
         [features]\ninclude = [\"*\"]\nexclude = [\"tier\"]\nbtyd = false\n\
         [scoring]\nrisk_band_cutoffs = [0.3, 0.7]\n",
    )
    .unwrap();
    path
}

const AS_OF: &str = "2026-11-01";

#[test]
fn scores_equal_the_registered_logistic_model_applied_to_the_features_table() {
    let dir = tempfile::tempdir().unwrap();
    let lake = CHURN.demo_lake(dir.path());
    let model = logistic_model(dir.path());
    let trained = CHURN.json(&[
        "train",
        "--json",
        "--lake",
        s(&lake),
        "--model",
        s(&model),
        "--as-of",
        "2026-08-03",
    ]);
    let scored = CHURN.json(&[
        "score",
        "--json",
        "--lake",
        s(&lake),
        "--as-of",
        AS_OF,
        "--model",
        "plain-logistic",
    ]);
    assert_eq!(scored["model_version"], trained["version"]);
    assert_eq!(scored["built_features"], true);

    let features = lake.join(format!("features/as_of={AS_OF}/*.parquet"));
    let scores = lake.join(format!("scores/as_of={AS_OF}/*.parquet"));
    // Every customer of the population is scored, once.
    let population = duckdb_fetchall(&format!(
        "SELECT count(*), count(DISTINCT customer_id) FROM read_parquet('{}')",
        s(&features)
    ));
    assert_eq!(
        population,
        format!("[({n}, {n})]", n = scored["customers"]),
        "population {population} vs scored {}",
        scored["customers"]
    );

    let artifact = lake.join(format!(
        "_models/plain-logistic/{}/artifact.json",
        trained["version"]
    ));
    let score_reference = repo_root().join("crates/churn-cli/tests/data/score_reference.py");
    let expected: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&python_stdout([
            s(&score_reference),
            s(&artifact),
            s(&features),
        ]))
        .unwrap();
    let ours: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&python_stdout([
        "-c",
        &format!(
            "import duckdb, json; print(json.dumps(dict(duckdb.sql(\"SELECT customer_id, churn_probability FROM read_parquet('{}')\").fetchall())))",
            s(&scores)
        ),
    ]))
    .unwrap();
    assert_eq!(ours.len(), expected.len());
    for (id, p) in &expected {
        let (p, q) = (p.as_f64().unwrap(), ours[id].as_f64().unwrap());
        assert!((p - q).abs() < 1e-9, "{id}: reference {p}, churn {q}");
    }

    // Derived columns follow their definitions: bands at the model file's cut-offs, the
    // percentile as the share below (ties half), value at risk as probability times value.
    let violations = duckdb_fetchall(&format!(
        "WITH s AS (SELECT * FROM read_parquet('{scores}')), \
         ranked AS (SELECT customer_id, 100.0 * ((SELECT count(*) FROM s t WHERE t.churn_probability < s.churn_probability) \
           + ((SELECT count(*) FROM s t WHERE t.churn_probability = s.churn_probability) - 1) / 2.0) / (SELECT count(*) FROM s) AS pct FROM s) \
         SELECT \
           count(*) FILTER (WHERE risk_band <> CASE WHEN churn_probability >= 0.7 THEN 'high' WHEN churn_probability >= 0.3 THEN 'medium' ELSE 'low' END), \
           count(*) FILTER (WHERE abs(risk_percentile - r.pct) > 1e-9), \
           count(*) FILTER (WHERE abs(value_at_risk - churn_probability * expected_value_12m) > 1e-9 * (1 + expected_value_12m)), \
           count(*) FILTER (WHERE p_alive IS NULL OR p_alive < 0 OR p_alive > 1 OR expected_purchases_90d < 0 OR expected_value_12m < 0), \
           count(*) FILTER (WHERE model_name <> 'plain-logistic' OR reason_1 IS NULL) \
         FROM s JOIN ranked r USING (customer_id)",
        scores = s(&scores)
    ));
    assert_eq!(violations, "[(0, 0, 0, 0, 0)]");
}

#[test]
fn a_model_whose_inputs_the_features_table_lacks_is_refused_naming_each_column() {
    let dir = tempfile::tempdir().unwrap();
    let lake = CHURN.demo_lake(dir.path());
    let model = logistic_model(dir.path());
    CHURN.json(&[
        "train",
        "--json",
        "--lake",
        s(&lake),
        "--model",
        s(&model),
        "--as-of",
        "2026-08-03",
    ]);
    // Features of D from the RFM file alone: the gaps and habits columns are missing.
    let only_rfm = dir.path().join("only-rfm");
    std::fs::create_dir(&only_rfm).unwrap();
    std::fs::copy(
        repo_root().join("pipelines/features/rfm.sql"),
        only_rfm.join("rfm.sql"),
    )
    .unwrap();
    CHURN.json(&[
        "features",
        "--json",
        "--lake",
        s(&lake),
        "--as-of",
        AS_OF,
        "--features-dir",
        s(&only_rfm),
    ]);
    let out = CHURN.run(&[
        "score",
        "--lake",
        s(&lake),
        "--as-of",
        AS_OF,
        "--model",
        "plain-logistic",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for column in ["mean_gap_days", "overdue_ratio"] {
        assert!(
            err.contains(&format!("{column} is not in the features table")),
            "{err}"
        );
    }
    assert!(!lake.join(format!("scores/as_of={AS_OF}")).exists());
}

#[test]
fn training_refits_on_the_newest_labelled_snapshots_to_score_with_unless_backtest_only() {
    let dir = tempfile::tempdir().unwrap();
    let lake = CHURN.demo_lake(dir.path());
    let model = logistic_model(dir.path());
    let read = |version: &serde_json::Value, file: &str| -> Option<serde_json::Value> {
        let path = lake.join(format!("_models/plain-logistic/{version}/{file}"));
        std::fs::read(path)
            .ok()
            .map(|b| serde_json::from_slice(&b).unwrap())
    };
    // Three snapshots 30 days apart, the newest held out to calibrate: the backtest with
    // test snapshot 2026-08-03 fits on 2026-03-06 and 2026-04-05 and calibrates on
    // 2026-05-05 (D - 90); the scoring fit moves the same schedule one horizon later, so it
    // ends at the test snapshot itself.
    let report = CHURN.json(&[
        "train",
        "--json",
        "--lake",
        s(&lake),
        "--model",
        s(&model),
        "--as-of",
        "2026-08-03",
    ]);
    assert_eq!(
        report["training"]["snapshots"],
        serde_json::json!(["2026-03-06", "2026-04-05"])
    );
    assert_eq!(
        report["calibration"]["snapshots"],
        serde_json::json!(["2026-05-05"])
    );
    let fit = &report["scoring_fit"];
    assert_eq!(
        fit["training"]["snapshots"],
        serde_json::json!(["2026-06-04", "2026-07-04"])
    );
    assert_eq!(
        fit["calibration"]["snapshots"],
        serde_json::json!(["2026-08-03"])
    );
    let version = &report["version"];
    let manifest = read(version, "manifest.json").unwrap();
    assert_eq!(&manifest["scoring_fit"], fit);
    let (artifact, backtested) = (
        read(version, "artifact.json").unwrap(),
        read(version, "backtest_artifact.json").unwrap(),
    );
    assert_ne!(artifact["classifier"], backtested["classifier"]);

    let only = CHURN.json(&[
        "train",
        "--json",
        "--backtest-only",
        "--lake",
        s(&lake),
        "--model",
        s(&model),
        "--as-of",
        "2026-08-03",
    ]);
    assert!(only["scoring_fit"].is_null());
    let version = &only["version"];
    assert!(read(version, "backtest_artifact.json").is_none());
    // Same data, same seed: the backtested model is byte-for-byte the earlier backtest's.
    assert_eq!(read(version, "artifact.json").unwrap(), backtested);
    let shown = CHURN.run(&["models", "show", "--lake", s(&lake), "plain-logistic@1"]);
    assert!(
        String::from_utf8_lossy(&shown.stdout)
            .contains("scoring fit  2026-06-04, 2026-07-04, calibrated on 2026-08-03"),
        "{}",
        String::from_utf8_lossy(&shown.stdout)
    );
}
