//! Retention marts and the HTML report. One lake runs the demo pipeline for 2026-09-01 and
//! for 2026-11-01 (so it has a campaign export whose window has passed, two segmented dates
//! and a registered model); its marts are checked against independent DuckDB computations over
//! the lake's transactions and assignments, their schema against the committed one, and the
//! page in real headless Chromium (no console errors, no network requests, every section and
//! chart, Chinese glyphs in the Chinese report). Tiny and empty lakes get a report that says
//! what is missing.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use churn_test_kit::{Churn, copy_dir, duckdb_fetchall, python_stdout, repo_root, s};

const CHURN: Churn = Churn::new(env!("CARGO_BIN_EXE_churn"));
const AS_OF: &str = "2026-11-01";
const EXPORTED: &str = "2026-09-01";

/// The demo pipeline run for 2026-09-01 and then 2026-11-01 into one lake, once per test
/// binary; the report of 2026-11-01 in English and, in a copy of the lake, in Chinese.
struct Fixture {
    _dir: tempfile::TempDir,
    lake: PathBuf,
    zh_lake: PathBuf,
    report: serde_json::Value,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let lake = dir.path().join("lake");
        let pipeline = repo_root().join("pipelines/demo.toml");
        for as_of in [EXPORTED, AS_OF] {
            CHURN.json(&[
                "run",
                "--json",
                s(&pipeline),
                "--as-of",
                as_of,
                "--lake",
                s(&lake),
            ]);
        }
        let zh_lake = dir.path().join("lake-zh");
        copy_dir(&lake, &zh_lake);
        CHURN.json(&[
            "report",
            "--json",
            "--lake",
            s(&zh_lake),
            "--as-of",
            AS_OF,
            "--lang",
            "zh-CN",
        ]);
        // A second report of the same date replaces the first.
        let report = CHURN.json(&["report", "--json", "--lake", s(&lake), "--as-of", AS_OF]);
        Fixture {
            _dir: dir,
            lake,
            zh_lake,
            report,
        }
    })
}

