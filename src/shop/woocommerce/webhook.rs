//! What WooCommerce sends to `POST /webhooks/woocommerce`: the signature check over the raw
//! body and the reading of a delivery into a [`WooEvent`]. Pure: the HTTP handler verifies
//! first, then parses, then reads the order again from the shop (the body is a trigger, not
//! the truth).

use crate::domain::OrderId;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header WooCommerce signs each delivery with (not the creation ping).
pub const SIGNATURE_HEADER: &str = "X-WC-Webhook-Signature";
/// The header naming the delivery's topic, `order.updated`; absent from the creation ping.
pub const TOPIC_HEADER: &str = "X-WC-Webhook-Topic";
/// One id per delivery attempt (WooCommerce does not retry, so one per event in practice).
pub const DELIVERY_HEADER: &str = "X-WC-Webhook-Delivery-ID";

/// Checks `X-WC-Webhook-Signature`: base64 of HMAC-SHA256 over the body exactly as received,
/// keyed with the webhook's secret; compared in constant time.
pub fn verify_webhook(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(given) = header.map(str::trim).filter(|h| !h.is_empty()) else {
        return false;
    };
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(given) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    // Constant time, and a length other than 32 bytes is refused.
    mac.verify_slice(&given).is_ok()
}

/// What a delivery asks of us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WooEvent {
    /// Sent once when the owner saves the webhook: answer 200, do nothing else. It carries
    /// no signature.
    Ping { webhook_id: u64 },
    /// An order changed (`order.updated` also fires on refunds) or went away: read it again.
    Order { topic: OrderTopic, id: OrderId },
    /// A topic we do not act on (a coupon or product webhook pointed here): answer 200 so the
    /// shop does not disable the webhook, and log it.
    Other { topic: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderTopic {
    Created,
    Updated,
    Deleted,
    Restored,
}

impl OrderTopic {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderTopic::Created => "order.created",
            OrderTopic::Updated => "order.updated",
            OrderTopic::Deleted => "order.deleted",
            OrderTopic::Restored => "order.restored",
        }
    }
}

/// Reads a delivery. `topic` is the `X-WC-Webhook-Topic` header: without it the body must be
/// the ping's form `webhook_id=N`. An order topic's body is the order JSON (`{"id": N}` alone
/// for `order.deleted`); only its `id` is read. `Err` says what is wrong, for a 400.
pub fn webhook_event(topic: Option<&str>, body: &[u8]) -> Result<WooEvent, String> {
    let Some(topic) = topic.map(str::trim) else {
        return ping(body);
    };
    let topic = match topic.to_ascii_lowercase().as_str() {
        "order.created" => OrderTopic::Created,
        "order.updated" => OrderTopic::Updated,
        "order.deleted" => OrderTopic::Deleted,
        "order.restored" => OrderTopic::Restored,
        other => {
            return Ok(WooEvent::Other {
                topic: other.chars().take(64).collect(),
            })
        }
    };
    #[derive(serde::Deserialize)]
    struct Identified {
        id: serde_json::Value,
    }
    let body: Identified = serde_json::from_slice(body)
        .map_err(|e| format!("{} body without an order id: {e}", topic.as_str()))?;
    let id = match &body.id {
        serde_json::Value::Number(n) if n.is_u64() => n.to_string(),
        serde_json::Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.clone()
        }
        _ => return Err(format!("{}: id is not an order id", topic.as_str())),
    };
    let id = OrderId::parse(&id).map_err(|e| e.to_string())?;
    Ok(WooEvent::Order { topic, id })
}

