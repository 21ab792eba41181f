//! Contact details and spreadsheet safety for exports: e-mail and phone columns are off
//! unless an export asks for them, and then plain, masked (`138****5678`) or a salted SHA-256
//! (the salt from an environment variable, never from a file); text cells that a spreadsheet
//! would run as a formula are neutralised.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How an export carries a contact column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PiiMode {
    /// Not exported.
    #[default]
    Off,
    /// As stored.
    Plain,
    /// Most characters replaced by `*` (see [`mask_phone`], [`mask_email`]).
    Masked,
    /// Hex SHA-256 of salt + normalised value, for matching lists without sharing them.
    Hashed,
}

/// `13812345678` → `138****5678`: the first three and last four digits kept, the rest `*`;
/// other characters (`+`, spaces) dropped. Numbers of seven digits or fewer keep only the
/// last two.
pub fn mask_phone(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    let n = digits.len();
    let (head, tail) = if n > 7 { (3, 4) } else { (0, n.min(2)) };
    digits
        .iter()
        .enumerate()
        .map(|(i, &c)| if i < head || i >= n - tail { c } else { '*' })
        .collect()
}

/// `alice@example.com` → `a****@example.com`: the first character of the local part kept.
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!(
                "{first}{}@{domain}",
                "*".repeat(local.chars().count().saturating_sub(1))
            )
        }
        None => "*".repeat(email.chars().count()),
    }
}

/// Lower-cased, trimmed e-mail; digits of a phone number: the forms that are hashed and
/// compared with suppression lists.
pub fn normalise_email(email: &str) -> String {
    email.trim().to_lowercase()
}

pub fn normalise_phone(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

/// Hex SHA-256 of `salt` followed by `value`.
pub fn salted_sha256(salt: &str, value: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(salt.as_bytes());
    hasher.update(value.as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A text cell that a spreadsheet would read as a formula (starting with `=`, `+`, `-`, `@`,
/// a tab or a carriage return) gets a leading `'`, which spreadsheets show as text.
pub fn neutralise_cell(text: &str) -> std::borrow::Cow<'_, str> {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}").into(),
        _ => text.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_and_emails_are_masked_keeping_only_the_edges() {
        assert_eq!(mask_phone("13812345678"), "138****5678");
        assert_eq!(mask_phone("+86 138 1234 5678"), "861******5678");
        assert_eq!(mask_phone("12345"), "***45");
        assert_eq!(mask_email("alice@example.com"), "a****@example.com");
        assert_eq!(mask_email("no-at-sign"), "**********");
    }

    #[test]
    fn hashes_are_salted_sha256_in_hex() {
        // printf 'saltabc' | sha256sum
        assert_eq!(
            salted_sha256("salt", "abc"),
            "3681099918be28c95b81e27e7e5c2e4c6a6dea566d2d10e7f49139ebb779eb6f"
        );
        assert_ne!(salted_sha256("salt", "abc"), salted_sha256("pepper", "abc"));
    }

    #[test]
    fn formula_cells_are_neutralised_and_others_left_alone() {
        assert_eq!(neutralise_cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(neutralise_cell("+1"), "'+1");
        assert_eq!(neutralise_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(neutralise_cell("重要价值客户"), "重要价值客户");
        assert_eq!(neutralise_cell(""), "");
    }
}
