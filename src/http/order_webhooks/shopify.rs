//! `POST /webhooks/shopify`: `X-Shopify-Hmac-Sha256` (base64 HMAC-SHA256 of the raw body,
//! keyed with `shop.shopify.webhook_secret`), de-duplicated on `X-Shopify-Webhook-Id`, topics
//! `orders/paid`, `orders/cancelled`, `orders/updated` and `refunds/create` (`X-Shopify-Topic`).
//! Set-up: `docs/shopify.md`.

use super::{answer, follow, header, Key};
use crate::http::ApiError;
use crate::program::Program;
use crate::shop::shopify::{order_gid_from_webhook, verify_webhook, SIGNATURE_HEADER};
use actix_web::{web, HttpRequest, HttpResponse};

pub const PATH: &str = "/webhooks/shopify";
const TOPICS: [&str; 4] = [
    "orders/paid",
    "orders/cancelled",
    "orders/updated",
    "refunds/create",
];

#[tracing::instrument(name = "shopify_webhook", skip_all)]
pub(super) async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    key: web::Data<Key>,
    program: web::Data<Program>,
) -> Result<HttpResponse, ApiError> {
    let signature = header(&req, SIGNATURE_HEADER);
    if !verify_webhook(key.0.expose().as_bytes(), &body, signature) {
        tracing::warn!(
            signed = signature.is_some(),
            "Shopify webhook refused: bad or missing signature"
        );
        return Err(ApiError::BadSignature);
    }
    let topic = header(&req, "X-Shopify-Topic").unwrap_or_default();
    if !TOPICS.contains(&topic) {
        // Answered 200: Shopify drops a subscription that keeps failing, and this one is
        // the owner's extra, harmless.
        tracing::info!(
            topic,
            "Shopify webhook of a topic we do not act on, ignored"
        );
        return Ok(answer("ignored", None));
    }
    let id = order_gid_from_webhook(topic, &body).map_err(ApiError::BadRequest)?;
    let delivery = header(&req, "X-Shopify-Webhook-Id");
    // Shopify delivers a failed webhook again, 8 times over 4 hours, with its first body:
    // the order is always read back.
    follow(&program, "shopify", delivery, &id, false, None).await
}
