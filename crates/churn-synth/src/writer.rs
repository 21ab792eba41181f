//! Writing generated customers as CSV or Parquet files of the input contract, plus the
//! ground truth and, on request, a Chinese GB18030 till export and injected dirt.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Date32Type, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::{NaiveDate, NaiveDateTime};
use parquet::arrow::ArrowWriter;

use crate::mess::{MessManifest, Messer};
use crate::model::{Customer, customer_id};
use crate::{GenerateOptions, OutputFormat, Result, SynthError, io_error};

/// One value of a generated row.
#[derive(Debug, Clone)]
pub enum Cell {
    Str(String),
    Num(f64),
    Int(i64),
    Bool(bool),
    Ts(NaiveDateTime),
    Date(NaiveDate),
    Null,
}

impl Cell {
    /// Canonical CSV text of the value.
    pub fn text(&self) -> String {
        match self {
            Cell::Str(s) => s.clone(),
            Cell::Num(v) => format!("{v:.2}"),
            Cell::Int(v) => v.to_string(),
            Cell::Bool(b) => b.to_string(),
            Cell::Ts(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
            Cell::Date(d) => d.to_string(),
            Cell::Null => String::new(),
        }
    }
}

/// Appends a CSV field, quoting it when it holds a delimiter, quote or line break.
pub fn push_field(line: &mut Vec<u8>, value: &[u8]) {
    if value
        .iter()
        .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
    {
        line.push(b'"');
        for &b in value {
            if b == b'"' {
                line.push(b'"');
            }
            line.push(b);
        }
        line.push(b'"');
    } else {
        line.extend_from_slice(value);
    }
}

pub fn csv_line(cells: &[Vec<u8>]) -> Vec<u8> {
    let mut line = Vec::with_capacity(128);
    for (i, c) in cells.iter().enumerate() {
        if i > 0 {
            line.push(b',');
        }
        push_field(&mut line, c);
    }
    line.push(b'\n');
    line
}

pub const TRANSACTION_HEADER: &[&str] = &[
    "transaction_id",
    "customer_id",
    "ts",
    "amount",
    "quantity",
    "product_category",
    "store_id",
    "channel",
    "discount",
    "is_return",
];
const CUSTOMER_HEADER: &[&str] = &[
    "customer_id",
    "signup_date",
    "birthday",
    "tier",
    "referrer_id",
    "email",
    "phone",
    "marketing_opt_in",
];
const CAMPAIGN_HEADER: &[&str] = &["customer_id", "campaign_id", "ts", "event"];
const TRUTH_HEADER: &[&str] = &[
    "customer_id",
    "alive_at_end",
    "dropout_date",
    "purchase_rate_per_day",
    "dropout_rate_per_day",
    "mean_spend",
];
/// Headers of the Chinese till export, in the order of [`TRANSACTION_HEADER`].
pub const CHINESE_HEADER: &[&str] = &[
    "交易编号",
    "会员编号",
    "交易时间",
    "实付金额",
    "数量",
    "商品类别",
    "门店编号",
    "渠道",
    "折扣",
    "是否退货",
];

fn schema(header: &[&str], types: &[DataType]) -> SchemaRef {
    Arc::new(Schema::new(
        header
            .iter()
            .zip(types)
            .map(|(n, t)| Field::new(*n, t.clone(), true))
            .collect::<Vec<_>>(),
    ))
}

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, None)
}

/// A table being written, as CSV or Parquet.
enum Sink {
    Csv {
        out: BufWriter<File>,
    },
    Parquet {
        writer: Box<ArrowWriter<File>>,
        schema: SchemaRef,
        rows: Vec<Vec<Cell>>,
    },
}

struct TableFile {
    path: PathBuf,
    sink: Sink,
}

const PARQUET_BATCH_ROWS: usize = 65_536;

impl TableFile {
    fn create(
        dir: &Path,
        name: &str,
        format: OutputFormat,
        header: &[&str],
        types: &[DataType],
    ) -> Result<Self> {
        let ext = match format {
            OutputFormat::Csv => "csv",
            OutputFormat::Parquet => "parquet",
        };
        let path = dir.join(format!("{name}.{ext}"));
        let file = File::create(&path).map_err(io_error(&path))?;
        let sink = match format {
            OutputFormat::Csv => {
                let mut out = BufWriter::with_capacity(1 << 20, file);
                let cells: Vec<Vec<u8>> = header.iter().map(|h| h.as_bytes().to_vec()).collect();
                out.write_all(&csv_line(&cells)).map_err(io_error(&path))?;
                Sink::Csv { out }
            }
            OutputFormat::Parquet => {
                let schema = schema(header, types);
                let writer = ArrowWriter::try_new(
                    file,
                    schema.clone(),
                    Some(churn_core::lake::writer_properties()),
                )
                .map_err(|source| SynthError::Parquet {
                    path: path.clone(),
                    source,
                })?;
                Sink::Parquet {
                    writer: Box::new(writer),
                    schema,
                    rows: Vec::new(),
                }
            }
        };
        Ok(Self { path, sink })
    }

