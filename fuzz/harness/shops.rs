//! The shops' order webhooks: Shopify's and WooCommerce's signature checks over the raw body,
//! and the reading of a delivery into the order it names. Layout: a selector byte (bit 0:
//! WooCommerce, else Shopify; bit 1: sign the body correctly), a topic line (no topic when
//! empty, for WooCommerce's ping), then the body. (Bit 1 is kept for seeds' sake; every
//! input is checked both signed and unsigned.)

use loyalty_bot::shop::{shopify, woocommerce};

const SECRET: &[u8] = b"fuzz-webhook-secret";

pub fn shop_webhook(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (line, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let topic = std::str::from_utf8(line).ok().filter(|t| !t.is_empty());
    let mac = loyalty_bot::signature::hmac_sha256(SECRET, body);
    let good = base64_of(&mac);
    // A correct signature verifies and the body's own text as a signature does not, nor one
    // under another key: whatever the body is.
    let other = base64_of(&loyalty_bot::signature::hmac_sha256(b"another key", body));
    let claimed = std::str::from_utf8(body).ok();
    for verify in [shopify::verify_webhook, woocommerce::verify_webhook] {
        assert!(verify(SECRET, body, Some(&good)));
        assert!(!verify(SECRET, body, Some(&other)));
        assert!(!verify(SECRET, body, None));
        if let Some(text) = claimed.filter(|t| *t != good) {
            assert!(!verify(SECRET, body, Some(text)));
        }
    }
    if flags & 1 == 0 {
        let Ok(id) = shopify::order_gid_from_webhook(topic.unwrap_or_default(), body) else {
            return;
        };
        // Only an order's GID is ever read again from the shop.
        let rest = id.as_str().strip_prefix("gid://shopify/Order/");
        assert!(rest.is_some_and(|r| !r.is_empty()), "an order GID: {id}");
    } else {
        if let Ok(woocommerce::WooEvent::Order { id, .. }) = woocommerce::webhook_event(topic, body)
        {
            assert!(
                id.as_str().bytes().all(|b| b.is_ascii_digit()),
                "a WooCommerce order id: {id}"
            );
        }
    }
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
