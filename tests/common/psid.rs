//! One Messenger user as the tests play them: signed webhook bodies with fresh mids and growing
//! timestamps, and the Send API bodies that answer them.

use super::{meta_signature, FakeGraphApi};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

pub const PAGE: &str = "104857600000001";
pub const PATH: &str = "/webhooks/messenger";

/// One Messenger user: builds their webhook bodies with fresh mids and growing timestamps.
pub struct Psid {
    pub id: String,
    clock: AtomicI64,
}

impl Psid {
    pub fn new(id: &str) -> Psid {
        Psid {
            id: id.into(),
            clock: AtomicI64::new(1_763_846_400_000),
        }
    }

    pub fn event(&self, kind: &str, mut content: Value) -> Vec<u8> {
        let ts = self.clock.fetch_add(1000, Ordering::Relaxed);
        if kind != "referral" {
            content["mid"] = json!(format!("m_{}_{ts}", self.id));
        }
        let event =
            json!({"sender":{"id":self.id},"recipient":{"id":PAGE},"timestamp":ts, kind: content});
        serde_json::to_vec(
            &json!({"object":"page","entry":[{"id":PAGE,"time":ts,"messaging":[event]}]}),
        )
        .unwrap()
    }

    pub fn text(&self, text: &str) -> Vec<u8> {
        self.event("message", json!({ "text": text }))
    }

    pub fn tap(&self, title: &str, payload: &str) -> Vec<u8> {
        self.event(
            "message",
            json!({ "text": title, "quick_reply": { "payload": payload } }),
        )
    }

    pub fn get_started(&self, referral: &str) -> Vec<u8> {
        self.event(
            "postback",
            json!({"title":"Get Started","payload":"GET_STARTED",
                "referral":{"ref":referral,"source":"SHORTLINK","type":"OPEN_THREAD"}}),
        )
    }

    pub fn referral(&self, referral: &str) -> Vec<u8> {
        self.event(
            "referral",
            json!({"ref":referral,"source":"SHORTLINK","type":"OPEN_THREAD"}),
        )
    }
}

/// Posts a signed webhook to `address` and returns the Send API bodies that answer it: waits
/// for the first new message to `psid`, then until no more arrive for a moment.
pub async fn exchange(
    client: &reqwest::Client,
    address: &str,
    graph: &FakeGraphApi,
    psid: &Psid,
    body: Vec<u8>,
) -> Vec<Value> {
    let before = sent_to(graph, &psid.id).len();
    let res = client
        .post(format!("{address}{PATH}"))
        .header("Content-Type", "application/json")
        .header("X-Hub-Signature-256", meta_signature(&body))
        .body(body)
        .send()
        .await
        .expect("POST webhook");
    assert_eq!(res.status(), 200);
    // Done when something arrived and nothing more came for 200 ms (a turn may send several).
    let (mut seen, mut quiet) = (before, 0);
    for _ in 0..500 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = sent_to(graph, &psid.id).len();
        quiet = if now == seen { quiet + 1 } else { 0 };
        seen = now;
        if now > before && quiet >= 10 {
            return sent_to(graph, &psid.id).split_off(before);
        }
    }
    panic!("no reply to {} within 10 s", psid.id);
}

/// Waits up to 10 s for `cond`; panics naming `what` otherwise.
pub async fn until(cond: impl Fn() -> bool, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn sent_to(graph: &FakeGraphApi, psid: &str) -> Vec<Value> {
    graph
        .sent()
        .into_iter()
        .filter(|b| b["recipient"]["id"] == psid)
        .collect()
}

pub fn text_of(messages: &[Value]) -> String {
    messages
        .iter()
        .map(FakeGraphApi::text_of)
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn quick_reply_payloads(message: &Value) -> Vec<String> {
    message["message"]["quick_replies"]
        .as_array()
        .map(|qr| {
            qr.iter()
                .map(|q| q["payload"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}
