//! Reading sources: finding the input files of a location (file, folder, glob, URL) and
//! splitting their bytes into records while keeping each record's raw bytes and line number,
//! so that a rejected row can be quarantined exactly as it was read.

use std::sync::Arc;

use churn_core::lake::open_location;
use futures::TryStreamExt;
use globset::Glob;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::config::{Encoding, Format, SourceConfig};
use crate::error::{IngestError, Result};

/// One input file of a source.
#[derive(Clone)]
pub struct InputFile {
    pub store: Arc<dyn ObjectStore>,
    pub path: Path,
    /// Name shown in messages and stored in quarantine rows.
    pub display: String,
    pub format: Format,
    pub size: u64,
    /// When the store last changed the file, and its entity tag where the store has one:
    /// with the size, what tells a new version of a file from one already taken.
    pub last_modified: chrono::DateTime<chrono::Utc>,
    pub e_tag: Option<String>,
    /// The file's path on this machine when the store is the local file system: read with
    /// reused buffers rather than through the store (see [`FileChunks`]).
    pub local_path: Option<std::path::PathBuf>,
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Every input file of a source, sorted by name. A folder contributes every file below it
/// whose format is known (hidden files and names starting with `_` are skipped).
pub async fn resolve_inputs(cfg: &SourceConfig) -> Result<Vec<InputFile>> {
    let location = cfg.location.as_str();
    let (base, pattern) = match location.find(['*', '?', '[']) {
        Some(pos) if has_glob(location) => {
            let cut = location[..pos].rfind('/').map(|i| i + 1).unwrap_or(0);
            (&location[..cut], Some(&location[cut..]))
        }
        _ => (location, None),
    };
    let base = if base.is_empty() { "." } else { base };
    let (store, root_url, prefix) = open_location(base)?;
    let display_of = |p: &Path| -> String {
        let rel = p
            .as_ref()
            .strip_prefix(prefix.as_ref())
            .unwrap_or(p.as_ref())
            .trim_start_matches('/');
        match root_url.to_file_path() {
            Ok(dir) if root_url.scheme() == "file" => {
                let shown = if rel.is_empty() {
                    dir.display().to_string()
                } else {
                    dir.join(rel).display().to_string()
                };
                shown.trim_end_matches('/').to_string()
            }
            _ => format!("{root_url}{rel}"),
        }
    };
    let format_of = |name: &str| cfg.format.or_else(|| Format::from_file_name(name));
    let local_files = (root_url.scheme() == "file").then(object_store::local::LocalFileSystem::new);
    let local_path_of = |p: &Path| {
        local_files
            .as_ref()
            .and_then(|fs| fs.path_to_filesystem(p).ok())
    };

    let mut files = Vec::new();
    if pattern.is_none()
        && let Ok(meta) = store.head(&prefix).await
    {
        let name = prefix.filename().unwrap_or("");
        let format = format_of(name).ok_or_else(|| IngestError::InvalidConfig {
            problems: vec![format!(
                "format: cannot tell the format of {location:?} from its name; set --format"
            )],
        })?;
        files.push(InputFile {
            store: store.clone(),
            path: prefix.clone(),
            display: display_of(&prefix),
            format,
            size: meta.size,
            last_modified: meta.last_modified,
            e_tag: meta.e_tag,
            local_path: local_path_of(&prefix),
        });
        return Ok(files);
    }
    let matcher = match pattern {
        Some(p) => Some(
            Glob::new(p.trim_end_matches('/'))
                .map_err(|e| IngestError::InvalidConfig {
                    problems: vec![format!("path: invalid glob {p:?}: {e}")],
                })?
                .compile_matcher(),
        ),
        None => None,
    };
    let listed: Vec<_> = match store.list(Some(&prefix)).try_collect().await {
        Ok(v) => v,
        Err(object_store::Error::NotFound { .. }) => Vec::new(),
        Err(e) => {
            return Err(IngestError::Unreadable {
                file: location.to_string(),
                reason: e.to_string(),
            });
        }
    };
    for meta in listed {
        let rel = meta
            .location
            .as_ref()
            .strip_prefix(prefix.as_ref())
            .unwrap_or(meta.location.as_ref())
            .trim_start_matches('/');
        if rel
            .split('/')
            .any(|part| part.starts_with('.') || part.starts_with('_'))
        {
            continue;
        }
        if let Some(m) = &matcher
            && !m.is_match(rel)
        {
            continue;
        }
        let Some(format) = format_of(rel) else {
            continue;
        };
        files.push(InputFile {
            store: store.clone(),
            display: display_of(&meta.location),
            local_path: local_path_of(&meta.location),
            path: meta.location,
            format,
            size: meta.size,
            last_modified: meta.last_modified,
            e_tag: meta.e_tag,
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    if files.is_empty() {
        return Err(IngestError::NoInputFiles {
            location: location.to_string(),
        });
    }
    Ok(files)
}

/// Bytes read per request: large enough that reading costs little next to parsing.
const READ_CHUNK_BYTES: u64 = 8 << 20;

/// A file's bytes, a chunk of [`READ_CHUNK_BYTES`] at a time, the next chunk read while the
/// current one is parsed.
///
/// A local file is read on a blocking thread into a few buffers that the parser hands back
/// ([`FileChunks::give_back`]): the object store's local reads put each chunk in fresh
/// zero-filled memory, and the system's first touch of those pages was an eighth of a large
/// ingest's page faults (16.5M transactions: 1.27 GB of them), each fault costing the kernel
/// a page's zeroing. Other stores are read by ranges through the store.
pub struct FileChunks {
    source: ChunkSource,
}

enum ChunkSource {
    Store(futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>),
    Local {
        filled: tokio::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
        free: std::sync::mpsc::Sender<Vec<u8>>,
    },
}

/// One chunk of a file's bytes.
pub enum Chunk {
    Shared(bytes::Bytes),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Chunk {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Chunk::Shared(bytes) => bytes,
            Chunk::Owned(bytes) => bytes,
        }
    }
}

impl FileChunks {
    /// Starts reading `input`.
    pub fn open(input: &InputFile) -> Self {
        let Some(local) = input.local_path.clone() else {
            return Self {
                source: ChunkSource::Store(store_chunks(input)),
            };
        };
        let (filled_tx, filled) = tokio::sync::mpsc::channel(1);
        let (free, free_rx) = std::sync::mpsc::channel();
        let size = input.size;
        tokio::task::spawn_blocking(move || read_local_file(&local, size, &filled_tx, &free_rx));
        Self {
            source: ChunkSource::Local { filled, free },
        }
    }

    /// The next chunk; `None` at the end of the file.
    pub async fn next(&mut self) -> Option<std::io::Result<Chunk>> {
        use futures::StreamExt;
        match &mut self.source {
            ChunkSource::Store(stream) => Some(stream.next().await?.map(Chunk::Shared)),
            ChunkSource::Local { filled, .. } => Some(filled.recv().await?.map(Chunk::Owned)),
        }
    }

    /// Hands a chunk's buffer back to be filled again (a chunk not handed back is only not
    /// reused: the reader then reads into a new buffer).
    pub fn give_back(&mut self, chunk: Chunk) {
        if let (ChunkSource::Local { free, .. }, Chunk::Owned(buffer)) = (&self.source, chunk) {
            // The reading thread is gone once the file is read: the buffer is then freed.
            let _ = free.send(buffer);
        }
    }
}

/// Reads the first `size` bytes of the local file at `path` into the buffers `free` hands
/// back (a new one when none is back), and sends each filled one to `filled`; stops at the end
/// of those bytes, at the first error (which it sends), or when the reader is gone. With one
/// chunk waiting in `filled`, a reader that hands each chunk back before it takes the next
/// keeps three buffers going: the one it parses, the one waiting and the one being filled.
fn read_local_file(
    path: &std::path::Path,
    size: u64,
    filled: &tokio::sync::mpsc::Sender<std::io::Result<Vec<u8>>>,
    free: &std::sync::mpsc::Receiver<Vec<u8>>,
) {
    use std::io::Read;
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file.take(size),
        Err(e) => {
            let _ = filled.blocking_send(Err(e));
            return;
        }
    };
    loop {
        let mut buffer = match free.try_recv() {
            Ok(buffer) => buffer,
            Err(std::sync::mpsc::TryRecvError::Empty) => Vec::new(),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
        };
        buffer.clear();
        buffer.reserve_exact(READ_CHUNK_BYTES as usize);
        // Read into the buffer's room as it is: a `File` is not handed memory to zero first.
        let read = (&mut file).take(READ_CHUNK_BYTES).read_to_end(&mut buffer);
        match read {
            Ok(0) if file.limit() > 0 => {
                let _ = filled.blocking_send(Err(shorter_than_listed(size - file.limit(), size)));
                return;
            }
            Ok(0) => return,
            Ok(_) => {
                if filled.blocking_send(Ok(buffer)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = filled.blocking_send(Err(e));
                return;
            }
        }
    }
}

/// The file's bytes through its store as a stream of large ranges, the next one fetched while
/// the current one is parsed.
fn store_chunks(
    input: &InputFile,
) -> futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>> {
    use futures::StreamExt;
    let (store, path, size) = (input.store.clone(), input.path.clone(), input.size);
    let ranges: Vec<std::ops::Range<u64>> = (0..size.div_ceil(READ_CHUNK_BYTES))
        .map(|i| i * READ_CHUNK_BYTES..((i + 1) * READ_CHUNK_BYTES).min(size))
        .collect();
    futures::stream::iter(ranges)
        .map(move |range| {
            let (store, path) = (store.clone(), path.clone());
            async move {
                let bytes = store
                    .get_range(&path, range.clone())
                    .await
                    .map_err(std::io::Error::other)?;
                // A local store hands back what the file still has of a range.
                if (bytes.len() as u64) < range.end - range.start {
                    return Err(shorter_than_listed(range.start + bytes.len() as u64, size));
                }
                Ok(bytes)
            }
        })
        .buffered(2)
        .boxed()
}

/// The error of a file that ended after `read` of the `size` bytes it was listed with: an
/// error rather than an early end, which would take its rows as all there were.
fn shorter_than_listed(read: u64, size: u64) -> std::io::Error {
    let message = format!("the file ended after {read} of the {size} bytes it was listed with");
    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, message)
}

/// One CSV record: its first line number (1-based), its raw bytes without the line
/// terminator, and its fields.
pub struct CsvRecord<'a> {
    pub line: u64,
    pub raw: &'a [u8],
    fields: RecordFields<'a>,
}

/// Where a record's fields are.
#[derive(Clone, Copy)]
pub enum RecordFields<'a> {
    /// In the raw bytes themselves (a record without quotes), one delimiter between each
    /// field and the next; `ends[i]` is where field `i` ends in the raw bytes.
    InRaw { ends: &'a [usize] },
    /// Decoded (quotes removed, doubled quotes undoubled) back to back in `bytes`; `ends[i]`
    /// is where field `i` ends in them.
    Decoded { bytes: &'a [u8], ends: &'a [usize] },
}

impl<'a> CsvRecord<'a> {
    /// Number of fields.
    pub fn len(&self) -> usize {
        self.ends().len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends().is_empty()
    }

