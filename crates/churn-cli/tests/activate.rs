//! Acting on the model: `churn score` on the demo store. Scores are checked against an
//! independent recomputation (Python reading the registered artifact and the features with
//! DuckDB), the derived columns against their definitions (by DuckDB), and a model whose
//! inputs the features table lacks is refused naming each missing column. `churn segment` and
//! `churn triggers` on a hand-made store are checked against values computed by hand.

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

/// A hand-made store of seven customers as of 2026-03-01 (days before D in brackets):
/// A buys five times at 100 (1, 9, 20, 45, 90), B twice at 50 (4, 59), C once at 30 (14),
/// D twice at 200 (40, 273), E three times at 20 (71, 122, 151), F twice at 10 (212, 243),
/// G once at 1000 (106). B was referred by A. C has opted out of marketing, G has not said.
fn hand_made_lake(dir: &Path) -> PathBuf {
    let purchases: &[(&str, &[(&str, f64)])] = &[
        (
            "A",
            &[
                ("2026-02-28", 100.0),
                ("2026-02-20", 100.0),
                ("2026-02-09", 100.0),
                ("2026-01-15", 100.0),
                ("2025-12-01", 100.0),
            ],
        ),
        ("B", &[("2026-02-25", 50.0), ("2026-01-01", 50.0)]),
        ("C", &[("2026-02-15", 30.0)]),
        ("D", &[("2026-01-20", 200.0), ("2025-06-01", 200.0)]),
        (
            "E",
            &[
                ("2025-12-20", 20.0),
                ("2025-10-30", 20.0),
                ("2025-10-01", 20.0),
            ],
        ),
        ("F", &[("2025-08-01", 10.0), ("2025-07-01", 10.0)]),
        ("G", &[("2025-11-15", 1000.0)]),
    ];
    let mut csv = String::from("transaction_id,customer_id,ts,amount\n");
    let mut n = 0;
    for (customer, rows) in purchases {
        for (day, amount) in rows.iter() {
            n += 1;
            csv.push_str(&format!("T{n},{customer},{day} 12:00:00,{amount}\n"));
        }
    }
    std::fs::write(dir.join("transactions.csv"), csv).unwrap();
    std::fs::write(
        dir.join("customers.csv"),
        "customer_id,referrer_id,marketing_opt_in\nA,,true\nB,A,true\nC,,false\nD,,true\nE,,true\nF,,true\nG,,\n",
    )
    .unwrap();
    let lake = dir.join("lake");
    for table in ["transactions", "customers"] {
        CHURN.json(&[
            "ingest",
            "--json",
            "--lake",
            s(&lake),
            "--table",
            table,
            "--source",
            s(&dir.join(format!("{table}.csv"))),
            "--timezone",
            "UTC",
        ]);
    }
    lake
}

/// Gold from 400 spent and two purchases; a tag for 400 or more spent; the given rules.
fn rules_file(dir: &Path, rules: &str) -> PathBuf {
    let path = dir.join("rules.toml");
    std::fs::write(
        &path,
        format!(
            "[[segments.tiers]]\nname = \"gold\"\nlabel_zh = \"金卡\"\nmin_net_spend_365d = 400.0\nmin_purchases_365d = 2\n\
             [[segments.tiers]]\nname = \"silver\"\n\
             [[rules]]\nname = \"big_basket\"\nwhen = \"monetary_365d >= 400\"\ntag = \"big basket\"\n{rules}"
        ),
    )
    .unwrap();
    path
}

fn segment(lake: &Path, rules: &Path, as_of: &str, lang: &str) -> serde_json::Value {
    CHURN.json(&[
        "segment",
        "--json",
        "--lake",
        s(lake),
        "--as-of",
        as_of,
        "--rules",
        s(rules),
        "--lang",
        lang,
    ])
}

fn triggers(lake: &Path, rules: &Path, as_of: &str) -> serde_json::Value {
    CHURN.json(&[
        "triggers",
        "--json",
        "--lake",
        s(lake),
        "--as-of",
        as_of,
        "--rules",
        s(rules),
    ])
}

