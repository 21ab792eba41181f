//! `churn export`: campaign lists a CRM or messaging tool imports. Each `[campaigns.NAME]` of
//! a pipeline file picks an audience from the customer view of D, leaves out whoever must not
//! be contacted (not opted in, contacted by any campaign within K days, on a suppression
//! list), ranks the rest, holds out a deterministic control group and cuts the contacts at
//! the size cap. The contacts go to `<lake>/exports/as_of=D/<campaign>.{csv,parquet,jsonl}`
//! with `<campaign>.manifest.json`; who was treated and who was held out goes to
//! `<lake>/campaign_assignments/as_of=D/campaign=<campaign>/`, which later suppression and
//! campaign results read. One campaign's files commit together, atomically.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema};
use chrono::NaiveDate;
use churn_core::Lake;
use churn_core::commit::{CommitPlan, commit, job_id, staging_dir};
use churn_core::session::{SessionOptions, lake_session};
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use crate::arrays::{bools, floats, strings};
use crate::error::{ActivateError, Result};
use crate::pii::{
    PiiMode, mask_email, mask_phone, neutralise_cell, normalise_email, normalise_phone,
    salted_sha256,
};
use crate::view::{VIEW, highest_first, register_customer_view, require_segments};

/// An output format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Parquet,
    Jsonl,
}

impl Format {
    fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Parquet => "parquet",
            Format::Jsonl => "jsonl",
        }
    }
}

/// `[campaigns.NAME.audience]`: who the campaign is for. Every criterion given must hold;
/// within a list any value will do. No criterion: all of D's population.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audience {
    /// RFM segment codes (`at_risk`, `cant_lose_them`, …). Default: any.
    #[serde(default)]
    pub segments: Vec<String>,
    /// Lifecycle stage codes (`at_risk`, `dormant`, …). Default: any.
    #[serde(default)]
    pub lifecycle: Vec<String>,
    /// Risk bands (`low`, `medium`, `high`). Default: any.
    #[serde(default)]
    pub risk_bands: Vec<String>,
    /// Rules whose action the customer got on D (`churn triggers`). Default: any.
    #[serde(default)]
    pub rules: Vec<String>,
    /// An SQL predicate over the customer view. Default: none.
    #[serde(default)]
    pub sql: Option<String>,
}

/// `[campaigns.NAME.suppress]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSuppress {
    /// Leave out customers any campaign contacted (treated) in the K days before D.
    /// Default 0 (off).
    #[serde(default)]
    pub contacted_within_days: i64,
    /// A file of customer ids, e-mails or phone numbers, one per line (the first comma-
    /// separated field), relative to the pipeline file. Default: none.
    #[serde(default)]
    pub list: Option<String>,
}

/// `[campaigns.NAME.pii]`: contact columns, off unless asked for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPii {
    /// off, plain, masked or hashed. Default off.
    #[serde(default)]
    pub email: PiiMode,
    /// off, plain, masked or hashed. Default off.
    #[serde(default)]
    pub phone: PiiMode,
    /// Environment variable holding the salt of hashed columns. Default `CHURN_PII_SALT`.
    #[serde(default)]
    pub salt_env: Option<String>,
}

/// `[campaigns.NAME]` as written in a pipeline file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCampaign {
    /// Id of the campaign in the CRM and in the control-group hash. Default: NAME.
    pub campaign_id: Option<String>,
    /// What the campaign is for. Default: empty.
    #[serde(default)]
    pub description: String,
    /// Recommended action, one column of the list. Default: the description.
    pub action: Option<String>,
    #[serde(default)]
    pub audience: Audience,
    /// Customer-view column ranked highest first (nulls last). Default `value_at_risk`.
    pub rank_by: Option<String>,
    /// Most customers contacted. Default: no cap.
    pub max_contacts: Option<u64>,
    /// Budget in currency units; with `cost_per_contact`, caps contacts at budget ÷ cost.
    pub budget: Option<f64>,
    pub cost_per_contact: Option<f64>,
    /// Share of the selected customers held out as the control group, from a stable hash of
    /// campaign id and customer id. Default 0.1.
    pub control_share: Option<f64>,
    #[serde(default)]
    pub suppress: RawSuppress,
    /// Output formats. Default ["csv", "parquet", "jsonl"].
    pub formats: Option<Vec<Format>>,
    /// Start the CSV with a UTF-8 byte-order mark (Excel on Windows then shows Chinese
    /// correctly). Default false.
    #[serde(default)]
    pub bom: bool,
    #[serde(default)]
    pub pii: RawPii,
}

