//! How the mail shows locales, dates and money. Locales and dates follow the chat
//! (`src/flows/render.rs`: `de_DE` → `de`, `7 Dec 2026` / `07.12.2026`) so a member reads the
//! same date in both; money is new to the mail: exact decimals, grouped per locale.

use crate::flows::definition::LOCALES;
use rust_decimal::{Decimal, RoundingStrategy};

/// The locale used when a member's is unknown or unsupported.
pub const DEFAULT_LOCALE: &str = LOCALES[0];

/// `de_DE`, `de-AT`, `DE` → `de`; unknown or unsupported → [`DEFAULT_LOCALE`].
pub fn locale(requested: Option<&str>) -> &'static str {
    requested
        .and_then(crate::flows::locale_of)
        .unwrap_or(DEFAULT_LOCALE)
}

/// A date as the chat writes it.
pub use crate::flows::date;

/// `€1,234.50` in English, `1.234,50 €` in German; a currency without a common symbol keeps its
/// code (`CHF 12.00`, `12,00 CHF`). Two decimals, rounded half away from zero.
pub fn money(amount: Decimal, currency: &str, locale: &str) -> String {
    let mut rounded = amount.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    rounded.rescale(2);
    let sign = if rounded.is_sign_negative() && !rounded.is_zero() {
        "-"
    } else {
        ""
    };
    let digits = rounded.abs().to_string();
    let (int, frac) = digits.split_once('.').unwrap_or((&digits, "00"));
    let (group, point) = if locale == "de" {
        ('.', ',')
    } else {
        (',', '.')
    };
    let number = format!("{sign}{}{point}{frac}", grouped(int, group));
    let code = currency.trim().to_ascii_uppercase();
    let symbol = match code.as_str() {
        "EUR" => Some("€"),
        "USD" => Some("$"),
        "GBP" => Some("£"),
        _ => None,
    };
    match (symbol, locale) {
        (Some(s), "de") => format!("{number}\u{a0}{s}"),
        (Some(s), _) => format!("{s}{number}"),
        (None, "de") => format!("{number}\u{a0}{code}"),
        (None, _) => format!("{code}\u{a0}{number}"),
    }
}

/// `1234567` → `1,234,567` with `sep`.
fn grouped(int: &str, sep: char) -> String {
    let mut out = String::with_capacity(int.len() + int.len() / 3);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(sep);
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn money_is_exact_and_grouped_per_locale() {
        assert_eq!(money(d("29.5"), "EUR", "en"), "€29.50");
        assert_eq!(money(d("29.5"), "eur", "de"), "29,50\u{a0}€");
        assert_eq!(money(d("1234567.005"), "USD", "en"), "$1,234,567.01");
        assert_eq!(money(d("1234.5"), "CHF", "de"), "1.234,50\u{a0}CHF");
        assert_eq!(money(d("0"), "CHF", "en"), "CHF\u{a0}0.00");
        assert_eq!(money(d("100"), "GBP", "en"), "£100.00");
    }

    #[test]
    fn locales_fall_back_to_the_default() {
        assert_eq!(locale(Some("de_DE")), "de");
        assert_eq!(locale(Some("DE")), "de");
        assert_eq!(locale(Some("fr_FR")), "en");
        assert_eq!(locale(None), "en");
    }

    #[test]
    fn dates_read_as_in_the_chat() {
        let at = DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(date(at, "en"), "7 Dec 2026");
        assert_eq!(date(at, "de"), "07.12.2026");
    }
}
