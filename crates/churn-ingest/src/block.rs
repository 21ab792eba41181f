//! Column-at-a-time parsing of CSV records: the fast path of a large ingest.
//!
//! Parsing a row at a time (a vector of cells per row, a typed value per cell, a builder call
//! per value, each behind a match on the column's kind) was most of a CSV ingest's parse
//! thread. Instead a block of records is held and each column is parsed in one loop, with the
//! same value parsers the row path uses. Rows some cell of which that loop does not take (an
//! empty required value, bytes that are not plain text, a value that does not parse) go through
//! the row path ([`RowParser::parse`]), which accepts them exactly as before or rejects them
//! with their reason; their values take their place in the block, so arrival order is kept
//! (a date-partitioned table's rows are then put in day order, their arrival order noted).
//! Both paths share the value parsers, so a row gets the same values whichever took it.

use churn_core::table::CAMPAIGN_EVENT_KINDS;
use churn_core::{ColumnKind, ColumnSpec, Table};

use crate::config::Encoding;
use crate::reader::{CsvRecord, RecordFields};
use crate::rows::{
    HeldRows, ParsedRow, Reject, RowParser, TableBuilder, Value, day_order, trim_bytes,
    wrong_field_count,
};
use crate::text::ShortText;

/// Records held for column-at-a-time parsing: the raw bytes and line number of each (that a
/// rejected row is quarantined with) and where its fields are: in those raw bytes for a
/// record without quotes, else in a decoded copy after them. Records of another width than
/// the header's are held too, in their place, to be rejected.
pub struct CsvBlock {
    width: usize,
    /// Each record's raw bytes, and after them its decoded fields where they differ.
    text: Vec<u8>,
    raw_ranges: Vec<std::ops::Range<usize>>,
    /// Where each record's first field starts in `text`.
    fields_starts: Vec<usize>,
    /// Whether a record's fields are in its raw bytes (one delimiter between each and the
    /// next) rather than decoded back to back.
    fields_in_raw: Vec<bool>,
    /// Where each field ends in `text`.
    field_ends: Vec<usize>,
    /// Where each record's fields end in `field_ends`.
    record_ends: Vec<usize>,
    lines: Vec<u64>,
}

impl CsvBlock {
    /// Records parsed together: enough that each column's loop runs long, few enough that a
    /// block's cells stay a few megabytes.
    pub const RECORDS: usize = 32 * 1024;

    /// A block for records of `width` fields (the header's).
    pub fn new(width: usize) -> Self {
        Self::with_capacity(width, 0, 0)
    }

    /// A block with room for `records` records of `text_bytes` bytes in all.
    fn with_capacity(width: usize, records: usize, text_bytes: usize) -> Self {
        Self {
            width,
            text: Vec::with_capacity(text_bytes),
            raw_ranges: Vec::with_capacity(records),
            fields_starts: Vec::with_capacity(records),
            fields_in_raw: Vec::with_capacity(records),
            field_ends: Vec::with_capacity(records * width),
            record_ends: Vec::with_capacity(records),
            lines: Vec::with_capacity(records),
        }
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.len() >= Self::RECORDS
    }

    /// Adds a record.
    pub fn push(&mut self, record: &CsvRecord<'_>) {
        let raw_start = self.text.len();
        self.text.extend_from_slice(record.raw);
        self.raw_ranges.push(raw_start..self.text.len());
        let (fields_start, in_raw, ends) = match record.fields_layout() {
            RecordFields::InRaw { ends } => (raw_start, true, ends),
            RecordFields::Decoded { bytes, ends } => {
                let start = self.text.len();
                self.text
                    .extend_from_slice(&bytes[..ends.last().copied().unwrap_or(0)]);
                (start, false, ends)
            }
        };
        self.fields_starts.push(fields_start);
        self.fields_in_raw.push(in_raw);
        self.field_ends
            .extend(ends.iter().map(|end| fields_start + end));
        self.record_ends.push(self.field_ends.len());
        self.lines.push(record.line);
    }

