//! Shopify over the GraphQL Admin API (`shop.kind = "shopify"`, docs/shopify.md): orders found
//! by display name or read again by GID, reward coupons as `discountCodeBasicCreate`, and the
//! pure webhook helpers the HTTP handler uses. `client` owns the wire (token, throttling,
//! deadline); `orders` and `coupons` own the GraphQL documents and their answers.

mod client;
mod coupons;
mod orders;
mod token;
mod webhooks;

pub use client::TOKEN_HEADER;
pub use coupons::product_gid;
pub use webhooks::{order_gid_from_webhook, verify_webhook, SIGNATURE_HEADER};

use super::{CouponRequest, Shop, ShopError, ShopOrder};
use crate::config::ShopifySettings;
use crate::domain::{Email, OrderId, OrderNumber};
use client::Client;
use futures_util::future::BoxFuture;
use serde_json::json;
use std::time::Duration;
use token::Auth;

/// The cheapest query there is: checks the token at start.
const WHO_AM_I: &str = "query WhoAmI { shop { name } }";

pub struct ShopifyShop {
    client: Client,
    api_version: String,
}

impl ShopifyShop {
    /// `timeout` bounds each call as a whole, throttling waits and a token fetch included.
    pub fn new(settings: &ShopifySettings, timeout: Duration) -> Result<Self, ShopError> {
        let base = settings.base();
        let version = settings.api_version.trim();
        let url =
            |path: String| reqwest::Url::parse(&path).map_err(|_| ShopError::BadUrl(path.clone()));
        let graphql = url(format!("{base}/admin/api/{version}/graphql.json"))?;
        let auth = if settings.access_token.is_set() {
            Auth::Static(settings.access_token.clone())
        } else {
            Auth::grant(
                url(format!("{base}/admin/oauth/access_token"))?,
                settings.client_id.trim().to_owned(),
                settings.client_secret.clone(),
            )
        };
        let http = super::http_client(timeout)?;
        Ok(ShopifyShop {
            client: Client::new(http, graphql, auth, timeout),
            api_version: version.to_owned(),
        })
    }

    /// Which settings hold the credentials in use, for a start-up error that names them.
    pub fn credential_keys(settings: &ShopifySettings) -> &'static str {
        if settings.access_token.is_set() {
            "shop.shopify.access_token"
        } else {
            "shop.shopify.client_id / shop.shopify.client_secret"
        }
    }
}

impl Shop for ShopifyShop {
    fn find_order<'a>(
        &'a self,
        number: &'a OrderNumber,
        _email: &'a Email,
    ) -> BoxFuture<'a, Result<Option<ShopOrder>, ShopError>> {
        // The email is not searched for: the program compares it, and a search by email would
        // hide the difference between "no such order" and "not your order" from the logs.
        Box::pin(async move {
            let deadline = self.client.deadline();
            for q in orders::searches(number) {
                let vars = json!({ "q": q });
                let data = self
                    .client
                    .graphql(orders::BY_NAME, &vars, deadline)
                    .await?;
                if let Some(order) = orders::pick(&data, number)? {
                    return Ok(Some(order));
                }
            }
            Ok(None)
        })
    }

    fn create_coupon<'a>(
        &'a self,
        coupon: &'a CouponRequest,
    ) -> BoxFuture<'a, Result<(), ShopError>> {
        Box::pin(async move {
            let variables = coupons::variables(coupon, &self.api_version, chrono::Utc::now())?;
            let deadline = self.client.deadline();
            let data = self
                .client
                .graphql(coupons::CREATE, &variables, deadline)
                .await?;
            coupons::outcome(&data)
        })
    }

    fn order_by_id<'a>(
        &'a self,
        id: &'a OrderId,
    ) -> BoxFuture<'a, Result<Option<ShopOrder>, ShopError>> {
        Box::pin(async move {
            let vars = json!({ "id": id.as_str() });
            let deadline = self.client.deadline();
            let data = self.client.graphql(orders::BY_ID, &vars, deadline).await?;
            orders::by_id(&data)
        })
    }

    /// Fetches the first token (client credentials) and asks who we are. Refused credentials
    /// stop the start; a shop that is down or slow now is only a warning (customers are told
    /// to try later until it is back).
    /// Orders are kept under their GID (Shopify) or id (WooCommerce), not the number typed.
    fn ids_are_numbers(&self) -> bool {
        false
    }

    fn warm_up(&self) -> BoxFuture<'_, Result<(), ShopError>> {
        Box::pin(async move {
            let deadline = self.client.deadline();
            match self.client.graphql(WHO_AM_I, &json!({}), deadline).await {
                Ok(data) => {
                    let name = data["shop"]["name"].as_str().unwrap_or("?");
                    tracing::info!(shop = name, "connected to Shopify");
                    Ok(())
                }
                Err(e @ (ShopError::Unauthorized(_) | ShopError::Refused(_))) => Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "Shopify is not answering at start; carrying on");
                    Ok(())
                }
            }
        })
    }
}