/// A checked campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct Campaign {
    pub name: String,
    pub campaign_id: String,
    pub description: String,
    pub action: String,
    pub audience: Audience,
    pub rank_by: String,
    /// Most contacts: the smaller of `max_contacts` and budget ÷ cost per contact.
    pub contact_cap: Option<u64>,
    pub control_share: f64,
    pub contacted_within_days: i64,
    pub suppression_list: Option<PathBuf>,
    pub formats: Vec<Format>,
    pub bom: bool,
    pub email: PiiMode,
    pub phone: PiiMode,
    pub salt_env: String,
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Campaign {
    /// Checks `[campaigns.NAME]`; paths are relative to `base`. Every problem is returned.
    pub fn check(name: &str, raw: &RawCampaign, base: &Path) -> Result<Campaign, Vec<String>> {
        let mut problems = Vec::new();
        let mut problem = |p: String| problems.push(format!("campaigns.{name}: {p}"));
        if !is_identifier(name) {
            problem("the name may hold letters, digits, _ and - only".into());
        }
        let control_share = raw.control_share.unwrap_or(0.1);
        if !(0.0..1.0).contains(&control_share) {
            problem(format!(
                "control_share: expected 0 <= share < 1, got {control_share}"
            ));
        }
        if raw.max_contacts == Some(0) {
            problem("max_contacts: expected 1 or more".into());
        }
        let budget_cap = match (raw.budget, raw.cost_per_contact) {
            (None, None) => None,
            (Some(b), Some(c)) if b.is_finite() && c.is_finite() && b >= 0.0 && c > 0.0 => {
                Some((b / c).floor() as u64)
            }
            (Some(_), Some(_)) => {
                problem("budget and cost_per_contact: expected budget >= 0 and cost > 0".into());
                None
            }
            _ => {
                problem("budget and cost_per_contact go together".into());
                None
            }
        };
        let contact_cap = match (raw.max_contacts, budget_cap) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let segments: HashSet<&str> = crate::lang::rfm_segment_codes().collect();
        for s in &raw.audience.segments {
            if !segments.contains(s.as_str()) {
                problem(format!(
                    "audience.segments: unknown segment {s:?} (expected one of {:?})",
                    crate::lang::rfm_segment_codes().collect::<Vec<_>>()
                ));
            }
        }
        for s in &raw.audience.lifecycle {
            if !crate::lang::LIFECYCLE_CODES.contains(&s.as_str()) {
                problem(format!(
                    "audience.lifecycle: unknown stage {s:?} (expected one of {:?})",
                    crate::lang::LIFECYCLE_CODES
                ));
            }
        }
        for b in &raw.audience.risk_bands {
            if !["low", "medium", "high"].contains(&b.as_str()) {
                problem(format!(
                    "audience.risk_bands: unknown band {b:?} (expected low, medium or high)"
                ));
            }
        }
        for r in &raw.audience.rules {
            if !is_identifier(r) {
                problem(format!("audience.rules: {r:?} is not a rule name"));
            }
        }
        let rank_by = raw
            .rank_by
            .clone()
            .unwrap_or_else(|| "value_at_risk".into());
        if rank_by.is_empty()
            || !rank_by
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            problem(format!("rank_by: {rank_by:?} is not a column name"));
        }
        let formats = raw
            .formats
            .clone()
            .unwrap_or_else(|| vec![Format::Csv, Format::Parquet, Format::Jsonl]);
        if formats.is_empty() {
            problem("formats: expected at least one of csv, parquet, jsonl".into());
        }
        if !(0..=3650).contains(&raw.suppress.contacted_within_days) {
            problem("suppress.contacted_within_days: expected 0 to 3650".into());
        }
        if let Some(sql) = &raw.audience.sql
            && let Err(p) = crate::rules::check_predicate(sql)
        {
            problem(format!("audience.sql: {p}"));
        }
        let suppression_list = raw.suppress.list.as_ref().map(|l| {
            let p = Path::new(l);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        });
        if let Some(p) = &suppression_list
            && !p.is_file()
        {
            problem(format!("suppress.list: no such file {}", p.display()));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Campaign {
            name: name.to_string(),
            campaign_id: raw.campaign_id.clone().unwrap_or_else(|| name.to_string()),
            description: raw.description.clone(),
            action: raw
                .action
                .clone()
                .unwrap_or_else(|| raw.description.clone()),
            audience: raw.audience.clone(),
            rank_by,
            contact_cap,
            control_share,
            contacted_within_days: raw.suppress.contacted_within_days,
            suppression_list,
            formats,
            bom: raw.bom,
            email: raw.pii.email,
            phone: raw.pii.phone,
            salt_env: raw
                .pii
                .salt_env
                .clone()
                .unwrap_or_else(|| "CHURN_PII_SALT".into()),
        })
    }
}

