//! Order news nobody asked for: a member hears of a refund of their order (or an auto-credit)
//! in the chat while their 24-hour window is open: a Messenger member as an `UPDATE` message, a
//! ManyChat contact through ManyChat's `sendContent` (when `manychat.api_token` is set). After it
//! has closed, nothing is sent and the statement lists the change instead.

mod common;

use chrono::{Duration, TimeZone, Utc};
use common::manychat_api::FakeManychatApi;
use common::psid::{exchange, sent_to, text_of, until, Psid};
use common::{spawn_app_with_clock, TestApp, SHOP_SECRET};
use loyalty_bot::channels::manychat::SendContent;
use loyalty_bot::channels::order_news::{NewsError, NewsSender};
use loyalty_bot::clock::ManualClock;
use loyalty_bot::config::{Secret, Settings};
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
    shop_event(
        app,
        json!({"event": "order.refunded", "order_number": "1001", "refunded_total": refunded}),
    )
    .await
}

/// The shop refunds 20.00 of Jane's order 1001 (59.90): its points drop to 39.
async fn refund_20_of_1001(app: &TestApp) {
    app.shop
        .add_order("1001", JANE, "39.90", "partially_refunded");
    assert_eq!(partial_refund(app, "20.00").await["result"], "changed");
}

/// Waits for the message to `jane` after the first `before`, and checks it is an update.
async fn update_to(app: &TestApp, jane: &Psid, before: usize) -> Value {
    until(
        || sent_to(&app.graph_api, &jane.id).len() > before,
        "the news",
    )
    .await;
    let news = sent_to(&app.graph_api, &jane.id).pop().unwrap();
    assert_eq!(news["messaging_type"], "UPDATE");
    news
}

