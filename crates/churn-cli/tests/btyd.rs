//! `churn btyd fit` on the raw CDNOW sample purchases, ingested like any store: the as-of
//! semantics (calibration = purchases before 1997-10-01, age measured to 1997-09-30) must
//! reproduce the published estimates (Fader, Hardie & Lee 2005), listed in
//! shared/datasets/cdnow/README.md.

use std::path::Path;

use churn_test_kit::{Churn, assert_fit_3sf};

const CHURN: Churn = Churn::new(env!("CARGO_BIN_EXE_churn"));

/// The CDNOW sample (customer, sample id, YYYYMMDD, CDs, dollars) as a contract CSV. Eight
/// orders cost $0 (free CDs, the first order of eight customers); the published fits count
/// every order as a purchase, while our contract counts only amounts above zero, so those
/// orders are recorded at one cent.
fn cdnow_csv(dir: &Path) -> std::path::PathBuf {
    let raw = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/CDNOW_sample.txt"
    ))
    .unwrap();
    let mut csv = String::from("transaction_id,customer_id,ts,amount,quantity\n");
    for (i, line) in raw.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let d = f[2];
        let dollars: f64 = f[4].parse().unwrap();
        let amount = if dollars > 0.0 {
            f[4].to_string()
        } else {
            "0.01".to_string()
        };
        csv.push_str(&format!(
            "T{i},{},{}-{}-{} 12:00:00,{amount},{}\n",
            f[0],
            &d[..4],
            &d[4..6],
            &d[6..],
            f[3]
        ));
    }
    let path = dir.join("cdnow.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

/// A lake holding the CDNOW sample purchases, under `dir`.
fn cdnow_lake(dir: &Path) -> std::path::PathBuf {
    let lake = dir.join("lake");
    let csv = cdnow_csv(dir);
    CHURN.json(&[
        "ingest",
        "--json",
        "--lake",
        lake.to_str().unwrap(),
        "--table",
        "transactions",
        "--source",
        csv.to_str().unwrap(),
    ]);
    lake
}

#[test]
fn fits_on_the_raw_cdnow_purchases_reproduce_the_published_estimates() {
    let dir = tempfile::tempdir().unwrap();
    let lake = cdnow_lake(dir.path());
    let lake_s = lake.to_str().unwrap();
    let fit = |model: &str| {
        CHURN.json(&[
            "btyd",
            "fit",
            "--json",
            "--lake",
            lake_s,
            "--as-of",
            "1997-10-01",
            "--model",
            model,
        ])
    };

    let bgnbd = fit("bgnbd");
    assert_eq!(bgnbd["customers"], 2357);
    for (name, published) in [("r", 0.243), ("alpha", 4.414), ("a", 0.793), ("b", 2.426)] {
        assert_fit_3sf(&bgnbd, name, published);
    }
    assert!(
        (bgnbd["log_likelihood"].as_f64().unwrap() - -9582.4).abs() < 0.1,
        "{}",
        bgnbd["log_likelihood"]
    );

    let pareto = fit("pareto-nbd");
    for (name, published) in [
        ("r", 0.553),
        ("alpha", 10.578),
        ("s", 0.606),
        ("beta", 11.669),
    ] {
        assert_fit_3sf(&pareto, name, published);
    }
    assert!(
        (pareto["log_likelihood"].as_f64().unwrap() - -9595.0).abs() < 0.1,
        "{}",
        pareto["log_likelihood"]
    );

    let gamma_gamma = fit("gamma-gamma");
    assert_per_customer_values_match_lifetimes(
        lake_s,
        &[
            ("bgnbd", &bgnbd),
            ("pareto-nbd", &pareto),
            ("gamma-gamma", &gamma_gamma),
        ],
    );
}

/// lifetimes' fits and per-customer values on the same calibration, recorded by
/// tests/data/lifetimes_cdnow/reference.py (see the README there).
fn lifetimes_cdnow() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/lifetimes_cdnow/reference.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Whether `ours` is within `relative` of `reference` (plus 1e-9 for values near zero).
fn close(ours: f64, reference: f64, relative: f64) -> bool {
    (ours - reference).abs() <= relative * reference.abs() + 1e-9
}

/// Our fitted parameters agree with lifetimes' fit to 1e-4 relative (1.2e-5 at most when
/// recorded), and the per-customer values, smooth in the parameters, then agree to 1e-4
/// relative as well (1.3e-5 at most when recorded): for every customer of the recorded subset
/// (every 12th) and summed over all 2,357.
fn assert_per_customer_values_match_lifetimes(lake: &str, fits: &[(&str, &serde_json::Value)]) {
    let reference = lifetimes_cdnow();
    for (model, fit) in fits {
        for (name, ours) in fit["parameters"].as_object().unwrap() {
            // lifetimes calls Gamma-Gamma's scale `v`.
            let their_name = if name == "gamma" { "v" } else { name.as_str() };
            let theirs = reference["parameters"][model][their_name].as_f64().unwrap();
            let ours = ours.as_f64().unwrap();
            assert!(
                close(ours, theirs, 1e-4),
                "{model} {name}: ours {ours}, lifetimes {theirs}"
            );
        }
    }
    let query = |model: &str, columns: &[&str]| -> Vec<serde_json::Value> {
        let out = CHURN.json(&[
            "sql",
            "--json",
            "--lake",
            lake,
            &format!(
                "SELECT customer_id, {} FROM btyd WHERE model = '{model}' ORDER BY customer_id",
                columns.join(", ")
            ),
        ]);
        out["rows"].as_array().unwrap().clone()
    };
    let checks = [
        ("bgnbd", "p_alive", "bgnbd_p_alive"),
        ("bgnbd", "expected_purchases", "bgnbd_expected_purchases"),
        ("pareto-nbd", "p_alive", "pareto_nbd_p_alive"),
        (
            "pareto-nbd",
            "expected_purchases",
            "pareto_nbd_expected_purchases",
        ),
        ("gamma-gamma", "expected_spend", "expected_spend"),
    ];
    for (model, column, theirs) in checks {
        let rows = query(model, &[column]);
        assert_eq!(rows.len(), 2357, "{model}");
        let mut sum = 0.0;
        let mut compared = 0;
        for row in &rows {
            let ours = row[column].as_f64().unwrap();
            sum += ours;
            let id = row["customer_id"].as_str().unwrap();
            if let Some(expected) = reference["customers"][id][theirs].as_f64() {
                compared += 1;
                assert!(
                    close(ours, expected, 1e-4),
                    "{model} {column} of customer {id}: ours {ours}, lifetimes {expected}"
                );
            }
        }
        assert_eq!(
            compared, 197,
            "{model} {column}: customers of the recorded subset"
        );
        let total = reference["sums"][theirs].as_f64().unwrap();
        assert!(
            close(sum, total, 1e-4),
            "{model} sum of {column}: ours {sum}, lifetimes {total}"
        );
    }
}

/// Reads a number from the recorded lifetimes reference fit.
fn lifetimes_reference(key: &str) -> f64 {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../churn-model/tests/data/lifetimes_weekly/reference.json"
    ))
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    // `strict_cutoff`: lifetimes given only the purchases up to 1997-09-30, as our as-of does.
    v["strict_cutoff"][key].as_f64().unwrap()
}