/// Whether a customer falls in the campaign's control group: a stable hash of campaign id and
/// customer id, as a fraction of 2⁶⁴, below the share. The same customer stays in the same
/// group on every run, and groups of different campaigns are independent.
pub fn in_control_group(campaign_id: &str, customer_id: &str, share: f64) -> bool {
    let key = format!("{campaign_id}\u{1f}{customer_id}");
    let h = xxhash_rust::xxh3::xxh3_64(key.as_bytes());
    (h as f64) / 18_446_744_073_709_551_616.0 < share
}

/// Customers left out, by reason.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Suppressed {
    /// `marketing_opt_in` is not true (or there is no profile).
    pub not_opted_in: u64,
    /// Treated by a campaign in the `contacted_within_days` before D.
    pub recently_contacted: u64,
    /// Their id, e-mail or phone is on the suppression list.
    pub suppression_list: u64,
}

/// What one campaign export did (also `<campaign>.manifest.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportManifest {
    pub kind: String,
    pub campaign: String,
    pub campaign_id: String,
    pub as_of: String,
    /// Customers of the audience.
    pub audience: u64,
    pub suppressed: Suppressed,
    /// Eligible customers beyond the contact cap (neither contacted nor held out).
    pub over_cap: u64,
    /// Contacted: the rows of the list.
    pub treated: u64,
    /// Held out: never contacted, measured against the treated.
    pub control: u64,
    pub control_share: f64,
    pub files: Vec<String>,
    pub assignments: String,
}

/// What `churn export` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportSummary {
    pub kind: String,
    pub as_of: String,
    pub campaigns: Vec<ExportManifest>,
    pub duration_ms: u64,
}

/// A customer of the audience, with what the list shows.
#[derive(Debug, Clone)]
struct Member {
    customer_id: String,
    rank_value: Option<f64>,
    opted_in: Option<bool>,
    text: Vec<Option<String>>,
    numbers: Vec<Option<f64>>,
}

/// Text columns of a list, from the customer view.
const TEXT_COLUMNS: &[(&str, &str)] = &[
    ("risk_band", "risk_band"),
    ("segment", "rfm_segment_label"),
    ("lifecycle_stage", "lifecycle_label"),
    ("suggested_tier", "suggested_tier_label"),
    ("reason_1", "reason_1"),
    ("reason_2", "reason_2"),
    ("reason_3", "reason_3"),
];

/// Number columns of a list, from the customer view.
const NUMBER_COLUMNS: &[&str] = &["churn_probability", "value_at_risk", "expected_value_12m"];