/// The creation ping: `webhook_id=<digits>` and nothing else.
fn ping(body: &[u8]) -> Result<WooEvent, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the ping body is not text".to_owned())?;
    let mut pairs = url::form_urlencoded::parse(text.trim().as_bytes());
    match (pairs.next(), pairs.next()) {
        (Some((key, value)), None) if key == "webhook_id" => value
            .parse::<u64>()
            .map(|webhook_id| WooEvent::Ping { webhook_id })
            .map_err(|_| "webhook_id is not a number".to_owned()),
        _ => Err("no X-WC-Webhook-Topic header, and the body is not a ping".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const BODY: &[u8] =
        include_bytes!("../../../fixtures/woocommerce/webhook-order-updated.body.json");
    const PING: &[u8] = include_bytes!("../../../fixtures/woocommerce/webhook-ping.form.txt");

    fn vector() -> (String, String) {
        let all: Value = serde_json::from_slice(include_bytes!(
            "../../../fixtures/woocommerce/signature-vectors.json"
        ))
        .unwrap();
        let v = &all["woocommerce_x_wc_webhook_signature"][0];
        assert_eq!(v["file"], "woocommerce-webhook-order-updated.body.json");
        assert_eq!(v["body_bytes"].as_u64(), Some(BODY.len() as u64));
        let s = |k: &str| v[k].as_str().unwrap().to_owned();
        (s("webhook_secret"), s("header_value"))
    }

    #[test]
    fn the_documented_vector_verifies() {
        let (secret, header) = vector();
        assert!(verify_webhook(secret.as_bytes(), BODY, Some(&header)));
    }

    #[test]
    fn a_flipped_byte_a_reserialised_body_or_another_key_does_not() {
        let (secret, header) = vector();
        let key = secret.as_bytes();
        for i in [0, BODY.len() / 2, BODY.len() - 1] {
            let mut flipped = BODY.to_vec();
            flipped[i] ^= 0x01;
            assert!(!verify_webhook(key, &flipped, Some(&header)), "byte {i}");
        }
        // Same JSON, serialised again: `\/` becomes `/`, so the bytes (and the HMAC) differ.
        let value: Value = serde_json::from_slice(BODY).unwrap();
        let again = serde_json::to_vec(&value).unwrap();
        assert_ne!(again, BODY);
        assert!(!verify_webhook(key, &again, Some(&header)));
        assert!(!verify_webhook(b"another-secret", BODY, Some(&header)));
        assert!(!verify_webhook(key, BODY, None));
        assert!(!verify_webhook(key, BODY, Some("")));
        assert!(!verify_webhook(key, BODY, Some("not base64!")));
        assert!(!verify_webhook(
            key,
            BODY,
            Some(&header[..header.len() - 4])
        ));
        let hex = crate::signature::hmac_sha256_hex(key, BODY);
        assert!(!verify_webhook(key, BODY, Some(&hex)), "hex is not base64");
    }

    #[test]
    fn the_ping_is_read_without_a_topic() {
        assert_eq!(
            webhook_event(None, PING),
            Ok(WooEvent::Ping { webhook_id: 142 })
        );
        for bad in [&b""[..], b"webhook_id=x", b"webhook_id=1&x=2", BODY] {
            assert!(webhook_event(None, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn order_topics_give_the_order_id() {
        let updated = webhook_event(Some("order.updated"), BODY).unwrap();
        assert_eq!(
            updated,
            WooEvent::Order {
                topic: OrderTopic::Updated,
                id: OrderId::parse("727").unwrap()
            }
        );
        let deleted = webhook_event(Some("order.deleted"), br#"{"id":727}"#).unwrap();
        assert!(
            matches!(deleted, WooEvent::Order { topic: OrderTopic::Deleted, ref id } if id.as_str() == "727")
        );
        for bad in [
            &b"{}"[..],
            br#"{"id":-1}"#,
            br#"{"id":"a b"}"#,
            b"webhook_id=142",
        ] {
            assert!(
                webhook_event(Some("order.updated"), bad).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn other_topics_are_named_not_refused() {
        let e = webhook_event(Some("coupon.created"), b"{}").unwrap();
        assert_eq!(
            e,
            WooEvent::Other {
                topic: "coupon.created".into()
            }
        );
    }
}
