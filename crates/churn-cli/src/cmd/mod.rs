//! One module per subcommand.

pub mod bench;
pub mod btyd;
pub mod demo;
pub mod features;
pub mod generate;
pub mod ingest;
pub mod labels;
pub mod models;
pub mod run;
pub mod score;
pub mod sql;
pub mod train;

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