    /// The records held, as a block of their own, leaving this one empty with room for as
    /// many again.
    pub fn take(&mut self) -> CsvBlock {
        let empty = Self::with_capacity(self.width, self.len(), self.text.len());
        std::mem::replace(self, empty)
    }

    /// Where record `row`'s fields start in `field_ends`.
    fn first_field(&self, row: usize) -> usize {
        if row == 0 {
            0
        } else {
            self.record_ends[row - 1]
        }
    }

    /// The number of fields of record `row`.
    pub fn record_width(&self, row: usize) -> usize {
        self.record_ends[row] - self.first_field(row)
    }

    /// Every record's bytes: raw, and decoded fields where they differ.
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// Where field `column` of record `row` (which has that field) is in [`Self::text`].
    pub fn field_range(&self, row: usize, column: usize) -> std::ops::Range<usize> {
        let i = self.first_field(row) + column;
        let start = match column {
            0 => self.fields_starts[row],
            _ => self.field_ends[i - 1] + usize::from(self.fields_in_raw[row]),
        };
        start..self.field_ends[i]
    }

    /// The decoded bytes of field `column` of record `row` (which has that field).
    pub fn field(&self, row: usize, column: usize) -> &[u8] {
        &self.text[self.field_range(row, column)]
    }

    /// The raw bytes of record `row`, as read.
    pub fn raw(&self, row: usize) -> &[u8] {
        &self.text[self.raw_ranges[row].clone()]
    }

    /// The line record `row` starts on.
    pub fn line(&self, row: usize) -> u64 {
        self.lines[row]
    }
}

