//! Values a customer types or a shop sends: order numbers, emails and decimal amounts.

use loyalty_bot::domain::orders::parse_amount;
use loyalty_bot::domain::{Email, OrderNumber, OrderStatus};
use loyalty_bot::shop::amount_from_json;
use rust_decimal::Decimal;

/// Text typed in chat, a `ref=order-…` link, or a shop's `order_number`.
pub fn order_number(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = OrderNumber::parse(text);
    if let Ok(number) = &parsed {
        check_order_number(number);
    }
    if OrderNumber::looks_like_claim(text) {
        assert!(parsed.is_ok(), "{text:?} starts a claim but does not parse");
    }
    let _ = OrderStatus::parse(text).earns();
}

/// The canonical form is a fixed point: the store keeps order numbers as JSON and reads them
/// back through `parse`, and claims are keyed by them.
pub fn check_order_number(number: &OrderNumber) {
    let s = number.as_str();
    assert!(!s.is_empty() && s.len() <= 64, "{s:?}");
    assert!(
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "{s:?}"
    );
    assert!(s.bytes().any(|b| b.is_ascii_digit()), "{s:?}");
    assert_eq!(
        OrderNumber::parse(s).as_ref(),
        Ok(number),
        "does not re-parse to itself"
    );
    let json = serde_json::to_string(number).expect("serialises");
    assert_eq!(
        serde_json::from_str::<OrderNumber>(&json).ok().as_ref(),
        Some(number)
    );
}

/// An email typed in chat or sent by ManyChat or the shop.
pub fn email(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(email) = Email::parse(text) {
        check_email(&email);
    }
}

/// Members are found by the canonical form, so it must re-parse to itself.
pub fn check_email(email: &Email) {
    let s = email.as_str();
    assert!(s.len() <= 254 && s.matches('@').count() == 1, "{s:?}");
    assert!(!s.chars().any(char::is_whitespace), "{s:?}");
    assert_eq!(
        Email::parse(s).as_ref(),
        Ok(email),
        "does not re-parse to itself"
    );
    let json = serde_json::to_string(email).expect("serialises");
    assert_eq!(
        serde_json::from_str::<Email>(&json).ok().as_ref(),
        Some(email)
    );
    let (_, domain) = s.split_once('@').expect("checked above");
    let masked = email.masked();
    assert!(masked.ends_with(&format!("***@{domain}")), "{masked:?}");
}

/// A total as text (`parse_amount`) and as a JSON value (`amount_from_json`, string or number).
pub fn amount(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(total) = parse_amount(text) {
            check_decimal_round_trip(total);
            // Exact: the value is the digits given, leading zeros aside, every decimal kept.
            let t = text.trim();
            let (whole, fraction) = t.split_once('.').unwrap_or((t, ""));
            let whole = match whole.trim_start_matches('0') {
                "" => "0",
                w => w,
            };
            let want = if fraction.is_empty() {
                whole.to_owned()
            } else {
                format!("{whole}.{fraction}")
            };
            assert_eq!(total.to_string(), want, "from {text:?}");
        }
    }
    if let Ok(raw) = serde_json::from_slice::<Box<serde_json::value::RawValue>>(data) {
        if let Ok(total) = amount_from_json(&raw) {
            check_decimal_round_trip(total);
        }
    }
}

/// A money amount is never negative and survives its own text unchanged, scale included.
pub fn check_decimal_round_trip(total: Decimal) {
    assert!(!total.is_sign_negative(), "{total}");
    let again = parse_amount(&total.to_string()).expect("its own text parses");
    assert_eq!(
        (again, again.scale()),
        (total, total.scale()),
        "{total} changed"
    );
}
