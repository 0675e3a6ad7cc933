//! The shop seam: ask the shop about an order, and have it create a reward coupon.
//! Adapters: `fixture` (orders from a JSON file; the embedded default) and `generic` (the
//! signed HTTP contract documented in the README). Shopify and WooCommerce come next.

mod fixture;
mod generic;
mod timed;

pub use fixture::FixtureShop;
pub use generic::{parse_answer as parse_generic_answer, GenericShop, SIGNATURE_HEADER};
pub use timed::TimedShop;

use crate::domain::{Email, OrderNumber, OrderStatus};
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use rust_decimal::Decimal;

/// Reads a shop's `total`, given as a JSON string (`"59.90"`) or a JSON number (`59.90`), from
/// its raw text: a number is never turned into a float on the way, so every digit counts.
pub fn amount_from_json(raw: &serde_json::value::RawValue) -> Result<Decimal, String> {
    let text = raw.get().trim();
    let digits = match serde_json::from_str::<String>(text) {
        Ok(s) => s,
        Err(_) if text.starts_with(|c: char| c.is_ascii_digit() || c == '-') => text.to_owned(),
        Err(_) => return Err(format!("total {text} is not a decimal")),
    };
    crate::domain::orders::parse_amount(&digits).map_err(|e| e.to_string())
}

/// An order as the shop describes it. Whether it belongs to the claimant is decided by the
/// program (emails compared after normalisation), not by the adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopOrder {
    pub number: OrderNumber,
    pub email: Email,
    pub total: Decimal,
    pub currency: String,
    pub status: OrderStatus,
}

/// What the shop must create so the customer can use a reward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CouponRequest {
    pub code: String,
    pub reward_id: String,
    pub product_ids: Vec<String>,
    pub expires_at: DateTime<Utc>,
    pub email: Email,
}

#[cfg(test)]
mod tests {
    use super::amount_from_json;
    use serde_json::value::RawValue;

    #[test]
    fn totals_keep_every_digit_whether_string_or_number() {
        for (raw, want) in [
            (r#""59.90""#, "59.90"),
            ("59.90", "59.90"),
            ("123456789012345.67", "123456789012345.67"),
            ("42", "42"),
        ] {
            let v: Box<RawValue> = serde_json::from_str(raw).unwrap();
            assert_eq!(amount_from_json(&v).unwrap().to_string(), want, "{raw}");
        }
        for bad in [
            "[1]",
            "null",
            r#""-3""#,
            "-3",
            "1e3",
            r#""abc""#,
            "1234567890123456.00",
        ] {
            let v: Box<RawValue> = serde_json::from_str(bad).unwrap();
            assert!(amount_from_json(&v).is_err(), "{bad}");
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ShopError {
    #[error("the shop did not answer within {0} s")]
    Timeout(u64),
    #[error("could not reach the shop")]
    Unreachable(#[source] reqwest::Error),
    #[error("the shop answered HTTP {0}")]
    Status(u16),
    #[error("the shop's answer is not in the expected format: {0}")]
    BadAnswer(String),
    #[error("the shop refused the coupon (HTTP {0})")]
    CouponRefused(u16),
    #[error("the shop's order data is unreadable: {0}")]
    Fixture(String),
    #[error("the shop URL {0:?} is not a valid http(s) URL")]
    BadUrl(String),
}

pub trait Shop: Send + Sync + 'static {
    /// Looks an order up by number. `email` is passed for shops that match it themselves.
    /// `Ok(None)` means the shop has no such order (or none for that email).
    fn find_order<'a>(
        &'a self,
        number: &'a OrderNumber,
        email: &'a Email,
    ) -> BoxFuture<'a, Result<Option<ShopOrder>, ShopError>>;

    /// Creates a single-use coupon limited to the reward's products. Must be idempotent on
    /// `code`: a retry with the same code is not a second coupon.
    fn create_coupon<'a>(
        &'a self,
        coupon: &'a CouponRequest,
    ) -> BoxFuture<'a, Result<(), ShopError>>;
}
