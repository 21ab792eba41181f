//! The ingest run: from a validated source to a committed batch and its summary.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use chrono_tz::Tz;
use churn_core::parquet_io::{ObjectStoreReader, object_writer};
use churn_core::{Lake, Table};
use futures::TryStreamExt;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use serde::{Deserialize, Serialize};

use crate::block::{CsvBlock, ParsedBlock};
use crate::config::{Format, SourceConfig};
use crate::dedup::BatchKeys;
use crate::error::{IngestError, Result};
use crate::existing::file_batches;
use crate::partition::{PartitionWriter, StagedFile};
use crate::reader::{
    Chunk, CsvRecord, CsvSplitter, FileChunks, InputFile, decode_lossy, resolve_inputs,
};
use crate::rows::{QuarantineBuilder, Reject, RowParser, TableBuilder};
use crate::upsert::{LatestProfiles, not_replaced};
use crate::value::TimestampParser;
use churn_core::commit::{CommitPlan, commit, job_id, recover, staging_dir};

/// Knobs of one ingest run that are not properties of the source.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Rows held in memory before they are sorted by day into a run. Default 1,000,000.
    pub buffer_rows: usize,
    /// Bytes a batch's sorted runs may hold in memory before further runs are spilled to
    /// staging and read back at the end. Default 2 GiB ([`crate::DEFAULT_RUN_MEMORY_MIB`]).
    pub run_memory_bytes: usize,
    /// Batch id to use instead of a generated one.
    pub batch_id: Option<String>,
    /// Files committed in the same commit as the batch's rows, made from the batch's summary
    /// just before the commit. The stream's checkpoint goes here, so that a landed file is
    /// marked taken exactly when its rows land, never before or after.
    pub commit_with: Option<CommitWith>,
    /// Test hook: stop the commit after this many files were moved, as a crash would. Only
    /// with the `test-hooks` feature, so that the public API has no way to half-commit.
    #[cfg(feature = "test-hooks")]
    pub crash_after_committed_files: Option<usize>,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            buffer_rows: crate::config::DEFAULT_BUFFER_ROWS,
            run_memory_bytes: crate::config::DEFAULT_RUN_MEMORY_MIB << 20,
            batch_id: None,
            commit_with: None,
            #[cfg(feature = "test-hooks")]
            crash_after_committed_files: None,
        }
    }
}

/// Makes files to commit with a batch from its summary: (path relative to the lake root,
/// contents). Called once the summary's counts and status are final, whether the batch's rows
/// are added or only quarantined (status `rejected`).
#[derive(Clone)]
pub struct CommitWith(pub Arc<MakeFiles>);

/// (path relative to the lake root, contents) of each file to commit, from the summary.
pub type MakeFiles = dyn Fn(&IngestSummary) -> Vec<(String, bytes::Bytes)> + Send + Sync;

impl std::fmt::Debug for CommitWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommitWith(..)")
    }
}

/// Counts for one input file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FileSummary {
    pub file: String,
    pub format: Option<Format>,
    pub rows_read: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub duplicates: u64,
    /// Whether the file started with a byte-order mark (which is dropped).
    pub had_bom: bool,
    /// Source columns that are not in the contract (kept in `extra` only when asked).
    pub extra_columns: Vec<String>,
}

/// What an ingest did; printed by `churn ingest --json` and stored as the run manifest.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IngestSummary {
    pub kind: String,
    pub batch_id: String,
    /// `committed`, or `rejected` (too many rejected rows: nothing added but the quarantine).
    pub status: String,
    pub table: String,
    pub lake: String,
    pub source: String,
    pub files: Vec<FileSummary>,
    /// Data rows read (header lines and blank lines are not rows).
    pub rows_read: u64,
    /// Rows now in the lake from this batch.
    pub accepted: u64,
    /// Rows written to quarantine.
    pub rejected: u64,
    /// Rows dropped because their key was already in the lake or earlier in the batch
    /// (customers: an earlier profile of the same customer in the batch).
    pub duplicates: u64,
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Optional text values whose invalid bytes were replaced by U+FFFD (row kept).
    pub repaired_invalid_text: u64,
    /// Lake files written by this batch, relative to the lake root.
    pub data_files: Vec<String>,
    pub partitions: usize,
    /// Day-sorted runs (of `buffer_rows` rows each) spilled to staging because the runs held
    /// in memory had reached the run memory (0: the batch fitted in memory; always 0 for
    /// customers, which keep one profile per customer).
    pub spilled_runs: usize,
    pub quarantine_files: Vec<String>,
    pub manifest: String,
    /// Interrupted earlier batches whose commits this run finished first.
    pub recovered_batches: Vec<String>,
    pub started_at: String,
    /// Wall time of the batch: in its run manifest up to the commit point (the manifest is
    /// written by the commit), in what `ingest` returns and prints including the commit.
    pub duration_ms: u64,
    /// Rows read per second of `duration_ms`.
    pub rows_per_second: f64,
}

