//! One module per subcommand.

pub mod bench;
pub mod demo;
pub mod generate;
pub mod ingest;
pub mod run;
pub mod sql;

/// Parses `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Result<chrono::NaiveDate, String> {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|e| format!("expected a date YYYY-MM-DD, got {s:?}: {e}"))
}
