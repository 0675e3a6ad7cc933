//! The WooCommerce shop (`shop.kind = "woocommerce"`): the REST API v3 with HTTP Basic auth
//! (docs/woocommerce.md). Orders are read by id, then searched for by number for shops whose
//! displayed number is not the id; coupons are created single-use for one member's email.
//! The webhook helpers are pure functions the HTTP handler calls.

mod client;
mod coupons;
mod orders;
mod webhook;

pub use coupons::{body as coupon_body, CouponBody};
pub use orders::{parse_order, status as order_status};
pub use webhook::{
    verify_webhook, webhook_event, OrderTopic, WooEvent, DELIVERY_HEADER, SIGNATURE_HEADER,
    TOPIC_HEADER,
};

use super::{CouponRequest, Shop, ShopError, ShopOrder};
use crate::config::WoocommerceSettings;
use crate::domain::{Email, OrderId, OrderNumber};
use client::WooClient;
use futures_util::future::BoxFuture;
use std::time::Duration;

/// How many orders one search answer may hold. A numeric term also matches addresses and
/// phone numbers, so the order asked for may come after others; 100 is the API's maximum.
const SEARCH_PAGE: &str = "100";

#[derive(Debug, Clone)]
pub struct WooShop {
    client: WooClient,
}

impl WooShop {
    /// Fails on an address that is neither https nor loopback http, and if no HTTP client can
    /// be built.
    pub fn new(settings: &WoocommerceSettings, timeout: Duration) -> Result<Self, ShopError> {
        let client = WooClient::new(
            &settings.url,
            settings.consumer_key.clone(),
            settings.consumer_secret.clone(),
            timeout,
        )?;
        Ok(WooShop { client })
    }

    /// The setting to check when [`Shop::warm_up`] fails with `e`.
    pub fn setting_at_fault(e: &ShopError) -> &'static str {
        match e {
            ShopError::Unauthorized(_) => {
                "shop.woocommerce.consumer_key / shop.woocommerce.consumer_secret (a Read/Write key)"
            }
            _ => "shop.woocommerce.url (the WooCommerce REST API answers at {url}/wp-json/wc/v3)",
        }
    }

    /// `GET /orders/<id>`; `None` on 404.
    async fn order(&self, id: &str) -> Result<Option<ShopOrder>, ShopError> {
        let res = self
            .client
            .get(self.client.url(&["orders", id], &[]))
            .await?;
        match res.status().as_u16() {
            200 => parse_order(&self.client.body(res).await?).map(Some),
            404 => Ok(None),
            other => Err(failure(other)),
        }
    }

    /// `GET /orders?search=<number>`: the order whose `number` is `number`; of several (a
    /// renumbering plugin reset), the one billed to `email`.
    async fn search(
        &self,
        number: &OrderNumber,
        email: &Email,
    ) -> Result<Option<ShopOrder>, ShopError> {
        let query = [
            ("search", number.as_str()),
            ("status", "any"),
            ("per_page", SEARCH_PAGE),
        ];
        let res = self
            .client
            .get(self.client.url(&["orders"], &query))
            .await?;
        match res.status().as_u16() {
            200 => {}
            other => return Err(failure(other)),
        }
        let mut found = orders::matching_orders(&self.client.body(res).await?, number)?;
        let mine = found.iter().position(|o| o.email.as_ref() == Some(email));
        Ok(match mine {
            Some(i) => Some(found.swap_remove(i)),
            None => found.into_iter().next(),
        })
    }
}

impl WooShop {
    /// Whether the shop's coupon with `coupon`'s code is the one we asked for: the same
    /// member's email and the same products (`GET /coupons?code=…`).
    async fn made_already(&self, coupon: &CouponRequest) -> Result<bool, ShopError> {
        let url = self
            .client
            .url(&["coupons"], &[("code", coupon.code.as_str())]);
        let res = self.client.get(url).await?;
        match res.status().as_u16() {
            200 => {}
            other => return Err(failure(other)),
        }
        let wanted = coupons::body(coupon)?;
        let found = coupons::existing(&self.client.body(res).await?)?;
        Ok(found.iter().any(|c| c.is(&wanted)))
    }
}

/// A status other than the ones each call handles itself.
fn failure(status: u16) -> ShopError {
    match status {
        401 | 403 => ShopError::Unauthorized(status),
        other => ShopError::Status(other),
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

impl Shop for WooShop {
    fn find_order<'a>(
        &'a self,
        number: &'a OrderNumber,
        email: &'a Email,
    ) -> BoxFuture<'a, Result<Option<ShopOrder>, ShopError>> {
        let look_up = self.client.within(async move {
            // The default: the displayed number is the order's id. A number that is an id of
            // another order (a sequential-number plugin) falls through to the search.
            if all_digits(number.as_str()) {
                let by_id = self.order(number.as_str()).await?;
                if let Some(o) = by_id.filter(|o| orders::same_number(o.number.as_str(), number)) {
                    return Ok(Some(o));
                }
            }
            self.search(number, email).await
        });
        // An order without a billing email (taken by phone) belongs to no member: unknown to
        // the claimant, as an order with another email is. (`None` is Shopify's withholding.)
        Box::pin(async move { Ok(look_up.await?.filter(|o| o.email.is_some())) })
    }

    fn create_coupon<'a>(
        &'a self,
        coupon: &'a CouponRequest,
    ) -> BoxFuture<'a, Result<(), ShopError>> {
        Box::pin(self.client.within(async move {
            let body = serde_json::to_vec(&coupons::body(coupon)?)
                .map_err(|e| ShopError::BadAnswer(e.to_string()))?;
            let res = self
                .client
                .post_json(self.client.url(&["coupons"], &[]), body)
                .await?;
            let status = res.status();
            if status.is_success() {
                return Ok(());
            }
            let answer = self.client.body(res).await.unwrap_or_default();
            match coupons::refusal(status.as_u16(), &answer) {
                // Our own earlier attempt (its answer lost on the way) is not a collision.
                ShopError::CodeTaken if self.made_already(coupon).await? => Ok(()),
                refusal => Err(refusal),
            }
        }))
    }

    fn order_by_id<'a>(
        &'a self,
        id: &'a OrderId,
    ) -> BoxFuture<'a, Result<Option<ShopOrder>, ShopError>> {
        Box::pin(async move {
            // Not a WooCommerce id (an order claimed under another shop kind): not here.
            if !all_digits(id.as_str()) {
                return Ok(None);
            }
            self.order(id.as_str()).await
        })
    }

    /// One small authenticated read: wrong keys (401/403) or no WooCommerce REST API at the
    /// address (404) stop the start; a shop that is down now is only logged, since it may be
    /// back before the first customer.
    /// Orders are kept under their GID (Shopify) or id (WooCommerce), not the number typed.
    fn ids_are_numbers(&self) -> bool {
        false
    }

    fn warm_up(&self) -> BoxFuture<'_, Result<(), ShopError>> {
        Box::pin(async move {
            let url = self.client.url(&["orders"], &[("per_page", "1")]);
            let problem = match self.client.get(url).await {
                Ok(res) if res.status().is_success() => return Ok(()),
                Ok(res) => match res.status().as_u16() {
                    s @ (401 | 403 | 404) => return Err(failure(s)),
                    s => failure(s),
                },
                Err(e) => e,
            };
            tracing::warn!(
                error = %problem,
                "the WooCommerce shop did not answer at start; customers are told to try later until it does"
            );
            Ok(())
        })
    }
}
