//! Secrets never reach the logs. The real binary runs with distinctive secret values, every
//! log target at `trace`, and is driven through every route, failures included: bad and
//! missing signatures, wrong tokens, Messenger events answered through the Send API (the page
//! token), shop calls signed with the shop secret, the shop's order webhook signed with it,
//! ManyChat answers carrying the bearer token, admin look-ups and the processing switch. Then
//! everything it wrote is searched for each secret.

mod common;

use common::manychat_api::FakeManychatApi;
use common::{test_overrides, BinaryApp, FakeGraphApi, FakeShop};
use loyalty_bot::shop::SIGNATURE_HEADER;
use loyalty_bot::signature::hmac_sha256_hex;
use serde_json::{json, Value};
use std::time::Duration;

/// Long, unique values: a hit in the logs cannot be a coincidence.
const APP_SECRET: &str = "APPSECRET-d1f7c0a9e4b35b2e";
const VERIFY_TOKEN: &str = "VERIFYTOKEN-8c2e5f1a7b9d";
const PAGE_TOKEN: &str = "EAAGPAGETOKEN-3b8f0e6d2c4a";
const MANYCHAT_TOKEN: &str = "MANYCHATTOKEN-5a1c9e7f3d0b";
const MANYCHAT_API_TOKEN: &str = "1049123:MANYCHATAPI-6b2d0f8e4a1c";
const ADMIN_TOKEN: &str = "ADMINTOKEN-7e4d2b8a6c1f";
const SHOP_SECRET: &str = "SHOPSECRET-2f9b4d6e8a0c";

const PSID: &str = "6915800000000042";
const PAGE: &str = "104857600000001";

struct Driver {
    client: reqwest::Client,
    address: String,
    graph: FakeGraphApi,
    clock: i64,
}

impl Driver {
    async fn webhook(&mut self, body: &[u8], signature: Option<String>) -> u16 {
        let mut req = self
            .client
            .post(format!("{}/webhooks/messenger", self.address))
            .header("Content-Type", "application/json")
            .body(body.to_vec());
        if let Some(sig) = signature {
            req = req.header("X-Hub-Signature-256", sig);
        }
        req.send().await.unwrap().status().as_u16()
    }

    /// A message from the test customer, signed; returns once the bot has answered it.
    async fn say(&mut self, message: Value) {
        self.clock += 1000;
        let mut message = message;
        message["mid"] = json!(format!("m_secret_{}", self.clock));
        let event = json!({"sender": {"id": PSID}, "recipient": {"id": PAGE},
            "timestamp": self.clock, "message": message});
        let body = serde_json::to_vec(
            &json!({"object": "page", "entry": [{"id": PAGE, "time": self.clock, "messaging": [event]}]}),
        )
        .unwrap();
        let sent = self.graph.sent().len();
        let signature = format!("sha256={}", hmac_sha256_hex(APP_SECRET.as_bytes(), &body));
        assert_eq!(self.webhook(&body, Some(signature)).await, 200);
        self.graph
            .wait_for_sent(sent + 1, Duration::from_secs(20))
            .await;
    }

