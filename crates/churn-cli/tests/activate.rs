//! Acting on the model: `churn score` on the demo store. Scores are checked against an
//! independent recomputation (Python reading the registered artifact and the features with
//! DuckDB), the derived columns against their definitions (by DuckDB), and a model whose
//! inputs the features table lacks is refused naming each missing column. `churn segment` and
//! `churn triggers` on a hand-made store are checked against values computed by hand.

use std::path::{Path, PathBuf};

use churn_test_kit::{Churn, duckdb_fetchall, duckdb_row, python_stdout, repo_root, s};

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
/// Everyone has an e-mail and a phone number.
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
        "customer_id,referrer_id,marketing_opt_in,email,phone\n\
         A,,true,anna@example.com,+86 139 0000 0001\nB,A,true,bo@example.com,13900000002\n\
         C,,false,chen@example.com,13900000003\nD,,true,dai@example.com,13900000004\n\
         E,,true,e@example.com,13900000005\nF,,true,fang@example.com,13900000006\n\
         G,,,gao@example.com,13900000007\n",
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

/// A pipeline file with only a lake, the activation step and the given campaigns.
fn campaigns_file(dir: &Path, lake: &Path, campaigns: &str) -> PathBuf {
    let path = dir.join("campaigns.toml");
    std::fs::write(
        &path,
        format!("[lake]\npath = {:?}\n[activate]\n{campaigns}", s(lake)),
    )
    .unwrap();
    path
}

#[test]
fn exports_leave_out_opted_out_suppressed_and_control_customers_neutralise_formulas_and_mask_contacts()
 {
    let dir = tempfile::tempdir().unwrap();
    let lake = hand_made_lake(dir.path());
    // An eighth customer whose id a spreadsheet would run as a formula.
    std::fs::write(
        dir.path().join("more.csv"),
        "transaction_id,customer_id,ts,amount\nT99,\"=HYPERLINK(\"\"x\"\")\",2026-02-27 10:00:00,5\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("more-customers.csv"),
        "customer_id,marketing_opt_in,email,phone\n\"=HYPERLINK(\"\"x\"\")\",true,x@example.com,13900000099\n",
    )
    .unwrap();
    for (table, file) in [
        ("transactions", "more.csv"),
        ("customers", "more-customers.csv"),
    ] {
        CHURN.ingest(&lake, table, &dir.path().join(file), &["--timezone", "UTC"]);
    }
    let rules = rules_file(dir.path(), "");
    segment(&lake, &rules, "2026-03-01", "zh-CN");
    // E by e-mail (other case), F by phone (other format); saved by Excel, with a BOM.
    std::fs::write(
        dir.path().join("do-not-contact.txt"),
        "\u{feff}E@EXAMPLE.com\n139-0000-0006\n",
    )
    .unwrap();
    let pipeline = campaigns_file(
        dir.path(),
        &lake,
        "[campaigns.everyone]\naction = \"你好\"\ncontrol_share = 0.0\nbom = true\nrank_by = \"monetary_365d\"\n\
         [campaigns.everyone.suppress]\nlist = \"do-not-contact.txt\"\n\
         [campaigns.everyone.pii]\nemail = \"masked\"\nphone = \"hashed\"\nsalt_env = \"CHURN_TEST_SALT\"\n",
    );
    let export = |salt: Option<&str>| {
        let mut cmd = CHURN.command();
        cmd.args([
            "export",
            "--json",
            "--config",
            s(&pipeline),
            "--as-of",
            "2026-03-01",
        ]);
        match salt {
            Some(v) => cmd.env("CHURN_TEST_SALT", v),
            None => cmd.env_remove("CHURN_TEST_SALT"),
        };
        cmd.output().unwrap()
    };
    // Hashing without the salt's variable is refused.
    let out = export(None);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        churn_test_kit::stderr(&out)
    );
    let summary = churn_test_kit::json_of(&export(Some("pepper")));
    let manifest = &summary["campaigns"][0];
    assert_eq!(manifest["audience"], 8);
    assert_eq!(manifest["suppressed"]["not_opted_in"], 2);
    assert_eq!(manifest["suppressed"]["suppression_list"], 2);
    assert_eq!(
        (manifest["treated"].as_u64(), manifest["control"].as_u64()),
        (Some(4), Some(0))
    );

    let folder = lake.join("exports/as_of=2026-03-01");
    let csv = std::fs::read(folder.join("everyone.csv")).unwrap();
    assert!(csv.starts_with("\u{feff}".as_bytes()), "no byte-order mark");
    // Ranked by spend: A (500), D (400), B (100), then the eighth customer (5).
    let got = duckdb_fetchall(&format!(
        "SELECT customer_id, rank, segment, action, email, phone = sha256('pepper' || '8613900000001') \
         FROM read_csv_auto('{}', header = true) ORDER BY rank",
        s(&folder.join("everyone.csv"))
    ));
    assert!(
        got.starts_with("[('A', 1, '重要价值客户', '你好', 'a***@example.com', True), ('D', 2, "),
        "{got}"
    );
    assert!(
        got.contains("('B', 3, ") && got.contains(r#"('\'=HYPERLINK("x")', 4, "#),
        "{got}"
    );
    // The same rows and columns in every format, with the documented types.
    for (reader, file) in [
        ("read_csv_auto", "everyone.csv"),
        ("read_parquet", "everyone.parquet"),
        ("read_json_auto", "everyone.jsonl"),
    ] {
        let columns = duckdb_fetchall(&format!(
            "SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {reader}('{}'))",
            s(&folder.join(file))
        ));
        for expected in [
            "('campaign_id', 'VARCHAR')",
            "('customer_id', 'VARCHAR')",
            "('action', 'VARCHAR')",
            "('segment', 'VARCHAR')",
            "('lifecycle_stage', 'VARCHAR')",
            "('email', 'VARCHAR')",
            "('phone', 'VARCHAR')",
        ] {
            assert!(
                columns.contains(expected),
                "{reader}: {expected} not in {columns}"
            );
        }
        assert!(columns.contains("('rank', "), "{reader}: {columns}");
        let ids = duckdb_fetchall(&format!(
            "SELECT list(customer_id ORDER BY customer_id) FROM {reader}('{}')",
            s(&folder.join(file))
        ));
        // Sorted by code point: the quote and `=` come before letters.
        let expected_ids = if reader == "read_csv_auto" {
            r#"[(['\'=HYPERLINK("x")', 'A', 'B', 'D'],)]"#
        } else {
            r#"[(['=HYPERLINK("x")', 'A', 'B', 'D'],)]"#
        };
        assert_eq!(ids, expected_ids, "{reader}");
    }
}