fn sql_list(values: &[String]) -> String {
    values
        .iter()
        .map(|v| format!("'{}'", v.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ")
}

fn audience_sql(c: &Campaign, as_of: NaiveDate) -> String {
    let mut conditions = vec!["TRUE".to_string()];
    let a = &c.audience;
    if !a.segments.is_empty() {
        conditions.push(format!("rfm_segment IN ({})", sql_list(&a.segments)));
    }
    if !a.lifecycle.is_empty() {
        conditions.push(format!("lifecycle_stage IN ({})", sql_list(&a.lifecycle)));
    }
    if !a.risk_bands.is_empty() {
        conditions.push(format!("risk_band IN ({})", sql_list(&a.risk_bands)));
    }
    if !a.rules.is_empty() {
        conditions.push(format!(
            "customer_id IN (SELECT customer_id FROM triggers WHERE as_of = DATE '{as_of}' \
             AND recipient = 'customer' AND rule IN ({}))",
            sql_list(&a.rules)
        ));
    }
    if let Some(sql) = &a.sql {
        conditions.push(format!("({sql})"));
    }
    let mut columns = vec![
        "customer_id".to_string(),
        format!("CAST({} AS DOUBLE) AS rank_value", c.rank_by),
        "marketing_opt_in".to_string(),
    ];
    columns.extend(TEXT_COLUMNS.iter().map(|(_, v)| v.to_string()));
    columns.extend(NUMBER_COLUMNS.iter().map(|v| v.to_string()));
    format!(
        "SELECT {} FROM {VIEW} WHERE {}",
        columns.join(", "),
        conditions.join(" AND ")
    )
}

async fn audience(ctx: &SessionContext, c: &Campaign, as_of: NaiveDate) -> Result<Vec<Member>> {
    let sql = audience_sql(c, as_of);
    let invalid = |source| ActivateError::CampaignSql {
        campaign: c.name.clone(),
        source,
    };
    let batches = match ctx.sql(&sql).await {
        Ok(df) => df.collect().await.map_err(invalid)?,
        Err(e) => return Err(invalid(e)),
    };
    let mut members = Vec::new();
    for b in &batches {
        let ids = strings(b.column(0))?;
        let rank = floats(b.column(1))?;
        let opt_in = bools(b.column(2))?;
        let text: Vec<Vec<Option<String>>> = (0..TEXT_COLUMNS.len())
            .map(|k| strings(b.column(3 + k)))
            .collect::<Result<_>>()?;
        let numbers: Vec<Vec<Option<f64>>> = (0..NUMBER_COLUMNS.len())
            .map(|k| floats(b.column(3 + TEXT_COLUMNS.len() + k)))
            .collect::<Result<_>>()?;
        for i in 0..b.num_rows() {
            members.push(Member {
                customer_id: ids[i].clone().unwrap_or_default(),
                rank_value: rank[i].filter(|v| v.is_finite()),
                opted_in: opt_in[i],
                text: text.iter().map(|col| col[i].clone()).collect(),
                numbers: numbers.iter().map(|col| col[i]).collect(),
            });
        }
    }
    Ok(members)
}

/// Customers treated by any campaign in `[D - days, D)`.
async fn recently_contacted(
    ctx: &SessionContext,
    has_table: bool,
    as_of: NaiveDate,
    days: i64,
) -> Result<HashSet<String>> {
    if days == 0 || !has_table {
        return Ok(HashSet::new());
    }
    let from = as_of - chrono::Duration::days(days);
    let sql = format!(
        "SELECT DISTINCT customer_id FROM campaign_assignments \
         WHERE as_of >= DATE '{from}' AND as_of < DATE '{as_of}' AND \"group\" = 'treated'"
    );
    let mut out = HashSet::new();
    for b in ctx.sql(&sql).await?.collect().await? {
        out.extend(strings(b.column(0))?.into_iter().flatten());
    }
    Ok(out)
}

/// Customer id → (e-mail, phone), from the customers table.
async fn contacts(
    ctx: &SessionContext,
    has_table: bool,
) -> Result<HashMap<String, (Option<String>, Option<String>)>> {
    let mut out = HashMap::new();
    if !has_table {
        return Ok(out);
    }
    for b in ctx
        .sql("SELECT customer_id, email, phone FROM customers")
        .await?
        .collect()
        .await?
    {
        let ids = strings(b.column(0))?;
        let emails = strings(b.column(1))?;
        let phones = strings(b.column(2))?;
        for i in 0..b.num_rows() {
            if let Some(id) = &ids[i] {
                out.insert(id.clone(), (emails[i].clone(), phones[i].clone()));
            }
        }
    }
    Ok(out)
}

/// The entries of a suppression list: ids as written, e-mails and phones normalised.
fn read_suppression_list(path: &Path) -> Result<HashSet<String>> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ActivateError::ReadSuppressionList {
            path: path.display().to_string(),
            source,
        })?;
    // A list saved by Excel starts with a byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut out = HashSet::new();
    for line in text.lines() {
        let entry = line
            .split(',')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"');
        if entry.is_empty() {
            continue;
        }
        out.insert(entry.to_string());
        if entry.contains('@') {
            out.insert(normalise_email(entry));
        } else {
            let digits = normalise_phone(entry);
            if digits.len() >= 5 {
                out.insert(digits);
            }
        }
    }
    Ok(out)
}

