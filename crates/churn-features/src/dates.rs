//! As-of date lists: one date, a comma-separated list, or a range with a step
//! (`2024-01-01..2024-12-01` with `--every 30d`).

use chrono::{Duration, NaiveDate};

use crate::error::{FeatureError, Result};

fn parse_date(spec: &str, s: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|e| FeatureError::InvalidDates {
        spec: spec.to_string(),
        reason: format!("{s:?} is not a date YYYY-MM-DD ({e})"),
    })
}

/// Parses a step such as `30d`, `2w` or `7` (days).
pub fn parse_every(spec: &str) -> Result<u32> {
    let s = spec.trim();
    let (number, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "d"),
    };
    let n: u32 = number.parse().map_err(|_| FeatureError::InvalidDates {
        spec: spec.to_string(),
        reason: "expected a step like 30d or 2w".into(),
    })?;
    let days = match unit {
        "d" => n,
        "w" => n * 7,
        _ => {
            return Err(FeatureError::InvalidDates {
                spec: spec.to_string(),
                reason: format!("unknown unit {unit:?} (use d or w)"),
            });
        }
    };
    if days == 0 {
        return Err(FeatureError::InvalidDates {
            spec: spec.to_string(),
            reason: "the step must be at least one day".into(),
        });
    }
    Ok(days)
}

/// The dates of an as-of specification, ascending and without repeats.
pub fn as_of_dates(spec: &str, every: Option<&str>) -> Result<Vec<NaiveDate>> {
    let mut dates = Vec::new();
    for part in spec.split(',').filter(|p| !p.trim().is_empty()) {
        match part.split_once("..") {
            Some((from, to)) => {
                let (from, to) = (parse_date(spec, from)?, parse_date(spec, to)?);
                if to < from {
                    return Err(FeatureError::InvalidDates {
                        spec: spec.to_string(),
                        reason: "the range ends before it starts".into(),
                    });
                }
                let step = match every {
                    Some(e) => parse_every(e)?,
                    None => {
                        return Err(FeatureError::InvalidDates {
                            spec: spec.to_string(),
                            reason: "a range needs a step (--every 30d)".into(),
                        });
                    }
                };
                let mut d = from;
                while d <= to {
                    dates.push(d);
                    d += Duration::days(step as i64);
                }
            }
            None => dates.push(parse_date(spec, part)?),
        }
    }
    if dates.is_empty() {
        return Err(FeatureError::InvalidDates {
            spec: spec.to_string(),
            reason: "no dates".into(),
        });
    }
    dates.sort();
    dates.dedup();
    Ok(dates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn ranges_step_from_the_start_and_include_the_end_when_it_falls_on_a_step() {
        assert_eq!(
            as_of_dates("2024-01-01..2024-03-01", Some("30d")).unwrap(),
            [d("2024-01-01"), d("2024-01-31"), d("2024-03-01")]
        );
        assert_eq!(
            as_of_dates("2024-01-01..2024-01-20", Some("1w")).unwrap(),
            [d("2024-01-01"), d("2024-01-08"), d("2024-01-15")]
        );
    }

    #[test]
    fn lists_are_sorted_and_deduplicated() {
        assert_eq!(
            as_of_dates("2024-05-01,2024-01-01,2024-05-01", None).unwrap(),
            [d("2024-01-01"), d("2024-05-01")]
        );
    }

    #[test]
    fn bad_specifications_say_what_is_wrong() {
        assert!(
            as_of_dates("2024-01-01..2024-02-01", None)
                .unwrap_err()
                .to_string()
                .contains("--every")
        );
        assert!(as_of_dates("2024-13-01", None).is_err());
        assert!(as_of_dates("2024-02-01..2024-01-01", Some("1d")).is_err());
        assert!(parse_every("3m").is_err());
        assert!(parse_every("0d").is_err());
    }
}
