//! The shop's order webhook (`POST /webhooks/shop`) over a real socket: the signature is checked
//! before anything is parsed, a refund or cancellation takes the order's points back once (never
//! below zero), replays change nothing, and a refund that arrives before the claim blocks it.
//! Members join, claim and redeem through the ManyChat endpoints, as customers would.

mod common;

use common::{spawn_app, spawn_app_with, TestApp, SHOP_SECRET};
use loyalty_bot::config::{Secret, ShopKind};
use serde_json::{json, Value};

const PATH: &str = "/webhooks/shop";
const JANE: &str = "1515862162";
const JANE_EMAIL: &str = "jane@example.com";

fn sign(body: &[u8], secret: &str) -> String {
    let hex = loyalty_bot::signature::hmac_sha256_hex(secret.as_bytes(), body);
    format!("sha256={hex}")
}

/// Delivers `body` as the shop does; `signature` `None` sends no header.
async fn deliver(app: &TestApp, body: &[u8], signature: Option<String>) -> reqwest::Response {
    let mut req = app
        .client()
        .post(app.url(PATH))
        .header("Content-Type", "application/json")
        .body(body.to_vec());
    if let Some(sig) = signature {
        req = req.header("X-Loyalty-Signature", sig);
    }
    req.send().await.expect("POST shop webhook")
}

/// A correctly signed order event; returns the status and the JSON answer.
async fn order_event(app: &TestApp, event: &str, order: &str) -> (u16, Value) {
    let body = serde_json::to_vec(&json!({"event": event, "order_number": order})).unwrap();
    let res = deliver(app, &body, Some(sign(&body, SHOP_SECRET))).await;
    let status = res.status().as_u16();
    (status, res.json().await.expect("JSON answer"))
}

async fn manychat(app: &TestApp, path: &str, fields: Value) {
    let mut body = json!({"id": JANE, "email": JANE_EMAIL});
    body.as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    let res = app.post_manychat(path, &body).await;
    assert_eq!(res.status(), 200, "POST {path}");
}

/// Jane joins (50 points) and claims `order`, which the shop says is paid.
async fn jane_claims(app: &TestApp, order: &str, total: &str) {
    app.shop.add_order(order, JANE_EMAIL, total, "paid");
    manychat(app, "/manychat/join", json!({})).await;
    manychat(app, "/manychat/claim", json!({"order_number": order})).await;
}

/// Jane's last ledger entry, per the admin API.
async fn last_entry(app: &TestApp) -> Value {
    let member: Value = app.get_admin_member(JANE_EMAIL).await.json().await.unwrap();
    member["ledger"].as_array().unwrap().last().unwrap().clone()
}

#[tokio::test]
async fn a_refunded_order_takes_its_points_back_once() {
    let app = spawn_app().await;
    jane_claims(&app, "1001", "42.50").await;
    assert_eq!(app.balance_of(JANE_EMAIL).await, 92);

    let (status, answer) = order_event(&app, "order.refunded", "1001").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"], "reversed");
    assert_eq!(answer["reason"], "refunded");
    assert_eq!(
        (
            &answer["points_credited"],
            &answer["points_taken"],
            &answer["shortfall"]
        ),
        (&json!(42), &json!(42), &json!(0))
    );
    assert_eq!(app.balance_of(JANE_EMAIL).await, 50);
    let entry = last_entry(&app).await;
    assert_eq!(
        (&entry["kind"], &entry["points"], &entry["order_number"]),
        (&json!("order_reversal"), &json!(-42), &json!("1001"))
    );

    // A second event for the order (a cancellation after the refund) changes nothing.
    let (status, again) = order_event(&app, "order.cancelled", "#1001").await;
    assert_eq!(status, 200);
    assert_eq!(again["result"], "already_reversed");
    assert_eq!(
        again["reason"], "refunded",
        "the first reversal is reported"
    );
    assert_eq!(app.balance_of(JANE_EMAIL).await, 50);

    // The order stays claimed: claiming it again earns nothing, even if the shop says paid.
    manychat(&app, "/manychat/claim", json!({"order_number": "1001"})).await;
    assert_eq!(app.balance_of(JANE_EMAIL).await, 50);
}

