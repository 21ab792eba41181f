//! Printing results: one JSON object with `--json`, readable lines otherwise. Only results
//! go to stdout; logs go to stderr.

use serde::Serialize;

/// Prints `summary` as JSON, or the human text.
pub fn emit<T: Serialize>(
    json: bool,
    summary: &T,
    human: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(summary)?);
    } else {
        print!("{}", human());
    }
    Ok(())
}