    fn ends(&self) -> &'a [usize] {
        match self.fields {
            RecordFields::InRaw { ends } | RecordFields::Decoded { ends, .. } => ends,
        }
    }

    /// The decoded bytes of field `i` (quotes removed, doubled quotes undoubled).
    pub fn field(&self, i: usize) -> &'a [u8] {
        match self.fields {
            RecordFields::InRaw { ends } => {
                let start = if i == 0 { 0 } else { ends[i - 1] + 1 };
                &self.raw[start..ends[i]]
            }
            RecordFields::Decoded { bytes, ends } => {
                let start = if i == 0 { 0 } else { ends[i - 1] };
                &bytes[start..ends[i]]
            }
        }
    }

    /// Where the fields are: in the raw bytes or decoded apart from them.
    pub fn fields_layout(&self) -> RecordFields<'a> {
        self.fields
    }

    pub fn fields(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        (0..self.len()).map(|i| self.field(i))
    }
}

/// Incremental CSV splitter over byte chunks (quotes, embedded delimiters and newlines,
/// CRLF), remembering each record's raw bytes. A UTF-8 or GB18030 byte-order mark at the
/// start of the file is dropped.
///
/// Runs of whole lines without a quote character, most of a typical file, are split by
/// searching for delimiters and line ends ([`split_plain_lines`]) rather than by csv_core's
/// byte-at-a-time state machine, which takes the rest with the same results; their fields
/// are handed on as places in the raw bytes, not copied.
pub struct CsvSplitter {
    reader: csv_core::Reader,
    delimiter: u8,
    out: Vec<u8>,
    out_len: usize,
    ends: Vec<usize>,
    ends_len: usize,
    /// Field ends in a record's raw bytes, for records handed on without decoding.
    raw_ends: Vec<usize>,
    /// The raw bytes of a record that began in an earlier chunk. A record inside one chunk
    /// is handed on as a slice of the chunk, without copying.
    carried: Vec<u8>,
    lines_before: u64,
    at_file_start: bool,
    pending_start: Vec<u8>,
    pub had_bom: bool,
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
const GB18030_BOM: &[u8] = b"\x84\x31\x95\x33";

impl CsvSplitter {
    pub fn new(delimiter: u8) -> Self {
        let reader = csv_core::ReaderBuilder::new().delimiter(delimiter).build();
        Self {
            reader,
            delimiter,
            out: vec![0; 4096],
            out_len: 0,
            ends: vec![0; 64],
            ends_len: 0,
            raw_ends: Vec::with_capacity(64),
            carried: Vec::with_capacity(1024),
            lines_before: 0,
            at_file_start: true,
            pending_start: Vec::new(),
            had_bom: false,
        }
    }