#[tokio::test]
async fn a_replayed_order_webhook_is_applied_once_even_when_concurrent() {
    let app = spawn_app().await;
    jane_claims(&app, "1001", "42.50").await;
    let body = br#"{"event":"order.refunded","order_number":"1001"}"#;
    let deliveries = (0..10).map(|_| deliver(&app, body, Some(sign(body, SHOP_SECRET))));
    let mut results = Vec::new();
    for res in futures_util::future::join_all(deliveries).await {
        assert_eq!(res.status(), 200);
        let answer: Value = res.json().await.unwrap();
        assert_eq!(
            answer["points_taken"], 42,
            "every answer reports the one reversal"
        );
        results.push(answer["result"].as_str().unwrap().to_owned());
    }
    results.sort();
    let mut expected = vec!["already_reversed"; 9];
    expected.push("reversed");
    assert_eq!(results, expected);
    assert_eq!(app.balance_of(JANE_EMAIL).await, 50);
}

#[tokio::test]
async fn an_unsigned_order_webhook_is_rejected_before_parsing() {
    let app = spawn_app().await;
    jane_claims(&app, "1001", "42.50").await;
    let body = br#"{"event":"order.refunded","order_number":"1001"}"#;
    let garbage = b"{not json";
    let tampered = br#"{"event":"order.refunded","order_number":"1002"}"#;
    let cases: [(&str, &[u8], Option<String>); 6] = [
        ("no signature", body, None),
        (
            "another secret",
            body,
            Some(sign(body, "not-the-shop-secret")),
        ),
        ("another body", tampered, Some(sign(body, SHOP_SECRET))),
        (
            "bare hex",
            body,
            Some(sign(body, SHOP_SECRET)[7..].to_owned()),
        ),
        ("empty header", body, Some(String::new())),
        // Not JSON and unsigned: 401, not 400, because nothing is parsed before the check.
        ("unsigned garbage", garbage, None),
    ];
    for (case, body, signature) in cases {
        let res = deliver(&app, body, signature).await;
        assert_eq!(res.status(), 401, "{case}");
        let answer: Value = res.json().await.unwrap();
        assert_eq!(answer["code"], "bad_signature", "{case}");
    }
    assert_eq!(app.balance_of(JANE_EMAIL).await, 92, "nothing was reversed");

    // Signed but malformed: now the body is read, and refused precisely.
    let res = deliver(&app, garbage, Some(sign(garbage, SHOP_SECRET))).await;
    assert_eq!(res.status(), 400);
    let (status, answer) = order_event(&app, "order.paid", "1001").await;
    assert_eq!(
        (status, &answer["code"]),
        (422, &json!("unsupported_event"))
    );
    assert_eq!(app.balance_of(JANE_EMAIL).await, 92);
}

#[tokio::test]
async fn a_refund_before_the_claim_blocks_the_claim() {
    let app = spawn_app().await;
    let (status, answer) = order_event(&app, "order.cancelled", "1001").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"], "recorded_before_claim");
    assert_eq!(answer["points_taken"], 0);

    // The shop's verify answer is stale (still "paid"), yet the claim earns nothing.
    jane_claims(&app, "1001", "42.50").await;
    assert_eq!(app.balance_of(JANE_EMAIL).await, 50);
    assert_eq!(last_entry(&app).await["kind"], "signup_bonus");

    let (_, again) = order_event(&app, "order.refunded", "1001").await;
    assert_eq!(again["result"], "already_reversed");
    assert_eq!(app.balance_of(JANE_EMAIL).await, 50);
}

#[tokio::test]
async fn a_spent_credit_is_taken_back_down_to_zero_and_the_shortfall_recorded() {
    let app = spawn_app().await;
    jane_claims(&app, "1007", "210.00").await;
    manychat(&app, "/manychat/redeem", json!({"reward_id": "free-mug"})).await;
    assert_eq!(app.balance_of(JANE_EMAIL).await, 60);

    let (status, answer) = order_event(&app, "order.refunded", "1007").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (&answer["points_taken"], &answer["shortfall"]),
        (&json!(60), &json!(150))
    );
    assert_eq!(app.balance_of(JANE_EMAIL).await, 0);
    let entry = last_entry(&app).await;
    assert_eq!(
        (&entry["points"], &entry["shortfall"]),
        (&json!(-60), &json!(150))
    );
}

