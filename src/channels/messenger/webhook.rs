//! Messenger webhook wire types: parses a (signature-checked) POST body into the events we act
//! on, each with a de-duplication key, and turns a recorded event back into an engine input.
//! No I/O here; `handlers` does the signature check and the recording.

use crate::flows::InputEvent;
use crate::store::{EventPayload, InboundEvent};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The body cannot be a Messenger webhook notification.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook body is not valid JSON of the expected shape")]
    Malformed(#[source] serde_json::Error),
    #[error("webhook object is {0:?}, expected \"page\"")]
    NotPage(String),
}

#[derive(Deserialize)]
struct Envelope<'a> {
    object: String,
    #[serde(default, borrow)]
    entry: Vec<Entry<'a>>,
}

/// One Page's slice of a notification. `standby[]` (another app owns the thread) is not read:
/// we must not answer conversations we do not own. Events stay raw JSON text here: each is
/// parsed once into [`Event`] and stored as the text it came as.
#[derive(Deserialize)]
struct Entry<'a> {
    id: Id,
    #[serde(default, borrow)]
    messaging: Vec<&'a RawValue>,
}

/// Meta sends ids as strings, but they exceed 2^53, so a number is accepted and kept exact.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
enum Id {
    Text(String),
    Number(u64),
}

impl Id {
    fn into_string(self) -> String {
        match self {
            Id::Text(s) => s,
            Id::Number(n) => n.to_string(),
        }
    }
}

#[derive(Deserialize)]
struct Party {
    id: Id,
}

/// One `messaging[]` item; the member present tells the kind.
#[derive(Deserialize)]
struct Event {
    sender: Party,
    #[serde(default)]
    timestamp: i64,
    message: Option<Message>,
    postback: Option<Postback>,
    referral: Option<Referral>,
    optin: Option<Optin>,
}

#[derive(Deserialize)]
struct Message {
    mid: Option<String>,
    text: Option<String>,
    #[serde(default)]
    is_echo: bool,
    quick_reply: Option<QuickReply>,
}

#[derive(Deserialize)]
struct QuickReply {
    payload: Option<String>,
}

#[derive(Deserialize)]
struct Postback {
    mid: Option<String>,
    title: Option<String>,
    payload: Option<String>,
    referral: Option<Referral>,
}

#[derive(Deserialize)]
struct Referral {
    #[serde(rename = "ref")]
    reference: Option<String>,
}

#[derive(Deserialize)]
struct Optin {
    #[serde(rename = "ref")]
    reference: Option<String>,
}

/// Parses a notification into the events worth recording, in body order. Echoes, reads,
/// deliveries, reactions and unknown kinds are left out; so are single events that lack a
/// sender (logged), because refusing the whole batch would make Meta redeliver it forever.
pub fn parse_notification(body: &[u8]) -> Result<Vec<InboundEvent>, WebhookError> {
    let envelope: Envelope<'_> = serde_json::from_slice(body).map_err(WebhookError::Malformed)?;
    if envelope.object != "page" {
        return Err(WebhookError::NotPage(envelope.object));
    }
    let mut out = Vec::new();
    for entry in envelope.entry {
        let page = entry.id.into_string();
        for raw in entry.messaging {
            match serde_json::from_str::<Event>(raw.get()) {
                Ok(event) => out.extend(record_for(&page, event, raw)),
                Err(e) => {
                    tracing::warn!(channel = "messenger", error = %e, "skipping unreadable event")
                }
            }
        }
    }
    Ok(out)
}

/// The recordable form of one event, or `None` for kinds we do not act on.
fn record_for(page: &str, event: Event, raw: &RawValue) -> Option<InboundEvent> {
    let sender = event.sender.id.into_string();
    let ts = event.timestamp;
    let derived = |kind: &str, reference: Option<&str>| {
        format!("{page}:{sender}:{kind}:{ts}:{}", reference.unwrap_or(""))
    };
    let key = if let Some(m) = &event.message {
        if m.is_echo {
            return None;
        }
        match &m.mid {
            Some(mid) => format!("{page}:{mid}"),
            None => derived("message", None),
        }
    } else if let Some(p) = &event.postback {
        match &p.mid {
            Some(mid) => format!("{page}:{mid}"),
            None => derived("postback", p.payload.as_deref()),
        }
    } else if let Some(r) = &event.referral {
        derived("referral", r.reference.as_deref())
    } else if let Some(o) = &event.optin {
        derived("optin", o.reference.as_deref())
    } else {
        return None;
    };
    Some(InboundEvent {
        key,
        sender,
        timestamp_ms: ts,
        payload: EventPayload::from_raw(raw),
    })
}

