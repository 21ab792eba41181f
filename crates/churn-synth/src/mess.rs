//! Realistic dirt for the transactions CSV, and the manifest of exactly what was injected,
//! so that tests can reconcile ingest counts with it. Each dirty row carries one kind of
//! dirt; duplicates are copies of clean rows.
//!
//! Intended handling by ingest:
//! - unrecoverable (row goes to quarantine): malformed timestamps, non-numeric amounts,
//!   missing customer ids;
//! - recoverable (no row lost): a UTF-8 BOM, mixed timestamp forms, quoted delimiters, stray
//!   quotes inside fields, unknown extra columns, invalid UTF-8 bytes in a text column
//!   (replaced with U+FFFD), and duplicate rows (dropped as duplicates, the first copy kept).

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::writer::{Cell, csv_line, push_field};

const EXTRA_COLUMNS: &[&str] = &["pos_terminal", "cashier_note"];

/// What `--mess` injected, and what a correct ingest must therefore report.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct MessManifest {
    /// Data lines in the file (header excluded), duplicates included.
    pub data_lines: u64,
    pub bom: bool,
    pub extra_columns: Vec<String>,
    pub duplicate_rows: u64,
    pub malformed_timestamps: u64,
    pub mixed_format_timestamps: u64,
    pub non_numeric_amounts: u64,
    pub missing_customer_ids: u64,
    pub quoted_delimiters: u64,
    pub stray_quotes: u64,
    pub invalid_utf8: u64,
    /// What ingest must report for this file.
    pub expected_accepted: u64,
    pub expected_rejected: u64,
    pub expected_duplicates: u64,
    pub expected_rejected_by_reason: BTreeMap<String, u64>,
}

pub struct Messer {
    rng: ChaCha8Rng,
    m: MessManifest,
}

const MALFORMED_TIMESTAMPS: &[&str] = &[
    "2025-02-30 12:00:00",
    "31/31/2025 10:00",
    "not a date",
    "2025-13-01T10:00:00",
    "12:30:00",
    "2025-06-15 25:61:00",
];
const NON_NUMERIC: &[&str] = &["N/A", "abc", "--", "12,5O", "￥"];

impl Messer {
    pub fn new(seed: u64) -> Self {
        let m = MessManifest {
            bom: true,
            extra_columns: EXTRA_COLUMNS.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x6D65_7373),
            m,
        }
    }

    /// BOM and header line with the extra columns.
    pub fn header(&self, header: &[&str]) -> Vec<u8> {
        let mut cells: Vec<Vec<u8>> = header.iter().map(|h| h.as_bytes().to_vec()).collect();
        cells.extend(EXTRA_COLUMNS.iter().map(|h| h.as_bytes().to_vec()));
        let mut line = b"\xEF\xBB\xBF".to_vec();
        line.extend(csv_line(&cells));
        line
    }

    /// The line(s) written for one transaction (two for a duplicate).
    pub fn lines(&mut self, cells: &[Cell]) -> Vec<Vec<u8>> {
        let mut fields: Vec<Vec<u8>> = cells.iter().map(|c| c.text().into_bytes()).collect();
        fields.push(format!("POS-{}", self.rng.random_range(1..20)).into_bytes());
        fields.push(Vec::new());
        let roll: f64 = self.rng.random();
        let mut raw_stray: Option<usize> = None;
        let mut copies = 1;
        let mut rejected: Option<&str> = None;
        let Cell::Ts(ts) = cells[2] else {
            unreachable!("ts is a timestamp")
        };
        match roll {
            r if r < 0.010 => {
                copies = 2;
                self.m.duplicate_rows += 1;
            }
            r if r < 0.015 => {
                fields[2] = MALFORMED_TIMESTAMPS
                    [self.rng.random_range(0..MALFORMED_TIMESTAMPS.len())]
                .as_bytes()
                .to_vec();
                self.m.malformed_timestamps += 1;
                rejected = Some("malformed_timestamp");
            }
            r if r < 0.045 => {
                let forms = [
                    "%Y/%m/%d %H:%M:%S",
                    "%d-%b-%Y %H:%M:%S",
                    "%Y-%m-%dT%H:%M:%SZ",
                    "%Y-%m-%dT%H:%M:%S+00:00",
                    "%Y-%m-%d %H:%M:%S.000",
                ];
                fields[2] = ts
                    .format(forms[self.rng.random_range(0..forms.len())])
                    .to_string()
                    .into_bytes();
                self.m.mixed_format_timestamps += 1;
            }
            r if r < 0.050 => {
                fields[3] = NON_NUMERIC[self.rng.random_range(0..NON_NUMERIC.len())]
                    .as_bytes()
                    .to_vec();
                self.m.non_numeric_amounts += 1;
                rejected = Some("non_numeric");
            }
            r if r < 0.055 => {
                fields[1] = if self.rng.random::<bool>() {
                    Vec::new()
                } else {
                    b"  ".to_vec()
                };
                self.m.missing_customer_ids += 1;
                rejected = Some("missing_value");
            }
            r if r < 0.065 => {
                fields[11] = b"cashier said: \"refund later, maybe\"".to_vec();
                fields[5] =
                    format!("{}, assorted", String::from_utf8_lossy(&fields[5])).into_bytes();
                self.m.quoted_delimiters += 1;
            }
            r if r < 0.070 => {
                fields[5] = format!("12\" {}", String::from_utf8_lossy(&fields[5])).into_bytes();
                raw_stray = Some(5);
                self.m.stray_quotes += 1;
            }
            r if r < 0.073 => {
                fields[5].extend_from_slice(b" \xFF\xFE");
                self.m.invalid_utf8 += 1;
            }
            _ => {}
        }
        let mut line = Vec::with_capacity(160);
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                line.push(b',');
            }
            if raw_stray == Some(i) {
                line.extend_from_slice(f);
            } else {
                push_field(&mut line, f);
            }
        }
        line.push(b'\n');
        self.m.data_lines += copies;
        match rejected {
            Some(code) => {
                self.m.expected_rejected += 1;
                *self
                    .m
                    .expected_rejected_by_reason
                    .entry(code.to_string())
                    .or_default() += 1;
            }
            None => self.m.expected_accepted += 1,
        }
        self.m.expected_duplicates += copies - 1;
        vec![line; copies as usize]
    }

    pub fn manifest(&self) -> MessManifest {
        self.m.clone()
    }
}
