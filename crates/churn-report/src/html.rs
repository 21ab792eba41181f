//! The self-contained HTML report: one file with inline CSS and inline SVG charts, no script
//! and a content security policy that forbids every network request, so it opens the same from
//! a file share, an e-mail attachment or a browser without network. Every section is always
//! there; a section whose inputs the lake lacks says what is missing and which command makes it.

use std::fmt::Write as _;

use arrow::array::ArrayRef;
use chrono::NaiveDate;
use churn_activate::Lang;
use churn_activate::arrays::{floats, ints, strings};

use crate::charts::{self, HeatCell};
use crate::error::Result;
use crate::i18n::{Texts, label, texts};
use crate::marts::{CampaignRow, Mart, ModelVersion};
use crate::session::Available;

/// The report's sections, in page order (their element ids).
pub const SECTIONS: [&str; 7] = [
    "kpis",
    "cohorts",
    "churn-trend",
    "segments",
    "at-risk",
    "campaigns",
    "model",
];

/// One row of the top at-risk list.
#[derive(Debug, Clone)]
pub struct AtRisk {
    pub customer_id: String,
    pub churn_probability: f64,
    pub risk_band: String,
    pub value_at_risk: Option<f64>,
    pub segment: Option<String>,
    pub reason: Option<String>,
}

/// Everything the page shows.
pub struct Page<'a> {
    pub as_of: NaiveDate,
    pub lake: String,
    pub lang: Lang,
    pub available: &'a Available,
    pub marts: &'a [Mart],
    pub campaigns: &'a [CampaignRow],
    pub models: &'a [ModelVersion],
    pub at_risk: &'a [AtRisk],
}

/// A mart's column as text (dates as `YYYY-MM-DD`), float or integer.
struct Col<'a>(&'a Mart);

impl Col<'_> {
    /// `read` applied to the column `name` of every batch; a batch without it adds nothing.
    fn read<T>(
        &self,
        name: &str,
        read: fn(&ArrayRef) -> churn_activate::Result<Vec<Option<T>>>,
    ) -> Vec<Option<T>> {
        self.0
            .batches
            .iter()
            .filter_map(|b| b.column_by_name(name))
            .flat_map(|c| read(c).unwrap_or_default())
            .collect()
    }

    fn text(&self, name: &str) -> Vec<Option<String>> {
        self.read(name, strings)
    }

    fn float(&self, name: &str) -> Vec<Option<f64>> {
        self.read(name, floats)
    }

    fn int(&self, name: &str) -> Vec<Option<i64>> {
        self.read(name, ints)
    }
}

fn mart<'a>(marts: &'a [Mart], name: &str) -> Option<&'a Mart> {
    marts.iter().find(|m| m.name == name)
}

/// A mart with at least one row.
fn non_empty<'a>(marts: &'a [Mart], name: &str) -> Option<&'a Mart> {
    mart(marts, name).filter(|m| m.rows() > 0)
}

fn h3(text: &str) -> String {
    format!("<h3>{}</h3>\n", esc(text))
}

/// HTML text escaping.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An integer with thousands separators.
pub fn count(v: i64) -> String {
    let digits = v.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0 { format!("-{out}") } else { out }
}