fn on_list(
    list: &HashSet<String>,
    id: &str,
    contact: Option<&(Option<String>, Option<String>)>,
) -> bool {
    if list.contains(id) {
        return true;
    }
    let Some((email, phone)) = contact else {
        return false;
    };
    email
        .as_deref()
        .is_some_and(|e| list.contains(&normalise_email(e)))
        || phone.as_deref().is_some_and(|p| {
            let d = normalise_phone(p);
            d.len() >= 5 && list.contains(&d)
        })
}

/// The selected customers in rank order, each treated or held out, and the counts.
struct Selection {
    /// (member, rank among the eligible, control?)
    chosen: Vec<(Member, u32, bool)>,
    suppressed: Suppressed,
    over_cap: u64,
}

/// Ranks highest `rank_value` first (unknown last, then customer id), walks the ranking and
/// puts each customer in the control group when the hash says so, otherwise contacts them
/// until the cap; the control group thus comes from the same ranks as the contacts.
fn select(
    c: &Campaign,
    members: Vec<Member>,
    recently: &HashSet<String>,
    list: &HashSet<String>,
    contact_of: &HashMap<String, (Option<String>, Option<String>)>,
) -> Selection {
    let mut suppressed = Suppressed::default();
    let mut eligible: Vec<Member> = members
        .into_iter()
        .filter(|m| {
            if m.opted_in != Some(true) {
                suppressed.not_opted_in += 1;
                false
            } else if recently.contains(&m.customer_id) {
                suppressed.recently_contacted += 1;
                false
            } else if on_list(list, &m.customer_id, contact_of.get(&m.customer_id)) {
                suppressed.suppression_list += 1;
                false
            } else {
                true
            }
        })
        .collect();
    eligible.sort_by(|a, b| {
        highest_first(
            (a.rank_value, &a.customer_id),
            (b.rank_value, &b.customer_id),
        )
    });
    let total = eligible.len() as u64;
    let mut chosen = Vec::new();
    let mut treated = 0u64;
    for (i, m) in eligible.into_iter().enumerate() {
        let control = in_control_group(&c.campaign_id, &m.customer_id, c.control_share);
        if !control && c.contact_cap.is_some_and(|cap| treated >= cap) {
            break;
        }
        if !control {
            treated += 1;
        }
        chosen.push((m, i as u32 + 1, control));
    }
    Selection {
        over_cap: total - chosen.len() as u64,
        chosen,
        suppressed,
    }
}

/// The list's columns and rows (treated only), with contact columns as the campaign asks.
struct List {
    names: Vec<String>,
    /// Per row: customer id, rank, action, text columns, contact columns (all text) …
    text: Vec<Vec<Option<String>>>,
    /// … and number columns.
    numbers: Vec<Vec<Option<f64>>>,
    ranks: Vec<u32>,
}

fn contact_value(mode: PiiMode, value: Option<&str>, salt: &str, email: bool) -> Option<String> {
    let v = value?;
    Some(match mode {
        PiiMode::Off => return None,
        PiiMode::Plain => v.to_string(),
        PiiMode::Masked if email => mask_email(v),
        PiiMode::Masked => mask_phone(v),
        PiiMode::Hashed if email => salted_sha256(salt, &normalise_email(v)),
        PiiMode::Hashed => salted_sha256(salt, &normalise_phone(v)),
    })
}