#[test]
fn control_groups_hold_the_configured_share_stay_put_on_a_rerun_and_are_independent_across_campaigns()
 {
    let dir = tempfile::tempdir().unwrap();
    let lake = CHURN.demo_lake(dir.path());
    let rules = rules_file(dir.path(), "");
    segment(&lake, &rules, "2026-11-01", "en");
    let pipeline = campaigns_file(
        dir.path(),
        &lake,
        "[campaigns.alpha]\ncontrol_share = 0.2\nrank_by = \"monetary_365d\"\n\
         [campaigns.beta]\ncontrol_share = 0.2\nrank_by = \"monetary_365d\"\nmax_contacts = 100000\n",
    );
    let export = || {
        CHURN.json(&[
            "export",
            "--json",
            "--config",
            s(&pipeline),
            "--as-of",
            "2026-11-01",
        ])
    };
    let first = export();
    let assignments = |campaign: &str| {
        duckdb_fetchall(&format!(
            "SELECT \"group\", list(customer_id ORDER BY customer_id) FROM read_parquet('{}/campaign_assignments/*/*/*.parquet', hive_partitioning = true) \
             WHERE campaign = '{campaign}' GROUP BY 1 ORDER BY 1",
            s(&lake)
        ))
    };
    let before = (assignments("alpha"), assignments("beta"));
    export();
    assert_eq!(
        (assignments("alpha"), assignments("beta")),
        before,
        "membership changed on a re-run"
    );

    let counts = duckdb_row(&format!(
        "WITH a AS (SELECT * FROM read_parquet('{}/campaign_assignments/*/*/*.parquet', hive_partitioning = true)) \
         SELECT count(*) FILTER (WHERE campaign = 'alpha'), \
                count(*) FILTER (WHERE campaign = 'alpha' AND \"group\" = 'control'), \
                (SELECT count(*) FROM a x JOIN a y USING (customer_id) WHERE x.campaign = 'alpha' AND y.campaign = 'beta' \
                 AND x.\"group\" = 'control' AND y.\"group\" = 'control') FROM a",
        s(&lake)
    ));
    let [n, control, both]: [f64; 3] = [0, 1, 2].map(|i| counts[i].parse().unwrap());
    assert_eq!(
        n,
        first["campaigns"][0]["treated"].as_f64().unwrap()
            + first["campaigns"][0]["control"].as_f64().unwrap()
    );
    // Binomial 99 % intervals around the share and, for independent groups, its square.
    let (p, q) = (0.2, 0.04);
    assert!(
        (control / n - p).abs() < 2.576 * (p * (1.0 - p) / n).sqrt(),
        "{control} of {n}"
    );
    assert!(
        (both / n - q).abs() < 2.576 * (q * (1.0 - q) / n).sqrt(),
        "{both} of {n}"
    );

    // Nobody opted out or without a say is exported, and no control customer is on a list.
    let leaked = duckdb_fetchall(&format!(
        "SELECT count(*) FROM read_csv_auto('{lake}/exports/as_of=2026-11-01/*.csv', header = true) e \
         LEFT JOIN read_parquet('{lake}/customers/*.parquet') c USING (customer_id) \
         LEFT JOIN read_parquet('{lake}/campaign_assignments/*/*/*.parquet', hive_partitioning = true) a \
           ON a.customer_id = e.customer_id AND a.campaign = e.campaign_id \
         WHERE c.marketing_opt_in IS NOT TRUE OR a.\"group\" <> 'treated'",
        lake = s(&lake)
    ));
    assert_eq!(leaked, "[(0,)]");

    // Results before the window has passed: a data error naming the day the data must reach.
    let out = CHURN.run(&[
        "campaigns",
        "results",
        "--lake",
        s(&lake),
        "--campaign",
        "alpha",
        "--as-of",
        "2026-11-01",
    ]);
    let stderr = churn_test_kit::stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("2026-11-30"), "{stderr}");
}

