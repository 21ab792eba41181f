//! The `[stream]` section of a pipeline file: how often the landing prefixes are polled, when
//! a landed file counts as complete, and how much one micro-batch may take. Parsed raw, then
//! checked into [`StreamOptions`] with every problem reported at once.

use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StreamError};

/// Default seconds between two polls of the landing prefixes.
pub const DEFAULT_INTERVAL_SECS: u64 = 5;
/// Default seconds after its last change from which a file counts as complete.
pub const DEFAULT_SETTLE_SECS: u64 = 2;
/// Default most files of one micro-batch.
pub const DEFAULT_MAX_BATCH_FILES: usize = 100;
/// Default most MiB of one micro-batch.
pub const DEFAULT_MAX_BATCH_MIB: u64 = 256;
/// Names of files still being copied by common tools (`hdfs dfs -put`, `rsync`, editors).
pub const DEFAULT_IGNORE: [&str; 4] = ["*.tmp", "*.part", "*._COPYING_", "*.crdownload"];

/// `[stream]` as written in the pipeline file. Every field is optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStreamSection {
    /// Seconds between polls of every source's landing prefix. Default 5.
    pub interval_secs: Option<u64>,
    /// A file is taken once its size and modification time are the same in two polls, or
    /// once it has not changed for this many seconds. Default 2.
    pub settle_secs: Option<u64>,
    /// Most files in one micro-batch; the rest wait for the next. Default 100.
    pub max_batch_files: Option<usize>,
    /// Most MiB in one micro-batch (a single larger file is a batch of its own). Default 256.
    pub max_batch_mib: Option<u64>,
    /// Glob patterns of file names never taken, for files still being written under a
    /// temporary name. Default `["*.tmp", "*.part", "*._COPYING_", "*.crdownload"]`. Names
    /// starting with `.` or `_` are never taken either.
    pub ignore: Option<Vec<String>>,
    /// Names of the `[sources.*]` the stream watches. Default: all of them.
    pub sources: Option<Vec<String>>,
    /// After each batch of transactions or campaign events, score again the customers it
    /// touched into `scores_live/` (once the lake has nightly scores). Default true.
    pub live_scores: Option<bool>,
}

/// The checked `[stream]` settings.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    pub interval: Duration,
    pub settle: Duration,
    pub max_batch_files: usize,
    pub max_batch_bytes: u64,
    /// The patterns as written, for messages and status.
    pub ignore_patterns: Vec<String>,
    pub ignore: GlobSet,
    /// `None`: every source of the pipeline file.
    pub sources: Option<Vec<String>>,
    pub live_scores: bool,
}

impl Default for StreamOptions {
    fn default() -> Self {
        RawStreamSection::default()
            .validate()
            .expect("the defaults are valid")
    }
}

impl RawStreamSection {
    /// Checks every field; all problems at once.
    pub fn validate(&self) -> Result<StreamOptions> {
        let mut problems = Vec::new();
        let interval_secs = self.interval_secs.unwrap_or(DEFAULT_INTERVAL_SECS);
        if interval_secs == 0 {
            problems.push("interval_secs: must be at least 1".to_string());
        }
        let max_batch_files = self.max_batch_files.unwrap_or(DEFAULT_MAX_BATCH_FILES);
        if max_batch_files == 0 {
            problems.push("max_batch_files: must be at least 1".to_string());
        }
        let max_batch_mib = self.max_batch_mib.unwrap_or(DEFAULT_MAX_BATCH_MIB);
        if max_batch_mib == 0 {
            problems.push("max_batch_mib: must be at least 1".to_string());
        }
        let ignore_patterns: Vec<String> = match &self.ignore {
            Some(p) => p.clone(),
            None => DEFAULT_IGNORE.iter().map(|s| s.to_string()).collect(),
        };
        let mut set = GlobSetBuilder::new();
        for pattern in &ignore_patterns {
            match Glob::new(pattern) {
                Ok(glob) => {
                    set.add(glob);
                }
                Err(e) => problems.push(format!("ignore: invalid pattern {pattern:?}: {e}")),
            }
        }
        let ignore = set.build();
        if let Err(e) = &ignore {
            problems.push(format!("ignore: {e}"));
        }
        if let Some(sources) = &self.sources
            && sources.is_empty()
        {
            problems.push("sources: name at least one source, or leave it out for all".into());
        }
        if !problems.is_empty() {
            return Err(StreamError::InvalidConfig { problems });
        }
        Ok(StreamOptions {
            interval: Duration::from_secs(interval_secs),
            settle: Duration::from_secs(self.settle_secs.unwrap_or(DEFAULT_SETTLE_SECS)),
            max_batch_files,
            max_batch_bytes: max_batch_mib << 20,
            ignore_patterns,
            ignore: ignore.expect("checked above"),
            sources: self.sources.clone(),
            live_scores: self.live_scores.unwrap_or(true),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_section_takes_every_default() {
        let options = RawStreamSection::default().validate().unwrap();
        assert_eq!(options.interval, Duration::from_secs(5));
        assert_eq!(options.settle, Duration::from_secs(2));
        assert_eq!(options.max_batch_files, 100);
        assert_eq!(options.max_batch_bytes, 256 << 20);
        assert!(options.ignore.is_match("sales.csv.tmp"));
        assert!(options.ignore.is_match("sales.csv._COPYING_"));
        assert!(!options.ignore.is_match("sales.csv"));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let raw: RawStreamSection = toml_like(
            r#"{"interval_secs": 0, "max_batch_files": 0, "max_batch_mib": 0, "ignore": ["[a"], "sources": []}"#,
        );
        let err = raw.validate().unwrap_err().to_string();
        for field in [
            "interval_secs",
            "max_batch_files",
            "max_batch_mib",
            "ignore",
            "sources",
        ] {
            assert!(err.contains(field), "{field} missing from {err}");
        }
    }

    #[test]
    fn an_unknown_key_is_refused() {
        let parsed: std::result::Result<RawStreamSection, _> =
            serde_json::from_str(r#"{"interval": 5}"#);
        assert!(parsed.unwrap_err().to_string().contains("unknown field"));
    }

    fn toml_like(json: &str) -> RawStreamSection {
        serde_json::from_str(json).unwrap()
    }
}
