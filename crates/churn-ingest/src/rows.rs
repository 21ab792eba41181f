//! Turning one source row (text values in canonical column order) into typed values, or
//! into a reject reason naming the column and the bad value. Also the column builders that
//! accumulate accepted rows and rejected rows as Arrow arrays.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Float64Builder, StringBuilder,
    TimestampMicrosecondBuilder, UInt64Builder,
};
use arrow::datatypes::{DataType, Date32Type, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use chrono_tz::Tz;
use churn_core::table::CAMPAIGN_EVENT_KINDS;
use churn_core::{ColumnKind, Table};

use crate::config::Encoding;
use crate::reader::decode;
use crate::text::TextBuilder;
use crate::value::{TimestampParser, is_non_finite, local_day, parse_bool, parse_number};

/// Why a row was rejected: a stable code for counting and a message for people.
#[derive(Debug, Clone)]
pub struct Reject {
    pub code: &'static str,
    pub column: Option<&'static str>,
    pub message: String,
}

impl Reject {
    fn at(code: &'static str, column: &'static str, message: String) -> Self {
        Reject {
            code,
            column: Some(column),
            message,
        }
    }
}

/// The reject of a CSV record whose field count is not the header's.
pub(crate) fn wrong_field_count(width: usize, got: usize) -> Reject {
    Reject {
        code: "wrong_field_count",
        column: None,
        message: format!("expected {width} fields as in the header, got {got}"),
    }
}

/// A typed value of one canonical column.
#[derive(Debug, Clone)]
pub enum Value<'a> {
    Null,
    Str(Cow<'a, str>),
    Micros(i64),
    Days(i32),
    Number(f64),
    Bool(bool),
}

/// Parses rows of one table.
#[derive(Clone)]
pub struct RowParser {
    pub table: Table,
    pub encoding: Encoding,
    pub timestamps: TimestampParser,
    pub lake_tz: Tz,
    /// Text values whose invalid bytes were replaced with U+FFFD.
    pub repaired_invalid_utf8: u64,
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s.to_string()
    }
}

/// A parsed row: typed values in canonical order, its dedup key and partition day.
pub struct ParsedRow<'a> {
    pub values: Vec<Value<'a>>,
    pub key: u128,
    pub day: i32,
}