/// Postback payloads that mean "the Get Started button", whatever the Page configured.
const GET_STARTED_PAYLOADS: &[&str] = &["GET_STARTED", "GET_STARTED_PAYLOAD", "Get Started"];

/// What the customer did, for the engine. `None`: nothing to answer (a marketing opt-in
/// without a `ref`; the feature is retired and a reply would be unsolicited).
pub fn input_of(payload: &EventPayload) -> Option<InputEvent> {
    let event: Event = serde_json::from_str(payload.get()).ok()?;
    if let Some(m) = event.message {
        if let Some(p) = m
            .quick_reply
            .and_then(|q| q.payload)
            .filter(|p| !p.is_empty())
        {
            return Some(InputEvent::Payload(p));
        }
        // Attachments and stickers arrive without text; an empty text gets the help answer.
        return Some(InputEvent::Text(m.text.unwrap_or_default()));
    }
    if let Some(p) = event.postback {
        let payload = p.payload.unwrap_or_default();
        let referral = p
            .referral
            .and_then(|r| r.reference)
            .filter(|r| !r.is_empty());
        let is_get_started = GET_STARTED_PAYLOADS.contains(&payload.as_str())
            || p.title
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case("get started"));
        return Some(if referral.is_some() || is_get_started {
            InputEvent::GetStarted { referral }
        } else {
            InputEvent::Payload(payload)
        });
    }
    if let Some(r) = event.referral {
        return r
            .reference
            .filter(|r| !r.is_empty())
            .map(InputEvent::Referral);
    }
    // Send-to-Messenger plugin opt-ins carry the plugin's `data-ref`.
    event
        .optin
        .and_then(|o| o.reference)
        .filter(|r| !r.is_empty())
        .map(InputEvent::Referral)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/fixtures/messenger/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn parse(name: &str) -> Vec<InboundEvent> {
        parse_notification(&fixture(name)).unwrap()
    }

    #[test]
    fn text_message_is_keyed_by_page_and_mid_and_keeps_unicode() {
        let events = parse("messenger-text-message.json");
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(
            e.key,
            "104857600000001:m_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-aBcDeFgHiJkLmNoPqRsTuVwXyZ_01"
        );
        assert_eq!(
            (e.sender.as_str(), e.timestamp_ms),
            ("6915800000000001", 1763846399871)
        );
        let Some(InputEvent::Text(text)) = input_of(&e.payload) else {
            panic!("not text")
        };
        assert_eq!(
            text,
            "Hi! I'd like to join the caf\u{e9} rewards club \u{1F600}"
        );
    }

    #[test]
    fn quick_reply_tap_becomes_its_payload() {
        let events = parse("messenger-quick-reply.json");
        assert_eq!(
            input_of(&events[0].payload),
            Some(InputEvent::Payload("LOYALTY_CLAIM_ORDER".into()))
        );
    }

    #[test]
    fn get_started_with_referral_carries_the_ref() {
        let events = parse("messenger-postback-get-started-referral.json");
        assert!(events[0].key.starts_with("104857600000001:m_GetStarted"));
        assert_eq!(
            input_of(&events[0].payload),
            Some(InputEvent::GetStarted {
                referral: Some("shop42-signup-qr".into())
            })
        );
    }

    #[test]
    fn referral_without_mid_gets_a_derived_key() {
        let events = parse("messenger-referral-mme.json");
        assert_eq!(
            events[0].key,
            "104857600000001:6915800000000001:referral:1763846520001:shop42-receipt-insert"
        );
        assert_eq!(
            input_of(&events[0].payload),
            Some(InputEvent::Referral("shop42-receipt-insert".into()))
        );
    }

    #[test]
    fn echo_is_not_recorded() {
        assert!(parse("messenger-echo.json").is_empty());
    }

    #[test]
    fn marketing_optin_is_recorded_but_not_answered() {
        let events = parse("messenger-optin-notification-messages.json");
        assert_eq!(events.len(), 1);
        assert!(events[0].key.contains(":optin:1763846800001:"));
        assert_eq!(input_of(&events[0].payload), None);
    }

    #[test]
    fn batch_yields_every_entry_but_not_the_read_event() {
        let events = parse("messenger-batched-two-entries.json");
        let senders: Vec<&str> = events.iter().map(|e| e.sender.as_str()).collect();
        assert_eq!(
            senders,
            ["6915800000000003", "6915800000000004", "7023100000000009"]
        );
        assert!(events[2].key.starts_with("104857600000002:m_Batch03"));
        assert_eq!(
            input_of(&events[1].payload),
            Some(InputEvent::Payload("LOYALTY_REDEEM".into()))
        );
        // An image alone is answered like an empty message (help).
        assert_eq!(
            input_of(&events[2].payload),
            Some(InputEvent::Text(String::new()))
        );
    }

    #[test]
    fn plain_postback_and_bare_get_started_are_told_apart() {
        let event = |payload: &str| {
            serde_json::json!({"sender":{"id":"1"},"recipient":{"id":"2"},"timestamp":5,
                "postback":{"title":"x","payload":payload}})
            .into()
        };
        assert_eq!(
            input_of(&event("GET_STARTED")),
            Some(InputEvent::GetStarted { referral: None })
        );
        assert_eq!(
            input_of(&event("LOYALTY_BALANCE")),
            Some(InputEvent::Payload("LOYALTY_BALANCE".into()))
        );
    }

    #[test]
    fn standby_and_numeric_ids_are_handled() {
        let body = br#"{"object":"page","entry":[{"id":42,"time":1,
            "standby":[{"sender":{"id":"7"},"recipient":{"id":"42"},"timestamp":3,"message":{"mid":"m_s","text":"x"}}],
            "messaging":[{"sender":{"id":18446744073709551615},"recipient":{"id":"42"},"timestamp":4,"message":{"mid":"m_1","text":"hi"}}]}]}"#;
        let events = parse_notification(body).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].key, "42:m_1");
        assert_eq!(events[0].sender, "18446744073709551615");
    }

    #[test]
    fn malformed_or_foreign_bodies_are_refused() {
        for body in [
            &b"{not json"[..],
            br#"{"entry":[]}"#,
            br#"{"object":"page","entry":"x"}"#,
        ] {
            assert!(
                matches!(parse_notification(body), Err(WebhookError::Malformed(_))),
                "{body:?}"
            );
        }
        assert!(matches!(
            parse_notification(br#"{"object":"instagram","entry":[]}"#),
            Err(WebhookError::NotPage(_))
        ));
    }

    #[test]
    fn fixture_signatures_verify_over_raw_bytes() {
        let vectors: Value = serde_json::from_slice(&fixture("signature-vectors.json")).unwrap();
        let list = vectors["meta_x_hub_signature_256"].as_array().unwrap();
        assert_eq!(list.len(), 3);
        for v in list {
            let body = fixture(v["file"].as_str().unwrap());
            let secret = v["app_secret"].as_str().unwrap().as_bytes();
            let header = v["header_value"].as_str();
            assert!(
                crate::signature::verify_sha256_header(secret, &body, header),
                "{v}"
            );
            // Re-serialising loses Meta's escapes, so the signature must no longer match.
            let reserialised =
                serde_json::to_vec(&serde_json::from_slice::<Value>(&body).unwrap()).unwrap();
            assert!(!crate::signature::verify_sha256_header(
                secret,
                &reserialised,
                header
            ));
            assert!(!crate::signature::verify_sha256_header(
                b"verify-token",
                &body,
                header
            ));
        }
    }
}
