//! `POST /webhooks/shopify` and `POST /webhooks/woocommerce`: a shop says an order changed.
//! The delivery's signature is checked on the raw bytes before anything is parsed (401, nothing
//! recorded); the delivery names an order, which the program reads again from the shop and
//! whose points it sets to what the order earns now ([`crate::program::Program::follow_order`]).
//! Deliveries are de-duplicated on the shop's delivery id, recorded only once handled, so a
//! crash in between has the redelivery handled; handling one twice would change nothing
//! anyway. The answer is 200 with what happened, 503 when the shop could not be asked (the
//! shop delivers again), 500 if the store failed.
//!
//! Each route is registered only for its shop kind with a webhook secret set; otherwise 404.

mod shopify;
mod woocommerce;

use super::ApiError;
use crate::config::{Secret, Settings, ShopKind};
use crate::domain::OrderId;
use crate::program::{FollowError, Program};
use crate::shop::ShopOrder;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use std::sync::Arc;

/// The secrets that sign each shop's webhooks; `None`: the route is off.
#[derive(Clone, Default)]
pub struct WebhookKeys {
    pub shopify: Option<Secret>,
    pub woocommerce: Option<Secret>,
}

impl WebhookKeys {
    /// The key of the configured shop kind, when set.
    pub fn from_settings(settings: &Settings) -> Self {
        let shop = &settings.shop;
        let set = |s: Secret| s.is_set().then_some(s);
        match shop.kind {
            ShopKind::Shopify => WebhookKeys {
                shopify: set(shop.shopify.webhook_key().clone()),
                ..Self::default()
            },
            ShopKind::Woocommerce => WebhookKeys {
                woocommerce: set(shop.woocommerce.webhook_secret.clone()),
                ..Self::default()
            },
            _ => Self::default(),
        }
    }
}

pub fn configure(cfg: &mut web::ServiceConfig, program: Arc<Program>, keys: &WebhookKeys) {
    if let Some(key) = &keys.shopify {
        route(
            cfg,
            shopify::PATH,
            Arc::clone(&program),
            key,
            shopify::receive,
        );
    }
    if let Some(key) = &keys.woocommerce {
        route(cfg, woocommerce::PATH, program, key, woocommerce::receive);
    }
}

/// The key a route checks its deliveries' signatures with.
struct Key(Secret);

fn route<F, Args>(
    cfg: &mut web::ServiceConfig,
    path: &str,
    program: Arc<Program>,
    key: &Secret,
    receive: F,
) where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    cfg.service(
        web::resource(path)
            .app_data(web::Data::new(Key(key.clone())))
            .app_data(web::Data::from(program))
            .route(web::post().to(receive)),
    );
}

/// What a handled delivery did, for the shop's delivery log.
#[derive(Debug, Serialize)]
struct Answer<'a> {
    /// `changed`, `credited`, `unchanged`, `unclaimed`, `recorded_before_claim`,
    /// `not_visible`, `other_currency`, `unreadable`, `duplicate`, `ignored` or `ping`.
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    order: Option<&'a str>,
}

/// Answers a delivery about order `id`: de-duplicated on `delivery`, followed, recorded.
/// `as_sent`: the order as the signed delivery carries it, followed instead when the shop
/// cannot be read back and will not deliver again (WooCommerce).
async fn follow(
    program: &Program,
    source: &'static str,
    delivery: Option<&str>,
    id: &OrderId,
    deleted: bool,
    as_sent: Option<ShopOrder>,
) -> Result<HttpResponse, ApiError> {
    if let Some(d) = delivery {
        if program.delivery_seen(source, d).await? {
            program.metrics().order_update(source, "duplicate");
            return Ok(answer("duplicate", Some(id)));
        }
    }
    let followed = match program.follow_order(id, deleted).await {
        Ok(f) => f,
        Err(FollowError::Shop(e)) if !e.is_transient() => {
            // Asking again would read the same: answered 200 so that the shop does not retry
            // for days and then drop the subscription; the owner sees it in the log.
            tracing::error!(source, order = %id, error = %e, "order webhook: the shop's order could not be read; its points are left as they were");
            program.metrics().order_update(source, "unreadable");
            return Ok(answer("unreadable", Some(id)));
        }
        Err(FollowError::Shop(e)) if as_sent.is_some() => {
            tracing::warn!(source, order = %id, error = %e, "order webhook: the shop could not be read back; following the order as the signed delivery shows it");
            program.follow_as_sent(as_sent.expect("checked")).await?
        }
        Err(FollowError::Shop(e)) => {
            tracing::warn!(source, order = %id, error = %e, "order webhook: the shop could not be asked; it will deliver again");
            program.metrics().order_update(source, "shop_unavailable");
            return Err(ApiError::ShopUnavailable(format!(
                "could not read order {id} from the shop: {e}"
            )));
        }
        Err(FollowError::Program(e)) => return Err(e.into()),
    };
    if let Some(d) = delivery {
        program.record_delivery(source, d).await?;
    }
    let label = followed.label();
    tracing::info!(source, order = %id, result = label, "order webhook handled");
    program.metrics().order_update(source, label);
    Ok(answer(label, Some(id)))
}

fn answer(result: &'static str, order: Option<&OrderId>) -> HttpResponse {
    HttpResponse::Ok().json(Answer {
        result,
        order: order.map(OrderId::as_str),
    })
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}