impl RowParser {
    /// Validates one row given as raw bytes per canonical column (`None` = column absent or
    /// empty).
    pub fn parse<'a>(&mut self, raw: &[Option<&'a [u8]>]) -> Result<ParsedRow<'a>, Reject> {
        let columns = self.table.columns();
        let mut values = Vec::with_capacity(columns.len());
        for (spec, bytes) in columns.iter().zip(raw) {
            let bytes = bytes.map(trim_bytes).filter(|b| !b.is_empty());
            let Some(bytes) = bytes else {
                if spec.required {
                    return Err(Reject::at(
                        "missing_value",
                        spec.name,
                        format!("column {}: required value is empty", spec.name),
                    ));
                }
                values.push(
                    if spec.kind == ColumnKind::Bool && self.table == Table::Transactions {
                        Value::Bool(false)
                    } else {
                        Value::Null
                    },
                );
                continue;
            };
            let text = match decode(bytes, self.encoding) {
                Some(t) => t,
                None if spec.kind == ColumnKind::Text => {
                    self.repaired_invalid_utf8 += 1;
                    let repaired = crate::reader::decode_lossy(bytes, self.encoding);
                    values.push(Value::Str(Cow::Owned(repaired)));
                    continue;
                }
                None => {
                    return Err(Reject::at(
                        "invalid_encoding",
                        spec.name,
                        format!(
                            "column {}: bytes are not valid {:?} text",
                            spec.name, self.encoding
                        ),
                    ));
                }
            };
            values.push(self.typed(spec.name, spec.kind, text)?);
        }
        let (key, day) = self.key_and_day(
            |i| match &values[i] {
                Value::Str(s) => s.as_ref(),
                _ => "",
            },
            |i| match values[i] {
                Value::Micros(m) => m,
                _ => 0,
            },
        );
        Ok(ParsedRow { values, key, day })
    }

    fn typed<'a>(
        &self,
        name: &'static str,
        kind: ColumnKind,
        text: Cow<'a, str>,
    ) -> Result<Value<'a>, Reject> {
        Ok(match kind {
            ColumnKind::Id => Value::Str(text),
            ColumnKind::Text => Value::Str(if name == "channel" {
                Cow::Owned(text.to_lowercase())
            } else {
                text
            }),
            ColumnKind::Timestamp => match self.timestamps.parse_micros(&text) {
                Some(m) => Value::Micros(m),
                None => {
                    return Err(Reject::at(
                        "malformed_timestamp",
                        name,
                        format!(
                            "column {name}: expected a timestamp, got {:?}",
                            shorten(&text)
                        ),
                    ));
                }
            },
            ColumnKind::Date => match self.timestamps.parse_date(&text) {
                Some(d) => Value::Days(Date32Type::from_naive_date(d)),
                None => {
                    return Err(Reject::at(
                        "malformed_date",
                        name,
                        format!("column {name}: expected a date, got {:?}", shorten(&text)),
                    ));
                }
            },
            ColumnKind::Number => match parse_number(&text) {
                Some(v) => Value::Number(v),
                None if is_non_finite(&text) => {
                    return Err(Reject::at(
                        "non_finite_number",
                        name,
                        format!(
                            "column {name}: expected a finite number, got {:?}",
                            shorten(&text)
                        ),
                    ));
                }
                None => {
                    return Err(Reject::at(
                        "non_numeric",
                        name,
                        format!("column {name}: expected a number, got {:?}", shorten(&text)),
                    ));
                }
            },
            ColumnKind::Bool => match parse_bool(&text) {
                Some(b) => Value::Bool(b),
                None => {
                    return Err(Reject::at(
                        "invalid_boolean",
                        name,
                        format!(
                            "column {name}: expected true/false, got {:?}",
                            shorten(&text)
                        ),
                    ));
                }
            },
            ColumnKind::Event => {
                let lower = text.trim().to_ascii_lowercase();
                match CAMPAIGN_EVENT_KINDS.iter().find(|k| **k == lower) {
                    Some(k) => Value::Str(Cow::Borrowed(k)),
                    None => {
                        return Err(Reject::at(
                            "invalid_event",
                            name,
                            format!(
                                "column {name}: expected one of {CAMPAIGN_EVENT_KINDS:?}, got {:?}",
                                shorten(&text)
                            ),
                        ));
                    }
                }
            }
        })
    }

    /// Dedup key (128-bit hash of the table's key columns) and local partition day, from the
    /// row's text (`text(i)`, "" when null) and timestamp (`micros(i)`, 0 when null) of
    /// canonical column `i`.
    pub(crate) fn key_and_day<'s>(
        &self,
        text: impl Fn(usize) -> &'s str,
        micros: impl Fn(usize) -> i64,
    ) -> (u128, i32) {
        match self.table {
            Table::Transactions => (
                dedup_key(self.table, text(0), "", 0, ""),
                local_day(micros(2), &self.lake_tz),
            ),
            Table::Customers => (dedup_key(self.table, text(0), "", 0, ""), 0),
            Table::CampaignEvents => (
                dedup_key(self.table, text(0), text(1), micros(2), text(3)),
                local_day(micros(2), &self.lake_tz),
            ),
        }
    }
}

/// 128-bit hash of a row's identity: `transaction_id` for transactions, `customer_id` for
/// customers, and (customer, campaign, instant, event) for campaign events, which have no id
/// of their own. At 128 bits a collision among billions of rows is vanishingly unlikely, and
/// the dedup set costs 16 bytes per row instead of the ids themselves.
pub fn dedup_key(table: Table, id: &str, campaign_id: &str, micros: i64, event: &str) -> u128 {
    match table {
        Table::Transactions | Table::Customers => xxhash_rust::xxh3::xxh3_128(id.as_bytes()),
        Table::CampaignEvents => {
            let key = format!("{id}\u{1f}{campaign_id}\u{1f}{micros}\u{1f}{event}");
            xxhash_rust::xxh3::xxh3_128(key.as_bytes())
        }
    }
}

