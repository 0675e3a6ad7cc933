//! Order news nobody asked for: a Messenger member hears of a refund of their order (or an
//! auto-credit) in the chat while their 24-hour window is open, as an `UPDATE` message; after
//! it has closed, nothing is sent and the statement lists the change instead.

mod common;

use chrono::{Duration, TimeZone, Utc};
use common::psid::{exchange, sent_to, text_of, until, Psid};
use common::{spawn_app_with_clock, TestApp, SHOP_SECRET};
use loyalty_bot::clock::ManualClock;
use loyalty_bot::flows::payloads;
use serde_json::{json, Value};
use std::sync::Arc;

const JANE: &str = "jane@example.com";

async fn join_and_claim(app: &TestApp, jane: &Psid) {
    app.shop.add_order("1001", JANE, "59.90", "paid");
    let say = |body| exchange(app.client(), app.address(), &app.graph_api, jane, body);
    say(jane.get_started("join")).await;
    say(jane.tap("Yes, join", payloads::JOIN_YES)).await;
    say(jane.text(JANE)).await;
    let r = say(jane.referral("order-1001")).await;
    assert!(text_of(&r).contains("59 points"), "{}", text_of(&r));
    assert_eq!(app.balance_of(JANE).await, 109);
}

async fn partial_refund(app: &TestApp, refunded: &str) -> Value {
    let body =
        json!({"event": "order.refunded", "order_number": "1001", "refunded_total": refunded});
    let body = serde_json::to_vec(&body).unwrap();
    let sig = format!(
        "sha256={}",
        loyalty_bot::signature::hmac_sha256_hex(SHOP_SECRET.as_bytes(), &body)
    );
    let res = app
        .client()
        .post(app.url("/webhooks/shop"))
        .header("X-Loyalty-Signature", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

fn clock() -> Arc<ManualClock> {
    let c = Arc::new(ManualClock::default());
    c.set(Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap());
    c
}

#[tokio::test]
async fn a_refund_is_told_in_messenger_as_an_update_while_the_window_is_open() {
    let clock = clock();
    let app = spawn_app_with_clock(|_| {}, clock.clone()).await;
    let jane = Psid::new("6915800000000077");
    join_and_claim(&app, &jane).await;
    let before = sent_to(&app.graph_api, &jane.id).len();

    clock.set(Utc.with_ymd_and_hms(2026, 12, 8, 8, 0, 0).unwrap());
    app.shop
        .add_order("1001", JANE, "39.90", "partially_refunded");
    assert_eq!(partial_refund(&app, "20.00").await["result"], "changed");
    until(
        || sent_to(&app.graph_api, &jane.id).len() > before,
        "the news",
    )
    .await;
    let sent = sent_to(&app.graph_api, &jane.id);
    assert_eq!(sent.len(), before + 1, "one message");
    let news = sent.last().unwrap();
    assert_eq!(news["messaging_type"], "UPDATE");
    let text = news["message"]["text"].as_str().unwrap();
    assert!(
        text.contains("1001") && text.contains("20") && text.contains("89 points"),
        "{text}"
    );
}

#[tokio::test]
async fn after_the_window_closes_nothing_is_sent_and_the_statement_lists_the_change() {
    let clock = clock();
    let app = spawn_app_with_clock(|_| {}, clock.clone()).await;
    let jane = Psid::new("6915800000000078");
    join_and_claim(&app, &jane).await;
    let before = sent_to(&app.graph_api, &jane.id).len();

    clock.set(Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap() + Duration::hours(25));
    app.shop
        .add_order("1001", JANE, "39.90", "partially_refunded");
    assert_eq!(partial_refund(&app, "20.00").await["result"], "changed");
    assert_eq!(app.balance_of(JANE).await, 89);
    // Had anything gone out, it would be there by now (the other test waits the same way).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(sent_to(&app.graph_api, &jane.id).len(), before);

    let res = app
        .client()
        .get(app.url("/admin/email/preview?member=jane@example.com&kind=statement&format=text"))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body = res.text().await.unwrap();
    assert!(
        body.contains("order 1001") || body.contains("Order 1001") || body.contains("1001"),
        "{body}"
    );
    assert!(body.contains("-20"), "{body}");
}