    fn write_raw(&mut self, line: &[u8]) -> Result<()> {
        match &mut self.sink {
            Sink::Csv { out } => out.write_all(line).map_err(io_error(&self.path)),
            Sink::Parquet { .. } => unreachable!("raw lines are only written to CSV"),
        }
    }

    fn write(&mut self, row: Vec<Cell>) -> Result<()> {
        match &mut self.sink {
            Sink::Csv { out } => {
                let cells: Vec<Vec<u8>> = row.iter().map(|c| c.text().into_bytes()).collect();
                out.write_all(&csv_line(&cells))
                    .map_err(io_error(&self.path))
            }
            Sink::Parquet { rows, .. } => {
                rows.push(row);
                if rows.len() >= PARQUET_BATCH_ROWS {
                    self.flush_parquet()?;
                }
                Ok(())
            }
        }
    }

    fn flush_parquet(&mut self) -> Result<()> {
        let Sink::Parquet {
            writer,
            schema,
            rows,
        } = &mut self.sink
        else {
            return Ok(());
        };
        if rows.is_empty() {
            return Ok(());
        }
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| -> ArrayRef {
                let cells = rows.iter().map(|r| &r[i]);
                match f.data_type() {
                    DataType::Utf8 => Arc::new(
                        cells
                            .map(|c| match c {
                                Cell::Str(s) => Some(s.as_str()),
                                _ => None,
                            })
                            .collect::<arrow::array::StringArray>(),
                    ),
                    DataType::Float64 => {
                        let mut b = Float64Builder::new();
                        cells.for_each(|c| {
                            b.append_option(match c {
                                Cell::Num(v) => Some(*v),
                                _ => None,
                            })
                        });
                        Arc::new(b.finish())
                    }
                    DataType::Int64 => {
                        let mut b = Int64Builder::new();
                        cells.for_each(|c| {
                            b.append_option(match c {
                                Cell::Int(v) => Some(*v),
                                _ => None,
                            })
                        });
                        Arc::new(b.finish())
                    }
                    DataType::Boolean => {
                        let mut b = BooleanBuilder::new();
                        cells.for_each(|c| {
                            b.append_option(match c {
                                Cell::Bool(v) => Some(*v),
                                _ => None,
                            })
                        });
                        Arc::new(b.finish())
                    }
                    DataType::Date32 => {
                        let mut b = Date32Builder::new();
                        cells.for_each(|c| {
                            b.append_option(match c {
                                Cell::Date(d) => Some(Date32Type::from_naive_date(*d)),
                                _ => None,
                            })
                        });
                        Arc::new(b.finish())
                    }
                    _ => {
                        let mut b = TimestampMicrosecondBuilder::new();
                        cells.for_each(|c| {
                            b.append_option(match c {
                                Cell::Ts(t) => Some(t.and_utc().timestamp_micros()),
                                _ => None,
                            })
                        });
                        Arc::new(b.finish())
                    }
                }
            })
            .collect();
        let batch =
            RecordBatch::try_new(schema.clone(), columns).expect("columns follow the schema");
        rows.clear();
        writer.write(&batch).map_err(|source| SynthError::Parquet {
            path: self.path.clone(),
            source,
        })
    }

    fn finish(mut self) -> Result<PathBuf> {
        self.flush_parquet()?;
        match self.sink {
            Sink::Csv { mut out } => out.flush().map_err(io_error(&self.path))?,
            Sink::Parquet { writer, .. } => {
                writer.close().map_err(|source| SynthError::Parquet {
                    path: self.path.clone(),
                    source,
                })?;
            }
        }
        Ok(self.path)
    }
}

/// All output files of a generated store.
pub struct StoreWriter {
    transactions: TableFile,
    customers: TableFile,
    campaign_events: TableFile,
    truth: TableFile,
    chinese: Option<(PathBuf, BufWriter<File>)>,
    messer: Option<Messer>,
    out: PathBuf,
}

pub fn transaction_cells(customer: &Customer, t: &crate::model::Transaction) -> Vec<Cell> {
    vec![
        Cell::Str(t.id.clone()),
        Cell::Str(customer.id.clone()),
        Cell::Ts(t.ts),
        Cell::Num(t.amount),
        Cell::Int(t.quantity as i64),
        Cell::Str(t.category.to_string()),
        Cell::Str(t.store.to_string()),
        Cell::Str(t.channel.to_string()),
        Cell::Num(t.discount),
        Cell::Bool(t.is_return),
    ]
}