pub(crate) fn trim_bytes(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

pub(crate) enum ColumnBuilder {
    Str(TextBuilder),
    Ts(TimestampMicrosecondBuilder),
    Num(Float64Builder),
    Bool(BooleanBuilder),
    Date(Date32Builder),
}

impl ColumnBuilder {
    /// A builder for a column of `kind` with room for `rows` values and, for text,
    /// `text_bytes` bytes.
    pub(crate) fn with_capacity(kind: ColumnKind, rows: usize, text_bytes: usize) -> Self {
        match kind {
            ColumnKind::Id | ColumnKind::Text | ColumnKind::Event => {
                Self::Str(TextBuilder::with_capacity(rows, text_bytes))
            }
            ColumnKind::Timestamp => {
                Self::Ts(TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"))
            }
            ColumnKind::Number => Self::Num(Float64Builder::with_capacity(rows)),
            ColumnKind::Bool => Self::Bool(BooleanBuilder::with_capacity(rows)),
            ColumnKind::Date => Self::Date(Date32Builder::with_capacity(rows)),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        use arrow::array::ArrayBuilder;
        match self {
            Self::Str(b) => b.is_empty(),
            Self::Ts(b) => b.is_empty(),
            Self::Num(b) => b.is_empty(),
            Self::Bool(b) => b.is_empty(),
            Self::Date(b) => b.is_empty(),
        }
    }
}

/// The places of `days` in day order, stable (equal days keep their order): how blocks are
/// held and runs made in day order.
///
/// A block's rows span at most a few years of days, far fewer than its rows: they are
/// counted per day and placed, in one pass each (a comparison sort of every block was about
/// 2 % of a large ingest's CPU time). Days spread over more dates than there are rows are
/// sorted instead.
pub(crate) fn day_order(days: &[i32]) -> Vec<u32> {
    let (Some(&first), Some(&last)) = (days.iter().min(), days.iter().max()) else {
        return Vec::new();
    };
    let span = (i64::from(last) - i64::from(first)) as usize + 1;
    if span > days.len().max(1024) {
        let mut order: Vec<u32> = (0..days.len() as u32).collect();
        order.sort_by_key(|&k| days[k as usize]);
        return order;
    }
    let slot = |day: i32| (day - first) as usize;
    // starts[d]: where day `first + d`'s rows begin in the order.
    let mut starts = vec![0u32; span + 1];
    for &day in days {
        starts[slot(day) + 1] += 1;
    }
    for d in 1..=span {
        starts[d] += starts[d - 1];
    }
    let mut order = vec![0u32; days.len()];
    for (row, &day) in days.iter().enumerate() {
        let at = &mut starts[slot(day)];
        order[*at as usize] = row as u32;
        *at += 1;
    }
    order
}

/// Accepted rows of one table, in order, with their partition days: rows appended one by
/// one, and batches of rows parsed elsewhere. (Dedup keys are not kept: the
/// driver checks them as rows arrive, and customers recompute them from the id column.)
pub struct TableBuilder {
    table: Table,
    pub(crate) columns: Vec<ColumnBuilder>,
    pub(crate) extra: StringBuilder,
    /// Rows appended one by one (to the builders) since the last batch.
    pub(crate) built_rows: usize,
    /// Where each row appended since the last batch came in arrival order, when they were
    /// not appended in it (a block parsed in day order, see [`crate::block`]).
    built_arrival: Option<Vec<u32>>,
    /// Rows before those, as batches, in order.
    batches: Vec<RecordBatch>,
    /// The day of every row held, in order.
    pub(crate) days: Vec<i32>,
    /// Per batch, where its rows came in arrival order (see [`HeldRows::arrival`]).
    arrival: Vec<Option<Vec<u32>>>,
}

/// The rows a [`TableBuilder`] held: batches in the table's file schema, the partition day of
/// each row (batch after batch, in each batch's row order), and where each batch's rows came.
#[derive(Default)]
pub struct HeldRows {
    pub batches: Vec<RecordBatch>,
    pub days: Vec<i32>,
    /// Per batch: `None` when its rows are in the order they arrived in; otherwise, for each
    /// of its rows, its place among the batch's rows in arrival order. Blocks of a
    /// date-partitioned table are held in day order, which spares sorting them into a run.
    pub arrival: Vec<Option<Vec<u32>>>,
}

impl TableBuilder {
    pub fn new(table: Table) -> Self {
        // Arrow's default room; builders grow from there.
        const ROWS: usize = 1024;
        let columns = table
            .columns()
            .iter()
            .map(|c| ColumnBuilder::with_capacity(c.kind, ROWS, ROWS))
            .collect();
        Self {
            table,
            columns,
            extra: StringBuilder::new(),
            built_rows: 0,
            built_arrival: None,
            batches: Vec::new(),
            days: Vec::new(),
            arrival: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.days.len()
    }

    pub fn is_empty(&self) -> bool {
        self.days.is_empty()
    }

    pub fn append(&mut self, row: &ParsedRow<'_>, extra: Option<&str>) {
        for (builder, value) in self.columns.iter_mut().zip(&row.values) {
            match (builder, value) {
                (ColumnBuilder::Str(b), Value::Str(s)) => b.append_value(s),
                (ColumnBuilder::Ts(b), Value::Micros(m)) => b.append_value(*m),
                (ColumnBuilder::Num(b), Value::Number(v)) => b.append_value(*v),
                (ColumnBuilder::Bool(b), Value::Bool(v)) => b.append_value(*v),
                (ColumnBuilder::Date(b), Value::Days(d)) => b.append_value(*d),
                (ColumnBuilder::Str(b), _) => b.append_null(),
                (ColumnBuilder::Ts(b), _) => b.append_null(),
                (ColumnBuilder::Num(b), _) => b.append_null(),
                (ColumnBuilder::Bool(b), _) => b.append_null(),
                (ColumnBuilder::Date(b), _) => b.append_null(),
            }
        }
        self.extra.append_option(extra);
        self.days.push(row.day);
        if let Some(arrival) = &mut self.built_arrival {
            arrival.push(self.built_rows as u32);
        }
        self.built_rows += 1;
    }

    /// Adds rows already made into batches (in the table's file schema), with their days,
    /// after the rows held so far.
    pub fn push_rows(&mut self, rows: HeldRows) {
        debug_assert_eq!(
            rows.batches.iter().map(|b| b.num_rows()).sum::<usize>(),
            rows.days.len()
        );
        self.finish_built();
        self.batches.extend(rows.batches);
        self.days.extend(rows.days);
        self.arrival.extend(rows.arrival);
    }

    /// Notes where the next `rows` rows appended to the builders came in arrival order:
    /// `order[k]` is the place of the k-th of them, or `None` when they come in it.
    pub(crate) fn note_arrival(&mut self, order: Option<&[u32]>, rows: usize) {
        let base = self.built_rows as u32;
        match (order, &mut self.built_arrival) {
            (None, None) => {}
            (None, Some(arrival)) => arrival.extend(base..base + rows as u32),
            (Some(order), arrival) => {
                let arrival = arrival.get_or_insert_with(|| (0..base).collect());
                arrival.extend(order.iter().map(|k| base + k));
            }
        }
    }

    /// Takes the rows held so far (no batches when there are none).
    pub fn finish(&mut self) -> HeldRows {
        self.finish_built();
        HeldRows {
            batches: std::mem::take(&mut self.batches),
            days: std::mem::take(&mut self.days),
            arrival: std::mem::take(&mut self.arrival),
        }
    }

    /// Moves the rows appended one by one since the last batch into a batch of their own.
    fn finish_built(&mut self) {
        if self.built_rows == 0 {
            return;
        }
        self.built_rows = 0;
        let mut arrays: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|b| -> ArrayRef {
                match b {
                    ColumnBuilder::Str(b) => b.finish(),
                    ColumnBuilder::Ts(b) => Arc::new(b.finish()),
                    ColumnBuilder::Num(b) => Arc::new(b.finish()),
                    ColumnBuilder::Bool(b) => Arc::new(b.finish()),
                    ColumnBuilder::Date(b) => Arc::new(b.finish()),
                }
            })
            .collect();
        arrays.push(Arc::new(self.extra.finish()));
        let batch = RecordBatch::try_new(self.table.file_schema(), arrays)
            .expect("builders follow the table schema");
        self.batches.push(batch);
        self.arrival.push(self.built_arrival.take());
    }
}

/// Schema of quarantine files.
pub fn quarantine_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("batch_id", DataType::Utf8, false),
        Field::new("source_file", DataType::Utf8, false),
        Field::new("line_number", DataType::UInt64, false),
        Field::new("column", DataType::Utf8, true),
        Field::new("reason_code", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("raw_line", DataType::Utf8, false),
        Field::new("raw_bytes", DataType::Binary, false),
    ]))
}