fn build_list(
    c: &Campaign,
    selection: &Selection,
    contact_of: &HashMap<String, (Option<String>, Option<String>)>,
    salt: &str,
) -> List {
    let mut names: Vec<String> = ["campaign_id", "customer_id", "action"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    names.extend(TEXT_COLUMNS.iter().map(|(n, _)| n.to_string()));
    if c.email != PiiMode::Off {
        names.push("email".into());
    }
    if c.phone != PiiMode::Off {
        names.push("phone".into());
    }
    let mut list = List {
        names,
        text: Vec::new(),
        numbers: Vec::new(),
        ranks: Vec::new(),
    };
    for (m, rank, control) in &selection.chosen {
        if *control {
            continue;
        }
        let mut row = vec![
            Some(c.campaign_id.clone()),
            Some(m.customer_id.clone()),
            Some(c.action.clone()),
        ];
        row.extend(m.text.iter().cloned());
        let contact = contact_of.get(&m.customer_id);
        if c.email != PiiMode::Off {
            row.push(contact_value(
                c.email,
                contact.and_then(|x| x.0.as_deref()),
                salt,
                true,
            ));
        }
        if c.phone != PiiMode::Off {
            row.push(contact_value(
                c.phone,
                contact.and_then(|x| x.1.as_deref()),
                salt,
                false,
            ));
        }
        list.text.push(row);
        list.numbers.push(m.numbers.clone());
        list.ranks.push(*rank);
    }
    list
}

/// Column order of every format: text columns up to the action, rank, the view's text
/// columns, contacts, then numbers.
fn list_batch(list: &List) -> Result<RecordBatch> {
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (k, name) in list.names.iter().enumerate() {
        if k == 3 {
            fields.push(Field::new("rank", DataType::UInt32, false));
            columns.push(Arc::new(UInt32Array::from(list.ranks.clone())));
        }
        fields.push(Field::new(name, DataType::Utf8, k < 3));
        columns.push(Arc::new(
            list.text
                .iter()
                .map(|r| r[k].as_deref())
                .collect::<StringArray>(),
        ));
    }
    for (k, name) in NUMBER_COLUMNS.iter().enumerate() {
        fields.push(Field::new(*name, DataType::Float64, true));
        columns.push(Arc::new(
            list.numbers.iter().map(|r| r[k]).collect::<Float64Array>(),
        ));
    }
    let fields: Vec<Field> = fields
        .into_iter()
        .map(|f| {
            let nullable = !matches!(f.name().as_str(), "campaign_id" | "customer_id" | "rank");
            f.with_nullable(nullable)
        })
        .collect();
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(datafusion::error::DataFusionError::from)?)
}

fn csv_bytes(batch: &RecordBatch, bom: bool) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    if bom {
        out.extend_from_slice("\u{feff}".as_bytes());
    }
    let mut writer = csv::Writer::from_writer(out);
    let schema = batch.schema();
    let header: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let io = |e: csv::Error| ActivateError::Io(e.to_string());
    writer.write_record(&header).map_err(io)?;
    let columns: Vec<Vec<Option<String>>> = (0..batch.num_columns())
        .map(|k| {
            let col = batch.column(k);
            match col.data_type() {
                DataType::Utf8 => strings(col).map(|v| {
                    v.into_iter()
                        .map(|s| s.map(|s| neutralise_cell(&s).into_owned()))
                        .collect()
                }),
                _ => strings(col),
            }
        })
        .collect::<Result<_>>()?;
    for i in 0..batch.num_rows() {
        writer
            .write_record(columns.iter().map(|c| c[i].as_deref().unwrap_or("")))
            .map_err(io)?;
    }
    writer
        .into_inner()
        .map_err(|e| ActivateError::Io(e.to_string()))
}

fn jsonl_bytes(batch: &RecordBatch) -> Result<Vec<u8>> {
    // Nulls written out, so that every line has every documented column.
    let mut writer = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow::json::writer::LineDelimited>(Vec::new());
    writer
        .write(batch)
        .map_err(datafusion::error::DataFusionError::from)?;
    writer
        .finish()
        .map_err(datafusion::error::DataFusionError::from)?;
    Ok(writer.into_inner())
}