/// One column of a block, parsed: a value per record, `None` where the cell is empty (or the
/// column absent) or where the record was left to the row path.
enum Cells<'a> {
    Str(Vec<Option<&'a str>>),
    Micros(Vec<Option<i64>>),
    Days(Vec<Option<i32>>),
    Number(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
}

/// What became of a block's records.
pub struct BlockOutcome {
    /// Records appended to the table builder.
    pub accepted: usize,
    /// Rejected records (their index in the block) with the reason, in block order.
    pub rejected: Vec<(usize, Reject)>,
}

/// A block parsed on a thread of its own: its accepted rows (at most one batch, in day order
/// for a date-partitioned table) with their days, their dedup keys in arrival order, and its
/// rejected records, which `block` holds.
pub struct ParsedBlock {
    pub block: CsvBlock,
    pub rows: HeldRows,
    pub keys: Vec<u128>,
    pub rejected: Vec<(usize, Reject)>,
    /// Text values whose invalid bytes were replaced with U+FFFD.
    pub repaired_invalid_text: u64,
}

impl ParsedBlock {
    /// Parses `block` with a copy of the source's parser.
    pub fn parse(mut parser: RowParser, block: CsvBlock, mapping: &[Option<usize>]) -> Self {
        parser.repaired_invalid_utf8 = 0;
        let mut out = TableBuilder::new(parser.table);
        let mut keys = Vec::with_capacity(block.len());
        let outcome = parser.parse_block(&block, mapping, &mut out, |key| keys.push(key));
        Self {
            block,
            rows: out.finish(),
            keys,
            rejected: outcome.rejected,
            repaired_invalid_text: parser.repaired_invalid_utf8,
        }
    }
}

impl RowParser {
    /// Parses every record of `block` (fields mapped to canonical columns by `mapping`),
    /// appends the accepted rows to `out` and pushes their dedup keys to `on_key` in block
    /// order. A date-partitioned table's rows are appended in day order (stable: block order
    /// within a day), with their places in block order noted in `out`: making the rows a run
    /// sorted by day then merges blocks instead of gathering every value one by one.
    pub fn parse_block(
        &mut self,
        block: &CsvBlock,
        mapping: &[Option<usize>],
        out: &mut TableBuilder,
        mut on_key: impl FnMut(u128),
    ) -> BlockOutcome {
        let n = block.len();
        let columns = self.table.columns();
        let mut rejected = Vec::new();
        let mut is_rejected = vec![false; n];
        // Records of the wrong width are rejected at once; the column loops skip them.
        let mut to_row_path = vec![false; n];
        for row in 0..n {
            if block.record_width(row) != block.width() {
                to_row_path[row] = true;
                is_rejected[row] = true;
                rejected.push((
                    row,
                    wrong_field_count(block.width(), block.record_width(row)),
                ));
            }
        }
        // One check of the whole block's text instead of one per cell: a cell of valid text
        // is then a slice of it.
        let block_text = plain_text(block.text(), self.encoding);
        let cells: Vec<Cells<'_>> = columns
            .iter()
            .zip(mapping)
            .map(|(spec, source)| {
                self.parse_column(block, block_text, spec, *source, &mut to_row_path)
            })
            .collect();

        let mut row_path: Vec<(usize, ParsedRow<'_>)> = Vec::new();
        for row in 0..n {
            if !to_row_path[row] || is_rejected[row] {
                continue;
            }
            let values: Vec<Option<&[u8]>> = mapping
                .iter()
                .map(|m| m.map(|c| block.field(row, c)))
                .collect();
            match self.parse(&values) {
                Ok(parsed) => row_path.push((row, parsed)),
                Err(reject) => {
                    is_rejected[row] = true;
                    rejected.push((row, reject));
                }
            }
        }
        // Both kinds of rejects, in block order.
        rejected.sort_by_key(|(row, _)| *row);
        let mut records = Vec::with_capacity(n - rejected.len());
        let mut days = Vec::with_capacity(n - rejected.len());
        let mut next = row_path.iter();
        for row in 0..n {
            if is_rejected[row] {
                continue;
            }
            // The row path's accepted records are in block order, one per record it took and
            // did not reject.
            let (record, key, day) = match to_row_path[row].then(|| next.next()).flatten() {
                Some((_, parsed)) => (Record::Row(parsed), parsed.key, parsed.day),
                None => {
                    let (key, day) = self.key_and_day_of_cells(&cells, row);
                    (Record::Cell(row), key, day)
                }
            };
            on_key(key);
            records.push(record);
            days.push(day);
        }
        let accepted = records.len();
        let day_order =
            (self.table.is_date_partitioned() && !days.is_sorted()).then(|| day_order(&days));
        if let Some(order) = &day_order {
            records = order.iter().map(|&k| records[k as usize]).collect();
            days = order.iter().map(|&k| days[k as usize]).collect();
        }
        out.note_arrival(day_order.as_deref(), accepted);
        for (i, column) in cells.iter().enumerate() {
            reserve_for(out, i, columns[i].kind, column, &records);
            let lower = columns[i].name == "channel";
            append_column(out, i, column, &records, block.text(), lower);
        }
        out.days.extend(days);
        out.extra.append_nulls(accepted);
        out.built_rows += accepted;
        BlockOutcome { accepted, rejected }
    }

    /// One column's cells; marks the records it cannot take in `to_row_path`.
    fn parse_column<'a>(
        &self,
        block: &'a CsvBlock,
        block_text: Option<&'a str>,
        spec: &ColumnSpec,
        source: Option<usize>,
        to_row_path: &mut [bool],
    ) -> Cells<'a> {
        let n = block.len();
        let empty_bool =
            (spec.kind == ColumnKind::Bool && self.table == Table::Transactions).then_some(false);
        let Some(source) = source else {
            if spec.required {
                to_row_path.iter_mut().for_each(|r| *r = true);
            }
            return match spec.kind {
                ColumnKind::Id | ColumnKind::Text | ColumnKind::Event => Cells::Str(vec![None; n]),
                ColumnKind::Timestamp => Cells::Micros(vec![None; n]),
                ColumnKind::Date => Cells::Days(vec![None; n]),
                ColumnKind::Number => Cells::Number(vec![None; n]),
                ColumnKind::Bool => Cells::Bool(vec![empty_bool; n]),
            };
        };
        let encoding = self.encoding;
        // The text of each cell, trimmed: `Ok(None)` when empty, `Err` when the record is
        // the row path's (required value empty, or bytes this path does not read as text).
        let text = |row: usize| -> Result<Option<&'a str>, ()> {
            let range = block.field_range(row, source);
            // A field inside valid text may still not start or end on a character boundary
            // (decoded fields lie back to back); it is then checked by itself.
            let text = match block_text.and_then(|text| text.get(range.clone())) {
                Some(text) => text.trim_ascii(),
                None => {
                    let bytes = trim_bytes(&block.text()[range]);
                    if bytes.is_empty() {
                        ""
                    } else {
                        plain_text(bytes, encoding).ok_or(())?
                    }
                }
            };
            if text.is_empty() {
                return if spec.required { Err(()) } else { Ok(None) };
            }
            Ok(Some(text))
        };
        macro_rules! parse_each {
            ($variant:ident, $empty:expr, $parse:expr) => {{
                let mut values = Vec::with_capacity(n);
                for (row, left) in to_row_path.iter_mut().enumerate() {
                    if *left {
                        // The row path's record (or one of the wrong width): its cell is not
                        // read here.
                        values.push(None);
                        continue;
                    }
                    let value = match text(row) {
                        Ok(Some(t)) => match $parse(t) {
                            Some(v) => Some(v),
                            None => {
                                *left = true;
                                None
                            }
                        },
                        Ok(None) => $empty,
                        Err(()) => {
                            *left = true;
                            None
                        }
                    };
                    values.push(value);
                }
                Cells::$variant(values)
            }};
        }
        let timestamps = &self.timestamps;
        match spec.kind {
            ColumnKind::Id | ColumnKind::Text => parse_each!(Str, None, Some),
            ColumnKind::Event => parse_each!(Str, None, |t: &str| CAMPAIGN_EVENT_KINDS
                .iter()
                .find(|k| k.eq_ignore_ascii_case(t))
                .copied()),
            ColumnKind::Timestamp => {
                parse_each!(Micros, None, |t: &str| timestamps.parse_micros(t))
            }
            ColumnKind::Date => parse_each!(Days, None, |t: &str| timestamps
                .parse_date(t)
                .map(arrow::datatypes::Date32Type::from_naive_date)),
            ColumnKind::Number => parse_each!(Number, None, crate::value::parse_number),
            ColumnKind::Bool => parse_each!(Bool, empty_bool, crate::value::parse_bool),
        }
    }

    fn key_and_day_of_cells(&self, cells: &[Cells<'_>], row: usize) -> (u128, i32) {
        self.key_and_day(
            |i| match &cells[i] {
                Cells::Str(v) => v[row].unwrap_or(""),
                _ => "",
            },
            |i| match &cells[i] {
                Cells::Micros(v) => v[row].unwrap_or(0),
                _ => 0,
            },
        )
    }
}

