//! The shop seam: ask the shop about an order, and have it create a reward coupon.
//! Adapters: `fixture` (orders from a JSON file; the embedded default), `generic` (the signed
//! HTTP contract documented in the README), `shopify` (GraphQL Admin API) and `woocommerce`
//! (REST API v3).

mod fixture;
mod generic;
pub mod shopify;
mod timed;
pub mod woocommerce;

pub use fixture::FixtureShop;
pub use generic::{parse_answer as parse_generic_answer, GenericShop, SIGNATURE_HEADER};
pub use shopify::ShopifyShop;
pub use timed::TimedShop;
pub use woocommerce::WooShop;

use crate::domain::{Discount, Email, OrderId, OrderNumber, OrderStatus};
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use rust_decimal::Decimal;

/// The HTTP client every shop adapter calls its shop with. Fails only if no client can be
/// built (TLS set-up); never falls back to a client without the timeouts.
pub(crate) fn http_client(timeout: std::time::Duration) -> Result<reqwest::Client, ShopError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        // Many shop servers (Node, actix, nginx in front of PHP) close idle connections after
        // about 5 s; reusing one just as it closes fails the request, so we drop ours first.
        .pool_idle_timeout(std::time::Duration::from_secs(4))
        // Our calls carry a signature, a token or Basic credentials: a 3xx is the shop's
        // misconfiguration, reported as its status, never a place to send them to.
        .redirect(reqwest::redirect::Policy::none())
        // reqwest's default retry policy covers HTTP/2 refusals only (we speak HTTP/1) and
        // copies every request in case. A call is repeated only where the shop asks for it
        // (Shopify's throttling, a renewed token), never silently: a coupon must not be
        // created twice unseen.
        .retry(reqwest::retry::never().max_retries_per_request(0))
        .build()
        .map_err(ShopError::Unreachable)
}

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

/// An order as the shop describes it now. Whether it belongs to the claimant is decided by the
/// program (emails compared after normalisation), not by the adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopOrder {
    /// The shop's own identity of the order (Shopify GID, WooCommerce id; else the number).
    pub id: OrderId,
    /// The number the customer sees (`1001` for Shopify's `#1001`).
    pub number: OrderNumber,
    /// `None` when the shop withholds it (Shopify without protected customer data access).
    pub email: Option<Email>,
    /// What the order is worth now: after edits and refunds (Shopify's
    /// `currentTotalPriceSet.shopMoney`, WooCommerce's `total` plus its negative refunds).
    pub total: Decimal,
    pub currency: String,
    /// Whether it earns: [`OrderStatus::earns`]. Adapters map their shop's states onto it
    /// (a test order is [`OrderStatus::Test`], a partially refunded paid order is `Paid`).
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
    /// What the coupon takes off each of the products.
    pub discount: Discount,
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
    /// The shop answered with its reasons (Shopify's `userErrors`): nothing was created.
    #[error("the shop refused: {0}")]
    Refused(String),
    /// The coupon code exists in the shop already: the program tries again with a new code.
    #[error("the shop already has a discount with that code")]
    CodeTaken,
    /// Credentials rejected (401/403) even after a fresh token where one can be had.
    #[error("the shop refused our credentials (HTTP {0})")]
    Unauthorized(u16),
    /// The shop kept asking us to slow down until the customer's time was up.
    #[error("the shop is throttling our requests")]
    Throttled,
    /// This shop kind cannot do that (the generic contract has no look-up by id).
    #[error("this shop kind cannot {0}")]
    Unsupported(&'static str),
}

impl ShopError {
    /// Whether asking again later can succeed: the shop was down, slow, throttling, or refused
    /// credentials the owner can fix. An answer we cannot read will read the same way again.
    pub fn is_transient(&self) -> bool {
        match self {
            ShopError::Timeout(_)
            | ShopError::Unreachable(_)
            | ShopError::Throttled
            | ShopError::Unauthorized(_) => true,
            ShopError::Status(s) => *s >= 500 || *s == 429 || *s == 408,
            _ => false,
        }
    }
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
    /// `code`: a retry with the same code is not a second coupon. A refusal with reasons is
    /// [`ShopError::Refused`] or [`ShopError::CouponRefused`]: the points are given back.
    fn create_coupon<'a>(
        &'a self,
        coupon: &'a CouponRequest,
    ) -> BoxFuture<'a, Result<(), ShopError>>;

    /// Reads an order again by the shop's own id, for a webhook that says it changed: the
    /// webhook is a trigger, this answer is the truth. `Ok(None)`: the shop has no such order
    /// (deleted, or older than it lets us see).
    fn order_by_id<'a>(
        &'a self,
        id: &'a OrderId,
    ) -> BoxFuture<'a, Result<Option<ShopOrder>, ShopError>> {
        let _ = id;
        Box::pin(async { Err(ShopError::Unsupported("look an order up by id")) })
    }

    /// Whether the shop's order ids are its order numbers (the generic contract, the fixture),
    /// so that the store's claim of a typed number can be looked up without asking the shop.
    fn ids_are_numbers(&self) -> bool {
        true
    }

    /// Called once at start, before the first customer: fetch a token, check the credentials.
    /// An error stops the start with its message.
    fn warm_up(&self) -> BoxFuture<'_, Result<(), ShopError>> {
        Box::pin(async { Ok(()) })
    }
}
