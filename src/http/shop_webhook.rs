//! `POST /webhooks/shop`: the shop tells us an order was refunded or cancelled, and the points it
//! earned go back (see [`crate::domain::reversals`] for the policy). Part of the generic shop
//! contract: signed like our requests to the shop, `X-Loyalty-Signature: sha256=<hex HMAC-SHA256
//! of the raw body, keyed with shop.secret>`. Documented for shop developers in
//! `docs/shop-webhooks.md`.
//!
//! The signature is checked on the raw bytes, in constant time, before anything is parsed. With
//! an empty `shop.secret` the route is not registered (404), so no empty-key HMAC is accepted.
//! Deliveries are idempotent: a replay, or a second event for the same order, changes nothing
//! and answers 200 with `"result": "already_reversed"`.

use super::ApiError;
use crate::config::Secret;
use crate::domain::{OrderNumber, Reversal, ReversalReason};
use crate::program::Program;
use crate::shop::SIGNATURE_HEADER;
use crate::signature::verify_sha256_header;
use crate::store::ReverseOutcome;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub const PATH: &str = "/webhooks/shop";

/// Registers the route when `shop.secret` is set; otherwise it stays a 404.
pub fn configure(cfg: &mut web::ServiceConfig, program: Arc<Program>, secret: &Secret) {
    if !secret.is_set() {
        return;
    }
    cfg.service(
        web::resource(PATH)
            .app_data(web::Data::new(ShopSecret(secret.clone())))
            .app_data(web::Data::from(program))
            .route(web::post().to(receive)),
    );
}

struct ShopSecret(Secret);

#[derive(Deserialize)]
struct EventBody {
    event: String,
    /// A string, or a JSON number for shops with numeric order numbers.
    order_number: serde_json::Value,
}

/// What happened, for the shop's delivery log. Amounts are those of the (first) reversal.
#[derive(Debug, Serialize)]
struct Answer {
    /// `reversed`, `recorded_before_claim` or `already_reversed`.
    result: &'static str,
    order_number: String,
    reason: ReversalReason,
    points_credited: u64,
    points_taken: u64,
    shortfall: u64,
    /// RFC 3339, UTC: when the order was (first) reversed.
    reversed_at: String,
}

impl Answer {
    fn new(result: &'static str, order: &OrderNumber, r: &Reversal) -> Self {
        Answer {
            result,
            order_number: order.to_string(),
            reason: r.reason,
            points_credited: r.credited.0,
            points_taken: r.taken.0,
            shortfall: r.shortfall.0,
            reversed_at: r.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }
}

/// 401 without a valid signature (nothing parsed), 400 for a body that is not an order event,
/// 422 for an event we do not act on, 500 if the store fails (the shop should deliver again),
/// else 200 with what happened.
#[tracing::instrument(name = "shop_webhook", skip_all, fields(event))]
async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    secret: web::Data<ShopSecret>,
    program: web::Data<Program>,
) -> Result<HttpResponse, ApiError> {
    let header = req
        .headers()
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok());
    if !verify_sha256_header(secret.0.expose().as_bytes(), &body, header) {
        tracing::warn!(
            signed = header.is_some(),
            "shop webhook refused: bad or missing signature"
        );
        return Err(ApiError::BadSignature);
    }
    let (order, reason) = parse_event(&body)?;
    tracing::Span::current().record("event", tracing::field::debug(reason));
    let outcome = program.reverse_order(order.clone(), reason).await?;
    let answer = match &outcome {
        ReverseOutcome::Reversed { reversal, .. } => Answer::new("reversed", &order, reversal),
        ReverseOutcome::RecordedBeforeClaim { reversal } => {
            Answer::new("recorded_before_claim", &order, reversal)
        }
        ReverseOutcome::AlreadyReversed { reversal } => {
            Answer::new("already_reversed", &order, reversal)
        }
    };
    Ok(HttpResponse::Ok().json(answer))
}

/// Reads a (signature-checked) body: `{"event": "order.refunded" | "order.cancelled",
/// "order_number": "1001"}`; other fields are ignored.
fn parse_event(body: &[u8]) -> Result<(OrderNumber, ReversalReason), ApiError> {
    let bad = |m: String| ApiError::BadRequest(m);
    let e: EventBody =
        serde_json::from_slice(body).map_err(|e| bad(format!("not an order event: {e}")))?;
    let reason = match e.event.as_str() {
        "order.refunded" => ReversalReason::Refunded,
        "order.cancelled" | "order.canceled" => ReversalReason::Cancelled,
        other => {
            return Err(ApiError::UnsupportedEvent(format!(
            "unsupported event {other:?}: this endpoint takes order.refunded and order.cancelled"
        )))
        }
    };
    let raw = match &e.order_number {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return Err(bad("order_number is not a string or number".into())),
    };
    let order = OrderNumber::parse(&raw).map_err(|e| bad(format!("order_number: {e}")))?;
    Ok((order, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refunds_and_cancellations_are_read_with_string_or_number_order_numbers() {
        let cases: [(&[u8], &str, ReversalReason); 4] = [
            (
                br##"{"event":"order.refunded","order_number":"#1001"}"##,
                "1001",
                ReversalReason::Refunded,
            ),
            (
                br#"{"event":"order.cancelled","order_number":1002,"extra":true}"#,
                "1002",
                ReversalReason::Cancelled,
            ),
            (
                br#"{"event":"order.canceled","order_number":"A-7"}"#,
                "A-7",
                ReversalReason::Cancelled,
            ),
            (
                br#"{"order_number":"9","event":"order.refunded"}"#,
                "9",
                ReversalReason::Refunded,
            ),
        ];
        for (body, number, reason) in cases {
            let (order, got) = parse_event(body).unwrap();
            assert_eq!((order.as_str(), got), (number, reason));
        }
    }

    #[test]
    fn malformed_bodies_are_bad_requests_and_other_events_unsupported() {
        let cases: [(&[u8], &str); 7] = [
            (b"not json", "bad_request"),
            (br#"{"event":"order.refunded"}"#, "bad_request"),
            (br#"{"order_number":"1001"}"#, "bad_request"),
            (
                br#"{"event":"order.refunded","order_number":"no digits"}"#,
                "bad_request",
            ),
            (
                br#"{"event":"order.refunded","order_number":[1]}"#,
                "bad_request",
            ),
            (
                br#"{"event":"order.paid","order_number":"1001"}"#,
                "unsupported_event",
            ),
            (
                br#"{"event":"order.refund","order_number":"1001"}"#,
                "unsupported_event",
            ),
        ];
        for (body, code) in cases {
            let err = parse_event(body).unwrap_err();
            assert_eq!(err.code(), code, "{}", String::from_utf8_lossy(body));
        }
    }
}