    /// Feeds a chunk (an empty chunk marks the end of the file) and calls `on_record` for
    /// every complete record.
    pub fn feed<E>(
        &mut self,
        chunk: &[u8],
        mut on_record: impl FnMut(CsvRecord<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let owned;
        let mut input = chunk;
        if self.at_file_start {
            // A BOM may straddle the first chunks; wait for four bytes or the end.
            self.pending_start.extend_from_slice(chunk);
            if self.pending_start.len() < 4 && !chunk.is_empty() {
                return Ok(());
            }
            self.at_file_start = false;
            let mut start = std::mem::take(&mut self.pending_start);
            for bom in [UTF8_BOM, GB18030_BOM] {
                if start.starts_with(bom) {
                    start.drain(..bom.len());
                    self.had_bom = true;
                }
            }
            owned = start;
            input = &owned;
        }
        let at_end = chunk.is_empty();
        // Where the current record's bytes start in `input` (earlier ones are in `carried`).
        let mut record_start = 0;
        let mut pos = 0;
        loop {
            if self.carried.is_empty() && self.out_len == 0 && self.ends_len == 0 {
                // Between records, csv_core's state needs nothing of the bytes before (it
                // skips line ends there), so whole lines before the next quote can be split
                // here instead.
                let plain = plain_lines(&input[pos..]);
                if !plain.is_empty() {
                    split_plain_lines(
                        plain,
                        self.delimiter,
                        &mut self.lines_before,
                        &mut self.raw_ends,
                        &mut on_record,
                    )?;
                    pos += plain.len();
                    record_start = pos;
                }
            }
            let (result, nin, nout, nend) = self.reader.read_record(
                &input[pos..],
                &mut self.out[self.out_len..],
                &mut self.ends[self.ends_len..],
            );
            pos += nin;
            self.out_len += nout;
            self.ends_len += nend;
            match result {
                csv_core::ReadRecordResult::InputEmpty => {
                    self.carried.extend_from_slice(&input[record_start..pos]);
                    record_start = pos;
                    if !at_end {
                        return Ok(());
                    }
                }
                csv_core::ReadRecordResult::OutputFull => {
                    let n = self.out.len() * 2;
                    self.out.resize(n, 0);
                }
                csv_core::ReadRecordResult::OutputEndsFull => {
                    let n = self.ends.len() * 2;
                    self.ends.resize(n, 0);
                }
                csv_core::ReadRecordResult::Record => {
                    let raw = if self.carried.is_empty() {
                        &input[record_start..pos]
                    } else {
                        self.carried.extend_from_slice(&input[record_start..pos]);
                        &self.carried[..]
                    };
                    let result = emit(
                        &mut self.lines_before,
                        raw,
                        &self.out[..self.out_len],
                        &self.ends[..self.ends_len],
                        &mut self.raw_ends,
                        &mut on_record,
                    );
                    record_start = pos;
                    self.carried.clear();
                    self.out_len = 0;
                    self.ends_len = 0;
                    result?;
                }
                csv_core::ReadRecordResult::End => return Ok(()),
            }
        }
    }
}

/// The whole lines at the start of `bytes` that come before its first quote character (up
/// to and with the last line feed among them).
fn plain_lines(bytes: &[u8]) -> &[u8] {
    let before_quote = match memchr::memchr(b'"', bytes) {
        Some(quote) => &bytes[..quote],
        None => bytes,
    };
    match memchr::memrchr(b'\n', before_quote) {
        Some(last) => &before_quote[..=last],
        None => &[],
    }
}

/// Hands on the records of `lines` (whole lines without a quote character) as csv_core would
/// split them: a CR, an LF or a CRLF ends a record, an empty line is none, and each
/// delimiter ends a field. Line numbers count line feeds, as [`emit`] does.
fn split_plain_lines<E>(
    lines: &[u8],
    delimiter: u8,
    lines_before: &mut u64,
    ends: &mut Vec<usize>,
    on_record: &mut impl FnMut(CsvRecord<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let mut start = 0;
    ends.clear();
    for at in memchr::memchr3_iter(delimiter, b'\n', b'\r', lines) {
        if lines[at] == delimiter {
            ends.push(at - start);
            continue;
        }
        if at > start {
            ends.push(at - start);
            on_record(CsvRecord {
                line: *lines_before + 1,
                raw: &lines[start..at],
                fields: RecordFields::InRaw { ends },
            })?;
            ends.clear();
        }
        if lines[at] == b'\n' {
            *lines_before += 1;
        }
        start = at + 1;
    }
    Ok(())
}

/// Hands on one record: `raw` is every byte the parser consumed for it, including blank lines
/// before it and its line terminator.
fn emit<E>(
    lines_before: &mut u64,
    raw: &[u8],
    decoded: &[u8],
    ends: &[usize],
    raw_ends: &mut Vec<usize>,
    on_record: &mut impl FnMut(CsvRecord<'_>) -> Result<(), E>,
) -> Result<(), E> {
    // Blank lines before a record are skipped by the parser but still count as lines.
    let leading = raw
        .iter()
        .position(|b| *b != b'\n' && *b != b'\r')
        .unwrap_or(raw.len());
    let leading_newlines = memchr::memchr_iter(b'\n', &raw[..leading]).count() as u64;
    let body = &raw[leading..];
    let line = *lines_before + leading_newlines + 1;
    *lines_before += leading_newlines + memchr::memchr_iter(b'\n', body).count() as u64;
    let mut end = body.len();
    while end > 0 && (body[end - 1] == b'\n' || body[end - 1] == b'\r') {
        end -= 1;
    }
    let raw = &body[..end];
    // Without quotes, the fields are the raw bytes between delimiters: hand on their places
    // there rather than a decoded copy.
    let fields = if memchr::memchr(b'"', raw).is_none() {
        raw_ends.clear();
        raw_ends.extend(ends.iter().enumerate().map(|(i, end)| end + i));
        RecordFields::InRaw { ends: raw_ends }
    } else {
        RecordFields::Decoded {
            bytes: decoded,
            ends,
        }
    };
    on_record(CsvRecord { line, raw, fields })
}

/// Decodes text in the source's encoding; `None` when the bytes are not valid in it.
pub fn decode(bytes: &[u8], encoding: Encoding) -> Option<std::borrow::Cow<'_, str>> {
    if bytes.is_ascii() {
        // ASCII is the same in both encodings.
        return Some(std::borrow::Cow::Borrowed(ascii_as_str(bytes)));
    }
    match encoding {
        Encoding::Utf8 => std::str::from_utf8(bytes)
            .ok()
            .map(std::borrow::Cow::Borrowed),
        Encoding::Gb18030 => {
            encoding_rs::GB18030.decode_without_bom_handling_and_without_replacement(bytes)
        }
    }
}

fn ascii_as_str(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// Decodes text, replacing invalid bytes with U+FFFD.
pub fn decode_lossy(bytes: &[u8], encoding: Encoding) -> String {
    match encoding {
        Encoding::Utf8 => String::from_utf8_lossy(bytes).into_owned(),
        Encoding::Gb18030 => encoding_rs::GB18030
            .decode_without_bom_handling(bytes)
            .0
            .into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every chunk of `input` as `FileChunks` hands them on, each buffer given back, with the
    /// addresses of the chunks' bytes; the first error instead.
    async fn read_all(input: &InputFile) -> std::io::Result<(Vec<Vec<u8>>, Vec<usize>)> {
        let mut chunks = FileChunks::open(input);
        let (mut read, mut addresses) = (Vec::new(), Vec::new());
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            read.push(chunk.to_vec());
            addresses.push(chunk.as_ptr() as usize);
            chunks.give_back(chunk);
        }
        Ok((read, addresses))
    }

    #[tokio::test]
    async fn a_local_file_is_read_in_chunks_up_to_its_listed_size_through_reused_buffers() {
        let dir = tempfile::tempdir().unwrap();
        let chunk = READ_CHUNK_BYTES as usize;
        // Four whole chunks and a part of a fifth, bytes that differ from place to place.
        let bytes: Vec<u8> = (0..4 * chunk + 1_000).map(|i| (i % 251) as u8).collect();
        let path = dir.path().join("tx.csv");
        std::fs::write(&path, &bytes).unwrap();
        let cfg = crate::SourceSpec {
            table: "transactions".into(),
            path: path.to_str().unwrap().into(),
            ..Default::default()
        }
        .validate()
        .unwrap();
        let mut inputs = resolve_inputs(&cfg).await.unwrap();
        assert_eq!(inputs.len(), 1);
        let input = inputs.pop().unwrap();
        assert_eq!(input.local_path.as_deref(), Some(path.as_path()));

        let (read, addresses) = read_all(&input).await.unwrap();
        let sizes: Vec<usize> = read.iter().map(Vec::len).collect();
        assert_eq!(sizes, [chunk, chunk, chunk, chunk, 1_000]);
        assert_eq!(read.concat(), bytes);
        // Five chunks in the three buffers handed back and filled again.
        let buffers: std::collections::BTreeSet<usize> = addresses.into_iter().collect();
        assert!(buffers.len() <= 3, "{buffers:?}");

        // A file that grew after it was listed is read as listed (a landing file being
        // appended to is taken as it was seen).
        let listed = InputFile {
            size: chunk as u64 + 10,
            ..input.clone()
        };
        assert_eq!(
            read_all(&listed).await.unwrap().0.concat(),
            bytes[..chunk + 10]
        );

        // A file shorter than it was listed is an error, through the store too.
        let shrunk = InputFile {
            size: bytes.len() as u64 + 5,
            ..input.clone()
        };
        let error = read_all(&shrunk).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(
            error.to_string().contains(&format!(
                "after {} of the {} bytes",
                bytes.len(),
                bytes.len() + 5
            )),
            "{error}"
        );
        let through_store = InputFile {
            local_path: None,
            ..shrunk
        };
        let error = read_all(&through_store).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof);

        // Through the store, the same bytes.
        let through_store = InputFile {
            local_path: None,
            ..input
        };
        assert_eq!(read_all(&through_store).await.unwrap().0.concat(), bytes);
    }

    fn split(chunks: &[&[u8]]) -> Vec<(u64, String, Vec<String>)> {
        let mut s = CsvSplitter::new(b',');
        let mut out = Vec::new();
        for c in chunks.iter().copied().chain([&b""[..]]) {
            s.feed::<()>(c, |r| {
                out.push((
                    r.line,
                    String::from_utf8_lossy(r.raw).into_owned(),
                    r.fields()
                        .map(|f| String::from_utf8_lossy(f).into_owned())
                        .collect(),
                ));
                Ok(())
            })
            .unwrap();
        }
        out
    }

    #[test]
    fn records_keep_raw_text_and_line_numbers_across_chunks() {
        let rows = split(&[
            b"\xEF\xBB",
            b"\xBFa,b\r\n1,\"x, \"\"y\"\"\"\n\n2,\"multi\nline\"\n3,12\" pizza",
            b"\n4,last",
        ]);
        assert_eq!(rows[0], (1, "a,b".into(), vec!["a".into(), "b".into()]));
        assert_eq!(
            rows[1],
            (
                2,
                "1,\"x, \"\"y\"\"\"".into(),
                vec!["1".into(), "x, \"y\"".into()]
            )
        );
        assert_eq!(
            rows[2],
            (
                4,
                "2,\"multi\nline\"".into(),
                vec!["2".into(), "multi\nline".into()]
            )
        );
        assert_eq!(
            rows[3],
            (
                6,
                "3,12\" pizza".into(),
                vec!["3".into(), "12\" pizza".into()]
            )
        );
        assert_eq!(
            rows[4],
            (7, "4,last".into(), vec!["4".into(), "last".into()])
        );
        assert_eq!(rows.len(), 5);
    }

    #[test]
    fn a_record_over_several_chunks_keeps_its_raw_bytes_and_first_line() {
        let rows = split(&[b"id,note\n1,\"a", b"b\nc", b"d\"\r", b"\n\n2,e\n"]);
        assert_eq!(
            rows[1],
            (2, "1,\"ab\ncd\"".into(), vec!["1".into(), "ab\ncd".into()])
        );
        assert_eq!(rows[2], (5, "2,e".into(), vec!["2".into(), "e".into()]));
        assert_eq!(rows.len(), 3);
    }

    /// A file with CRLF and LF line ends, a lone CR (which ends a record, not a line), blank
    /// lines, empty fields, a quoted record between plain ones and no line end at the end,
    /// and its records worked out by hand: (line, raw, fields).
    const MIXED: &[u8] = b"id,note,n\r\n1,a,2\r\n\r\n2,,\n3,\"q,\"\"x\"\"\",4\n4,b\rc,5\n\n5,lone cr\r6,7,8\n7,  spaced  ,9";

    fn mixed_records() -> Vec<(u64, String, Vec<String>)> {
        let record = |line: u64, raw: &str, fields: &[&str]| {
            let fields = fields.iter().map(|f| f.to_string()).collect();
            (line, raw.to_string(), fields)
        };
        vec![
            record(1, "id,note,n", &["id", "note", "n"]),
            record(2, "1,a,2", &["1", "a", "2"]),
            record(4, "2,,", &["2", "", ""]),
            record(5, "3,\"q,\"\"x\"\"\",4", &["3", "q,\"x\"", "4"]),
            record(6, "4,b", &["4", "b"]),
            record(6, "c,5", &["c", "5"]),
            record(8, "5,lone cr", &["5", "lone cr"]),
            record(8, "6,7,8", &["6", "7", "8"]),
            record(9, "7,  spaced  ,9", &["7", "  spaced  ", "9"]),
        ]
    }

    #[test]
    fn records_are_the_same_wherever_the_chunks_end() {
        let expected = mixed_records();
        assert_eq!(split(&[MIXED]), expected);
        for cut in 0..=MIXED.len() {
            assert_eq!(
                split(&[&MIXED[..cut], &MIXED[cut..]]),
                expected,
                "cut at {cut}"
            );
        }
        let bytes: Vec<&[u8]> = MIXED.chunks(1).collect();
        assert_eq!(split(&bytes), expected, "a byte at a time");
    }

    #[test]
    fn lines_before_a_quote_are_split_without_the_state_machine_and_keep_fields_in_place() {
        let lines = plain_lines(MIXED);
        assert_eq!(
            lines,
            &MIXED[..MIXED.iter().position(|b| *b == b'"').unwrap() - 2]
        );
        let mut records = Vec::new();
        let (mut lines_before, mut ends) = (0, Vec::new());
        split_plain_lines::<()>(lines, b',', &mut lines_before, &mut ends, &mut |r| {
            assert!(matches!(r.fields_layout(), RecordFields::InRaw { .. }));
            let fields = r.fields().map(|f| String::from_utf8_lossy(f).into_owned());
            records.push((
                r.line,
                String::from_utf8_lossy(r.raw).into_owned(),
                fields.collect(),
            ));
            Ok(())
        })
        .unwrap();
        assert_eq!(records, mixed_records()[..3]);
        assert_eq!(lines_before, 4);
        // A chunk that ends inside its first line has no whole line to split.
        assert!(plain_lines(b"1,a").is_empty());
    }

    #[test]
    fn quoted_records_hand_on_decoded_fields_and_plain_ones_their_raw_places() {
        let mut s = CsvSplitter::new(b',');
        let mut layouts = Vec::new();
        for chunk in [&b"a,\"b\"\"c\"\n1,2\n"[..], b""] {
            s.feed::<()>(chunk, |r| {
                layouts.push(matches!(r.fields_layout(), RecordFields::InRaw { .. }));
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(layouts, [false, true]);
    }

    #[test]
    fn gb18030_text_decodes_and_bad_bytes_are_detected() {
        let (bytes, _, _) = encoding_rs::GB18030.encode("会员编号");
        assert_eq!(decode(&bytes, Encoding::Gb18030).unwrap(), "会员编号");
        assert!(decode(b"ab\xFF", Encoding::Utf8).is_none());
        assert_eq!(decode_lossy(b"ab\xFF", Encoding::Utf8), "ab\u{FFFD}");
    }
}
