//! The fixture shop: orders come from a JSON file the owner can edit while the service runs (or,
//! with no file configured, from the sample orders built into the binary); coupons need nothing
//! outside, since the store records them.

use super::{amount_from_json, CouponRequest, Shop, ShopError, ShopOrder};
use crate::domain::{Email, OrderId, OrderNumber, OrderStatus};
use futures_util::future::BoxFuture;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct FixtureShop {
    orders: Orders,
}

#[derive(Debug, Clone)]
enum Orders {
    File(PathBuf),
    BuiltIn,
}

/// The repository's `fixtures/shop/orders.json`, for a binary run from any folder.
const BUILT_IN_ORDERS: &str = include_str!("../../fixtures/shop/orders.json");

#[derive(Deserialize)]
struct FixtureOrder {
    order_number: String,
    email: String,
    total: Box<serde_json::value::RawValue>,
    currency: String,
    status: String,
}

impl FixtureShop {
    pub fn new(orders_file: PathBuf) -> Self {
        FixtureShop {
            orders: Orders::File(orders_file),
        }
    }

    /// The sample orders built into the binary.
    pub fn built_in() -> Self {
        FixtureShop {
            orders: Orders::BuiltIn,
        }
    }

    fn name(&self) -> String {
        match &self.orders {
            Orders::File(path) => path.display().to_string(),
            Orders::BuiltIn => "(built-in sample orders)".into(),
        }
    }

    /// Reads and checks the whole file; used at start-up so a broken file stops the service.
    pub fn load_all(&self) -> Result<Vec<ShopOrder>, ShopError> {
        let text = match &self.orders {
            Orders::File(path) => std::fs::read_to_string(path)
                .map_err(|e| ShopError::Fixture(format!("{}: {e}", self.name())))?,
            Orders::BuiltIn => BUILT_IN_ORDERS.to_owned(),
        };
        let raw: Vec<FixtureOrder> = serde_json::from_str(&text)
            .map_err(|e| ShopError::Fixture(format!("{}: {e}", self.name())))?;
        raw.into_iter()
            .enumerate()
            .map(|(i, o)| {
                let at = |what: String| {
                    ShopError::Fixture(format!("{} order #{i}: {what}", self.name()))
                };
                let total = amount_from_json(&o.total).map_err(at)?;
                let number = OrderNumber::parse(&o.order_number).map_err(|e| at(e.to_string()))?;
                Ok(ShopOrder {
                    id: OrderId::from(&number),
                    number,
                    email: Some(Email::parse(&o.email).map_err(|e| at(e.to_string()))?),
                    total,
                    currency: o.currency,
                    status: OrderStatus::parse(&o.status),
                })
            })
            .collect()
    }
}

impl Shop for FixtureShop {
    fn find_order<'a>(
        &'a self,
        number: &'a OrderNumber,
        _email: &'a Email,
    ) -> BoxFuture<'a, Result<Option<ShopOrder>, ShopError>> {
        Box::pin(async move {
            let this = self.clone();
            let orders = tokio::task::spawn_blocking(move || this.load_all())
                .await
                .map_err(|e| ShopError::Fixture(e.to_string()))??;
            Ok(orders
                .into_iter()
                .find(|o| o.number.as_str().eq_ignore_ascii_case(number.as_str())))
        })
    }

    fn create_coupon<'a>(
        &'a self,
        _coupon: &'a CouponRequest,
    ) -> BoxFuture<'a, Result<(), ShopError>> {
        Box::pin(async { Ok(()) })
    }
}