#[test]
fn campaign_results_equal_an_independent_duckdb_computation() {
    let dir = tempfile::tempdir().unwrap();
    let lake = CHURN.demo_lake(dir.path());
    let rules = rules_file(dir.path(), "");
    segment(&lake, &rules, "2026-09-01", "en");
    let pipeline = campaigns_file(
        dir.path(),
        &lake,
        "[campaigns.everyone]\ncontrol_share = 0.3\nrank_by = \"monetary_365d\"\n",
    );
    CHURN.json(&[
        "export",
        "--json",
        "--config",
        s(&pipeline),
        "--as-of",
        "2026-09-01",
    ]);
    let results = CHURN.json(&[
        "campaigns",
        "results",
        "--json",
        "--lake",
        s(&lake),
        "--campaign",
        "everyone",
        "--as-of",
        "2026-09-01",
        "--window-days",
        "30",
    ]);
    // Purchases and net spend in [D, D + 30 days) per assigned customer, by group.
    let by_duckdb = duckdb_fetchall(&format!(
        "WITH a AS (SELECT customer_id, \"group\" AS g FROM read_parquet('{lake}/campaign_assignments/*/*/*.parquet', hive_partitioning = true) \
                    WHERE campaign = 'everyone'), \
         t AS (SELECT customer_id, count(*) FILTER (WHERE NOT is_return AND amount > 0) AS p, \
                      sum(CASE WHEN NOT is_return AND amount > 0 THEN amount WHEN is_return OR amount < 0 THEN -abs(amount) ELSE 0 END) AS net \
               FROM read_parquet('{lake}/transactions/*/*.parquet', hive_partitioning = true) \
               WHERE date >= DATE '2026-09-01' AND date < DATE '2026-10-01' GROUP BY 1), \
         j AS (SELECT g, coalesce(p, 0) AS p, coalesce(net, 0) AS net FROM a LEFT JOIN t USING (customer_id)), \
         s AS (SELECT g, count(*) AS n, avg(CASE WHEN p > 0 THEN 1.0 ELSE 0.0 END) AS rate, avg(net) AS rev, stddev_samp(net) AS sd FROM j GROUP BY g) \
         SELECT t.n, c.n, t.rate, c.rate, t.rev, c.rev, \
                t.rate - c.rate - 1.959963984540054 * sqrt(t.rate * (1 - t.rate) / t.n + c.rate * (1 - c.rate) / c.n), \
                t.rev - c.rev + 1.959963984540054 * sqrt(t.sd * t.sd / t.n + c.sd * c.sd / c.n) \
         FROM s t, s c WHERE t.g = 'treated' AND c.g = 'control'",
        lake = s(&lake)
    ));
    let values: Vec<f64> = by_duckdb
        .trim_start_matches("[(")
        .trim_end_matches(")]")
        .split(", ")
        .map(|v| {
            v.trim_start_matches("Decimal('")
                .trim_end_matches("')")
                .parse()
                .unwrap()
        })
        .collect();
    let ours = [
        &results["treated"]["customers"],
        &results["control"]["customers"],
        &results["treated"]["purchase_rate"],
        &results["control"]["purchase_rate"],
        &results["treated"]["revenue_per_customer"],
        &results["control"]["revenue_per_customer"],
        &results["purchase_rate_uplift"]["ci_low"],
        &results["revenue_uplift"]["ci_high"],
    ]
    .map(|v| v.as_f64().unwrap());
    assert_eq!(values.len(), ours.len(), "{by_duckdb}");
    for (k, (o, d)) in ours.iter().zip(&values).enumerate() {
        assert!(
            (o - d).abs() <= 1e-9 * d.abs().max(1.0),
            "value {k}: ours {o}, DuckDB {d}"
        );
    }
    assert!(
        values[1] > 300.0,
        "a control group of {} is too small to test",
        values[1]
    );
}
