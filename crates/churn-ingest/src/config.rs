//! Source configuration: the `[sources.NAME]` section of a pipeline file or the flags of
//! `churn ingest`. Parsed raw with serde, then checked into a [`SourceConfig`] with every
//! problem reported at once.

use std::collections::BTreeMap;

use chrono_tz::Tz;
use churn_core::Table;
use serde::{Deserialize, Serialize};

use crate::error::{IngestError, Result};

/// Default share of rejected rows above which an ingest fails without adding anything.
pub const DEFAULT_MAX_REJECT_RATIO: f64 = 0.05;

/// Default number of rows buffered in memory before they are sorted by day into a run.
pub const DEFAULT_BUFFER_ROWS: usize = 1_000_000;

/// Default memory (MiB) the sorted runs of a batch may hold before further runs are spilled
/// to staging.
pub const DEFAULT_RUN_MEMORY_MIB: usize = 2048;

/// A source as written in a pipeline file (all fields but `table` and `path` optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// Lake table this source loads: `transactions`, `customers` or `campaign_events`. Required.
    pub table: String,
    /// A file, a folder (every file in it, recursively), a glob (`exports/*.csv`) or a URL
    /// (`s3://bucket/exports/`, `file:///…`). Relative paths are relative to the pipeline
    /// file's folder. Required.
    pub path: String,
    /// `csv`, `ndjson` or `parquet`. Default: from each file's extension
    /// (.csv/.txt/.tsv, .ndjson/.jsonl/.json, .parquet).
    #[serde(default)]
    pub format: Option<String>,
    /// Text encoding of CSV/NDJSON: `utf-8` or `gb18030` (`gbk` is read as gb18030).
    /// Default `utf-8`.
    #[serde(default)]
    pub encoding: Option<String>,
    /// CSV field delimiter, one ASCII character; `\t` for tab. Default `,`.
    #[serde(default)]
    pub delimiter: Option<String>,
    /// Extra timestamp formats (chrono `strftime` syntax, e.g. `%d/%m/%Y %H:%M`), tried after
    /// the built-in forms. Ambiguous forms such as `01/02/2024` are only read when listed here.
    /// Default none.
    #[serde(default)]
    pub timestamp_formats: Vec<String>,
    /// Extra date formats for date columns (birthday, signup_date). Default none.
    #[serde(default)]
    pub date_formats: Vec<String>,
    /// IANA time zone of timestamps written without an offset. Default: the lake's zone.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Canonical column name → source column name, for sources whose headers differ.
    /// Default: each canonical column is read from the source column of the same name
    /// (case-insensitive).
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// Keep source columns that are not in the contract, as a JSON object in the `extra`
    /// column. Default false (they are dropped, and counted in the summary).
    #[serde(default)]
    pub keep_extra_columns: bool,
    /// Share of rejected rows (0–1) above which the ingest fails and adds nothing to the
    /// lake (the quarantine is still written). Default 0.05.
    #[serde(default)]
    pub max_reject_ratio: Option<f64>,
}

/// Input file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Ndjson,
    Parquet,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s.to_ascii_lowercase().as_str() {
            "csv" | "tsv" | "txt" => Some(Format::Csv),
            "ndjson" | "jsonl" | "json" => Some(Format::Ndjson),
            "parquet" | "pq" => Some(Format::Parquet),
            _ => None,
        }
    }

    /// Format implied by a file name's extension.
    pub fn from_file_name(name: &str) -> Option<Format> {
        let ext = name.rsplit_once('.')?.1;
        Format::parse(ext)
    }
}

/// Text encoding of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Encoding {
    #[serde(rename = "utf-8")]
    Utf8,
    #[serde(rename = "gb18030")]
    Gb18030,
}

/// A validated source.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub table: Table,
    pub location: String,
    pub format: Option<Format>,
    pub encoding: Encoding,
    pub delimiter: u8,
    pub timestamp_formats: Vec<String>,
    pub date_formats: Vec<String>,
    pub timezone: Option<Tz>,
    /// canonical → source column name.
    pub columns: BTreeMap<String, String>,
    pub keep_extra_columns: bool,
    pub max_reject_ratio: f64,
}