/// DuckDB's rows of `sql` as lists of cells (Python's printing of each value).
fn duckdb_rows(sql: &str) -> Vec<Vec<String>> {
    let script = "import sys, duckdb\n\
                  for row in duckdb.sql(sys.argv[1]).fetchall():\n    \
                  print('\\t'.join('None' if v is None else str(v) for v in row))";
    python_stdout(["-c", script, sql])
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

fn transactions(lake: &Path) -> String {
    format!(
        "read_parquet('{}/transactions/*/*.parquet', hive_partitioning = true)",
        s(lake)
    )
}

fn mart(lake: &Path, name: &str) -> String {
    format!(
        "read_parquet('{}/marts/{name}/as_of={AS_OF}/*.parquet')",
        s(lake)
    )
}

/// Cells equal as numbers to 1e-9 relative (or both null), else as text.
fn assert_rows_equal(ours: &[Vec<String>], reference: &[Vec<String>], what: &str) {
    assert_eq!(ours.len(), reference.len(), "{what}: row counts differ");
    for (k, (o, r)) in ours.iter().zip(reference).enumerate() {
        assert_eq!(o.len(), r.len(), "{what} row {k}: {o:?} vs {r:?}");
        for (a, b) in o.iter().zip(r) {
            let same = match (a.parse::<f64>(), b.parse::<f64>()) {
                (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * y.abs().max(1.0),
                _ => a == b,
            };
            assert!(same, "{what} row {k}: ours {o:?}, DuckDB {r:?}");
        }
    }
}

#[test]
fn the_cohort_triangle_equals_duckdb_with_unobservable_cells_null() {
    let f = fixture();
    let ours = duckdb_rows(&format!(
        "SELECT cohort_month, month_offset, cohort_customers, active_customers, retention_rate \
         FROM {} ORDER BY 1, 2",
        mart(&f.lake, "cohort_retention")
    ));
    // Independently: first purchase month per customer; every cohort month that ended before
    // D, every offset up to the oldest cohort's last complete month; a cell is known only
    // when its month ended before D.
    let reference = duckdb_rows(&format!(
        "WITH t AS (SELECT customer_id, date FROM {tx} WHERE NOT is_return AND amount > 0 AND date < DATE '{AS_OF}'), \
         f AS (SELECT customer_id, date_trunc('month', min(date)) AS cohort FROM t GROUP BY 1), \
         c AS (SELECT cohort, count(*) AS n FROM f WHERE cohort < date_trunc('month', DATE '{AS_OF}') GROUP BY 1), \
         a AS (SELECT f.cohort, date_trunc('month', t.date) AS period, count(DISTINCT t.customer_id) AS active \
               FROM t JOIN f USING (customer_id) GROUP BY 1, 2), \
         k AS (SELECT unnest(range(0, x)) AS k FROM (SELECT date_diff('month', min(cohort), date_trunc('month', DATE '{AS_OF}')) AS x FROM c)) \
         SELECT CAST(c.cohort AS DATE), k.k, c.n, \
                CASE WHEN c.cohort + to_months(k.k) < date_trunc('month', DATE '{AS_OF}') THEN coalesce(a.active, 0) END, \
                CASE WHEN c.cohort + to_months(k.k) < date_trunc('month', DATE '{AS_OF}') THEN coalesce(a.active, 0) / c.n END \
         FROM c CROSS JOIN k LEFT JOIN a ON a.cohort = c.cohort AND a.period = c.cohort + to_months(k.k) \
         ORDER BY 1, 2",
        tx = transactions(&f.lake)
    ));
    assert!(reference.len() > 400, "{} cells", reference.len());
    assert!(reference.iter().any(|r| r[3] == "None"), "no unknown cells");
    assert_rows_equal(&ours, &reference, "cohort_retention");
}

#[test]
fn the_new_customer_repeat_rates_equal_duckdb() {
    let f = fixture();
    let ours = duckdb_rows(&format!(
        "SELECT cohort_month, new_customers, repeat_30d, repeat_60d, repeat_90d, \
                repeat_rate_30d, repeat_rate_60d, repeat_rate_90d FROM {} ORDER BY 1",
        mart(&f.lake, "repeat_rate")
    ));
    let known = |n: u32| {
        format!(
            "CASE WHEN last_day(m) + INTERVAL {n} DAY < DATE '{AS_OF}' THEN count(*) FILTER (WHERE next - first <= {n}) END"
        )
    };
    let rate = |n: u32| {
        format!(
            "CASE WHEN last_day(m) + INTERVAL {n} DAY < DATE '{AS_OF}' THEN count(*) FILTER (WHERE next - first <= {n}) / count(*) END"
        )
    };
    let reference = duckdb_rows(&format!(
        "WITH t AS (SELECT DISTINCT customer_id, date FROM {tx} WHERE NOT is_return AND amount > 0 AND date < DATE '{AS_OF}'), \
         f AS (SELECT customer_id, min(date) AS first FROM t GROUP BY 1), \
         n AS (SELECT f.customer_id, f.first, date_trunc('month', f.first) AS m, min(t.date) AS next \
               FROM f LEFT JOIN t ON t.customer_id = f.customer_id AND t.date > f.first GROUP BY 1, 2) \
         SELECT CAST(m AS DATE), count(*), {k30}, {k60}, {k90}, {r30}, {r60}, {r90} FROM n \
         WHERE m < date_trunc('month', DATE '{AS_OF}') GROUP BY m ORDER BY 1",
        tx = transactions(&f.lake),
        k30 = known(30),
        k60 = known(60),
        k90 = known(90),
        r30 = rate(30),
        r60 = rate(60),
        r90 = rate(90),
    ));
    assert!(reference.len() >= 20);
    assert!(
        reference.last().unwrap()[4] == "None",
        "the last month's 90 days are not over"
    );
    assert_rows_equal(&ours, &reference, "repeat_rate");
}

#[test]
fn the_churn_trend_equals_duckdb() {
    let f = fixture();
    let ours = duckdb_rows(&format!(
        "SELECT month, active_customers, churned_customers, churn_rate FROM {} ORDER BY 1",
        mart(&f.lake, "churn_trend")
    ));
    let reference = duckdb_rows(&format!(
        "WITH t AS (SELECT DISTINCT customer_id, date FROM {tx} WHERE NOT is_return AND amount > 0 AND date < DATE '{AS_OF}'), \
         a AS (SELECT DISTINCT customer_id, date_trunc('month', date) AS m FROM t), \
         r AS (SELECT a.customer_id, a.m, count(t.customer_id) AS later FROM a LEFT JOIN t \
               ON t.customer_id = a.customer_id AND t.date >= a.m + INTERVAL 1 MONTH \
              AND t.date < a.m + INTERVAL 1 MONTH + INTERVAL 90 DAY GROUP BY 1, 2) \
         SELECT CAST(m AS DATE), count(*), \
                CASE WHEN m + INTERVAL 1 MONTH + INTERVAL 90 DAY <= DATE '{AS_OF}' THEN count(*) FILTER (WHERE later = 0) END, \
                CASE WHEN m + INTERVAL 1 MONTH + INTERVAL 90 DAY <= DATE '{AS_OF}' THEN count(*) FILTER (WHERE later = 0) / count(*) END \
         FROM r WHERE m < date_trunc('month', DATE '{AS_OF}') GROUP BY m ORDER BY 1",
        tx = transactions(&f.lake)
    ));
    assert!(reference.iter().filter(|r| r[3] != "None").count() >= 15);
    assert_rows_equal(&ours, &reference, "churn_trend");
}

#[test]
fn campaign_uplift_equals_duckdb_once_the_window_has_passed() {
    let f = fixture();
    let ours = duckdb_rows(&format!(
        "SELECT campaign, observable, treated_customers, control_customers, treated_purchase_rate, \
                control_purchase_rate, purchase_rate_uplift, purchase_rate_uplift_ci_low, \
                purchase_rate_uplift_ci_high, revenue_uplift, revenue_uplift_ci_low, revenue_uplift_ci_high \
         FROM {} WHERE export_as_of = DATE '{EXPORTED}' AND treated_customers > 0 AND control_customers > 0 \
         ORDER BY campaign",
        mart(&f.lake, "campaign_results")
    ));
    let z = "1.959963984540054";
    let reference = duckdb_rows(&format!(
        "WITH a AS (SELECT campaign, customer_id, \"group\" AS g FROM read_parquet('{lake}/campaign_assignments/*/*/*.parquet', hive_partitioning = true) \
                    WHERE as_of = DATE '{EXPORTED}'), \
         t AS (SELECT customer_id, count(*) FILTER (WHERE NOT is_return AND amount > 0) AS p, \
                      sum(CASE WHEN NOT is_return AND amount > 0 THEN amount WHEN is_return OR amount < 0 THEN -abs(amount) ELSE 0 END) AS net \
               FROM {tx} WHERE date >= DATE '{EXPORTED}' AND date < DATE '{EXPORTED}' + INTERVAL 30 DAY GROUP BY 1), \
         j AS (SELECT campaign, g, coalesce(p, 0) AS p, coalesce(net, 0) AS net FROM a LEFT JOIN t USING (customer_id)), \
         s AS (SELECT campaign, g, count(*) AS n, avg(CASE WHEN p > 0 THEN 1.0 ELSE 0.0 END) AS rate, avg(net) AS rev, stddev_samp(net) AS sd FROM j GROUP BY 1, 2) \
         SELECT t.campaign, true, t.n, c.n, t.rate, c.rate, t.rate - c.rate, \
                t.rate - c.rate - {z} * sqrt(t.rate * (1 - t.rate) / t.n + c.rate * (1 - c.rate) / c.n), \
                t.rate - c.rate + {z} * sqrt(t.rate * (1 - t.rate) / t.n + c.rate * (1 - c.rate) / c.n), \
                t.rev - c.rev, \
                t.rev - c.rev - {z} * sqrt(t.sd * t.sd / t.n + c.sd * c.sd / c.n), \
                t.rev - c.rev + {z} * sqrt(t.sd * t.sd / t.n + c.sd * c.sd / c.n) \
         FROM s t JOIN s c ON c.campaign = t.campaign AND t.g = 'treated' AND c.g = 'control' ORDER BY 1",
        lake = s(&f.lake),
        tx = transactions(&f.lake)
    ));
    let ours: Vec<Vec<String>> = ours
        .into_iter()
        .map(|r| r.into_iter().map(|c| c.to_lowercase()).collect())
        .collect();
    let reference: Vec<Vec<String>> = reference
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(|c| {
                    c.trim_start_matches("Decimal('")
                        .trim_end_matches("')")
                        .to_lowercase()
                })
                .collect()
        })
        .collect();
    assert!(!reference.is_empty(), "no campaign with both groups");
    assert_rows_equal(&ours, &reference, "campaign_results");
    // The exports of D itself are listed, their outcome not yet known.
    let pending = duckdb_fetchall(&format!(
        "SELECT count(*), count(purchase_rate_uplift), bool_and(NOT observable) FROM {} WHERE export_as_of = DATE '{AS_OF}'",
        mart(&f.lake, "campaign_results")
    ));
    assert!(
        pending.ends_with(", 0, True)]") && !pending.starts_with("[(0,"),
        "{pending}"
    );
}

