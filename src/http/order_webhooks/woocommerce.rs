//! `POST /webhooks/woocommerce`: `X-WC-Webhook-Signature` (base64 HMAC-SHA256 of the raw body,
//! keyed with `shop.woocommerce.webhook_secret`), topics `order.updated` (which also fires on
//! refunds) and `order.deleted` (`X-WC-Webhook-Topic`), de-duplicated on
//! `X-WC-Webhook-Delivery-ID`. The creation ping, a form body `webhook_id=N` with no signature
//! or topic header, is answered 200 and nothing else. Set-up: `docs/woocommerce.md`.

use super::{answer, follow, header, Key};
use crate::http::ApiError;
use crate::program::Program;
use crate::shop::woocommerce::{
    parse_order, verify_webhook, webhook_event, OrderTopic, WooEvent, DELIVERY_HEADER,
    SIGNATURE_HEADER, TOPIC_HEADER,
};
use actix_web::{web, HttpRequest, HttpResponse};

pub const PATH: &str = "/webhooks/woocommerce";

#[tracing::instrument(name = "woocommerce_webhook", skip_all)]
pub(super) async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    key: web::Data<Key>,
    program: web::Data<Program>,
) -> Result<HttpResponse, ApiError> {
    let (signature, topic) = (header(&req, SIGNATURE_HEADER), header(&req, TOPIC_HEADER));
    if signature.is_none() && topic.is_none() {
        if let Ok(WooEvent::Ping { webhook_id }) = webhook_event(None, &body) {
            tracing::info!(webhook_id, "WooCommerce webhook ping answered");
            return Ok(answer("ping", None));
        }
    }
    if !verify_webhook(key.0.expose().as_bytes(), &body, signature) {
        tracing::warn!(
            signed = signature.is_some(),
            "WooCommerce webhook refused: bad or missing signature"
        );
        return Err(ApiError::BadSignature);
    }
    let (topic, id) = match webhook_event(topic, &body).map_err(ApiError::BadRequest)? {
        WooEvent::Order { topic, id } => (topic, id),
        WooEvent::Ping { .. } => return Ok(answer("ping", None)),
        WooEvent::Other { topic } => {
            // Answered 200: WooCommerce disables a webhook whose deliveries keep failing.
            tracing::info!(
                topic,
                "WooCommerce webhook of a topic we do not act on, ignored"
            );
            return Ok(answer("ignored", None));
        }
    };
    let delivery = header(&req, DELIVERY_HEADER);
    let deleted = topic == OrderTopic::Deleted;
    // WooCommerce never delivers again: should the shop not answer the read-back, the signed
    // body (the whole order, as of the event) is followed instead.
    let as_sent = parse_order(&body).ok().filter(|o| o.id == id);
    follow(&program, "woocommerce", delivery, &id, deleted, as_sent).await
}