fn money(v: f64) -> String {
    let whole = v.trunc() as i64;
    let cents = ((v - v.trunc()).abs() * 100.0).round() as i64;
    let (whole, cents) = if cents == 100 {
        (whole + v.signum() as i64, 0)
    } else {
        (whole, cents)
    };
    let sign = if v < 0.0 && whole == 0 { "-" } else { "" };
    format!("{sign}{}.{cents:02}", count(whole))
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

fn opt(v: Option<f64>, f: fn(f64) -> String) -> String {
    v.filter(|x| x.is_finite()).map_or_else(|| "—".into(), f)
}

fn month(date: &str) -> String {
    date.get(..7).unwrap_or(date).to_string()
}

fn missing(text: &str) -> String {
    format!("<p class=\"missing\">{}</p>\n", esc(text))
}

fn table(headers: &[&str], rows: &[Vec<String>], numeric_from: usize) -> String {
    let mut s = String::from("<table><thead><tr>");
    for (k, h) in headers.iter().enumerate() {
        let class = if k >= numeric_from {
            " class=\"n\""
        } else {
            ""
        };
        let _ = write!(s, "<th{class}>{}</th>", esc(h));
    }
    s.push_str("</tr></thead><tbody>\n");
    for row in rows {
        s.push_str("<tr>");
        for (k, cell) in row.iter().enumerate() {
            let class = if k >= numeric_from {
                " class=\"n\""
            } else {
                ""
            };
            let _ = write!(s, "<td{class}>{}</td>", esc(cell));
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody></table>\n");
    s
}

fn section(id: &str, title: &str, body: &str) -> String {
    format!(
        "<section id=\"{id}\">\n<h2>{}</h2>\n{body}</section>\n",
        esc(title)
    )
}

fn figure(svg: String) -> String {
    format!("<figure>{svg}</figure>\n")
}

fn kpi_section(p: &Page, t: &Texts) -> String {
    let Some(m) = mart(p.marts, "kpis") else {
        return missing(t.no_transactions);
    };
    let c = Col(m);
    let (codes, values, previous, changes, ratios) = (
        c.text("kpi"),
        c.float("value"),
        c.float("previous_value"),
        c.float("change"),
        c.float("change_ratio"),
    );
    let mut cards = String::from("<div class=\"cards\">\n");
    for i in 0..codes.len() {
        let code = codes[i].clone().unwrap_or_default();
        let format: fn(f64) -> String = if code.contains("revenue") || code == "value_at_risk" {
            money
        } else {
            |v| count(v.round() as i64)
        };
        let change = match (changes[i], ratios[i]) {
            (Some(d), Some(r)) => format!(
                "{} {} ({:+.1}%)",
                if d >= 0.0 { "▲" } else { "▼" },
                format(d.abs()),
                r * 100.0
            ),
            (Some(d), None) => format!("{} {}", if d >= 0.0 { "▲" } else { "▼" }, format(d.abs())),
            _ => "—".into(),
        };
        let _ = writeln!(
            cards,
            "<div class=\"card\" data-kpi=\"{code}\"><div class=\"k\">{}</div><div class=\"v\">{}</div>\
             <div class=\"p\">{}: {} · {}: {}</div></div>",
            esc(label(&t.kpi_names, &code)),
            esc(&opt(values[i], format)),
            esc(t.previous),
            esc(&opt(previous[i], format)),
            esc(t.change),
            esc(&change)
        );
    }
    cards.push_str("</div>\n");
    cards
}

fn cohort_section(p: &Page, t: &Texts) -> Result<String> {
    let mut body = String::new();
    let cohort = non_empty(p.marts, "cohort_retention");
    match cohort {
        None => body.push_str(&missing(if p.available.transactions == 0 {
            t.no_transactions
        } else {
            t.no_complete_month
        })),
        Some(m) => {
            let c = Col(m);
            let (months, offsets, rates) = (
                c.text("cohort_month"),
                c.int("month_offset"),
                c.float("retention_rate"),
            );
            let mut rows: Vec<String> = months.iter().flatten().map(|d| month(d)).collect();
            rows.dedup();
            // The latest 24 cohorts and their first 24 months keep the chart readable; the
            // mart has them all.
            let keep_from = rows.len().saturating_sub(24);
            let rows: Vec<String> = rows[keep_from..].to_vec();
            let columns = offsets
                .iter()
                .flatten()
                .map(|&o| o as usize + 1)
                .max()
                .unwrap_or(1)
                .min(24);
            let cells: Vec<HeatCell> = (0..months.len())
                .filter_map(|i| {
                    let row = rows
                        .iter()
                        .position(|r| Some(r) == months[i].as_ref().map(|d| month(d)).as_ref())?;
                    let column = offsets[i]? as usize;
                    (column < columns).then_some(HeatCell {
                        row,
                        column,
                        value: rates[i],
                    })
                })
                .collect();
            body.push_str(&format!("<p>{}</p>\n", esc(t.cohorts_note)));
            body.push_str(&figure(charts::heatmap(
                "cohort-heatmap",
                &rows,
                columns,
                &cells,
                t.months_after_first,
            )?));
        }
    }
    body.push_str(&h3(t.repeat));
    match non_empty(p.marts, "repeat_rate") {
        None => body.push_str(&missing(t.no_complete_month)),
        Some(m) => {
            let c = Col(m);
            let categories: Vec<String> = c
                .text("cohort_month")
                .iter()
                .map(|d| month(d.as_deref().unwrap_or("")))
                .collect();
            let series: Vec<(String, Vec<Option<f64>>)> = [30, 60, 90]
                .iter()
                .map(|d| {
                    (
                        t.repeat_within.replace("{}", &d.to_string()),
                        c.float(&format!("repeat_rate_{d}d")),
                    )
                })
                .collect();
            body.push_str(&figure(charts::lines(
                "repeat-rate",
                &categories,
                &series,
                true,
            )?));
        }
    }
    Ok(body)
}

fn churn_trend_section(p: &Page, t: &Texts) -> Result<String> {
    let mut body = String::new();
    match non_empty(p.marts, "churn_trend") {
        None => body.push_str(&missing(if p.available.transactions == 0 {
            t.no_transactions
        } else {
            t.no_complete_month
        })),
        Some(m) => {
            let c = Col(m);
            let categories: Vec<String> = c
                .text("month")
                .iter()
                .map(|d| month(d.as_deref().unwrap_or("")))
                .collect();
            let series = vec![(t.churn_rate.to_string(), c.float("churn_rate"))];
            body.push_str(&format!("<p>{}</p>\n", esc(t.churn_trend_note)));
            body.push_str(&figure(charts::lines(
                "churn-trend",
                &categories,
                &series,
                true,
            )?));
        }
    }
    let warnings = mart(p.marts, "kpis").and_then(|m| {
        let c = Col(m);
        let codes = c.text("kpi");
        let values = c.float("value");
        codes
            .iter()
            .position(|k| k.as_deref() == Some("high_risk_customers"))
            .and_then(|i| values[i])
    });
    match warnings {
        Some(w) => body.push_str(&format!(
            "<p class=\"headline\">{}: <strong data-churn-warnings=\"{}\">{}</strong></p>\n",
            esc(t.churn_warnings),
            w as i64,
            count(w as i64)
        )),
        None => body.push_str(&missing(t.no_scores)),
    }
    Ok(body)
}

fn segments_section(p: &Page, t: &Texts) -> Result<String> {
    let mut body = String::new();
    let Some(m) = non_empty(p.marts, "value_by_group") else {
        body.push_str(&missing(t.no_transactions));
        return Ok(body);
    };
    let c = Col(m);
    let (dims, codes, labels, customers, repeat, var, prob) = (
        c.text("dimension"),
        c.text("code"),
        c.text("label"),
        c.int("customers"),
        c.float("repeat_rate"),
        c.float("value_at_risk"),
        c.float("mean_churn_probability"),
    );
    let label_of = |i: usize| -> String {
        let code = codes[i].clone().unwrap_or_default();
        match dims[i].as_deref() {
            Some("rfm_segment") => churn_activate::lang::rfm_segment_label(&code, p.lang).into(),
            Some("lifecycle_stage") => churn_activate::lang::lifecycle_label(&code, p.lang).into(),
            _ => labels[i].clone().unwrap_or(code),
        }
    };
    if p.available.segmented_on_as_of == 0 {
        body.push_str(&missing(t.no_segments));
    } else {
        let idx: Vec<usize> = (0..dims.len())
            .filter(|&i| dims[i].as_deref() == Some("rfm_segment"))
            .collect();
        let bar_labels: Vec<String> = idx.iter().map(|&i| label_of(i)).collect();
        let values: Vec<f64> = idx
            .iter()
            .map(|&i| customers[i].unwrap_or(0) as f64)
            .collect();
        body.push_str(&h3(t.customers));
        body.push_str(&figure(charts::bars(
            "segment-sizes",
            &bar_labels,
            &values,
            false,
        )?));
        let var_idx: Vec<usize> = idx.iter().copied().filter(|&i| var[i].is_some()).collect();
        if !var_idx.is_empty() {
            body.push_str(&h3(t.value_at_risk));
            body.push_str(&figure(charts::bars(
                "value-at-risk",
                &var_idx.iter().map(|&i| label_of(i)).collect::<Vec<_>>(),
                &var_idx
                    .iter()
                    .map(|&i| var[i].unwrap_or(0.0))
                    .collect::<Vec<_>>(),
                false,
            )?));
        }
    }
    if p.available.scored_on_as_of == 0 {
        body.push_str(&missing(t.no_scores));
    }
    for (dim, title) in t.dimension_names {
        let idx: Vec<usize> = (0..dims.len())
            .filter(|&i| dims[i].as_deref() == Some(dim))
            .collect();
        if idx.is_empty() {
            continue;
        }
        let rows: Vec<Vec<String>> = idx
            .iter()
            .map(|&i| {
                vec![
                    label_of(i),
                    count(customers[i].unwrap_or(0)),
                    opt(repeat[i], pct),
                    opt(var[i], money),
                    opt(prob[i], pct),
                ]
            })
            .collect();
        body.push_str(&h3(title));
        body.push_str(&table(
            &[
                title,
                t.customers,
                t.repeat_rate,
                t.value_at_risk,
                t.mean_churn_probability,
            ],
            &rows,
            1,
        ));
    }
    body.push_str(&h3(t.migration));
    match non_empty(p.marts, "segment_migration") {
        None => body.push_str(&missing(t.no_previous_segments)),
        Some(m) => {
            let c = Col(m);
            let (dims, from, to, n) = (
                c.text("dimension"),
                c.text("from_code"),
                c.text("to_code"),
                c.int("customers"),
            );
            let name = |code: &Option<String>, none: &str| match code {
                Some(code) => churn_activate::lang::rfm_segment_label(code, p.lang).to_string(),
                None => none.to_string(),
            };
            let mut moves: Vec<usize> = (0..dims.len())
                .filter(|&i| dims[i].as_deref() == Some("rfm_segment") && from[i] != to[i])
                .collect();
            moves.sort_by_key(|&i| std::cmp::Reverse(n[i].unwrap_or(0)));
            let rows: Vec<Vec<String>> = moves
                .iter()
                .take(15)
                .map(|&i| {
                    vec![
                        name(&from[i], t.entered),
                        name(&to[i], t.left),
                        count(n[i].unwrap_or(0)),
                    ]
                })
                .collect();
            body.push_str(&format!(
                "<p>{} ({} → {})</p>\n",
                esc(t.migration_note),
                esc(p.available.previous_segments.as_deref().unwrap_or("")),
                p.as_of
            ));
            body.push_str(&table(&[t.from, t.to, t.customers], &rows, 2));
        }
    }
    Ok(body)
}

fn at_risk_section(p: &Page, t: &Texts) -> String {
    if p.at_risk.is_empty() {
        return missing(t.no_scores);
    }
    let rows: Vec<Vec<String>> = p
        .at_risk
        .iter()
        .map(|r| {
            vec![
                r.customer_id.clone(),
                r.segment
                    .as_deref()
                    .map(|s| churn_activate::lang::rfm_segment_label(s, p.lang).to_string())
                    .unwrap_or_else(|| "—".into()),
                label(&t.risk_bands, &r.risk_band).to_string(),
                r.reason.clone().unwrap_or_else(|| "—".into()),
                pct(r.churn_probability),
                opt(r.value_at_risk, money),
            ]
        })
        .collect();
    format!(
        "<p>{}</p>\n{}",
        esc(t.at_risk_note),
        table(
            &[
                t.customer_id,
                t.segment,
                t.risk_band,
                t.main_reason,
                t.churn_probability,
                t.value_at_risk
            ],
            &rows,
            4
        )
    )
}

fn campaigns_section(p: &Page, t: &Texts) -> Result<String> {
    let mut body = String::new();
    if p.campaigns.is_empty() {
        body.push_str(&missing(t.no_exports));
    } else {
        let measured: Vec<&CampaignRow> = p
            .campaigns
            .iter()
            .filter(|r| r.purchase_rate_uplift.is_some())
            .collect();
        if !measured.is_empty() {
            let labels: Vec<String> = measured
                .iter()
                .map(|r| format!("{} {}", r.campaign, r.export_as_of))
                .collect();
            let estimates: Vec<(f64, f64, f64)> = measured
                .iter()
                .filter_map(|r| r.purchase_rate_uplift.as_ref())
                .map(|d| (d.estimate, d.ci_low, d.ci_high))
                .collect();
            body.push_str(&figure(charts::uplift(
                "campaign-uplift",
                &labels,
                &estimates,
            )?));
        }
        let rows: Vec<Vec<String>> = p
            .campaigns
            .iter()
            .map(|r| {
                let (rate_t, rate_c, uplift, interval, significant) = match &r.purchase_rate_uplift
                {
                    Some(d) => (
                        pct(r.treated.purchase_rate),
                        pct(r.control.purchase_rate),
                        format!("{:+.1} pt", d.estimate * 100.0),
                        format!("{:+.1} … {:+.1} pt", d.ci_low * 100.0, d.ci_high * 100.0),
                        if d.significant { t.yes } else { t.no }.to_string(),
                    ),
                    None => {
                        let not_yet = t.not_yet.to_string();
                        ("—".into(), "—".into(), not_yet, "—".into(), "—".into())
                    }
                };
                vec![
                    r.campaign.clone(),
                    r.export_as_of.to_string(),
                    count(r.treated.customers as i64),
                    count(r.control.customers as i64),
                    rate_t,
                    rate_c,
                    uplift,
                    interval,
                    significant,
                ]
            })
            .collect();
        body.push_str(&table(
            &[
                t.campaign,
                t.exported,
                t.treated,
                t.control,
                &format!("{} ({})", t.purchase_rate, t.treated),
                &format!("{} ({})", t.purchase_rate, t.control),
                t.uplift,
                t.interval,
                t.significant,
            ],
            &rows,
            2,
        ));
    }
    body.push_str(&h3(t.funnel));
    match non_empty(p.marts, "campaign_funnel") {
        None => body.push_str(&missing(t.no_campaign_events)),
        Some(m) => {
            let c = Col(m);
            let (ids, first, sent, opened, clicked, redeemed, rate) = (
                c.text("campaign_id"),
                c.text("first_sent"),
                c.int("customers_sent"),
                c.int("customers_opened"),
                c.int("customers_clicked"),
                c.int("customers_redeemed"),
                c.float("redemption_rate"),
            );
            let rows: Vec<Vec<String>> = (0..ids.len())
                .rev()
                .take(20)
                .map(|i| {
                    vec![
                        ids[i].clone().unwrap_or_default(),
                        first[i].clone().unwrap_or_else(|| "—".into()),
                        count(sent[i].unwrap_or(0)),
                        count(opened[i].unwrap_or(0)),
                        count(clicked[i].unwrap_or(0)),
                        count(redeemed[i].unwrap_or(0)),
                        opt(rate[i], pct),
                    ]
                })
                .collect();
            body.push_str(&table(
                &[
                    t.campaign,
                    t.first_sent,
                    t.sent,
                    t.opened,
                    t.clicked,
                    t.redeemed,
                    t.redemption_rate,
                ],
                &rows,
                2,
            ));
        }
    }
    Ok(body)
}

fn model_section(p: &Page, t: &Texts, scoring_model: Option<&str>) -> Result<String> {
    // The model card is of the model that scored D, else of the newest version registered.
    let chosen = scoring_model
        .and_then(|name| p.models.iter().rev().find(|m| m.manifest.name == name))
        .or_else(|| p.models.last());
    let Some(m) = chosen else {
        return Ok(missing(t.no_model));
    };
    let r = &m.report;
    let mut body = format!(
        "<p><strong>{} {}</strong> · {}: {} · {}: {} · {}: {}</p>\n",
        esc(&m.manifest.name),
        m.manifest.version,
        esc(t.algorithm),
        esc(&m.manifest.algorithm),
        esc(t.tested_on),
        esc(&m.manifest.as_of),
        esc(t.grade),
        esc(&format!("{} — {}", r.grade.grade, r.grade.verdict)),
    );
    let metric_row = |name: &str, x: &churn_model::metrics::Metrics| {
        vec![
            name.to_string(),
            opt(Some(x.roc_auc), |v| format!("{v:.3}")),
            opt(Some(x.top_decile_lift), |v| format!("{v:.2}×")),
            opt(Some(x.brier), |v| format!("{v:.4}")),
        ]
    };
    body.push_str(&table(
        &[t.model_or_baseline, t.roc_auc, t.top_decile_lift, t.brier],
        &[
            metric_row(t.this_model, &r.model),
            metric_row(
                &format!(
                    "{} (N = {})",
                    t.rule_baseline, r.baseline_rule.no_purchase_days
                ),
                &r.baseline_rule.metrics,
            ),
            metric_row(t.bgnbd_baseline, &r.baseline_bgnbd),
        ],
        1,
    ));
    let points: Vec<(f64, f64)> = r
        .model
        .calibration
        .iter()
        .filter(|b| b.customers > 0 && b.mean_score.is_finite() && b.churn_rate.is_finite())
        .map(|b| (b.mean_score, b.churn_rate))
        .collect();
    body.push_str(&h3(t.calibration));
    body.push_str(&figure(charts::calibration(
        "calibration",
        &points,
        t.predicted,
        t.observed,
    )?));
    body.push_str(&h3(t.lift_by_decile));
    let lifts: Vec<(u32, f64)> = m
        .deciles
        .iter()
        .filter(|d| d.lift.is_finite())
        .map(|d| (d.decile, d.lift))
        .collect();
    body.push_str(&figure(charts::lift("lift", &lifts, t.decile)?));
    body.push_str(&format!(
        "<h3>{}</h3>\n<p>{}</p>\n",
        esc(t.influential),
        esc(t.influential_note)
    ));
    let rows: Vec<Vec<String>> = m
        .reasons
        .iter()
        .take(10)
        .map(|(f, n)| {
            vec![
                f.clone(),
                if r.model.customers > 0 {
                    pct(*n as f64 / r.model.customers as f64)
                } else {
                    "—".into()
                },
            ]
        })
        .collect();
    body.push_str(&table(&[t.feature, t.share], &rows, 1));
    let history: Vec<Vec<String>> = p
        .models
        .iter()
        .map(|v| {
            vec![
                format!("{} {}", v.manifest.name, v.manifest.version),
                v.manifest.algorithm.clone(),
                v.manifest.as_of.clone(),
                opt(Some(v.report.model.roc_auc), |x| format!("{x:.3}")),
                opt(Some(v.report.baseline_rule.metrics.roc_auc), |x| {
                    format!("{x:.3}")
                }),
                v.report.grade.grade.to_string(),
            ]
        })
        .collect();
    body.push_str(&h3(t.version));
    body.push_str(&table(
        &[
            t.version,
            t.algorithm,
            t.tested_on,
            t.roc_auc,
            &format!("{} ({})", t.roc_auc, t.rule_baseline),
            t.grade,
        ],
        &history,
        3,
    ));
    Ok(body)
}

const STYLE: &str = "body{font-family:sans-serif;margin:0;background:#f4f6f8;color:#1d2733}\
header{background:#123;color:#fff;padding:18px 28px}header h1{margin:0 0 4px;font-size:24px}\
header p{margin:2px 0;color:#cfd8e3}main{max-width:1100px;margin:0 auto;padding:16px}\
section{background:#fff;border-radius:6px;padding:16px 22px;margin:16px 0;box-shadow:0 1px 2px #0002}\
h2{margin-top:0;font-size:20px}h3{font-size:15px;margin:18px 0 6px}\
table{border-collapse:collapse;width:100%;font-size:13px;margin:6px 0 12px}\
th,td{padding:4px 8px;border-bottom:1px solid #e3e7ec;text-align:left}th{background:#f0f3f6}\
.n{text-align:right;font-variant-numeric:tabular-nums}figure{margin:8px 0;overflow-x:auto}\
.missing{background:#fff7e0;border-left:4px solid #e0a800;padding:8px 12px}\
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{flex:1 1 220px;border:1px solid #e3e7ec;border-radius:6px;padding:10px 14px}\
.card .k{font-size:13px;color:#53606d}.card .v{font-size:24px;font-weight:bold;margin:4px 0}.card .p{font-size:12px;color:#53606d}\
.headline{font-size:16px}";

/// Renders the report page; returns it and the notices of what is missing.
pub fn render(p: &Page, scoring_model: Option<&str>) -> Result<(String, Vec<String>)> {
    let t = texts(p.lang);
    let mut notices = Vec::new();
    if p.available.transactions == 0 {
        notices.push(t.no_transactions);
    }
    if p.models.is_empty() {
        notices.push(t.no_model);
    }
    if p.available.scored_on_as_of == 0 {
        notices.push(t.no_scores);
    }
    if p.available.segmented_on_as_of == 0 {
        notices.push(t.no_segments);
    }
    if p.available.campaign_exports == 0 {
        notices.push(t.no_exports);
    }
    let bodies = [
        (t.kpis, kpi_section(p, t)),
        (t.cohorts, cohort_section(p, t)?),
        (t.churn_trend, churn_trend_section(p, t)?),
        (t.segments, segments_section(p, t)?),
        (t.at_risk, at_risk_section(p, t)),
        (t.campaigns, campaigns_section(p, t)?),
        (t.model, model_section(p, t, scoring_model)?),
    ];
    let mut html = format!(
        "<!DOCTYPE html>\n<html lang=\"{}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{} · {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<header>\n<h1>{}</h1>\n\
         <p>{}: {} · {}: {}</p>\n<p>{}</p>\n</header>\n<main>\n",
        t.html_lang,
        esc(t.title),
        p.as_of,
        esc(t.title),
        esc(t.as_of),
        p.as_of,
        esc(t.lake),
        esc(&p.lake),
        esc(t.generated),
    );
    if !notices.is_empty() {
        html.push_str(&format!(
            "<section id=\"missing\">\n<h2>{}</h2>\n<ul>\n",
            esc(t.missing_heading)
        ));
        for n in &notices {
            html.push_str(&format!("<li>{}</li>\n", esc(n)));
        }
        html.push_str("</ul>\n</section>\n");
    }
    for (id, (title, body)) in SECTIONS.iter().zip(bodies) {
        html.push_str(&section(id, title, &body));
    }
    html.push_str("</main>\n</body>\n</html>\n");
    Ok((html, notices.into_iter().map(str::to_string).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_the_way_a_store_owner_writes_them() {
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(count(-1000), "-1,000");
        assert_eq!(count(999), "999");
        assert_eq!(money(1234.5), "1,234.50");
        assert_eq!(money(-0.25), "-0.25");
        assert_eq!(money(9.999), "10.00");
        assert_eq!(pct(0.1234), "12.3%");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
    }
}
