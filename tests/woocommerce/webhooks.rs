//! `POST /webhooks/woocommerce`: the published signature vector verifies, the creation ping is
//! answered and nothing else, and each signed delivery is a trigger to read the order again:
//! refunds take points back down to what the order earns now, a deletion reverses it, and
//! redeliveries change nothing.

use super::harness::{app_on, claim, join_jane};
use crate::common::fake_woo::{FakeWoo, WOO_WEBHOOK_SECRET};
use crate::common::{spawn_app_with, TestApp};
use base64::Engine as _;
use serde_json::{json, Value};

const UPDATED: &[u8] = include_bytes!("../../fixtures/woocommerce/webhook-order-updated.body.json");
const VECTORS: &str = include_str!("../../fixtures/woocommerce/signature-vectors.json");
const PING: &[u8] = include_bytes!("../../fixtures/woocommerce/webhook-ping.form.txt");
const JANE: &str = "jane@example.com";

fn sign(body: &[u8]) -> String {
    let mac = loyalty_bot::signature::hmac_sha256(WOO_WEBHOOK_SECRET.as_bytes(), body);
    base64::engine::general_purpose::STANDARD.encode(mac)
}

/// Delivers `body` with `headers`; the status and the JSON answer.
async fn deliver(app: &TestApp, body: &[u8], headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = app
        .client()
        .post(app.url("/webhooks/woocommerce"))
        .body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// A signed delivery of `topic` about order `id`, with delivery id `delivery`.
async fn order_event(app: &TestApp, topic: &str, id: u64, delivery: &str) -> Value {
    let body = serde_json::to_vec(&json!({"id": id})).unwrap();
    let sig = sign(&body);
    let headers = [
        ("Content-Type", "application/json"),
        ("X-WC-Webhook-Topic", topic),
        ("X-WC-Webhook-Signature", sig.as_str()),
        ("X-WC-Webhook-Delivery-ID", delivery),
    ];
    let (status, answer) = deliver(app, &body, &headers).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// Jane joins and claims order 727 (59.90 paid): 109 points.
async fn claimed(woo: &FakeWoo) -> TestApp {
    woo.add_order(727, JANE, "59.90", "processing");
    let app = app_on(woo).await;
    join_jane(&app).await;
    claim(&app, "727").await;
    assert_eq!(app.balance_of(JANE).await, 109);
    woo.forget_requests();
    app
}

fn reads_of(woo: &FakeWoo, id: u64) -> usize {
    let path = format!("/wp-json/wc/v3/orders/{id}");
    woo.requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == path)
        .count()
}

#[tokio::test]
async fn the_published_delivery_verifies_and_reads_the_order_again() {
    let woo = FakeWoo::start().await;
    let app = claimed(&woo).await;
    let vectors: Value = serde_json::from_str(VECTORS).unwrap();
    let v = &vectors["woocommerce_x_wc_webhook_signature"][0];
    let mut headers = vec![("Content-Type", "application/json")];
    headers.push((
        "X-WC-Webhook-Signature",
        v["header_value"].as_str().unwrap(),
    ));
    for (k, val) in v["other_headers"].as_object().unwrap() {
        headers.push((k.as_str(), val.as_str().unwrap()));
    }
    let (status, answer) = deliver(&app, UPDATED, &headers).await;
    assert_eq!(
        (status, &answer),
        (200, &json!({"result": "unchanged", "order": "727"}))
    );
    assert_eq!(
        reads_of(&woo, 727),
        1,
        "the body is a trigger; the shop is asked"
    );
}

#[tokio::test]
async fn the_creation_ping_is_answered_and_nothing_else() {
    let woo = FakeWoo::start().await;
    let app = claimed(&woo).await;
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let (status, answer) = deliver(&app, PING, &form).await;
    assert_eq!((status, answer["result"].as_str()), (200, Some("ping")));
    assert!(woo.requests().is_empty());
}

#[tokio::test]
async fn an_unsigned_or_altered_delivery_is_refused_before_parsing() {
    let woo = FakeWoo::start().await;
    let app = claimed(&woo).await;
    woo.set_status(727, "refunded");
    let topic = ("X-WC-Webhook-Topic", "order.updated");
    let (status, _) = deliver(&app, br#"{"id":727}"#, &[topic]).await;
    assert_eq!(status, 401);
    let sig = sign(br#"{"id":727}"#);
    let signed = ("X-WC-Webhook-Signature", sig.as_str());
    let (status, _) = deliver(&app, br#"{"id":728}"#, &[topic, signed]).await;
    assert_eq!(status, 401);
    let (status, _) = deliver(&app, br#"{ "id": 727 }"#, &[topic, signed]).await;
    assert_eq!(status, 401, "re-serialised JSON");
    assert!(woo.requests().is_empty());
    assert_eq!(app.balance_of(JANE).await, 109);
}

#[tokio::test]
async fn a_partial_then_a_full_refund_take_back_down_to_the_net_total_then_all() {
    let woo = FakeWoo::start().await;
    let app = claimed(&woo).await;
    woo.refund(727, "20.00");
    let answer = order_event(&app, "order.updated", 727, "d-1").await;
    assert_eq!(answer["result"], "changed");
    assert_eq!(app.balance_of(JANE).await, 50 + 39);
    // Redelivered: answered from the record, the shop not asked again.
    let answer = order_event(&app, "order.updated", 727, "d-1").await;
    assert_eq!(answer["result"], "duplicate");
    assert_eq!(reads_of(&woo, 727), 1);
    woo.refund(727, "39.90");
    woo.set_status(727, "refunded");
    order_event(&app, "order.updated", 727, "d-2").await;
    assert_eq!(app.balance_of(JANE).await, 50);
    let answer = order_event(&app, "order.updated", 727, "d-3").await;
    assert_eq!(answer["result"], "unchanged");
    let member: Value = app.get_admin_member(JANE).await.json().await.unwrap();
    let orders: Vec<i64> = member["ledger"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["order_number"] == "727")
        .map(|e| e["points"].as_i64().unwrap())
        .collect();
    assert_eq!(orders, vec![59, -20, -39]);
}

#[tokio::test]
async fn a_deleted_order_takes_back_what_it_earned() {
    let woo = FakeWoo::start().await;
    let app = claimed(&woo).await;
    woo.delete_order(727);
    let answer = order_event(&app, "order.deleted", 727, "d-1").await;
    assert_eq!(answer["result"], "changed");
    assert_eq!(app.balance_of(JANE).await, 50);
    // An update about an order the shop no longer has changes nothing.
    let answer = order_event(&app, "order.updated", 728, "d-2").await;
    assert_eq!(answer["result"], "not_visible");
}

#[tokio::test]
async fn a_paid_order_is_credited_from_the_webhook_when_auto_credit_is_on() {
    let woo = FakeWoo::start().await;
    woo.add_order(727, JANE, "59.90", "processing");
    let app = spawn_app_with(|s| {
        super::harness::woo_rewards(&woo, s);
        s.program.auto_credit = true;
    })
    .await;
    join_jane(&app).await;
    let answer = order_event(&app, "order.updated", 727, "d-1").await;
    assert_eq!(answer["result"], "credited");
    assert_eq!(app.balance_of(JANE).await, 109);
    let reply = claim(&app, "727").await;
    assert!(reply.contains("already"), "{reply}");
    assert_eq!(app.balance_of(JANE).await, 109);
}

#[tokio::test]
async fn a_shop_that_fails_answers_503_and_changes_nothing() {
    let woo = FakeWoo::start().await;
    let app = claimed(&woo).await;
    woo.set_status(727, "refunded");
    woo.fail_with(500);
    let body = br#"{"id":727}"#;
    let sig = sign(body);
    let headers = [
        ("X-WC-Webhook-Topic", "order.updated"),
        ("X-WC-Webhook-Signature", sig.as_str()),
    ];
    let (status, answer) = deliver(&app, body, &headers).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (503, Some("shop_unavailable"))
    );
    assert_eq!(app.balance_of(JANE).await, 109);
}

#[tokio::test]
async fn when_the_shop_cannot_be_read_back_the_signed_order_in_the_delivery_is_followed() {
    // WooCommerce never delivers again, so a 503 would lose the refund for good.
    let woo = FakeWoo::start().await;
    let app = claimed(&woo).await;
    let mut order: Value = serde_json::from_slice(UPDATED).unwrap();
    order["id"] = json!(727);
    order["number"] = json!("727");
    order["billing"]["email"] = json!(JANE);
    order["currency"] = json!("EUR");
    order["total"] = json!("59.90");
    order["status"] = json!("refunded");
    let body = serde_json::to_vec(&order).unwrap();
    woo.fail_with(503);
    let sig = sign(&body);
    let headers = [
        ("X-WC-Webhook-Topic", "order.updated"),
        ("X-WC-Webhook-Signature", sig.as_str()),
    ];
    let (status, answer) = deliver(&app, &body, &headers).await;
    assert_eq!(
        (status, answer["result"].as_str()),
        (200, Some("changed")),
        "{answer}"
    );
    assert_eq!(app.balance_of(JANE).await, 50);
}