impl IngestSummary {
    /// Sets the duration and throughput to the time since `started`.
    fn time_since(&mut self, started: Instant) {
        let elapsed = started.elapsed();
        self.duration_ms = elapsed.as_millis() as u64;
        self.rows_per_second = self.rows_read as f64 / elapsed.as_secs_f64().max(1e-9);
    }
}

/// What a CSV file's header gave: canonical column -> field position, the header's names,
/// and the block of records waiting to be parsed.
type CsvHeader = (Arc<[Option<usize>]>, Vec<String>, CsvBlock);

/// Blocks of CSV records parsed at a time on other threads, besides the one taken back next.
/// With two, reading the 16.5M transactions of a 1M-customer store kept 1.5-1.7 of the two
/// cores busy; with four it took 5.6 s instead of 6.2 s (means of nine alternating runs;
/// eight no faster), for a few blocks of a few megabytes more in memory.
const BLOCKS_PARSING: usize = 4;

/// Quarantine rows per staged file.
const QUARANTINE_FILE_ROWS: usize = 200_000;

struct Run<'a> {
    lake: &'a Lake,
    cfg: &'a SourceConfig,
    options: &'a IngestOptions,
    batch_id: String,
    parser: RowParser,
    /// The dedup keys of the batch's accepted rows in arrival order (date-partitioned tables):
    /// later copies within the batch, and rows the lake's date partitions already hold, are
    /// left out when the partitions are written.
    keys: BatchKeys,
    accepted: TableBuilder,
    partitions: PartitionWriter,
    /// Customers: the latest accepted profile of each customer so far.
    customers: LatestProfiles,
    quarantine: QuarantineBuilder,
    quarantine_files: Vec<StagedFile>,
    summary: IngestSummary,
    file: FileSummary,
}

/// Ingests one source into the lake: every file its location names.
pub async fn ingest(
    lake: &Lake,
    cfg: &SourceConfig,
    options: &IngestOptions,
) -> Result<IngestSummary> {
    let inputs = resolve_inputs(cfg).await?;
    ingest_files(lake, cfg, &inputs, options).await
}

/// Ingests the given files of a source (already listed, e.g. by the stream) as one batch.
pub async fn ingest_files(
    lake: &Lake,
    cfg: &SourceConfig,
    inputs: &[InputFile],
    options: &IngestOptions,
) -> Result<IngestSummary> {
    let started = Instant::now();
    let recovered_batches = recover(lake).await?;
    let settings = match lake.settings().await? {
        Some(s) => s,
        None => lake.ensure_settings(cfg.timezone.map(|t| t.name())).await?,
    };
    let lake_tz: Tz = churn_core::lake::parse_timezone(&settings.timezone)?;
    let batch_id = options
        .batch_id
        .clone()
        .unwrap_or_else(|| job_id("ingest", &cfg.location));
    let staging = staging_dir(&batch_id);
    let keys = if cfg.table.is_date_partitioned() {
        // Growing the lists copies them; exports have 64+ bytes a row (a reservation beyond
        // the rows written costs address space only).
        BatchKeys::with_expected_rows((inputs.iter().map(|i| i.size).sum::<u64>() / 64) as usize)
    } else {
        BatchKeys::with_expected_rows(0)
    };
    tracing::info!(table = %cfg.table, files = inputs.len(), batch_id = %batch_id, "ingest started");

    let mut timestamps = TimestampParser::new(cfg.timezone.unwrap_or(lake_tz));
    timestamps.extra_formats = cfg.timestamp_formats.clone();
    timestamps.extra_date_formats = cfg.date_formats.clone();
    let mut run = Run {
        lake,
        cfg,
        options,
        parser: RowParser {
            table: cfg.table,
            encoding: cfg.encoding,
            timestamps,
            lake_tz,
            repaired_invalid_utf8: 0,
        },
        keys,
        accepted: TableBuilder::new(cfg.table),
        partitions: PartitionWriter::new(
            lake.clone(),
            cfg.table,
            &batch_id,
            &staging,
            options.run_memory_bytes,
        ),
        customers: LatestProfiles::default(),
        quarantine: QuarantineBuilder::default(),
        quarantine_files: Vec::new(),
        summary: IngestSummary {
            kind: "ingest".into(),
            batch_id: batch_id.clone(),
            table: cfg.table.name().to_string(),
            lake: lake.display(),
            source: cfg.location.clone(),
            recovered_batches,
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ..Default::default()
        },
        file: FileSummary::default(),
        batch_id,
    };
    for input in inputs {
        run.keys.start_file();
        run.file = FileSummary {
            file: input.display.clone(),
            format: Some(input.format),
            ..Default::default()
        };
        match input.format {
            Format::Csv => run.read_csv(input).await?,
            Format::Ndjson => run.read_ndjson(input).await?,
            Format::Parquet => run.read_parquet(input).await?,
        }
        let file = std::mem::take(&mut run.file);
        // Duplicates are known once the partitions are written; the summary has them.
        tracing::info!(file = %file.file, rows = file.rows_read, rejected = file.rejected, "file read");
        run.summary.files.push(file);
    }
    run.finish(started).await
}

