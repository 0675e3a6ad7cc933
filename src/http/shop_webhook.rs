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
use crate::program::{FollowError, Followed, Program};
use crate::shop::SIGNATURE_HEADER;
use crate::signature::verify_sha256_header;
use crate::store::{ReverseOutcome, SettleOutcome};
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
    /// For a partial refund: all that was refunded of the order so far (a string or number).
    #[serde(default)]
    refunded_total: Option<Box<serde_json::value::RawValue>>,
}

/// What a signed event asks for.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    /// Refunded in full or cancelled: everything the order earned goes back.
    Reversal(ReversalReason),
    /// Refunded in part: `refunded` of the order's total so far.
    PartialRefund(rust_decimal::Decimal),
}

/// A partial refund's answer: how the order's points moved.
#[derive(Debug, Serialize)]
struct PartialAnswer {
    /// `changed` (points taken back now), `unchanged` (already there, or the order ended
    /// before), `unclaimed` (nobody has the order: a claim earns on what is left).
    result: &'static str,
    order_number: String,
    points_taken: u64,
    shortfall: u64,
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
    let (order, event) = parse_event(&body)?;
    tracing::Span::current().record("event", tracing::field::debug(&event));
    let reason = match event {
        Event::Reversal(reason) => reason,
        Event::PartialRefund(refunded) => {
            let followed = match program.refund_in_part(order.clone(), refunded).await {
                Ok(f) => f,
                Err(FollowError::Shop(e)) => {
                    tracing::warn!(order = %order, error = %e, "partial refund: the shop's verify endpoint could not be asked");
                    return Err(ApiError::ShopUnavailable(format!(
                        "could not read order {order} from the shop's verify endpoint: {e}"
                    )));
                }
                Err(FollowError::Program(e)) => return Err(e.into()),
            };
            return Ok(partial_answer(&order, followed));
        }
    };
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

/// The answer to a partial refund; one that took the order to nothing is its reversal.
fn partial_answer(order: &OrderNumber, followed: Followed) -> HttpResponse {
    let (result, taken, shortfall) = match followed {
        Followed::Settled(SettleOutcome::Changed {
            ended: Some(reversal),
            ..
        }) => return HttpResponse::Ok().json(Answer::new("reversed", order, &reversal)),
        Followed::Settled(SettleOutcome::Changed {
            taken, shortfall, ..
        }) => ("changed", taken.0, shortfall.0),
        Followed::Settled(SettleOutcome::Unclaimed) => ("unclaimed", 0, 0),
        _ => ("unchanged", 0, 0),
    };
    HttpResponse::Ok().json(PartialAnswer {
        result,
        order_number: order.to_string(),
        points_taken: taken,
        shortfall,
    })
}

/// Reads a (signature-checked) body: `{"event": "order.refunded" | "order.cancelled",
/// "order_number": "1001"}`, and for a partial refund `"refunded_total": "20.00"`; other
/// fields are ignored.
fn parse_event(body: &[u8]) -> Result<(OrderNumber, Event), ApiError> {
    let bad = |m: String| ApiError::BadRequest(m);
    let e: EventBody =
        serde_json::from_slice(body).map_err(|e| bad(format!("not an order event: {e}")))?;
    let event = match e.event.as_str() {
        "order.refunded" => match &e.refunded_total {
            None => Event::Reversal(ReversalReason::Refunded),
            Some(raw) => Event::PartialRefund(
                crate::shop::amount_from_json(raw)
                    .map_err(|m| bad(format!("refunded_total: {m}")))?,
            ),
        },
        "order.cancelled" | "order.canceled" => Event::Reversal(ReversalReason::Cancelled),
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
    Ok((order, event))
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
            assert_eq!((order.as_str(), got), (number, Event::Reversal(reason)));
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