impl SourceSpec {
    /// Checks every field and returns all problems at once.
    pub fn validate(&self) -> Result<SourceConfig> {
        let mut problems = Vec::new();
        let table = match self.table.parse::<Table>() {
            Ok(t) => Some(t),
            Err(e) => {
                problems.push(format!("table: {e}"));
                None
            }
        };
        if self.path.trim().is_empty() {
            problems.push("path: must name a file, folder, glob or URL".to_string());
        }
        let format = match &self.format {
            None => None,
            Some(f) => {
                let parsed = Format::parse(f);
                if parsed.is_none() {
                    problems.push(format!(
                        "format: expected csv, ndjson or parquet, got {f:?}"
                    ));
                }
                parsed
            }
        };
        let encoding = match self.encoding.as_deref().map(|e| e.to_ascii_lowercase()) {
            None => Encoding::Utf8,
            Some(e) if e == "utf-8" || e == "utf8" => Encoding::Utf8,
            Some(e) if e == "gb18030" || e == "gbk" || e == "gb2312" => Encoding::Gb18030,
            Some(e) => {
                problems.push(format!("encoding: expected utf-8 or gb18030, got {e:?}"));
                Encoding::Utf8
            }
        };
        let delimiter = match self.delimiter.as_deref() {
            None => b',',
            Some("\\t") | Some("\t") => b'\t',
            Some(d) if d.len() == 1 && d.is_ascii() => d.as_bytes()[0],
            Some(d) => {
                problems.push(format!(
                    "delimiter: expected one ASCII character, got {d:?}"
                ));
                b','
            }
        };
        let timezone = match &self.timezone {
            None => None,
            Some(tz) => match tz.parse::<Tz>() {
                Ok(t) => Some(t),
                Err(_) => {
                    problems.push(format!("timezone: unknown IANA time zone {tz:?}"));
                    None
                }
            },
        };
        if let Some(table) = table {
            for canonical in self.columns.keys() {
                if table.column(canonical).is_none() {
                    let known: Vec<_> = table.columns().iter().map(|c| c.name).collect();
                    problems.push(format!(
                        "columns: {canonical:?} is not a column of {table} (expected one of {known:?})"
                    ));
                }
            }
        }
        let max_reject_ratio = self.max_reject_ratio.unwrap_or(DEFAULT_MAX_REJECT_RATIO);
        if !(0.0..=1.0).contains(&max_reject_ratio) {
            problems.push(format!(
                "max_reject_ratio: expected a share between 0 and 1, got {max_reject_ratio}"
            ));
        }
        for f in &self.timestamp_formats {
            if chrono::format::StrftimeItems::new(f)
                .any(|i| matches!(i, chrono::format::Item::Error))
            {
                problems.push(format!("timestamp_formats: invalid format {f:?}"));
            }
        }
        for f in &self.date_formats {
            if chrono::format::StrftimeItems::new(f)
                .any(|i| matches!(i, chrono::format::Item::Error))
            {
                problems.push(format!("date_formats: invalid format {f:?}"));
            }
        }
        match (problems.is_empty(), table) {
            (true, Some(table)) => Ok(SourceConfig {
                table,
                location: self.path.clone(),
                format,
                encoding,
                delimiter,
                timestamp_formats: self.timestamp_formats.clone(),
                date_formats: self.date_formats.clone(),
                timezone,
                columns: self.columns.clone(),
                keep_extra_columns: self.keep_extra_columns,
                max_reject_ratio,
            }),
            _ => Err(IngestError::InvalidConfig { problems }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_at_once() {
        let spec = SourceSpec {
            table: "transactions".into(),
            path: "x.csv".into(),
            format: Some("xlsx".into()),
            encoding: Some("latin-1".into()),
            timezone: Some("Mars/Base".into()),
            columns: [("amnt".to_string(), "x".to_string())].into(),
            max_reject_ratio: Some(2.0),
            ..Default::default()
        };
        let IngestError::InvalidConfig { problems } = spec.validate().unwrap_err() else {
            panic!("expected a config error")
        };
        assert_eq!(problems.len(), 5, "{problems:#?}");
    }

    #[test]
    fn unknown_keys_in_a_source_section_are_refused() {
        let err = toml::from_str::<SourceSpec>("table = 'customers'\npath = 'x'\ncolour = 'red'\n")
            .unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }
}
