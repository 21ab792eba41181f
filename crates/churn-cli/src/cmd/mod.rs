//! One module per subcommand.

pub mod bench;
pub mod btyd;
pub mod campaigns;
pub mod demo;
pub mod engine;
pub mod export;
pub mod features;
pub mod generate;
pub mod ingest;
pub mod labels;
pub mod models;
pub mod report;
pub mod run;
pub mod runs;
pub mod score;
pub mod segment;
pub mod sql;
pub mod stream;
pub mod train;
pub mod triggers;

/// How a command that needs the feature snapshot of D builds it when the lake lacks it.
#[derive(Debug, clap::Args)]
pub struct SnapshotArgs {
    /// Folder of feature SQL files, used when the snapshot of D must be built; default
    /// pipelines/features when it exists, else the built-in files.
    #[arg(long)]
    features_dir: Option<std::path::PathBuf>,
    /// Population window of a snapshot built here (days).
    #[arg(long, default_value_t = churn_features::DEFAULT_LOOKBACK_DAYS)]
    lookback_days: u32,
    /// Memory budget of the query engine (e.g. 2GiB); beyond it, work spills to disk.
    #[arg(long, value_parser = parse_bytes)]
    memory_limit: Option<usize>,
}

impl SnapshotArgs {
    pub fn feature_options(&self) -> anyhow::Result<churn_features::FeatureOptions> {
        Ok(churn_features::FeatureOptions {
            session: churn_core::session::SessionOptions::with_memory_limit(self.memory_limit),
            files: features::feature_files(self.features_dir.as_ref())?,
            lookback_days: self.lookback_days,
        })
    }
}

/// Where a command's feature, label and scoring queries run.
#[derive(Debug, clap::Args)]
pub struct EngineArg {
    /// Query engine: local (this process), ballista://HOST:PORT (a Ballista scheduler, e.g.
    /// one `churn engine scheduler` started, whose executors read the lake at the same
    /// location) or ballista-standalone (a Ballista scheduler and executor in this process).
    /// Model fitting and the writes stay in this process.
    #[arg(long, default_value = "local", value_parser = parse_engine)]
    pub engine: churn_core::Engine,
}

/// Parses an engine: `local`, `ballista://HOST:PORT` or `ballista-standalone`.
pub fn parse_engine(s: &str) -> Result<churn_core::Engine, String> {
    s.parse().map_err(|e: churn_core::CoreError| e.to_string())
}

/// The activation file: `path`, else pipelines/rules.toml when it exists, else the built-in
/// playbook.
pub fn activation(path: Option<&std::path::PathBuf>) -> anyhow::Result<churn_activate::Activation> {
    let default = std::path::PathBuf::from("pipelines/rules.toml");
    Ok(match path {
        Some(p) => churn_activate::Activation::load(p)?,
        None if default.is_file() => churn_activate::Activation::load(&default)?,
        None => churn_activate::Activation::built_in()?,
    })
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Result<chrono::NaiveDate, String> {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|e| format!("expected a date YYYY-MM-DD, got {s:?}: {e}"))
}

/// Parses a byte size: `2GiB`, `512MiB`, `64KiB`, `1GB`, `1000000`.
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("expected a size like 2GiB, got {s:?}"))?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kib" | "k" => 1024.0,
        "mib" | "m" => 1024.0 * 1024.0,
        "gib" | "g" => 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {s:?} (use KiB, MiB, GiB)"
            ));
        }
    };
    Ok((value * factor) as usize)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_take_binary_and_decimal_units() {
        assert_eq!(super::parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(super::parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(super::parse_bytes("1GB"), Ok(1_000_000_000));
        assert_eq!(super::parse_bytes("4096"), Ok(4096));
        assert!(super::parse_bytes("2 parsecs").is_err());
    }
}