    /// A JSON request with a bearer token (ManyChat's and the admin API's way).
    async fn json(&self, method: reqwest::Method, path: &str, token: &str, body: Value) -> u16 {
        self.client
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn manychat(&self, path: &str, token: &str, body: Value) -> u16 {
        self.json(reqwest::Method::POST, path, token, body).await
    }

    /// The shop's order webhook, signed as the shop would (`sha256=` HMAC of the body) or not.
    async fn shop_event(&self, body: &[u8], signature: Option<String>) -> u16 {
        let mut req = self
            .client
            .post(format!("{}/webhooks/shop", self.address))
            .header("Content-Type", "application/json")
            .body(body.to_vec());
        if let Some(sig) = signature {
            req = req.header(SIGNATURE_HEADER, sig);
        }
        req.send().await.unwrap().status().as_u16()
    }

    async fn put(&self, path: &str, token: &str, body: Value) -> u16 {
        self.json(reqwest::Method::PUT, path, token, body).await
    }

    async fn get(&self, path_and_query: &str, token: Option<&str>) -> u16 {
        let mut req = self.client.get(format!("{}{path_and_query}", self.address));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send().await.unwrap().status().as_u16()
    }
}

#[tokio::test]
async fn no_secret_appears_in_the_logs_even_at_trace_level() {
    let (shop, graph) = (
        FakeShop::start_with_secret(SHOP_SECRET).await,
        FakeGraphApi::start().await,
    );
    graph.set_profile(PSID, "Max", Some("en_GB"));
    shop.add_order("1001", "max@example.com", "450.00", "paid");
    shop.add_order("1002", "jane@example.com", "30.00", "paid");
    let manychat_api = FakeManychatApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = test_overrides(dir.path(), &shop, &graph);
    for (key, value) in [
        ("LOYALTY__MESSENGER__APP_SECRET", APP_SECRET),
        ("LOYALTY__MESSENGER__VERIFY_TOKEN", VERIFY_TOKEN),
        ("LOYALTY__MESSENGER__PAGE_ACCESS_TOKEN", PAGE_TOKEN),
        ("LOYALTY__MANYCHAT__TOKEN", MANYCHAT_TOKEN),
        ("LOYALTY__MANYCHAT__API_TOKEN", MANYCHAT_API_TOKEN),
        ("LOYALTY__MANYCHAT__API_URL", &manychat_api.url()),
        ("LOYALTY__ADMIN__TOKEN", ADMIN_TOKEN),
    ] {
        env.retain(|(k, _)| k != key);
        env.push((key.to_owned(), value.to_owned()));
    }
    let app = BinaryApp::start_logging(&env, "trace").await;
    let mut d = Driver {
        client: reqwest::Client::new(),
        address: app.address.clone(),
        graph: graph.clone(),
        clock: 1_763_846_400_000,
    };

    // Messenger: the verify handshake, right and wrong.
    let verify = |token: &str| {
        format!("/webhooks/messenger?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=42")
    };
    assert_eq!(d.get(&verify(VERIFY_TOKEN), None).await, 200);
    assert_eq!(d.get(&verify("wrong"), None).await, 403);
    // Webhooks without, with a wrong, and with a right signature; a Send API hiccup on the way.
    let body = br#"{"object":"page","entry":[]}"#;
    assert_eq!(d.webhook(body, None).await, 401);
    assert_eq!(d.webhook(body, Some("sha256=00ff".into())).await, 401);
    graph.fail_next_transient(1);
    d.say(json!({"text": "join"})).await;
    d.say(json!({"text": "Yes", "quick_reply": {"payload": "LOYALTY_JOIN_YES"}}))
        .await;
    d.say(json!({"text": "max@example.com"})).await;
    // Claim (a signed shop look-up), and redeem (a signed coupon request), once refused.
    d.say(json!({"text": "#1001"})).await;
    shop.fail_coupons_with(500);
    d.say(json!({"text": "Free mug", "quick_reply": {"payload": "REDEEM:free-mug"}}))
        .await;
    shop.heal();
    d.say(json!({"text": "Free mug", "quick_reply": {"payload": "REDEEM:free-mug"}}))
        .await;

    // ManyChat: wrong token, then answers that carry the token in their callbacks.
    let contact = json!({"id": "1515862162", "first_name": "Jane", "email": "jane@example.com"});
    assert_eq!(
        d.manychat("/manychat/join", "wrong", contact.clone()).await,
        401
    );
    for path in ["/manychat/join", "/manychat/rewards", "/manychat/claim"] {
        assert_eq!(d.manychat(path, MANYCHAT_TOKEN, contact.clone()).await, 200);
    }
    let mut claim = contact.clone();
    claim["order_number"] = json!("1002");
    assert_eq!(
        d.manychat("/manychat/claim", MANYCHAT_TOKEN, claim).await,
        200
    );

    // The shop's order webhook: unsigned, signed with another secret, then a real refund.
    let refund = br#"{"event": "order.refunded", "order_number": "1001"}"#;
    let signed_with = |secret: &str| {
        Some(format!(
            "sha256={}",
            hmac_sha256_hex(secret.as_bytes(), refund)
        ))
    };
    assert_eq!(d.shop_event(refund, None).await, 401);
    assert_eq!(d.shop_event(refund, signed_with("wrong")).await, 401);
    assert_eq!(d.shop_event(refund, signed_with(SHOP_SECRET)).await, 200);
    // Jane's order refunded: she hears of it through ManyChat's API (its token).
    let refund = br#"{"event": "order.refunded", "order_number": "1002"}"#;
    let signed = format!("sha256={}", hmac_sha256_hex(SHOP_SECRET.as_bytes(), refund));
    assert_eq!(d.shop_event(refund, Some(signed)).await, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while manychat_api.requests().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no ManyChat news");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bearer = format!("Bearer {MANYCHAT_API_TOKEN}");
    assert_eq!(
        manychat_api.requests()[0].authorization.as_deref(),
        Some(bearer.as_str())
    );

    // Admin: no token, a wrong one, the right one; the processing switch both ways.
    let member = "/admin/members?email=max@example.com";
    assert_eq!(d.get(member, None).await, 401);
    assert_eq!(d.get(member, Some("wrong")).await, 401);
    assert_eq!(d.get(member, Some(ADMIN_TOKEN)).await, 200);
    let processing = "/admin/messenger/processing";
    assert_eq!(d.get(processing, Some(ADMIN_TOKEN)).await, 200);
    assert_eq!(d.put(processing, "wrong", json!({"held": true})).await, 401);
    assert_eq!(
        d.put(processing, ADMIN_TOKEN, json!({"held": true})).await,
        200
    );
    assert_eq!(
        d.put(processing, ADMIN_TOKEN, json!({"held": false})).await,
        200
    );

    assert!(
        shop.requests().iter().all(|r| r.signature_ok),
        "the shop saw our signatures"
    );
    assert!(graph
        .requests()
        .iter()
        .all(|r| r.query["access_token"] == PAGE_TOKEN));
    let logs = app.terminate_and_collect();
    assert!(
        logs.contains("TRACE") && logs.lines().count() > 100,
        "trace logging was on: {} lines",
        logs.lines().count()
    );
    for (name, secret) in [
        ("messenger.app_secret", APP_SECRET),
        ("messenger.verify_token", VERIFY_TOKEN),
        ("messenger.page_access_token", PAGE_TOKEN),
        ("manychat.token", MANYCHAT_TOKEN),
        ("manychat.api_token", MANYCHAT_API_TOKEN),
        ("admin.token", ADMIN_TOKEN),
        ("shop.secret", SHOP_SECRET),
    ] {
        let hits: Vec<&str> = logs.lines().filter(|l| l.contains(secret)).collect();
        assert!(
            hits.is_empty(),
            "{name} is in the logs:\n{}",
            hits.join("\n")
        );
    }
    // Nor any signature made with them.
    assert!(!logs.contains("sha256="), "a signature is in the logs");
}
