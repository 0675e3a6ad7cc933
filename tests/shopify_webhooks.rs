//! `POST /webhooks/shopify` against `FakeShopify`: signatures checked before parsing, each
//! delivery a trigger to read the order again, points set to what the order earns now, and
//! redelivered or out-of-order deliveries converging on the same ledger.

mod common;

use common::fake_shopify::{FakeShopify, GRAPHQL_PATH};
use common::shopify_app::*;
use common::{spawn_app_with, TestApp};
use loyalty_bot::domain::{EntryKind, LedgerEntry};
use serde_json::{json, Value};

/// Delivers a webhook as Shopify does; its status and JSON answer.
async fn deliver(app: &TestApp, topic: &str, id: &str, body: &[u8], sig: &str) -> (u16, Value) {
    let res = app
        .client()
        .post(app.url("/webhooks/shopify"))
        .header("Content-Type", "application/json")
        .header("X-Shopify-Topic", topic)
        .header("X-Shopify-Hmac-Sha256", sig)
        .header("X-Shopify-Webhook-Id", id)
        .header("X-Shopify-Shop-Domain", "example-shop.myshopify.com")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn notify(app: &TestApp, fake: &FakeShopify, topic: &str, gid: &str, id: &str) -> Value {
    let (body, sig) = fake.webhook(topic, gid);
    let (status, answer) = deliver(app, topic, id, &body, &sig).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

async fn ledger(app: &TestApp) -> Vec<LedgerEntry> {
    let email = loyalty_bot::domain::Email::parse("jane@example.com").unwrap();
    let (_, ledger) = app
        .program()
        .member_with_ledger_by_email(&email)
        .await
        .unwrap()
        .unwrap();
    ledger
}

/// The points of the entries naming an order, in order.
async fn order_entries(app: &TestApp) -> Vec<i64> {
    ledger(app)
        .await
        .iter()
        .filter(|e| e.order_number.is_some())
        .map(|e| e.points)
        .collect()
}

async fn claimed_app(fake: &FakeShopify) -> (TestApp, String) {
    let gid = fake.add_order("#1001", Some("jane@example.com"), "59.90", "PAID");
    let app = app_with(fake, Auth::Static).await;
    join_jane(&app).await;
    let reply = claim(&app, "1001").await;
    assert!(reply.contains("59 points"), "{reply}");
    (app, gid)
}

#[tokio::test]
async fn a_partial_then_a_full_refund_take_back_down_to_what_the_order_earns_then_all() {
    let fake = FakeShopify::start().await;
    let (app, gid) = claimed_app(&fake).await;

    fake.set_total(&gid, "39.90", "PARTIALLY_REFUNDED");
    let answer = notify(&app, &fake, "refunds/create", &gid, "w-1").await;
    assert_eq!(answer, json!({"result": "changed", "order": gid}));
    assert_eq!(balance(&app).await, 50 + 39);

    fake.set_total(&gid, "0.00", "REFUNDED");
    notify(&app, &fake, "refunds/create", &gid, "w-2").await;
    assert_eq!(balance(&app).await, 50);
    assert_eq!(order_entries(&app).await, vec![59, -20, -39]);
    let entries = ledger(&app).await;
    let last = entries.last().unwrap();
    assert_eq!(last.kind, EntryKind::OrderReversal);
    assert_eq!(last.order_number.as_ref().unwrap().as_str(), "1001");
    assert_eq!(last.order_id.as_ref().unwrap().as_str(), gid);

    // The webhook was only a trigger: each delivery read the order again by its GID.
    let reads = fake.graphql_with("order(id:");
    assert_eq!(reads.len(), 2);
    assert!(reads.iter().all(|r| r.path == GRAPHQL_PATH));
    assert!(reads.iter().all(|r| r.variables() == &json!({ "id": gid })));
}

#[tokio::test]
async fn a_redelivered_webhook_is_answered_as_a_duplicate_without_asking_the_shop() {
    let fake = FakeShopify::start().await;
    let (app, gid) = claimed_app(&fake).await;
    fake.set_total(&gid, "39.90", "PARTIALLY_REFUNDED");
    notify(&app, &fake, "refunds/create", &gid, "w-1").await;
    let answer = notify(&app, &fake, "refunds/create", &gid, "w-1").await;
    assert_eq!(answer["result"], "duplicate");
    assert_eq!(fake.graphql_with("order(id:").len(), 1);
    // A new delivery of the same news (another id) converges: nothing more is taken.
    let answer = notify(&app, &fake, "orders/updated", &gid, "w-9").await;
    assert_eq!(answer["result"], "unchanged");
    assert_eq!(order_entries(&app).await, vec![59, -20]);
}

#[tokio::test]
async fn a_refund_before_the_paid_event_and_the_claim_leaves_the_order_unclaimable() {
    let fake = FakeShopify::start().await;
    let gid = fake.add_order("#1001", Some("jane@example.com"), "0.00", "REFUNDED");
    let app = app_with(&fake, Auth::Static).await;
    join_jane(&app).await;
    let answer = notify(&app, &fake, "refunds/create", &gid, "w-1").await;
    assert_eq!(answer["result"], "recorded_before_claim");
    // The paid event arrives late, while the shop still has it refunded: nothing changes.
    let answer = notify(&app, &fake, "orders/paid", &gid, "w-0").await;
    assert_eq!(answer["result"], "unchanged");
    let reply = claim(&app, "1001").await;
    assert!(!reply.contains("points for order"), "{reply}");
    assert_eq!(balance(&app).await, 50);
    assert_eq!(order_entries(&app).await, Vec::<i64>::new());
}

#[tokio::test]
async fn a_cancellation_reverses_everything_the_order_earned() {
    let fake = FakeShopify::start().await;
    let (app, gid) = claimed_app(&fake).await;
    fake.edit_order(&gid, |o| o["cancelledAt"] = json!("2026-12-07T10:00:00Z"));
    notify(&app, &fake, "orders/cancelled", &gid, "w-1").await;
    assert_eq!(balance(&app).await, 50);
    assert_eq!(order_entries(&app).await, vec![59, -59]);
}

#[tokio::test]
async fn a_paid_order_is_credited_without_a_claim_when_auto_credit_is_on_once_ever() {
    let fake = FakeShopify::start().await;
    let gid = fake.add_order("#1001", Some("Jane@Example.com"), "59.90", "PAID");
    let app = spawn_app_with(|s| {
        configure(s, &fake, &Auth::Static);
        s.program.auto_credit = true;
    })
    .await;
    join_jane(&app).await;
    let answer = notify(&app, &fake, "orders/paid", &gid, "w-1").await;
    assert_eq!(answer["result"], "credited");
    assert_eq!(balance(&app).await, 109);
    notify(&app, &fake, "orders/updated", &gid, "w-2").await;
    let reply = claim(&app, "#1001").await;
    assert!(reply.contains("already"), "{reply}");
    assert_eq!(balance(&app).await, 109);
    assert_eq!(order_entries(&app).await, vec![59]);
}

#[tokio::test]
async fn without_auto_credit_a_paid_webhook_credits_nobody() {
    let fake = FakeShopify::start().await;
    let gid = fake.add_order("#1001", Some("jane@example.com"), "59.90", "PAID");
    let app = app_with(&fake, Auth::Static).await;
    join_jane(&app).await;
    let answer = notify(&app, &fake, "orders/paid", &gid, "w-1").await;
    assert_eq!(answer["result"], "unclaimed");
    assert_eq!(balance(&app).await, 50);
}

#[tokio::test]
async fn a_bad_or_missing_signature_is_refused_before_parsing_and_records_nothing() {
    let fake = FakeShopify::start().await;
    let (app, gid) = claimed_app(&fake).await;
    fake.set_total(&gid, "0.00", "REFUNDED");
    let (body, sig) = fake.webhook("refunds/create", &gid);
    let mut flipped = body.clone();
    flipped[3] ^= 1;
    let (status, answer) = deliver(&app, "refunds/create", "w-1", &flipped, &sig).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (401, Some("bad_signature"))
    );
    // Re-serialised JSON (same content, other bytes) does not verify either.
    let v: Value = serde_json::from_slice(&body).unwrap();
    let pretty = serde_json::to_vec_pretty(&v).unwrap();
    let (status, _) = deliver(&app, "refunds/create", "w-1", &pretty, &sig).await;
    assert_eq!(status, 401);
    let (status, _) = deliver(&app, "refunds/create", "w-1", b"not json", "").await;
    assert_eq!(status, 401);
    assert!(
        fake.graphql_with("order(id:").is_empty(),
        "the shop was not asked"
    );
    assert_eq!(balance(&app).await, 109);
    // The refused id was not recorded: the genuine delivery is handled.
    let answer = notify(&app, &fake, "refunds/create", &gid, "w-1").await;
    assert_eq!(answer["result"], "changed");
}

#[tokio::test]
async fn a_shop_that_fails_answers_503_so_shopify_delivers_again_and_nothing_changes() {
    let fake = FakeShopify::start().await;
    let (app, gid) = claimed_app(&fake).await;
    fake.set_total(&gid, "0.00", "REFUNDED");
    fake.fail_with(502);
    let (body, sig) = fake.webhook("refunds/create", &gid);
    let (status, answer) = deliver(&app, "refunds/create", "w-1", &body, &sig).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (503, Some("shop_unavailable"))
    );
    assert_eq!(balance(&app).await, 109);
    fake.heal();
    let (status, answer) = deliver(&app, "refunds/create", "w-1", &body, &sig).await;
    assert_eq!((status, answer["result"].as_str()), (200, Some("changed")));
    assert_eq!(balance(&app).await, 50);
}