/// Text the column loop reads as it is: ASCII, or valid UTF-8 in a UTF-8 source. Other bytes
/// (GB18030 text, invalid bytes) are the row path's, which decodes or repairs them.
fn plain_text(bytes: &[u8], encoding: Encoding) -> Option<&str> {
    match encoding {
        Encoding::Utf8 => std::str::from_utf8(bytes).ok(),
        Encoding::Gb18030 => bytes
            .is_ascii()
            .then(|| std::str::from_utf8(bytes).ok())
            .flatten(),
    }
}

/// Where an accepted record's values come from.
#[derive(Clone, Copy)]
enum Record<'v, 'a> {
    /// The column loops' cells of this record of the block.
    Cell(usize),
    /// The row path's values.
    Row(&'v ParsedRow<'a>),
}

/// Where an accepted record's value of one column comes from.
enum From<'v, 'a> {
    /// The column loop's cell of this record of the block.
    Cell(usize),
    /// The row path's value.
    Row(&'v Value<'a>),
}

/// Calls `append` with column `i`'s value of each of `records`, in order.
fn each_value<'v, 'a>(records: &[Record<'v, 'a>], i: usize, mut append: impl FnMut(From<'v, 'a>)) {
    for record in records {
        match record {
            Record::Cell(row) => append(From::Cell(*row)),
            Record::Row(parsed) => append(From::Row(&parsed.values[i])),
        }
    }
}

