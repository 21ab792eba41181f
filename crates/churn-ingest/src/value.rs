//! Parsing of single text values into the contract's types: the timestamp, date, number and
//! boolean forms that real till and web-shop exports use. Each parser returns `None` for text
//! it does not accept; the caller turns that into a quarantine reason naming the column.

use arrow::datatypes::Date32Type;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use chrono_tz::Tz;

/// How timestamps of one source are read.
#[derive(Debug, Clone)]
pub struct TimestampParser {
    /// Zone of timestamps written without an offset.
    pub source_tz: Tz,
    /// Extra chrono formats (naive local time) configured for the source.
    pub extra_formats: Vec<String>,
    /// Extra chrono date formats configured for the source.
    pub extra_date_formats: Vec<String>,
}

fn two(b: &[u8], i: usize) -> Option<u32> {
    let (a, c) = (*b.get(i)?, *b.get(i + 1)?);
    if a.is_ascii_digit() && c.is_ascii_digit() {
        Some(((a - b'0') * 10 + (c - b'0')) as u32)
    } else {
        None
    }
}

fn four(b: &[u8], i: usize) -> Option<i32> {
    Some(two(b, i)? as i32 * 100 + two(b, i + 2)? as i32)
}

/// Result of reading the text of a timestamp: a local time, or an instant when the text
/// carried an offset.
enum Parsed {
    Local(NaiveDateTime),
    Instant(DateTime<chrono::FixedOffset>),
}