impl Run<'_> {
    fn file_error(&self, input: &InputFile, e: impl std::fmt::Display) -> IngestError {
        IngestError::Unreadable {
            file: input.display.clone(),
            reason: e.to_string(),
        }
    }

    /// Checks one row and routes it to the lake buffer, quarantine or the duplicate count.
    fn route(&mut self, line: u64, raw: &[u8], values: &[Option<&[u8]>], extra: Option<&str>) {
        self.summary.rows_read += 1;
        self.file.rows_read += 1;
        match self.parser.parse(values) {
            Err(reject) => self.reject(line, raw, &reject),
            Ok(row) => {
                if self.cfg.table.is_date_partitioned() {
                    self.keys.push(row.key);
                }
                self.accepted.append(&row, extra);
                self.summary.accepted += 1;
                self.file.accepted += 1;
            }
        }
    }

    /// Routes a row whose values are already UTF-8 text (NDJSON after decoding the line,
    /// Parquet cells), whatever the source's encoding.
    fn route_decoded(
        &mut self,
        line: u64,
        raw: &[u8],
        values: &[Option<&[u8]>],
        extra: Option<&str>,
    ) {
        let encoding = std::mem::replace(&mut self.parser.encoding, crate::config::Encoding::Utf8);
        self.route(line, raw, values, extra);
        self.parser.encoding = encoding;
    }

    fn reject(&mut self, line: u64, raw: &[u8], reject: &Reject) {
        self.summary.rejected += 1;
        self.file.rejected += 1;
        *self
            .summary
            .rejected_by_reason
            .entry(reject.code.to_string())
            .or_default() += 1;
        let text = decode_lossy(raw, self.cfg.encoding);
        let message = format!("{} line {line}: {}", self.file.file, reject.message);
        let reject = Reject {
            message,
            ..reject.clone()
        };
        self.quarantine
            .append(&self.batch_id, &self.file.file, line, &reject, &text, raw);
    }

    /// Makes a full buffer a run (or, for customers, folds it into the latest profiles).
    async fn flush_if_full(&mut self) -> Result<()> {
        if self.accepted.len() >= self.options.buffer_rows {
            let rows = self.accepted.finish();
            if self.cfg.table.is_date_partitioned() {
                self.partitions.add_run(rows).await?;
            } else {
                for batch in rows.batches {
                    self.customers.push(batch)?;
                }
            }
        }
        if self.quarantine.len() >= QUARANTINE_FILE_ROWS {
            self.write_quarantine().await?;
        }
        Ok(())
    }

    async fn write_quarantine(&mut self) -> Result<()> {
        let batch = self.quarantine.finish();
        let file = format!(
            "quarantine/{}/batch={}/part-{:05}.parquet",
            self.cfg.table,
            self.batch_id,
            self.quarantine_files.len()
        );
        let staged = format!("{}/{file}", staging_dir(&self.batch_id));
        self.lake
            .write_parquet(&self.lake.path(&staged), std::slice::from_ref(&batch))
            .await?;
        self.quarantine_files.push(StagedFile {
            staged,
            target: file,
            rows: batch.num_rows() as u64,
        });
        Ok(())
    }

    /// Maps canonical columns to header positions; errors name the file and the header.
    fn map_header(&mut self, file: &str, header: &[String]) -> Result<Vec<Option<usize>>> {
        let find = |name: &str| {
            header
                .iter()
                .position(|h| h.trim().eq_ignore_ascii_case(name.trim()))
        };
        let mut mapping = Vec::new();
        let mut missing = Vec::new();
        for spec in self.cfg.table.columns() {
            let index = match self.cfg.columns.get(spec.name) {
                Some(source) => match find(source) {
                    Some(i) => Some(i),
                    None => {
                        return Err(IngestError::MappedColumnAbsent {
                            file: file.to_string(),
                            canonical: spec.name.to_string(),
                            source_column: source.clone(),
                            found: header.to_vec(),
                        });
                    }
                },
                None => find(spec.name),
            };
            if index.is_none() && spec.required {
                missing.push(spec.name.to_string());
            }
            mapping.push(index);
        }
        if !missing.is_empty() {
            return Err(IngestError::MissingColumns {
                file: file.to_string(),
                missing,
                found: header.to_vec(),
            });
        }
        self.file.extra_columns = header
            .iter()
            .enumerate()
            .filter(|(i, _)| !mapping.contains(&Some(*i)))
            .map(|(_, h)| h.trim().to_string())
            .collect();
        Ok(mapping)
    }

    async fn read_csv(&mut self, input: &InputFile) -> Result<()> {
        let mut chunks = FileChunks::open(input);
        let mut splitter = CsvSplitter::new(self.cfg.delimiter);
        let mut header: Option<CsvHeader> = None;
        let mut full_blocks: Vec<CsvBlock> = Vec::new();
        let mut parsing: VecDeque<tokio::task::JoinHandle<ParsedBlock>> = VecDeque::new();
        loop {
            let chunk = match chunks.next().await {
                Some(c) => c.map_err(|e| self.file_error(input, e))?,
                None => Chunk::Owned(Vec::new()),
            };
            let at_end = chunk.is_empty();
            splitter.feed(&chunk, |record: CsvRecord<'_>| -> Result<()> {
                match &mut header {
                    None => {
                        let names: Vec<String> = record
                            .fields()
                            .map(|f| decode_lossy(f, self.cfg.encoding))
                            .collect();
                        let mapping = self.map_header(&input.display, &names)?;
                        let block = CsvBlock::new(names.len());
                        header = Some((mapping.into(), names, block));
                    }
                    Some((mapping, names, block)) => {
                        if self.cfg.keep_extra_columns {
                            // Extra columns are gathered by the row path, record by record.
                            self.route_csv(&record, mapping, names, block.width());
                        } else {
                            block.push(&record);
                            if block.is_full() {
                                full_blocks.push(block.take());
                            }
                        }
                    }
                }
                Ok(())
            })?;
            chunks.give_back(chunk);
            if let Some((mapping, _, block)) = &mut header {
                if !block.is_empty() {
                    full_blocks.push(block.take());
                }
                // Blocks are parsed on other threads while this one splits the next chunk;
                // they are taken back in order.
                for block in full_blocks.drain(..) {
                    let (parser, mapping) = (self.parser.clone(), mapping.clone());
                    parsing.push_back(tokio::task::spawn_blocking(move || {
                        ParsedBlock::parse(parser, block, &mapping)
                    }));
                }
            }
            let keep_parsing = if at_end { 0 } else { BLOCKS_PARSING };
            while parsing.len() > keep_parsing {
                let task = parsing.pop_front().expect("more than none");
                let parsed = task.await?;
                self.take_parsed_block(parsed);
            }
            self.file.had_bom = splitter.had_bom;
            self.flush_if_full().await?;
            if at_end {
                break;
            }
        }
        if header.is_none() {
            return Err(IngestError::EmptyFile {
                file: input.display.clone(),
            });
        }
        Ok(())
    }

    /// Counts and routes the rows of a block parsed column by column (see [`crate::block`]).
    fn take_parsed_block(&mut self, parsed: ParsedBlock) {
        let rows = parsed.block.len() as u64;
        self.summary.rows_read += rows;
        self.file.rows_read += rows;
        let accepted = parsed.keys.len() as u64;
        self.summary.accepted += accepted;
        self.file.accepted += accepted;
        self.parser.repaired_invalid_utf8 += parsed.repaired_invalid_text;
        if self.cfg.table.is_date_partitioned() {
            for key in parsed.keys {
                self.keys.push(key);
            }
        }
        self.accepted.push_rows(parsed.rows);
        for (row, reject) in &parsed.rejected {
            self.reject(parsed.block.line(*row), parsed.block.raw(*row), reject);
        }
    }

    /// Routes a record by the row path (sources that keep their extra columns).
    fn route_csv(
        &mut self,
        record: &CsvRecord<'_>,
        mapping: &[Option<usize>],
        names: &[String],
        width: usize,
    ) {
        if record.len() != width {
            let reject = crate::rows::wrong_field_count(width, record.len());
            self.summary.rows_read += 1;
            self.file.rows_read += 1;
            self.reject(record.line, record.raw, &reject);
            return;
        }
        let values: Vec<Option<&[u8]>> =
            mapping.iter().map(|m| m.map(|i| record.field(i))).collect();
        let extra = self.extra_json(names, mapping, |i| {
            decode_lossy(record.field(i), self.cfg.encoding)
        });
        self.route(record.line, record.raw, &values, extra.as_deref());
    }

    /// Unmapped source columns as a JSON object, when the source keeps them.
    fn extra_json(
        &self,
        names: &[String],
        mapping: &[Option<usize>],
        value: impl Fn(usize) -> String,
    ) -> Option<String> {
        if !self.cfg.keep_extra_columns {
            return None;
        }
        let object: serde_json::Map<String, serde_json::Value> = (0..names.len())
            .filter(|i| !mapping.contains(&Some(*i)))
            .map(|i| {
                (
                    names[i].trim().to_string(),
                    serde_json::Value::String(value(i)),
                )
            })
            .collect();
        (!object.is_empty()).then(|| serde_json::Value::Object(object).to_string())
    }

    async fn read_ndjson(&mut self, input: &InputFile) -> Result<()> {
        let mut chunks = FileChunks::open(input);
        let mut buffer: Vec<u8> = Vec::new();
        let mut line_no = 0u64;
        let mut first = true;
        loop {
            let chunk = chunks
                .next()
                .await
                .transpose()
                .map_err(|e| self.file_error(input, e))?;
            let at_end = chunk.is_none();
            if let Some(chunk) = chunk {
                buffer.extend_from_slice(&chunk);
                chunks.give_back(chunk);
            }
            let mut consumed = 0;
            while let Some(pos) = buffer[consumed..]
                .iter()
                .position(|b| *b == b'\n')
                .map(|p| p + consumed)
            {
                line_no += 1;
                let mut line = &buffer[consumed..pos];
                if first {
                    line = line
                        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
                        .unwrap_or(line);
                    first = false;
                }
                let line = line.strip_suffix(b"\r").unwrap_or(line).to_vec();
                self.route_json_line(line_no, &line);
                consumed = pos + 1;
            }
            buffer.drain(..consumed);
            if at_end {
                if !buffer.is_empty() {
                    line_no += 1;
                    let line = std::mem::take(&mut buffer);
                    self.route_json_line(line_no, &line);
                }
                break;
            }
            self.flush_if_full().await?;
        }
        Ok(())
    }

    fn route_json_line(&mut self, line: u64, raw: &[u8]) {
        if raw.iter().all(|b| b.is_ascii_whitespace()) {
            return;
        }
        let text = decode_lossy(raw, self.cfg.encoding);
        let object = match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text)
        {
            Ok(o) => o,
            Err(e) => {
                self.summary.rows_read += 1;
                self.file.rows_read += 1;
                let reject = Reject {
                    code: "malformed_json",
                    column: None,
                    message: format!("not a JSON object: {e}"),
                };
                self.reject(line, raw, &reject);
                return;
            }
        };
        let names: Vec<String> = object.keys().cloned().collect();
        let texts: Vec<Option<String>> = object.values().map(json_text).collect();
        let mapping = self.map_names(&names);
        let values: Vec<Option<&[u8]>> = mapping
            .iter()
            .map(|m| m.and_then(|i| texts[i].as_deref().map(str::as_bytes)))
            .collect();
        let extra = self.extra_json(&names, &mapping, |i| texts[i].clone().unwrap_or_default());
        self.route_decoded(line, raw, &values, extra.as_deref());
    }

    /// Canonical → position among `names`, without failing on absent columns (rows without
    /// a required value are rejected one by one).
    fn map_names(&self, names: &[String]) -> Vec<Option<usize>> {
        self.cfg
            .table
            .columns()
            .iter()
            .map(|spec| {
                let wanted = self
                    .cfg
                    .columns
                    .get(spec.name)
                    .map(String::as_str)
                    .unwrap_or(spec.name);
                names
                    .iter()
                    .position(|n| n.trim().eq_ignore_ascii_case(wanted))
            })
            .collect()
    }

    async fn read_parquet(&mut self, input: &InputFile) -> Result<()> {
        let reader = ObjectStoreReader::new(input.store.clone(), input.path.clone());
        let err = |e: parquet::errors::ParquetError| IngestError::Parquet {
            path: input.display.clone(),
            source: e,
        };
        let mut stream = ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .map_err(err)?
            .build()
            .map_err(err)?;
        let mut row_no = 0u64;
        let mut mapping: Option<Vec<Option<usize>>> = None;
        while let Some(batch) = stream.try_next().await.map_err(err)? {
            let names: Vec<String> = batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            if mapping.is_none() {
                mapping = Some(self.map_header(&input.display, &names)?);
            }
            let mapping = mapping.clone().expect("set above");
            let texts: Vec<_> = batch
                .columns()
                .iter()
                .map(|c| cast(c, &DataType::Utf8))
                .collect::<std::result::Result<_, _>>()?;
            let texts: Vec<&arrow::array::StringArray> =
                texts.iter().map(|a| a.as_string::<i32>()).collect();
            for i in 0..batch.num_rows() {
                row_no += 1;
                let cell = |c: usize| (!texts[c].is_null(i)).then(|| texts[c].value(i));
                let raw: serde_json::Map<String, serde_json::Value> = names
                    .iter()
                    .enumerate()
                    .map(|(c, n)| {
                        (
                            n.clone(),
                            cell(c).map_or(serde_json::Value::Null, |v| v.into()),
                        )
                    })
                    .collect();
                let raw = serde_json::Value::Object(raw).to_string();
                let values: Vec<Option<&[u8]>> = mapping
                    .iter()
                    .map(|m| m.and_then(|c| cell(c).map(str::as_bytes)))
                    .collect();
                let extra =
                    self.extra_json(&names, &mapping, |c| cell(c).unwrap_or("").to_string());
                self.route_decoded(row_no, raw.as_bytes(), &values, extra.as_deref());
            }
            self.flush_if_full().await?;
        }
        Ok(())
    }

    /// Writes the batch's files to staging and commits them (or only the quarantine when too
    /// many rows were rejected).
    async fn finish(mut self, started: Instant) -> Result<IngestSummary> {
        self.summary.repaired_invalid_text = self.parser.repaired_invalid_utf8;
        if !self.quarantine.is_empty() {
            self.write_quarantine().await?;
        }
        let last = self.accepted.finish();
        let (data, deletes) = if self.cfg.table.is_date_partitioned() {
            self.summary.spilled_runs = self.partitions.spilled_runs().await?;
            let partitions = std::mem::replace(
                &mut self.partitions,
                PartitionWriter::new(self.lake.clone(), self.cfg.table, "", "", 0),
            );
            let keys = std::mem::replace(&mut self.keys, BatchKeys::with_expected_rows(0));
            let (data, left_out) = partitions.finish(last, keys).await?;
            for (file, n) in self.summary.files.iter_mut().zip(left_out) {
                file.accepted -= n;
                file.duplicates += n;
                self.summary.accepted -= n;
                self.summary.duplicates += n;
            }
            (data, Vec::new())
        } else {
            for batch in last.batches {
                self.customers.push(batch)?;
            }
            self.merge_customers().await?
        };
        self.summary.partitions = data.len();
        self.summary.data_files = data.iter().map(|f| f.target.clone()).collect();
        self.summary.quarantine_files = self
            .quarantine_files
            .iter()
            .map(|f| f.target.clone())
            .collect();
        self.summary.manifest = format!("_runs/{}.json", self.batch_id);
        self.summary.time_since(started);
        debug_assert_eq!(
            self.summary.rows_read,
            self.summary.accepted + self.summary.rejected + self.summary.duplicates
        );

        let ratio = if self.summary.rows_read == 0 {
            0.0
        } else {
            self.summary.rejected as f64 / self.summary.rows_read as f64
        };
        let over_limit = ratio > self.cfg.max_reject_ratio;
        let mut moves: Vec<(String, String)> = self
            .quarantine_files
            .iter()
            .map(|f| (f.staged.clone(), f.target.clone()))
            .collect();
        let deletes = if over_limit {
            self.summary.status = "rejected".into();
            self.summary.data_files.clear();
            self.summary.partitions = 0;
            Vec::new()
        } else {
            self.summary.status = "committed".into();
            moves.extend(data.iter().map(|f| (f.staged.clone(), f.target.clone())));
            deletes
        };
        if let Some(make) = &self.options.commit_with {
            for (target, contents) in (make.0)(&self.summary) {
                let staged = format!("{}/{target}", staging_dir(&self.batch_id));
                self.lake.put(&self.lake.path(&staged), contents).await?;
                moves.push((staged, target));
            }
        }
        let plan = CommitPlan {
            batch_id: self.batch_id.clone(),
            moves,
            deletes,
            manifest_path: self.summary.manifest.clone(),
            manifest: serde_json::to_value(&self.summary).expect("summary serialises"),
        };
        #[cfg(feature = "test-hooks")]
        let crash_after = self.options.crash_after_committed_files;
        #[cfg(not(feature = "test-hooks"))]
        let crash_after = None;
        commit(self.lake, &plan, crash_after).await?;
        if over_limit {
            let reasons = self
                .summary
                .rejected_by_reason
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(IngestError::RejectRatioExceeded {
                rejected: self.summary.rejected,
                rows_read: self.summary.rows_read,
                ratio: ratio * 100.0,
                limit: self.cfg.max_reject_ratio * 100.0,
                reasons,
                quarantine: self.lake.folder_url(&format!(
                    "quarantine/{}/batch={}",
                    self.cfg.table, self.batch_id
                )),
            });
        }
        tracing::info!(batch_id = %self.batch_id, accepted = self.summary.accepted, rejected = self.summary.rejected, duplicates = self.summary.duplicates, "ingest committed");
        // The manifest, written by the commit, has the time up to the commit point; the
        // caller gets the whole batch's.
        self.summary.time_since(started);
        Ok(self.summary)
    }

    /// The new customers table: the lake's profiles not in this batch plus the batch's last
    /// profile of each customer, streamed into one staged file. Returns it and the files it
    /// replaces.
    async fn merge_customers(&mut self) -> Result<(Vec<StagedFile>, Vec<String>)> {
        let latest = std::mem::take(&mut self.customers);
        let superseded = latest.superseded();
        self.summary.accepted -= superseded;
        self.summary.duplicates += superseded;
        if let Some(last) = self.summary.files.last_mut() {
            // Superseded profiles are attributed to the last file for the per-file counts.
            last.accepted -= superseded.min(last.accepted);
            last.duplicates += superseded;
        }

        let file = format!("customers/part-{}.parquet", self.batch_id);
        let staged = format!("{}/{file}", staging_dir(&self.batch_id));
        let parquet_err = |source| IngestError::Parquet {
            path: staged.clone(),
            source,
        };
        let mut writer = object_writer(
            self.lake.store().clone(),
            self.lake.path(&staged),
            Table::Customers.file_schema(),
            churn_core::lake::table_writer_properties(Table::Customers, usize::MAX),
        )
        .map_err(parquet_err)?;
        let mut rows = 0u64;
        let old_files = self.lake.list_parquet(Table::Customers.name()).await?;
        for old in &old_files {
            let mut batches = file_batches(self.lake, &old.location, None).await?;
            while let Some(batch) = batches.try_next().await? {
                let kept = not_replaced(&batch, &latest)?;
                rows += kept.num_rows() as u64;
                writer.write(&kept).await.map_err(parquet_err)?;
            }
        }
        for batch in latest.into_batches() {
            let batch = batch?;
            rows += batch.num_rows() as u64;
            writer.write(&batch).await.map_err(parquet_err)?;
        }
        writer.close().await.map_err(parquet_err)?;
        let deletes = old_files
            .iter()
            .map(|m| self.lake.relative(&m.location))
            .collect();
        Ok((
            vec![StagedFile {
                staged,
                target: file,
                rows,
            }],
            deletes,
        ))
    }
}

fn json_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}