/// Makes room in an empty builder for column `i` of `records`, so that it is filled without
/// growing step by step (each step a copy of all it holds).
fn reserve_for(
    out: &mut TableBuilder,
    i: usize,
    kind: ColumnKind,
    cells: &Cells<'_>,
    records: &[Record<'_, '_>],
) {
    if !out.columns[i].is_empty() {
        return;
    }
    // The cells are summed in block order rather than in the records' day order (that pass
    // at random over the block's cells was about 2 % of a large ingest's CPU time). The sum
    // only sizes the builder: it may count a little more than the records hold (a cell read
    // before a later column sent its record to the row path, a rejected record's cells).
    let text_bytes = match cells {
        Cells::Str(v) => {
            let row_path_bytes: usize = records
                .iter()
                .map(|record| match record {
                    Record::Row(parsed) => match &parsed.values[i] {
                        Value::Str(s) => s.len(),
                        _ => 0,
                    },
                    Record::Cell(_) => 0,
                })
                .sum();
            v.iter().flatten().map(|s| s.len()).sum::<usize>() + row_path_bytes
        }
        _ => 0,
    };
    out.columns[i] = crate::rows::ColumnBuilder::with_capacity(kind, records.len(), text_bytes);
}

/// Whether `text` changes when lower-cased.
fn needs_lowering(text: &str) -> bool {
    text.bytes()
        .any(|c| c.is_ascii_uppercase() || !c.is_ascii())
}

/// The block's text cells as [`ShortText`]s where they can be (`None`: null, longer, or to be
/// lower-cased), in block order. Records are appended in day order, at random over the
/// block: taking each value from the block's text then (megabytes, with every column's cells
/// side by side) missed the processor's cache for most values, about a tenth of a large
/// ingest's CPU samples; these windows are read from the text in order and gathered from a
/// few hundred kilobytes.
fn short_cells(cells: &[Option<&str>], text: &[u8], lower: bool) -> Vec<Option<ShortText>> {
    cells
        .iter()
        .map(|cell| {
            cell.filter(|s| !(lower && needs_lowering(s)))
                .and_then(|s| ShortText::of(s, text))
        })
        .collect()
}

