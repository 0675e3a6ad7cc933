//! Chat-channel bodies: the Messenger webhook (alone and behind its signature check) and the
//! ManyChat Dynamic Block request.

use loyalty_bot::channels::manychat::request::ContactRequest;
use loyalty_bot::channels::manychat::Endpoint;
use loyalty_bot::channels::messenger::{
    accept_notification, input_of, parse_notification, Refused,
};
use loyalty_bot::config::Secret;
use loyalty_bot::domain::{Channel, ChatIdentity};
use loyalty_bot::signature::hmac_sha256_hex;

/// A POST body as Meta would deliver it, after the signature check.
pub fn messenger_webhook(data: &[u8]) {
    let Ok(events) = parse_notification(data) else {
        return;
    };
    // Events need the envelope and an entry, which are JSON containers, and so are each event
    // and its sender (serde also reads a struct from an array): the body bounds the count.
    let containers = data.iter().filter(|&&b| b == b'{' || b == b'[').count();
    assert!(
        events.is_empty() || 2 * events.len() + 2 <= containers,
        "{} events from {containers} containers",
        events.len()
    );
    for event in &events {
        assert!(event.key.contains(':'), "key {:?} names no page", event.key);
        // What the worker does later with each recorded event.
        let _ = input_of(&event.payload);
        let _ = ChatIdentity::new(Channel::Messenger, &event.sender);
    }
}

const APP_SECRET: &str = "fuzz-app-secret";

/// The whole intake decision: signature over the raw bytes, then the parse. Layout: a flags
/// byte, a header line (used when not signing), then the body. Flags: bit 0 signs the body
/// correctly, bit 1 upper-cases the hex, bit 2 pads the header with spaces, bit 3 sends no
/// header at all, bit 4 leaves the app secret unset.
pub fn messenger_signed(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (line, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let secret = Secret::new(if flags & 16 == 0 { APP_SECRET } else { "" });
    let expected = hmac_sha256_hex(APP_SECRET.as_bytes(), body);
    let header = if flags & 1 == 1 {
        let hex: std::borrow::Cow<'_, str> = if flags & 2 == 2 {
            expected.to_ascii_uppercase().into()
        } else {
            expected.as_str().into()
        };
        let pad = if flags & 4 == 4 { " " } else { "" };
        Some(format!("{pad}sha256={hex}{pad}"))
    } else {
        std::str::from_utf8(line).ok().map(str::to_owned)
    }
    .filter(|_| flags & 8 == 0);

    let result = accept_notification(&secret, header.as_deref(), body);
    // An independent reading of "signed correctly": `sha256=` and the HMAC in hex, any case.
    let signed = secret.is_set()
        && header.as_deref().is_some_and(|h| {
            h.trim()
                .strip_prefix("sha256=")
                .is_some_and(|hex| hex.eq_ignore_ascii_case(&expected))
        });
    match (signed, result) {
        (false, Err(Refused::Signature)) => {}
        (false, other) => panic!("unsigned body got past the check: {other:?}"),
        (true, Err(Refused::Signature)) => panic!("correct signature {header:?} refused"),
        (true, result) => {
            // Behind a good signature the parse is exactly the webhook parser's.
            let direct = parse_notification(body).map_err(|e| e.to_string());
            let via = result.map_err(|e| e.to_string());
            assert_eq!(via, direct);
        }
    }
}

/// What ManyChat (or our own callback) posts to a Dynamic Block endpoint.
pub fn manychat_body(data: &[u8]) {
    let Ok(request) = ContactRequest::parse(data) else {
        return;
    };
    let id = &request.subscriber_id;
    assert!(!id.is_empty() && id.trim() == id, "subscriber id {id:?}");
    let is_callback = serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v.as_object().map(|o| o.contains_key("subscriber_id")))
        .expect("a parsed body is a JSON object");
    for endpoint in Endpoint::ALL {
        for (key, value) in request.vars_for(endpoint) {
            assert!(
                !value.is_empty() && value.trim() == value,
                "{endpoint:?}: {key} = {value:?}"
            );
            assert!(!endpoint.excluded().contains(&key.as_str()), "{key}");
            if is_callback {
                assert!(!["subscriber_id", "id", "first_name", "locale"].contains(&key.as_str()));
            } else {
                // Stale custom fields must not leak into another endpoint's flow.
                assert!(
                    endpoint.fields().contains(&key.as_str()),
                    "{endpoint:?}: {key}"
                );
            }
        }
    }
    let _ = ChatIdentity::new(Channel::Manychat, id);
}