/// ISO 8601 with `-` or `/` date separators, space or `T`, optional seconds, fraction and
/// `Z`/offset; or a bare date. Hand-written because it runs once per row.
fn parse_iso_like(s: &str) -> Option<Parsed> {
    let b = s.as_bytes();
    if b.len() < 10 {
        return None;
    }
    let sep = b[4];
    if !(sep == b'-' || sep == b'/') || b[7] != sep {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(four(b, 0)?, two(b, 5)?, two(b, 8)?)?;
    if b.len() == 10 {
        return Some(Parsed::Local(date.and_time(NaiveTime::MIN)));
    }
    if !(b[10] == b' ' || b[10] == b'T') || b.len() < 16 || b[13] != b':' {
        return None;
    }
    let (hour, minute) = (two(b, 11)?, two(b, 14)?);
    let mut i = 16;
    let mut second = 0;
    let mut nanos = 0u32;
    if b.get(i) == Some(&b':') {
        second = two(b, i + 1)?;
        i += 3;
        if b.get(i) == Some(&b'.') || b.get(i) == Some(&b',') {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let digits = &s[start..i];
            if digits.is_empty() || digits.len() > 9 {
                return None;
            }
            nanos = digits.parse::<u32>().ok()? * 10u32.pow(9 - digits.len() as u32);
        }
    }
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?;
    let local = date.and_time(time);
    let rest = s[i..].trim_start();
    if rest.is_empty() {
        return Some(Parsed::Local(local));
    }
    if rest == "Z" || rest == "z" || rest.eq_ignore_ascii_case("utc") {
        return Some(Parsed::Instant(
            chrono::Utc.from_utc_datetime(&local).fixed_offset(),
        ));
    }
    let rb = rest.as_bytes();
    let sign = match rb[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let oh = two(rb, 1)?;
    let om = match rb.len() {
        3 => 0,
        5 => two(rb, 3)?,
        6 if rb[3] == b':' => two(rb, 4)?,
        _ => return None,
    };
    let offset = chrono::FixedOffset::east_opt(sign * (oh * 3600 + om * 60) as i32)?;
    let instant = offset.from_local_datetime(&local).single()?;
    Some(Parsed::Instant(instant))
}

const DAY_MONTH_YEAR_FORMATS: &[&str] = &["%d-%b-%Y %H:%M:%S", "%d-%b-%Y %H:%M", "%d-%b-%Y"];

impl TimestampParser {
    pub fn new(source_tz: Tz) -> Self {
        Self {
            source_tz,
            extra_formats: Vec::new(),
            extra_date_formats: Vec::new(),
        }
    }

    /// Microseconds since the epoch (UTC) of a timestamp text, or `None` if no accepted form
    /// matches. Local times in a daylight-saving gap move forward; ambiguous ones take the
    /// earlier instant.
    pub fn parse_micros(&self, text: &str) -> Option<i64> {
        let s = text.trim();
        let parsed = parse_iso_like(s).or_else(|| self.parse_with_formats(s))?;
        let instant = match parsed {
            Parsed::Instant(i) => i.with_timezone(&chrono::Utc),
            Parsed::Local(local) => self.localize(local)?,
        };
        Some(instant.timestamp_micros())
    }

    fn parse_with_formats(&self, s: &str) -> Option<Parsed> {
        let formats = DAY_MONTH_YEAR_FORMATS
            .iter()
            .copied()
            .chain(self.extra_formats.iter().map(String::as_str));
        for f in formats {
            if let Ok(dt) = NaiveDateTime::parse_from_str(s, f) {
                return Some(Parsed::Local(dt));
            }
            if let Ok(d) = NaiveDate::parse_from_str(s, f) {
                return Some(Parsed::Local(d.and_time(NaiveTime::MIN)));
            }
            if let Ok(dt) = DateTime::parse_from_str(s, f) {
                return Some(Parsed::Instant(dt));
            }
        }
        None
    }

    fn localize(&self, local: NaiveDateTime) -> Option<DateTime<chrono::Utc>> {
        use chrono::offset::LocalResult;
        if self.source_tz == Tz::UTC {
            return Some(local.and_utc());
        }
        match self.source_tz.from_local_datetime(&local) {
            LocalResult::Single(t) => Some(t.with_timezone(&chrono::Utc)),
            LocalResult::Ambiguous(early, _) => Some(early.with_timezone(&chrono::Utc)),
            LocalResult::None => {
                let shifted = local + chrono::Duration::hours(1);
                self.source_tz
                    .from_local_datetime(&shifted)
                    .earliest()
                    .map(|t| t.with_timezone(&chrono::Utc))
            }
        }
    }

    /// A calendar date: `YYYY-MM-DD`, `YYYY/MM/DD`, `DD-Mon-YYYY`, a timestamp form (its
    /// local date), or a configured date format.
    pub fn parse_date(&self, text: &str) -> Option<NaiveDate> {
        let s = text.trim();
        for f in self.extra_date_formats.iter().map(String::as_str) {
            if let Ok(d) = NaiveDate::parse_from_str(s, f) {
                return Some(d);
            }
        }
        match parse_iso_like(s).or_else(|| self.parse_with_formats(s))? {
            Parsed::Local(dt) => Some(dt.date()),
            Parsed::Instant(i) => Some(i.date_naive()),
        }
    }
}

/// Local calendar day (days since epoch) of a UTC instant in `tz`.
pub fn local_day(micros: i64, tz: &Tz) -> i32 {
    if *tz == Tz::UTC {
        return micros.div_euclid(86_400_000_000) as i32;
    }
    let utc = DateTime::from_timestamp_micros(micros).unwrap_or_default();
    Date32Type::from_naive_date(utc.with_timezone(tz).date_naive())
}

/// A finite number; `None` for anything else (including NaN and infinities, which are
/// reported separately by [`is_non_finite`]).
pub fn parse_number(text: &str) -> Option<f64> {
    // A plain decimal has no spaces to trim; cells mostly come trimmed already, and trimming
    // first cost a search for Unicode spaces on every value.
    if let Some(v) = plain_decimal(text.as_bytes()) {
        return Some(v);
    }
    let text = text.trim();
    if let Some(v) = plain_decimal(text.as_bytes()) {
        return Some(v);
    }
    let v: f64 = text.parse().ok()?;
    v.is_finite().then_some(v)
}

/// Powers of ten that are exact in an `f64`.
const EXACT_POWERS_OF_TEN: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// The value of `[-+]digits[.digits]` with at most 15 digits, as exports write amounts;
/// `None` for any other text, which the general parser then reads. Such a value is its
/// digits as an integer (exact below 2^53) divided by an exact power of ten: one correctly
/// rounded division, so the same bits as the general parser's correctly rounded result
/// (Clinger's fast path), without its checks for other forms.
fn plain_decimal(text: &[u8]) -> Option<f64> {
    let (negative, digits) = match text.first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (whole, fraction) = match digits.iter().position(|&c| c == b'.') {
        Some(point) => (&digits[..point], &digits[point + 1..]),
        None => (digits, &[][..]),
    };
    let count = whole.len() + fraction.len();
    // `5.` and `.5` are left to the general parser, which decides what it accepts.
    if whole.is_empty() || (fraction.is_empty() && whole.len() < digits.len()) || count > 15 {
        return None;
    }
    let mut mantissa: u64 = 0;
    for &c in whole.iter().chain(fraction) {
        if !c.is_ascii_digit() {
            return None;
        }
        mantissa = mantissa * 10 + u64::from(c - b'0');
    }
    let value = mantissa as f64 / EXACT_POWERS_OF_TEN[fraction.len()];
    Some(if negative { -value } else { value })
}

/// Whether text parses as a number that is not finite (`inf`, `NaN`).
pub fn is_non_finite(text: &str) -> bool {
    text.trim().parse::<f64>().is_ok_and(|v| !v.is_finite())
}

/// Booleans as exports write them.
pub fn parse_bool(text: &str) -> Option<bool> {
    // The words exports mostly write, before trimming and comparing in any case.
    match text {
        "false" => return Some(false),
        "true" => return Some(true),
        _ => {}
    }
    // Compared without a lower-cased copy, which was an allocation per value.
    let text = text.trim();
    let is_one_of = |words: &[&str]| words.iter().any(|w| text.eq_ignore_ascii_case(w));
    if is_one_of(&["false", "f", "0", "no", "n", "否", "假"]) {
        Some(false)
    } else if is_one_of(&["true", "t", "1", "yes", "y", "是", "真"]) {
        Some(true)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_micros()
    }

    #[test]
    fn accepts_the_forms_real_exports_use() {
        let p = TimestampParser::new(Tz::UTC);
        let want = micros("2024-03-05T14:07:09Z");
        for s in [
            "2024-03-05 14:07:09",
            "2024-03-05T14:07:09",
            "2024-03-05T14:07:09Z",
            "2024-03-05T16:07:09+02:00",
            "2024-03-05T16:07:09+0200",
            "2024-03-05 10:07:09-04",
            "2024/03/05 14:07:09",
            "05-Mar-2024 14:07:09",
            " 2024-03-05 14:07:09 ",
        ] {
            assert_eq!(p.parse_micros(s), Some(want), "{s}");
        }
        assert_eq!(
            p.parse_micros("2024-03-05 14:07:09.250"),
            Some(want + 250_000)
        );
        assert_eq!(
            p.parse_micros("2024-03-05"),
            Some(micros("2024-03-05T00:00:00Z"))
        );
        assert_eq!(p.parse_micros("2024-03-05 14:07"), Some(want - 9_000_000));
    }

    #[test]
    fn rejects_malformed_and_ambiguous_forms_unless_configured() {
        let mut p = TimestampParser::new(Tz::UTC);
        for s in [
            "",
            "yesterday",
            "2024-13-01 10:00:00",
            "2024-02-30",
            "2024-03-05 25:61:00",
            "01/02/2024",
            "2024-03-05 14:07:09 +2",
        ] {
            assert_eq!(p.parse_micros(s), None, "{s}");
        }
        p.extra_formats.push("%d/%m/%Y".into());
        assert_eq!(
            p.parse_micros("01/02/2024"),
            Some(micros("2024-02-01T00:00:00Z"))
        );
    }

    #[test]
    fn local_times_are_read_in_the_source_zone() {
        let p = TimestampParser::new("Asia/Shanghai".parse().unwrap());
        assert_eq!(
            p.parse_micros("2024-03-05 08:00:00"),
            Some(micros("2024-03-05T00:00:00Z"))
        );
        // An explicit offset wins over the source zone.
        assert_eq!(
            p.parse_micros("2024-03-05T08:00:00Z"),
            Some(micros("2024-03-05T08:00:00Z"))
        );
        let shanghai: Tz = "Asia/Shanghai".parse().unwrap();
        // 2024-03-05 is day 19787 of the Unix epoch (Python: date(2024,3,5) - date(1970,1,1)).
        assert_eq!(local_day(micros("2024-03-04T17:00:00Z"), &shanghai), 19787);
        assert_eq!(local_day(micros("2024-03-04T15:59:59Z"), &shanghai), 19786);
    }

    #[test]
    fn numbers_must_be_finite_and_booleans_take_common_spellings() {
        assert_eq!(parse_number(" -12.5 "), Some(-12.5));
        assert_eq!(parse_number("N/A"), None);
        assert_eq!(parse_number("inf"), None);
        assert!(is_non_finite("NaN"));
        assert_eq!(parse_bool("Y"), Some(true));
        assert_eq!(parse_bool("否"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
    }

    #[test]
    fn plain_decimals_parse_to_the_same_bits_as_the_general_parser() {
        // The general parser (the standard library's, correctly rounded) is the reference:
        // digits of every length up to and past the fast path's 15, every place of the
        // point, signs, and the forms the fast path leaves to it.
        let mut texts: Vec<String> = [
            "0",
            "-0",
            "+0",
            "-0.00",
            "0.1",
            "0.2",
            "0.3",
            "90.68",
            "8.13",
            "1.005",
            "2.675",
            "123456789012345",
            "1234567890123456",
            "0.000000000000001",
            "9007199254740993",
            "999999999999999.9",
            "5.",
            ".5",
            "-.5",
            "+",
            "-",
            ".",
            "1.2.3",
            "1e5",
            "0x10",
            "1_000",
            " 7 ",
            "--1",
            "١٢",
        ]
        .map(String::from)
        .to_vec();
        // Pseudo-random digit strings (a fixed LCG, so a failure repeats).
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |bound: u64| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % bound
        };
        for _ in 0..200_000 {
            let digits = 1 + next(18) as usize;
            let mut text: String = (0..digits)
                .map(|_| char::from(b'0' + next(10) as u8))
                .collect();
            let point = next(digits as u64 + 2) as usize;
            if point <= digits {
                text.insert(point, '.');
            }
            match next(4) {
                0 => text.insert(0, '-'),
                1 => text.insert(0, '+'),
                _ => {}
            }
            texts.push(text);
        }
        for text in &texts {
            let general = text
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(f64::to_bits);
            assert_eq!(parse_number(text).map(f64::to_bits), general, "{text:?}");
        }
    }

    #[test]
    fn booleans_are_read_in_any_case_of_their_spellings() {
        // Spellings in any case, as the lower-cased comparison took them.
        for (text, want) in [
            ("TRUE", Some(true)),
            ("False", Some(false)),
            ("yEs", Some(true)),
            (" n ", Some(false)),
            ("1", Some(true)),
            ("0", Some(false)),
            ("是", Some(true)),
            ("假", Some(false)),
            ("truee", None),
            ("", None),
        ] {
            assert_eq!(parse_bool(text), want, "{text:?}");
        }
    }
}