/// Appends column `i` of `records` (accepted records of the block) to `out`. `text`: the
/// block's text, which the column's text cells are slices of. `lower`: the column's text is
/// lower-cased (as the row path does for `channel`).
fn append_column(
    out: &mut TableBuilder,
    i: usize,
    cells: &Cells<'_>,
    records: &[Record<'_, '_>],
    text: &[u8],
    lower: bool,
) {
    use crate::rows::ColumnBuilder as B;
    match (&mut out.columns[i], cells) {
        (B::Str(b), Cells::Str(v)) => {
            let short = short_cells(v, text, lower);
            each_value(records, i, |from| match from {
                From::Cell(row) => match (&short[row], v[row]) {
                    (Some(short), _) => b.append_short(short),
                    // `short_cells` left out every cell that needs lowering (and those it
                    // could not window): lower-cased without asking again, a no-op on the
                    // rare cell that needs none.
                    (None, Some(s)) if lower => b.append_value(&s.to_lowercase()),
                    (None, other) => b.append_option(other),
                },
                From::Row(Value::Str(s)) => b.append_value(s),
                From::Row(_) => b.append_null(),
            })
        }
        (B::Ts(b), Cells::Micros(v)) => each_value(records, i, |from| match from {
            From::Cell(row) => b.append_option(v[row]),
            From::Row(Value::Micros(m)) => b.append_value(*m),
            From::Row(_) => b.append_null(),
        }),
        (B::Date(b), Cells::Days(v)) => each_value(records, i, |from| match from {
            From::Cell(row) => b.append_option(v[row]),
            From::Row(Value::Days(d)) => b.append_value(*d),
            From::Row(_) => b.append_null(),
        }),
        (B::Num(b), Cells::Number(v)) => each_value(records, i, |from| match from {
            From::Cell(row) => b.append_option(v[row]),
            From::Row(Value::Number(x)) => b.append_value(*x),
            From::Row(_) => b.append_null(),
        }),
        (B::Bool(b), Cells::Bool(v)) => each_value(records, i, |from| match from {
            From::Cell(row) => b.append_option(v[row]),
            From::Row(Value::Bool(x)) => b.append_value(*x),
            From::Row(_) => b.append_null(),
        }),
        // Cells are made from the same column kinds as the builders.
        _ => unreachable!("column {i}: cells and builder of different kinds"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::CsvSplitter;
    use crate::rows::dedup_key;
    use crate::value::TimestampParser;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, TimestampMicrosecondType};
    use chrono_tz::Tz;

    /// A parser of UTC transactions, and the mapping of a header in the contract's order.
    fn transactions_parser() -> (RowParser, Vec<Option<usize>>) {
        let parser = RowParser {
            table: Table::Transactions,
            encoding: Encoding::Utf8,
            timestamps: TimestampParser::new(Tz::UTC),
            lake_tz: Tz::UTC,
            repaired_invalid_utf8: 0,
        };
        (parser, (0..10).map(Some).collect())
    }

    fn block_of(csv: &[u8]) -> CsvBlock {
        let mut splitter = CsvSplitter::new(b',');
        let mut block: Option<CsvBlock> = None;
        for chunk in [csv, b""] {
            splitter
                .feed::<()>(chunk, |record| {
                    match &mut block {
                        None => block = Some(CsvBlock::new(record.len())),
                        Some(b) => b.push(&record),
                    }
                    Ok(())
                })
                .unwrap();
        }
        block.unwrap()
    }

    #[test]
    fn a_block_keeps_clean_rows_in_order_rejects_wrong_widths_and_sends_the_others_to_the_row_path()
    {
        let csv = b"transaction_id,customer_id,ts,amount,quantity,product_category,store_id,channel,discount,is_return\n\
T1,C1,2024-03-05 14:07:09,10.5,2,Pet,S1,Store,0,no\n\
T2,C1,yesterday,1,1,Pet,S1,store,0,false\n\
T3, C2 ,2024-03-06,  -3 ,,,,,,true\n\
T7,C5,2024-03-08\n\
T4,C3,2024-03-07 01:00:00,5,1,Caf\xE9,S2,online,,\n\
T5,,2024-03-07,5,1,Pet,S1,store,0,false\n\
T6,C4,2024-03-08 00:00:00,NaN,1,Pet,S1,store,0,false\n";
        let block = block_of(csv);
        assert_eq!(block.len(), 7);
        let (mut parser, mapping) = transactions_parser();
        let mut out = TableBuilder::new(Table::Transactions);
        let mut keys = Vec::new();
        let outcome = parser.parse_block(&block, &mapping, &mut out, |k| keys.push(k));

        assert_eq!(outcome.accepted, 3);
        let rejected: Vec<(u64, &str, Option<&str>)> = outcome
            .rejected
            .iter()
            .map(|(row, r)| (block.line(*row), r.code, r.column))
            .collect();
        assert_eq!(
            rejected,
            [
                (3, "malformed_timestamp", Some("ts")),
                (5, "wrong_field_count", None),
                (7, "missing_value", Some("customer_id")),
                (8, "non_finite_number", Some("amount")),
            ]
        );
        assert_eq!(block.raw(1), b"T2,C1,yesterday,1,1,Pet,S1,store,0,false");
        // The invalid byte of T4's category is repaired by the row path, in T4's place.
        assert_eq!(parser.repaired_invalid_utf8, 1);

        let HeldRows {
            batches,
            days,
            arrival,
        } = out.finish();
        assert_eq!(batches.len(), 1);
        assert_eq!(arrival, [None]);
        let batch = &batches[0];
        let text = |c: usize| -> Vec<Option<String>> {
            let a = batch.column(c).as_string::<i32>();
            (0..a.len())
                .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
                .collect()
        };
        let s = |v: &str| Some(v.to_string());
        assert_eq!(text(0), [s("T1"), s("T3"), s("T4")]);
        assert_eq!(text(1), [s("C1"), s("C2"), s("C3")]);
        assert_eq!(text(5), [s("Pet"), None, s("Caf\u{FFFD}")]);
        assert_eq!(text(7), [s("store"), None, s("online")]);
        let ts = batch.column(2).as_primitive::<TimestampMicrosecondType>();
        // 2024-03-05T14:07:09Z: 1709647629 s since the epoch (Python's datetime.timestamp()).
        assert_eq!(ts.value(0), 1_709_647_629_000_000);
        let amount = batch.column(3).as_primitive::<Float64Type>();
        assert_eq!(amount.values().to_vec(), [10.5, -3.0, 5.0]);
        let quantity = batch.column(4).as_primitive::<Float64Type>();
        assert_eq!((quantity.value(0), quantity.is_null(1)), (2.0, true));
        let is_return = batch.column(9).as_boolean();
        assert_eq!(
            (0..3).map(|i| is_return.value(i)).collect::<Vec<_>>(),
            [false, true, false]
        );
        assert_eq!(is_return.null_count(), 0);
        assert_eq!(batch.column(10).null_count(), 3);
        // 2024-03-05 is day 19787 of the Unix epoch.
        assert_eq!(days, [19787, 19788, 19789]);
        let key = |id: &str| dedup_key(Table::Transactions, id, "", 0, "");
        assert_eq!(keys, [key("T1"), key("T3"), key("T4")]);
    }

    #[test]
    fn a_blocks_rows_are_held_in_day_order_with_their_keys_in_arrival_order() {
        let csv = b"transaction_id,customer_id,ts,amount,quantity,product_category,store_id,channel,discount,is_return\n\
T1,C1,2024-03-07 10:00:00,1,1,Pet,S1,store,0,false\n\
T2,C2,2024-03-05 10:00:00,2,1,Pet,S1,store,0,false\n\
T3,C3,yesterday,3,1,Pet,S1,store,0,false\n\
T4,C4,2024-03-06 10:00:00,4,1,Caf\xE9,S1,store,0,false\n\
T5,C5,2024-03-05 11:00:00,5,1,Pet,S1,store,0,false\n";
        let (parser, mapping) = transactions_parser();
        let parsed = ParsedBlock::parse(parser, block_of(csv), &mapping);

        let key = |id: &str| dedup_key(Table::Transactions, id, "", 0, "");
        assert_eq!(parsed.keys, [key("T1"), key("T2"), key("T4"), key("T5")]);
        assert_eq!(parsed.rejected.len(), 1);
        let rows = &parsed.rows;
        assert_eq!(rows.batches.len(), 1);
        let text = |c: usize| -> Vec<&str> {
            rows.batches[0]
                .column(c)
                .as_string::<i32>()
                .iter()
                .flatten()
                .collect()
        };
        // 2024-03-05 is day 19787 of the Unix epoch; T4 came by the row path (its category's
        // invalid byte repaired) and keeps its place among the days.
        assert_eq!(text(0), ["T2", "T5", "T4", "T1"]);
        assert_eq!(text(5), ["Pet", "Pet", "Caf\u{FFFD}", "Pet"]);
        assert_eq!(rows.days, [19787, 19787, 19788, 19789]);
        assert_eq!(rows.arrival, [Some(vec![1, 3, 2, 0])]);
    }
}