#[test]
fn rfm_scores_segments_lifecycle_stages_and_tiers_equal_hand_computed_values() {
    let dir = tempfile::tempdir().unwrap();
    let lake = hand_made_lake(dir.path());
    let rules = rules_file(dir.path(), "");
    let summary = segment(&lake, &rules, "2026-03-01", "en");
    assert_eq!(summary["customers"], 7);
    // By hand, score = 1 + floor(5 × customers with a worse value / 7):
    // recency A1 B4 C14 D40 E71 G106 F212 -> R 5 4 3 3 2 1 1;
    // purchases A5 E3 B2 D2 F2 C1 G1 -> F 5 4 2 2 2 1 1;
    // spend G1000 A500 D400 B100 E60 C30 F20 -> M 5 4 3 3 2 1 1; FM = ceil((F+M)/2).
    // Lifecycle: C's first purchase is 14 days ago (new); D came back after a 233-day gap
    // (reactivated); E 71 days (at risk), G 106 (dormant), F 212 (lost).
    let got = duckdb_fetchall(&format!(
        "SELECT customer_id, r_score, f_score, m_score, fm_score, rfm_segment, lifecycle_stage, suggested_tier, tags \
         FROM read_parquet('{}/segments/*/*.parquet', hive_partitioning = true) ORDER BY 1",
        s(&lake)
    ));
    let expected = "[('A', 5, 5, 4, 5, 'champions', 'active', 'gold', 'big basket'), \
                    ('B', 4, 2, 3, 3, 'potential_loyalist', 'active', 'silver', None), \
                    ('C', 3, 1, 1, 1, 'about_to_sleep', 'new', 'silver', None), \
                    ('D', 3, 2, 3, 3, 'need_attention', 'reactivated', 'gold', 'big basket'), \
                    ('E', 2, 4, 2, 3, 'at_risk', 'at_risk', 'silver', None), \
                    ('F', 1, 2, 1, 2, 'hibernating', 'lost', 'silver', None), \
                    ('G', 1, 1, 5, 3, 'at_risk', 'dormant', 'silver', 'big basket')]";
    assert_eq!(got, expected);

    // Chinese labels, same codes.
    segment(&lake, &rules, "2026-03-01", "zh-CN");
    let got = duckdb_fetchall(&format!(
        "SELECT customer_id, rfm_segment, rfm_segment_label, lifecycle_label, suggested_tier_label \
         FROM read_parquet('{}/segments/*/*.parquet', hive_partitioning = true) WHERE customer_id IN ('A', 'C') ORDER BY 1",
        s(&lake)
    ));
    assert_eq!(
        got,
        "[('A', 'champions', '重要价值客户', '活跃客户', '金卡'), ('C', 'about_to_sleep', '即将沉睡客户', '新客户', 'silver')]"
    );
}

#[test]
fn cooldowns_hold_across_days_and_reruns_and_opted_out_customers_get_no_action() {
    let dir = tempfile::tempdir().unwrap();
    let lake = hand_made_lake(dir.path());
    let rules = rules_file(
        dir.path(),
        "[[rules]]\nname = \"everyone\"\nwhen = \"true\"\naction = \"hello\"\ncooldown_days = 2\n\
         [[rules]]\nname = \"capped\"\nwhen = \"true\"\naction = \"call\"\ncooldown_days = 0\ndaily_cap = 2\n\
         [[rules]]\nname = \"referral\"\nwhen = \"customer_id = 'B'\"\naction = \"coupon for both\"\ninclude_referrer = true\n",
    );
    let actions_of = |day: &str| {
        duckdb_fetchall(&format!(
            "SELECT rule, customer_id, recipient FROM read_parquet('{}/triggers/*/*.parquet', hive_partitioning = true) \
             WHERE as_of = DATE '{day}' ORDER BY 1, 2",
            s(&lake)
        ))
    };
    let everyone = |v: &serde_json::Value| v["rules"][0].clone();
    for day in ["2026-03-01", "2026-03-02", "2026-03-03"] {
        segment(&lake, &rules, day, "en");
    }
    // Day 1: everyone opted in (not C, who opted out, nor G, who never said).
    let day1 = triggers(&lake, &rules, "2026-03-01");
    assert_eq!(everyone(&day1)["matched"], 7);
    assert_eq!(everyone(&day1)["not_opted_in"], 2);
    assert_eq!(everyone(&day1)["actions"], 5);
    // No scores in this lake: the cap keeps the first customer ids.
    let day1_actions = "[('capped', 'A', 'customer'), ('capped', 'B', 'customer'), \
                        ('everyone', 'A', 'customer'), ('everyone', 'B', 'customer'), ('everyone', 'D', 'customer'), \
                        ('everyone', 'E', 'customer'), ('everyone', 'F', 'customer'), \
                        ('referral', 'A', 'referrer'), ('referral', 'B', 'customer')]";
    assert_eq!(actions_of("2026-03-01"), day1_actions);
    // Day 2: within the two-day cooldown, twice (a re-run counts nothing against itself).
    for _ in 0..2 {
        let day2 = triggers(&lake, &rules, "2026-03-02");
        assert_eq!(everyone(&day2)["actions"], 0);
        assert_eq!(everyone(&day2)["in_cooldown"], 5);
    }
    // Re-running day 1 gives day 1's actions again, not fewer and not twice.
    triggers(&lake, &rules, "2026-03-01");
    assert_eq!(actions_of("2026-03-01"), day1_actions);
    // Day 3: two days have passed.
    let day3 = triggers(&lake, &rules, "2026-03-03");
    assert_eq!(everyone(&day3)["actions"], 5);
    let all = duckdb_fetchall(&format!(
        "SELECT count(*) FROM read_parquet('{}/triggers/*/*.parquet', hive_partitioning = true) WHERE customer_id IN ('C', 'G')",
        s(&lake)
    ));
    assert_eq!(all, "[(0,)]");
}

#[test]
fn a_rule_whose_sql_fails_is_named_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let lake = hand_made_lake(dir.path());
    let rules = rules_file(
        dir.path(),
        "[[rules]]\nname = \"broken_rule\"\nwhen = \"no_such_column > 1\"\naction = \"x\"\n",
    );
    let out = CHURN.run(&[
        "segment",
        "--lake",
        s(&lake),
        "--as-of",
        "2026-03-01",
        "--rules",
        s(&rules),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("broken_rule") && stderr.contains("no_such_column"),
        "{stderr}"
    );
    // Triggers without the day's segments: a data error naming the missing step.
    let out = CHURN.run(&["triggers", "--lake", s(&lake), "--as-of", "2026-03-01"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("churn segment"), "{stderr}");
}