#[test]
fn every_mart_has_the_committed_schema_as_duckdb_reads_it() {
    let f = fixture();
    let committed =
        std::fs::read_to_string(repo_root().join("tests/reference/marts_schema.txt")).unwrap();
    let expected: Vec<&str> = committed
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    let mut found = Vec::new();
    for m in f.report["marts"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        for row in duckdb_rows(&format!(
            "SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet('{}/{}'))",
            s(&f.lake),
            m["file"].as_str().unwrap()
        )) {
            found.push(format!("{name}.{} {}", row[0], row[1]));
        }
    }
    assert_eq!(found, expected);
    // The rerun replaced the first report's files.
    for m in f.report["marts"].as_array().unwrap() {
        let folder = f.lake.join(format!(
            "marts/{}/as_of={AS_OF}",
            m["name"].as_str().unwrap()
        ));
        assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 1, "{folder:?}");
    }
}

#[test]
fn the_run_manifest_reads_back_with_its_report_step_last() {
    let f = fixture();
    let runs: Vec<PathBuf> = std::fs::read_dir(f.lake.join("_runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("run-{AS_OF}-")))
        })
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run: churn_pipeline::RunSummary =
        serde_json::from_str(&std::fs::read_to_string(&runs[0]).unwrap()).unwrap();
    let last = run.steps.last().unwrap();
    let churn_pipeline::StepOutcome::Report(report) = &last.outcome else {
        panic!("last step {}: {:?}", last.step, last.outcome)
    };
    assert_eq!(
        (last.step.as_str(), report.as_of.as_str()),
        ("report", AS_OF)
    );
    assert_eq!(report.marts.len(), 12);
    assert!(report.missing.is_empty(), "{:?}", report.missing);
}

