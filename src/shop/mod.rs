//! The shop seam: ask the shop about an order, and have it create a reward coupon.
//! Adapters: `fixture` (orders from a JSON file; the embedded default) and `generic` (the
//! signed HTTP contract documented in the README). Shopify and WooCommerce come next.

mod fixture;
mod generic;

pub use fixture::FixtureShop;
pub use generic::GenericShop;

use crate::domain::{Email, OrderNumber, OrderStatus};
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use rust_decimal::Decimal;

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