/// Posts a signed generic-contract event; checks the 200 and returns its answer.
async fn shop_event(app: &TestApp, event: Value) -> Value {
    let body = serde_json::to_vec(&event).unwrap();
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
    refund_20_of_1001(&app).await;
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
async fn a_window_open_before_a_graceful_restart_is_open_after_it() {
    let clock = clock();
    let mut app = spawn_app_with_clock(|_| {}, clock.clone()).await;
    let jane = Psid::new("6915800000000079");
    join_and_claim(&app, &jane).await;
    app.restart().await;
    let before = sent_to(&app.graph_api, &jane.id).len();

    clock.set(Utc.with_ymd_and_hms(2026, 12, 8, 8, 0, 0).unwrap());
    refund_20_of_1001(&app).await;
    update_to(&app, &jane, before).await;
}

#[tokio::test]
async fn after_the_window_closes_nothing_is_sent_and_the_statement_lists_the_change() {
    let clock = clock();
    let app = spawn_app_with_clock(|_| {}, clock.clone()).await;
    let jane = Psid::new("6915800000000078");
    join_and_claim(&app, &jane).await;
    let before = sent_to(&app.graph_api, &jane.id).len();

    clock.set(Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap() + Duration::hours(25));
    refund_20_of_1001(&app).await;
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

/// Jane's ManyChat contact (the fixture's subscriber id) and her contact data with `extra`.
const CONTACT: &str = "1515862162";
const MANYCHAT_API_TOKEN: &str = "1049123:manychat-api-key";

fn contact(extra: Value) -> Value {
    let mut c: Value = serde_json::from_str(include_str!(
        "../fixtures/manychat/full-contact-data-request.json"
    ))
    .unwrap();
    c["custom_fields"] = json!({ "loyalty_points": 0 });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

const METRICS_TOKEN: &str = "test-metrics-token";

fn with_manychat_api(api: &FakeManychatApi) -> impl FnOnce(&mut Settings) {
    let url = api.url();
    move |s: &mut Settings| {
        s.manychat.api_token = Secret::new(MANYCHAT_API_TOKEN);
        s.manychat.api_url = url;
        s.metrics.token = Secret::new(METRICS_TOKEN);
    }
}

/// Waits until `/metrics` counts one piece of order news for `channel` with `result`.
async fn counted_once(app: &TestApp, channel: &str, result: &str) {
    let line = format!("loyalty_order_news_total{{channel=\"{channel}\",result=\"{result}\"}} 1");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = app
            .client()
            .get(app.url("/metrics"))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.lines().any(|l| l == line) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "no {line} in\n{text}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn join_and_claim_on_manychat(app: &TestApp) {
    app.shop.add_order("1001", JANE, "59.90", "paid");
    let join = contact(json!({"custom_fields": {"loyalty_points": 0, "email_input": JANE}}));
    assert_eq!(
        app.post_manychat("/manychat/join", &join).await.status(),
        200
    );
    let claim = contact(json!({"order_number": "1001"}));
    assert_eq!(
        app.post_manychat("/manychat/claim", &claim).await.status(),
        200
    );
    assert_eq!(app.balance_of(JANE).await, 109);
}

#[tokio::test]
async fn a_refund_is_told_to_a_manychat_contact_through_send_content_while_the_window_is_open() {
    let clock = clock();
    let api = FakeManychatApi::start().await;
    let app = spawn_app_with_clock(with_manychat_api(&api), clock.clone()).await;
    join_and_claim_on_manychat(&app).await;
    assert!(
        api.requests().is_empty(),
        "answers to calls go in the v2 reply"
    );

    clock.set(Utc.with_ymd_and_hms(2026, 12, 8, 8, 0, 0).unwrap());
    refund_20_of_1001(&app).await;
    until(|| !api.requests().is_empty(), "the news").await;
    let sent = api.requests();
    assert_eq!(sent.len(), 1, "one message: {sent:?}");
    let news = &sent[0];
    assert_eq!(news.path, "/fb/sending/sendContent");
    assert_eq!(
        news.authorization.as_deref(),
        Some(format!("Bearer {MANYCHAT_API_TOKEN}").as_str())
    );
    assert_eq!(news.body["subscriber_id"], json!(1_515_862_162u64));
    assert_eq!(news.body["data"]["version"], "v2");
    let messages = news.body["data"]["content"]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["type"], "text");
    let text = messages[0]["text"].as_str().unwrap();
    assert!(
        text.contains("1001") && text.contains("20") && text.contains("89 points"),
        "{text}"
    );
    counted_once(&app, "manychat", "sent").await;
}

#[tokio::test]
async fn a_manychat_contact_outside_the_window_or_without_an_api_token_is_sent_nothing() {
    // The window has closed since the contact's last call.
    let clock = clock();
    let api = FakeManychatApi::start().await;
    let app = spawn_app_with_clock(with_manychat_api(&api), clock.clone()).await;
    join_and_claim_on_manychat(&app).await;
    clock.set(Utc.with_ymd_and_hms(2026, 12, 8, 10, 0, 0).unwrap());
    refund_20_of_1001(&app).await;
    assert_eq!(app.balance_of(JANE).await, 89);
    counted_once(&app, "manychat", "closed_window").await;

    // No API token: the window is open, and there is no way to send.
    let silent = FakeManychatApi::start().await;
    let url = silent.url();
    let without_token = move |s: &mut Settings| {
        s.manychat.api_url = url;
        s.metrics.token = Secret::new(METRICS_TOKEN);
    };
    let other = spawn_app_with_clock(without_token, clock.clone()).await;
    join_and_claim_on_manychat(&other).await;
    refund_20_of_1001(&other).await;
    counted_once(&other, "manychat", "no_sender").await;

    // Both were decided (and counted) without a call.
    assert!(api.requests().is_empty(), "{:?}", api.requests());
    assert!(silent.requests().is_empty(), "{:?}", silent.requests());
}

#[tokio::test]
async fn send_content_reads_manychats_answers() {
    let api = FakeManychatApi::start().await;
    let send = SendContent::new(&api.url(), Secret::new(MANYCHAT_API_TOKEN));
    assert!(send.send(CONTACT, "hello").await.is_ok());
    api.answer_outside_window(1);
    assert!(matches!(
        send.send(CONTACT, "hello").await,
        Err(NewsError::WindowClosed)
    ));
    assert!(matches!(
        send.send("not-a-number", "hello").await,
        Err(NewsError::NotAddressable(_))
    ));
    assert_eq!(
        api.requests().len(),
        2,
        "an id that is not a number is never sent"
    );
    // Nothing listens on a port just let go of.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = SendContent::new(
        &format!("http://127.0.0.1:{port}"),
        Secret::new(MANYCHAT_API_TOKEN),
    );
    assert!(matches!(
        nowhere.send(CONTACT, "hello").await,
        Err(NewsError::Unreachable(_))
    ));
}

fn with_metrics(s: &mut Settings) {
    s.metrics.token = Secret::new(METRICS_TOKEN);
}

#[tokio::test]
async fn a_full_refund_on_the_generic_contract_is_told_in_the_window_too() {
    let clock = clock();
    let app = spawn_app_with_clock(with_metrics, clock.clone()).await;
    let jane = Psid::new("6915800000000080");
    join_and_claim(&app, &jane).await;
    let before = sent_to(&app.graph_api, &jane.id).len();

    let full = json!({"event": "order.refunded", "order_number": "1001"});
    shop_event(&app, full).await;
    assert_eq!(app.balance_of(JANE).await, 50);
    let news = update_to(&app, &jane, before).await;
    let text = news["message"]["text"].as_str().unwrap();
    assert!(
        text.contains("1001") && text.contains("50 points"),
        "{text}"
    );
    counted_once(&app, "messenger", "sent").await;
}

#[tokio::test]
async fn a_platform_that_says_the_window_closed_is_counted_so_and_a_failure_as_failed() {
    // Meta: outside the allowed window (10/2018278), though ours was open.
    let clock = clock();
    let app = spawn_app_with_clock(with_metrics, clock.clone()).await;
    let jane = Psid::new("6915800000000081");
    join_and_claim(&app, &jane).await;
    app.graph_api.fail_next_permanent(1);
    refund_20_of_1001(&app).await;
    counted_once(&app, "messenger", "closed_window").await;

    // ManyChat: a 500.
    let api = FakeManychatApi::start().await;
    let other = spawn_app_with_clock(with_manychat_api(&api), clock.clone()).await;
    join_and_claim_on_manychat(&other).await;
    api.fail_next(1);
    refund_20_of_1001(&other).await;
    counted_once(&other, "manychat", "failed").await;
    assert_eq!(
        api.requests().len(),
        1,
        "not retried: the statement lists it"
    );
}

#[tokio::test]
async fn a_manychat_window_open_before_a_graceful_restart_is_open_after_it() {
    let clock = clock();
    let api = FakeManychatApi::start().await;
    let mut app = spawn_app_with_clock(with_manychat_api(&api), clock.clone()).await;
    join_and_claim_on_manychat(&app).await;
    app.restart().await;
    clock.set(Utc.with_ymd_and_hms(2026, 12, 8, 8, 0, 0).unwrap());
    refund_20_of_1001(&app).await;
    counted_once(&app, "manychat", "sent").await;
    assert_eq!(api.requests().len(), 1);
}