fn assignments_batch(c: &Campaign, selection: &Selection) -> Result<RecordBatch> {
    let fields = vec![
        Field::new("campaign_id", DataType::Utf8, false),
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("group", DataType::Utf8, false),
        Field::new("rank", DataType::UInt32, false),
        Field::new("rank_value", DataType::Float64, true),
    ];
    let chosen = &selection.chosen;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![
            c.campaign_id.as_str();
            chosen.len()
        ])),
        Arc::new(StringArray::from_iter_values(
            chosen.iter().map(|(m, _, _)| m.customer_id.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(chosen.iter().map(
            |(_, _, control)| if *control { "control" } else { "treated" },
        ))),
        Arc::new(UInt32Array::from_iter_values(
            chosen.iter().map(|(_, r, _)| *r),
        )),
        Arc::new(Float64Array::from_iter(
            chosen.iter().map(|(m, _, _)| m.rank_value),
        )),
    ];
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(datafusion::error::DataFusionError::from)?)
}

/// Stages every file of one campaign and commits them together, replacing that campaign's
/// earlier files of D (other campaigns' files stay).
async fn write_campaign(
    lake: &Lake,
    as_of: NaiveDate,
    c: &Campaign,
    list: &RecordBatch,
    assignments: &RecordBatch,
    mut manifest: ExportManifest,
) -> Result<ExportManifest> {
    let job = job_id("export", &format!("{as_of}{}", c.name));
    let staging = staging_dir(&job);
    let folder = format!("exports/as_of={as_of}");
    let assignment_folder = format!("campaign_assignments/as_of={as_of}/campaign={}", c.name);
    let mut moves = Vec::new();
    for format in &c.formats {
        let file = format!("{folder}/{}.{}", c.name, format.extension());
        let staged = format!("{staging}/{file}");
        match format {
            Format::Csv => {
                lake.put(&lake.path(&staged), csv_bytes(list, c.bom)?.into())
                    .await?;
            }
            Format::Jsonl => {
                lake.put(&lake.path(&staged), jsonl_bytes(list)?.into())
                    .await?;
            }
            Format::Parquet => {
                lake.write_parquet(&lake.path(&staged), std::slice::from_ref(list))
                    .await?;
            }
        }
        moves.push((staged, file.clone()));
        manifest.files.push(file);
    }
    let assignment_file = format!("{assignment_folder}/part-{job}.parquet");
    let staged = format!("{staging}/{assignment_file}");
    lake.write_parquet(&lake.path(&staged), std::slice::from_ref(assignments))
        .await?;
    moves.push((staged, assignment_file.clone()));
    manifest.assignments = assignment_file;
    let manifest_file = format!("{folder}/{}.manifest.json", c.name);
    let staged = format!("{staging}/{manifest_file}");
    lake.write_json(&lake.path(&staged), &manifest).await?;
    moves.push((staged, manifest_file));

    let prefix = format!("{}.", c.name);
    let mut deletes: Vec<String> = lake
        .list(&folder)
        .await?
        .iter()
        .map(|m| lake.relative(&m.location))
        .filter(|rel| {
            rel.rsplit('/')
                .next()
                .is_some_and(|f| f.starts_with(&prefix))
        })
        .collect();
    deletes.extend(
        lake.list(&assignment_folder)
            .await?
            .iter()
            .map(|m| lake.relative(&m.location)),
    );
    // A file rewritten under the same name is replaced by its move, not deleted after it.
    let targets: HashSet<&String> = moves.iter().map(|(_, to)| to).collect();
    deletes.retain(|d| !targets.contains(d));
    let plan = CommitPlan {
        batch_id: job.clone(),
        moves,
        deletes,
        manifest_path: format!("_runs/{job}.json"),
        manifest: serde_json::to_value(&manifest).unwrap_or_default(),
    };
    commit(lake, &plan, None).await?;
    Ok(manifest)
}