#[test]
fn a_weekly_grain_bgnbd_fit_matches_the_recorded_lifetimes_fit() {
    let dir = tempfile::tempdir().unwrap();
    let lake = cdnow_lake(dir.path());
    let lake_s = lake.to_str().unwrap();
    let fit = CHURN.json(&[
        "btyd",
        "fit",
        "--json",
        "--lake",
        lake_s,
        "--as-of",
        "1997-10-01",
        "--model",
        "bgnbd",
        "--grain",
        "week",
    ]);
    assert_eq!(fit["customers"], 2357);
    for name in ["r", "alpha", "a", "b"] {
        let ours = fit["parameters"][name].as_f64().unwrap();
        let reference = lifetimes_reference(name);
        assert!(
            ((ours - reference) / reference).abs() < 1e-3,
            "{name}: ours {ours}, lifetimes {reference}"
        );
    }
    let ll = fit["log_likelihood"].as_f64().unwrap();
    assert!(
        (ll - lifetimes_reference("log_likelihood_total_weeks")).abs() < 0.01,
        "log-likelihood {ll}"
    );
    // The summaries themselves agree with lifetimes' totals.
    let out = CHURN.command()
        .args(["sql", "--lake", lake_s, "--format", "csv", "SELECT CAST(sum(frequency) AS BIGINT) AS f, CAST(sum(recency_weeks) AS BIGINT) AS r, CAST(sum(age_weeks) AS BIGINT) AS t FROM btyd WHERE grain = 'week'"])
        .output()
        .unwrap();
    let expected = format!(
        "f,r,t\n{},{},{}\n",
        lifetimes_reference("sum_frequency"),
        lifetimes_reference("sum_recency"),
        lifetimes_reference("sum_T")
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
}