impl StoreWriter {
    pub fn create(options: &GenerateOptions) -> Result<Self> {
        let dir = &options.out;
        let f = options.format;
        use DataType::*;
        let mut transactions = TableFile::create(
            dir,
            "transactions",
            f,
            TRANSACTION_HEADER,
            &[
                Utf8,
                Utf8,
                ts_type(),
                Float64,
                Int64,
                Utf8,
                Utf8,
                Utf8,
                Float64,
                Boolean,
            ],
        )?;
        let customers = TableFile::create(
            dir,
            "customers",
            f,
            CUSTOMER_HEADER,
            &[Utf8, Date32, Date32, Utf8, Utf8, Utf8, Utf8, Boolean],
        )?;
        let campaign_events = TableFile::create(
            dir,
            "campaign_events",
            f,
            CAMPAIGN_HEADER,
            &[Utf8, Utf8, ts_type(), Utf8],
        )?;
        let truth = TableFile::create(dir, "ground_truth", OutputFormat::Csv, TRUTH_HEADER, &[])?;
        let messer = if options.mess {
            let messer = Messer::new(options.seed);
            // The mess changes the file from its first byte (BOM) and header (extra columns).
            let path = transactions.path.clone();
            let file = File::create(&path).map_err(io_error(&path))?;
            transactions.sink = Sink::Csv {
                out: BufWriter::with_capacity(1 << 20, file),
            };
            transactions.write_raw(&messer.header(TRANSACTION_HEADER))?;
            Some(messer)
        } else {
            None
        };
        let chinese = if options.chinese_export {
            let path = dir.join("transactions_gb18030.csv");
            let mut out = BufWriter::new(File::create(&path).map_err(io_error(&path))?);
            let header: Vec<Vec<u8>> = CHINESE_HEADER.iter().map(|h| gb18030(h)).collect();
            out.write_all(&csv_line(&header)).map_err(io_error(&path))?;
            Some((path, out))
        } else {
            None
        };
        Ok(Self {
            transactions,
            customers,
            campaign_events,
            truth,
            chinese,
            messer,
            out: dir.clone(),
        })
    }

    pub fn write_customer(&mut self, c: &Customer) -> Result<()> {
        for t in &c.transactions {
            let cells = transaction_cells(c, t);
            if let Some((path, out)) = &mut self.chinese {
                out.write_all(&chinese_line(&cells))
                    .map_err(io_error(path))?;
            }
            match &mut self.messer {
                Some(messer) => {
                    for line in messer.lines(&cells) {
                        self.transactions.write_raw(&line)?;
                    }
                }
                None => self.transactions.write(cells)?,
            }
        }
        let opt = |s: &Option<String>| s.clone().map_or(Cell::Null, Cell::Str);
        self.customers.write(vec![
            Cell::Str(c.id.clone()),
            Cell::Date(c.signup),
            Cell::Date(c.birthday),
            Cell::Str(c.tier.to_string()),
            opt(&c.referrer),
            Cell::Str(c.email.clone()),
            Cell::Str(c.phone.clone()),
            Cell::Bool(c.opt_in),
        ])?;
        for e in &c.campaign_events {
            self.campaign_events.write(vec![
                Cell::Str(c.id.clone()),
                Cell::Str(e.campaign_id.clone()),
                Cell::Ts(e.ts),
                Cell::Str(e.event.to_string()),
            ])?;
        }
        self.truth.write(vec![
            Cell::Str(customer_id(c.index)),
            Cell::Bool(c.alive_at_end),
            c.dropout.map_or(Cell::Null, Cell::Date),
            Cell::Str(format!("{:.6}", c.purchase_rate_per_day)),
            Cell::Str(format!("{:.6}", c.dropout_rate_per_day)),
            Cell::Num(c.mean_spend),
        ])
    }

    pub fn finish(self) -> Result<(Vec<String>, Option<MessManifest>)> {
        let mut files = Vec::new();
        for t in [
            self.transactions,
            self.customers,
            self.campaign_events,
            self.truth,
        ] {
            files.push(t.finish()?.display().to_string());
        }
        if let Some((path, mut out)) = self.chinese {
            out.flush().map_err(io_error(&path))?;
            files.push(path.display().to_string());
        }
        let manifest = match self.messer {
            Some(messer) => {
                let manifest = messer.manifest();
                let path = self.out.join("mess_manifest.json");
                let text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
                std::fs::write(&path, text).map_err(io_error(&path))?;
                files.push(path.display().to_string());
                Some(manifest)
            }
            None => None,
        };
        Ok((files, manifest))
    }
}

fn gb18030(s: &str) -> Vec<u8> {
    encoding_rs::GB18030.encode(s).0.into_owned()
}

/// A transaction as a Chinese till exports it: GB18030, `YYYY/MM/DD HH:MM:SS`, 是/否.
fn chinese_line(cells: &[Cell]) -> Vec<u8> {
    let fields: Vec<Vec<u8>> = cells
        .iter()
        .map(|c| match c {
            Cell::Ts(t) => t.format("%Y/%m/%d %H:%M:%S").to_string().into_bytes(),
            Cell::Bool(b) => gb18030(if *b { "是" } else { "否" }),
            other => gb18030(&other.text()),
        })
        .collect();
    csv_line(&fields)
}
