//! Pure helpers for `POST /webhooks/shopify`: the `X-Shopify-Hmac-Sha256` check over the raw
//! body, and which order a delivery is about. The handler treats a delivery as a trigger only:
//! it reads the order again by GID ([`crate::shop::Shop::order_by_id`]).

use crate::domain::OrderId;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// The header Shopify signs each delivery with.
pub const SIGNATURE_HEADER: &str = "X-Shopify-Hmac-Sha256";

/// Whether `header` is the base64 HMAC-SHA256 of the raw `body` under `secret`, compared in
/// constant time. Check before parsing: re-serialised JSON does not verify.
pub fn verify_webhook(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(given) = header.and_then(|h| STANDARD.decode(h.trim()).ok()) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    // `verify_slice` compares in constant time and refuses any length but 32 bytes.
    mac.verify_slice(&given).is_ok()
}

/// The order a delivery of `topic` (`X-Shopify-Topic`) is about, as a GID: the order itself
/// for `orders/paid`, `orders/cancelled` and `orders/updated`, the refund's `order_id` for
/// `refunds/create`.
pub fn order_gid_from_webhook(topic: &str, body: &[u8]) -> Result<OrderId, String> {
    let json: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let gid = match topic.trim() {
        "orders/paid" | "orders/cancelled" | "orders/updated" => {
            match json["admin_graphql_api_id"].as_str() {
                Some(gid) if gid.starts_with("gid://shopify/Order/") => gid.to_owned(),
                _ => order_gid(&json["id"]).ok_or("the order has no id")?,
            }
        }
        "refunds/create" => order_gid(&json["order_id"]).ok_or("the refund has no order_id")?,
        other => return Err(format!("topic `{other}` is not one we subscribe to")),
    };
    OrderId::parse(&gid).map_err(|e| e.to_string())
}

/// `gid://shopify/Order/<id>` from a numeric id, given as a JSON number (read as an integer,
/// never a float: ids pass 2^53) or a string of digits.
fn order_gid(id: &Value) -> Option<String> {
    let digits = match id {
        Value::Number(n) => n.as_u64()?.to_string(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.clone(),
        _ => return None,
    };
    Some(format!("gid://shopify/Order/{digits}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAID: &[u8] =
        include_bytes!("../../../fixtures/shopify/shopify-webhook-orders-paid.json");
    const VECTORS: &str = include_str!("../../../fixtures/shopify/signature-vectors.json");

    fn vector() -> (String, String) {
        let v: Value = serde_json::from_str(VECTORS).unwrap();
        let v = &v["shopify_x_shopify_hmac_sha256"][0];
        assert_eq!(v["file"], "shopify-webhook-orders-paid.json");
        assert_eq!(v["body_bytes"].as_u64(), Some(PAID.len() as u64));
        let s = |k: &str| v[k].as_str().unwrap().to_owned();
        (s("client_secret"), s("header_value"))
    }

    #[test]
    fn the_published_vector_verifies() {
        let (secret, header) = vector();
        assert!(verify_webhook(secret.as_bytes(), PAID, Some(&header)));
        assert!(verify_webhook(
            secret.as_bytes(),
            PAID,
            Some(&format!(" {header}\n"))
        ));
    }

    #[test]
    fn a_flipped_byte_reserialised_json_or_another_key_does_not() {
        let (secret, header) = vector();
        let mut flipped = PAID.to_vec();
        flipped[100] ^= 0x01;
        assert!(!verify_webhook(secret.as_bytes(), &flipped, Some(&header)));
        let reserialised =
            serde_json::to_vec(&serde_json::from_slice::<Value>(PAID).unwrap()).unwrap();
        assert_ne!(reserialised, PAID);
        assert!(!verify_webhook(
            secret.as_bytes(),
            &reserialised,
            Some(&header)
        ));
        assert!(!verify_webhook(b"another-secret", PAID, Some(&header)));
        assert!(!verify_webhook(secret.as_bytes(), PAID, None));
        assert!(!verify_webhook(
            secret.as_bytes(),
            PAID,
            Some("not base64!")
        ));
        let hex = hex::encode(STANDARD.decode(&header).unwrap());
        assert!(!verify_webhook(secret.as_bytes(), PAID, Some(&hex)));
    }

    #[test]
    fn each_topic_names_its_order_by_gid() {
        let gid = "gid://shopify/Order/5712345678901";
        for topic in ["orders/paid", "orders/cancelled", "orders/updated"] {
            assert_eq!(order_gid_from_webhook(topic, PAID).unwrap().as_str(), gid);
        }
        let bare_id = br##"{"id": 5712345678901, "name": "#1001"}"##;
        assert_eq!(
            order_gid_from_webhook("orders/updated", bare_id)
                .unwrap()
                .as_str(),
            gid
        );
        let big = br#"{"id": 18446744073709551615}"#;
        assert_eq!(
            order_gid_from_webhook("orders/paid", big).unwrap().as_str(),
            "gid://shopify/Order/18446744073709551615"
        );
        let refund =
            br#"{"id": 890088186047892319, "order_id": 5712345678901, "transactions": []}"#;
        assert_eq!(
            order_gid_from_webhook("refunds/create", refund)
                .unwrap()
                .as_str(),
            gid
        );
        let as_text = br#"{"order_id": "5712345678901"}"#;
        assert_eq!(
            order_gid_from_webhook("refunds/create", as_text)
                .unwrap()
                .as_str(),
            gid
        );
    }

    #[test]
    fn unknown_topics_and_bodies_without_an_order_are_errors() {
        assert!(order_gid_from_webhook("products/create", PAID).is_err());
        assert!(order_gid_from_webhook("orders/paid", b"not json").is_err());
        assert!(order_gid_from_webhook("orders/paid", br#"{"id": 1.5}"#).is_err());
        assert!(order_gid_from_webhook("orders/paid", br#"{"id": "12a"}"#).is_err());
        assert!(order_gid_from_webhook("refunds/create", br#"{"id": 1}"#).is_err());
    }
}