#[tokio::test]
async fn an_order_the_shop_no_longer_shows_changes_nothing() {
    let fake = FakeShopify::start().await;
    let (app, _) = claimed_app(&fake).await;
    // An order older than the shop lets the app see (no read_all_orders) reads as null.
    let old = "gid://shopify/Order/1";
    let answer = notify(&app, &fake, "orders/updated", old, "w-1").await;
    assert_eq!(answer, json!({"result": "not_visible", "order": old}));
    assert_eq!(balance(&app).await, 109);
}

#[tokio::test]
async fn topics_we_do_not_act_on_are_acknowledged_and_malformed_bodies_refused() {
    let fake = FakeShopify::start().await;
    let (app, gid) = claimed_app(&fake).await;
    let (body, sig) = fake.webhook("orders/paid", &gid);
    let (status, answer) = deliver(&app, "orders/create", "w-1", &body, &sig).await;
    assert_eq!((status, answer["result"].as_str()), (200, Some("ignored")));
    let junk = br#"{"id":"not a number"}"#;
    let sig = common::fake_shopify::webhook_signature(junk);
    let (status, answer) = deliver(&app, "orders/updated", "w-2", junk, &sig).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("bad_request"))
    );
}

#[tokio::test]
async fn an_order_answer_that_would_read_the_same_again_is_acknowledged_not_retried() {
    let fake = FakeShopify::start().await;
    let (app, gid) = claimed_app(&fake).await;
    fake.set_total(&gid, "0.00", "REFUNDED");
    // An email our parser refuses: asking again would read the same.
    fake.edit_order(&gid, |o| o["email"] = json!("not an email"));
    let answer = notify(&app, &fake, "refunds/create", &gid, "w-1").await;
    assert_eq!(answer, json!({"result": "unreadable", "order": gid}));
    assert_eq!(balance(&app).await, 109, "left as it was");
}