/// Rejected rows, exactly as read, with where they came from and why.
#[derive(Default)]
pub struct QuarantineBuilder {
    batch_id: StringBuilder,
    source_file: StringBuilder,
    line_number: UInt64Builder,
    column: StringBuilder,
    reason_code: StringBuilder,
    reason: StringBuilder,
    raw_line: StringBuilder,
    raw_bytes: BinaryBuilder,
    len: usize,
}

impl QuarantineBuilder {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[allow(clippy::too_many_arguments)]
    pub fn append(
        &mut self,
        batch_id: &str,
        file: &str,
        line: u64,
        reject: &Reject,
        raw_text: &str,
        raw: &[u8],
    ) {
        self.batch_id.append_value(batch_id);
        self.source_file.append_value(file);
        self.line_number.append_value(line);
        self.column.append_option(reject.column);
        self.reason_code.append_value(reject.code);
        self.reason.append_value(&reject.message);
        self.raw_line.append_value(raw_text);
        self.raw_bytes.append_value(raw);
        self.len += 1;
    }

    pub fn finish(&mut self) -> RecordBatch {
        self.len = 0;
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(self.batch_id.finish()),
            Arc::new(self.source_file.finish()),
            Arc::new(self.line_number.finish()),
            Arc::new(self.column.finish()),
            Arc::new(self.reason_code.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.raw_line.finish()),
            Arc::new(self.raw_bytes.finish()),
        ];
        RecordBatch::try_new(quarantine_schema(), arrays)
            .expect("builders follow the quarantine schema")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_order_is_a_stable_sort_by_day_whether_days_are_counted_or_compared() {
        // By hand: days 3, 1, 3, 2, 1 -> the two 1s (rows 1, 4), the 2 (row 3), the 3s (0, 2).
        assert_eq!(day_order(&[3, 1, 3, 2, 1]), [1, 4, 3, 0, 2]);
        assert!(day_order(&[]).is_empty());
        // Against the standard library's stable sort: narrow spans (counted), spans wider
        // than the rows (compared), negative days and the extremes of the type.
        let mut state = 7u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as i64
        };
        let cases: Vec<Vec<i32>> = vec![
            (0..5000).map(|_| 19_000 + (next() % 730) as i32).collect(),
            (0..300).map(|_| -40 + (next() % 9) as i32).collect(),
            (0..50)
                .map(|_| (next() % 1_000_000) as i32 - 500_000)
                .collect(),
            vec![i32::MAX, i32::MIN, 0, i32::MAX, i32::MIN],
        ];
        for days in cases {
            let mut expected: Vec<u32> = (0..days.len() as u32).collect();
            expected.sort_by_key(|&k| days[k as usize]);
            assert_eq!(day_order(&days), expected, "{days:?}");
        }
    }
}