#[tokio::test]
async fn the_order_webhook_is_disabled_without_a_shop_secret() {
    let app = spawn_app_with(|s| {
        s.shop.kind = ShopKind::Fixture;
        s.shop.secret = Secret::default();
    })
    .await;
    let body = br#"{"event":"order.refunded","order_number":"1001"}"#;
    let res = deliver(&app, body, Some(sign(body, ""))).await;
    assert_eq!(res.status(), 404);
}

/// A signed partial refund: `refunded_total` is all that was refunded of the order so far.
async fn partial_refund(app: &TestApp, order: &str, refunded: &str) -> (u16, Value) {
    let body =
        json!({"event": "order.refunded", "order_number": order, "refunded_total": refunded});
    let body = serde_json::to_vec(&body).unwrap();
    let res = deliver(app, &body, Some(sign(&body, SHOP_SECRET))).await;
    let status = res.status().as_u16();
    (status, res.json().await.expect("JSON answer"))
}

#[tokio::test]
async fn a_partial_refund_takes_back_down_to_what_the_rest_of_the_total_earns() {
    let app = spawn_app().await;
    jane_claims(&app, "1001", "59.90").await;
    assert_eq!(app.balance_of(JANE_EMAIL).await, 109);

    // The shop's verify endpoint now answers the net total, as the contract asks.
    app.shop
        .add_order("1001", JANE_EMAIL, "39.90", "partially_refunded");
    let (status, answer) = partial_refund(&app, "1001", "20.00").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"result": "changed", "order_number": "1001", "points_taken": 20, "shortfall": 0})
    );
    assert_eq!(app.balance_of(JANE_EMAIL).await, 89);
    let entry = last_entry(&app).await;
    assert_eq!(
        (entry["kind"].as_str(), entry["points"].as_i64()),
        (Some("order_reversal"), Some(-20))
    );

    // The same refund again converges: the total refunded is still 20.00.
    let (_, answer) = partial_refund(&app, "1001", "20.00").await;
    assert_eq!(answer["result"], "unchanged");
    // An older delivery arriving late, while the shop had it at 49.90: nothing comes back.
    app.shop
        .add_order("1001", JANE_EMAIL, "49.90", "partially_refunded");
    let (_, answer) = partial_refund(&app, "1001", "10.00").await;
    assert_eq!(answer["result"], "unchanged");
    assert_eq!(app.balance_of(JANE_EMAIL).await, 89);
    // Refunding the rest reverses the order, as a full refund does.
    app.shop.add_order("1001", JANE_EMAIL, "0.00", "refunded");
    let (_, answer) = partial_refund(&app, "1001", "59.90").await;
    assert_eq!(answer["result"], "reversed");
    assert_eq!(answer["points_taken"], 39);
    assert_eq!(app.balance_of(JANE_EMAIL).await, 50);
    let (_, answer) = order_event(&app, "order.refunded", "1001").await;
    assert_eq!(answer["result"], "already_reversed");
    let (status, answer) = partial_refund(&app, "1001", "lots").await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("bad_request"))
    );
}

#[tokio::test]
async fn a_refund_before_the_claim_is_not_counted_twice_by_a_later_partial_refund() {
    let app = spawn_app().await;
    // 100.00, of which 20.00 refunded before Jane claims: the claim earns on the net 80.00.
    app.shop.add_order("1001", JANE_EMAIL, "100.00", "paid");
    let (_, answer) = partial_refund(&app, "1001", "20.00").await;
    assert_eq!(answer["result"], "unclaimed");
    jane_claims(&app, "1001", "80.00").await;
    assert_eq!(app.balance_of(JANE_EMAIL).await, 130);
    // 10.00 more: 30.00 refunded in all, 70.00 left, 70 points.
    app.shop
        .add_order("1001", JANE_EMAIL, "70.00", "partially_refunded");
    let (_, answer) = partial_refund(&app, "1001", "30.00").await;
    assert_eq!(answer["points_taken"], 10, "{answer}");
    assert_eq!(app.balance_of(JANE_EMAIL).await, 120);
}

#[tokio::test]
async fn a_partial_refund_while_the_verify_endpoint_fails_is_503_and_changes_nothing() {
    let app = spawn_app().await;
    jane_claims(&app, "1001", "59.90").await;
    app.shop.fail_verify_with(500);
    let (status, answer) = partial_refund(&app, "1001", "20.00").await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (503, Some("shop_unavailable"))
    );
    assert_eq!(app.balance_of(JANE_EMAIL).await, 109);
}