/// The page of `lake` rendered in headless Chromium; the inspection's JSON.
fn render(lake: &Path, screenshot: &str) -> serde_json::Value {
    let chromium = std::env::var("CHURN_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: run the tests with tests/run.sh, which installs Debian's chromium, chromium-driver and fonts-wqy-zenhei"
    );
    let page = lake.join(format!("reports/as_of={AS_OF}/index.html"));
    let shot = std::env::temp_dir().join(screenshot);
    let out = python_stdout([
        s(&repo_root().join("crates/churn-cli/tests/data/render_report.py")),
        s(&page),
        s(&shot),
    ]);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn charts_of(page: &serde_json::Value) -> Vec<String> {
    page["sections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["charts"].as_array().unwrap().iter())
        .filter(|c| c["width"].as_f64().unwrap() > 100.0 && c["shapes"].as_u64().unwrap() > 3)
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_report_renders_in_chromium_with_every_section_and_chart_and_no_errors_or_requests() {
    let f = fixture();
    let page = render(&f.lake, "churn-report-en.png");
    let errors: Vec<&serde_json::Value> = page["console"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["level"] != "INFO" && e["level"] != "DEBUG")
        .collect();
    assert!(errors.is_empty(), "console: {errors:?}");
    assert_eq!(
        page["requests"],
        serde_json::json!([]),
        "the page fetched something"
    );
    let ids: Vec<&str> = page["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "kpis",
            "cohorts",
            "churn-trend",
            "segments",
            "at-risk",
            "campaigns",
            "model"
        ]
    );
    assert_eq!(
        charts_of(&page),
        [
            "cohort-heatmap",
            "repeat-rate",
            "churn-trend",
            "segment-sizes",
            "value-at-risk",
            "campaign-uplift",
            "calibration",
            "lift"
        ]
    );
    // Nothing is missing on a lake that ran the whole pipeline.
    for section in page["sections"].as_array().unwrap() {
        assert_eq!(section["missing"], serde_json::json!([]), "{section}");
    }
    let shot = &page["screenshot"];
    assert!(shot["width"].as_u64().unwrap() >= 1000, "{shot}");
    assert!(shot["height"].as_u64().unwrap() > 3000, "{shot}");
    assert!(shot["bytes"].as_u64().unwrap() > 100_000, "{shot}");
}

#[test]
fn the_chinese_report_renders_chinese_glyphs_and_labels() {
    let f = fixture();
    let page = render(&f.zh_lake, "churn-report-zh.png");
    assert_eq!(page["lang"], "zh-CN");
    assert_eq!(page["title"], format!("客户留存报告 · {AS_OF}"));
    assert_eq!(
        page["cjk_glyph"], true,
        "'中' renders as the missing-glyph box"
    );
    let titles: Vec<&str> = page["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        [
            "核心指标",
            "同期群留存",
            "流失率趋势",
            "客户分层与风险价值",
            "高价值高风险客户",
            "营销活动效果",
            "模型说明"
        ]
    );
    assert_eq!(charts_of(&page).len(), 8);
    let html = std::fs::read_to_string(f.zh_lake.join(format!("reports/as_of={AS_OF}/index.html")))
        .unwrap();
    // Segment labels in the page's language, in tables and in the SVG charts.
    assert!(html.contains("重要价值客户"), "no Chinese segment label");
}

#[test]
fn a_tiny_lake_without_model_or_campaigns_gets_a_report_that_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("t.csv");
    std::fs::write(
        &csv,
        "transaction_id,customer_id,ts,amount\nt1,c1,2026-09-15 10:00:00,12.5\n",
    )
    .unwrap();
    let lake = dir.path().join("lake");
    CHURN.ingest(&lake, "transactions", &csv, &["--timezone", "UTC"]);
    let report = CHURN.json(&["report", "--json", "--lake", s(&lake), "--as-of", AS_OF]);
    let missing = report["missing"].to_string();
    for expected in [
        "No registered model",
        "No scores",
        "No segments",
        "No campaign exports",
    ] {
        assert!(missing.contains(expected), "{missing}");
    }
    assert_eq!(report["available"]["transactions"], 1);
    // The one customer is a cohort of one that bought in its month and not after.
    let cells = duckdb_fetchall(&format!(
        "SELECT cohort_month, month_offset, active_customers FROM read_parquet('{}/marts/cohort_retention/as_of={AS_OF}/*.parquet') ORDER BY 2",
        s(&lake)
    ));
    assert_eq!(
        cells,
        "[(datetime.date(2026, 9, 1), 0, 1), (datetime.date(2026, 9, 1), 1, 0)]"
    );
    let html =
        std::fs::read_to_string(lake.join(format!("reports/as_of={AS_OF}/index.html"))).unwrap();
    assert!(html.contains("No registered model: run `churn train`."));
    assert!(html.contains("id=\"model\""));
}

#[test]
fn an_empty_lake_gets_a_report_that_says_there_are_no_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let report = CHURN.json(&["report", "--json", "--lake", s(&lake), "--as-of", AS_OF]);
    assert!(
        report["missing"]
            .to_string()
            .contains("No transactions before the as-of date")
    );
    for m in report["marts"].as_array().unwrap() {
        if m["name"] != "kpis" {
            assert_eq!(m["rows"], 0, "{m}");
        }
    }
    assert!(
        lake.join(format!("reports/as_of={AS_OF}/index.html"))
            .exists()
    );
}

#[test]
fn a_zero_horizon_or_window_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    for flag in ["--horizon-days", "--window-days"] {
        let out = CHURN.run(&["report", "--lake", s(&lake), "--as-of", AS_OF, flag, "0"]);
        assert_eq!(out.status.code(), Some(2), "{flag}");
        assert!(churn_test_kit::stderr(&out).contains(flag));
    }
    let out = CHURN.run(&[
        "report",
        "--lake",
        s(&lake),
        "--as-of",
        AS_OF,
        "--lang",
        "fr",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(churn_test_kit::stderr(&out).contains("fr"));
    assert!(!lake.exists(), "a refused report wrote something");
}