/// Exports every given campaign for D. Needs the segments of D (and the triggers of D for
/// audiences by rule).
pub async fn export(
    lake: &Lake,
    as_of: NaiveDate,
    campaigns: &[Campaign],
    session: &SessionOptions,
) -> Result<ExportSummary> {
    let started = Instant::now();
    churn_core::commit::recover(lake).await?;
    require_segments(lake, as_of).await?;
    let (ctx, tables) = lake_session(lake, session).await?;
    let has = |name: &str| tables.iter().any(|t| t.name == name);
    if campaigns.iter().any(|c| !c.audience.rules.is_empty()) && !has("triggers") {
        return Err(ActivateError::MissingInput {
            table: "triggers",
            command: "triggers",
            as_of: as_of.to_string(),
        });
    }
    let inputs = register_customer_view(&ctx, &tables, as_of, None).await?;
    let contact_of = contacts(&ctx, inputs.profiles).await?;
    let mut manifests = Vec::new();
    for c in campaigns {
        let salt = if c.email == PiiMode::Hashed || c.phone == PiiMode::Hashed {
            std::env::var(&c.salt_env).map_err(|_| ActivateError::MissingSalt {
                campaign: c.name.clone(),
                variable: c.salt_env.clone(),
            })?
        } else {
            String::new()
        };
        let members = audience(&ctx, c, as_of).await?;
        let audience_size = members.len() as u64;
        let recently = recently_contacted(
            &ctx,
            has("campaign_assignments"),
            as_of,
            c.contacted_within_days,
        )
        .await?;
        let list = match &c.suppression_list {
            Some(p) => read_suppression_list(p)?,
            None => HashSet::new(),
        };
        let selection = select(c, members, &recently, &list, &contact_of);
        let rows = build_list(c, &selection, &contact_of, &salt);
        let batch = list_batch(&rows)?;
        let assignments = assignments_batch(c, &selection)?;
        let control = selection.chosen.iter().filter(|(_, _, k)| *k).count() as u64;
        let manifest = ExportManifest {
            kind: "export".into(),
            campaign: c.name.clone(),
            campaign_id: c.campaign_id.clone(),
            as_of: as_of.to_string(),
            audience: audience_size,
            suppressed: selection.suppressed.clone(),
            over_cap: selection.over_cap,
            treated: selection.chosen.len() as u64 - control,
            control,
            control_share: c.control_share,
            files: Vec::new(),
            assignments: String::new(),
        };
        let manifest = write_campaign(lake, as_of, c, &batch, &assignments, manifest).await?;
        tracing::info!(campaign = %c.name, treated = manifest.treated, control = manifest.control, "campaign exported");
        manifests.push(manifest);
    }
    Ok(ExportSummary {
        kind: "export".into(),
        as_of: as_of.to_string(),
        campaigns: manifests,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_membership_is_stable_independent_across_campaigns_and_near_the_share() {
        let ids: Vec<String> = (0..20_000).map(|i| format!("C{i:07}")).collect();
        let a: Vec<bool> = ids
            .iter()
            .map(|id| in_control_group("A", id, 0.2))
            .collect();
        let again: Vec<bool> = ids
            .iter()
            .map(|id| in_control_group("A", id, 0.2))
            .collect();
        let b: Vec<bool> = ids
            .iter()
            .map(|id| in_control_group("B", id, 0.2))
            .collect();
        assert_eq!(a, again);
        let share = a.iter().filter(|x| **x).count() as f64 / ids.len() as f64;
        // 99 % binomial interval: 0.2 ± 2.576 × sqrt(0.2 × 0.8 / 20000) = 0.2 ± 0.0073.
        assert!((share - 0.2).abs() < 0.0073, "{share}");
        let both = a.iter().zip(&b).filter(|(x, y)| **x && **y).count() as f64 / ids.len() as f64;
        // Independent: 0.04 ± 2.576 × sqrt(0.04 × 0.96 / 20000) = 0.04 ± 0.0036.
        assert!((both - 0.04).abs() < 0.0036, "{both}");
    }

    fn raw(text: &str) -> RawCampaign {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn a_campaign_reports_every_problem_at_once() {
        let r = raw(
            "control_share = 1.5\nmax_contacts = 0\nbudget = 10.0\nformats = []\n\
             [audience]\nsegments = [\"vip\"]\nrisk_bands = [\"huge\"]\n",
        );
        let problems = Campaign::check("x", &r, Path::new(".")).unwrap_err();
        assert_eq!(problems.len(), 6, "{problems:#?}");
    }

    #[test]
    fn the_contact_cap_is_the_smaller_of_max_contacts_and_budget_over_cost() {
        let r = raw("max_contacts = 100\nbudget = 90.0\ncost_per_contact = 2.0\n");
        assert_eq!(
            Campaign::check("x", &r, Path::new("."))
                .unwrap()
                .contact_cap,
            Some(45)
        );
    }
}
