//! Observability over a real socket: `/metrics` behind its bearer token (and absent without
//! one), metrics that move with joins, claims and webhook events, store gauges that are right
//! after a restart, and the readiness probe.

mod common;

use common::{spawn_app_with, TestApp};
use loyalty_bot::config::Secret;
use serde_json::{json, Value};
use std::time::Duration;

const METRICS_TOKEN: &str = "test-metrics-token";
const MODERN: &str = include_str!("../fixtures/manychat/full-contact-data-request.json");
/// The fixture's contact (email jane@example.com).
const JANE: &str = "jane@example.com";

async fn spawn_with_metrics() -> TestApp {
    spawn_app_with(|s| s.metrics.token = Secret::new(METRICS_TOKEN)).await
}

async fn get_metrics(app: &TestApp, token: Option<&str>) -> reqwest::Response {
    let mut req = app.client().get(app.url("/metrics"));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.expect("GET /metrics")
}

/// The exposition, checked to be the Prometheus text format.
async fn scrape(app: &TestApp) -> String {
    let res = get_metrics(app, Some(METRICS_TOKEN)).await;
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    res.text().await.unwrap()
}

/// The value of the series named exactly `series` (name and labels), if exposed.
fn value(text: &str, series: &str) -> Option<u64> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))?;
    Some(line.parse().expect("a whole number"))
}

fn must(text: &str, series: &str) -> u64 {
    value(text, series).unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

/// ManyChat's contact data for Jane, with `fields` set.
fn jane(fields: &[(&str, Value)]) -> Value {
    let mut c: Value = serde_json::from_str(MODERN).unwrap();
    c["custom_fields"] = json!({ "loyalty_points": 0 });
    for (k, v) in fields {
        if *k == "email_input" {
            c["custom_fields"][*k] = v.clone();
        } else {
            c[*k] = v.clone();
        }
    }
    c
}

/// Jane joins (50 points) and claims a 210.00 order (210 points) through ManyChat.
async fn jane_joins_and_claims(app: &TestApp) {
    app.shop.add_order("1007", JANE, "210.00", "paid");
    let res = app
        .post_manychat("/manychat/join", &jane(&[("email_input", json!(JANE))]))
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .post_manychat("/manychat/claim", &jane(&[("order_number", json!("1007"))]))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.balance_of(JANE).await, 260);
}

#[tokio::test]
async fn metrics_are_not_served_while_the_token_is_empty() {
    let app = spawn_app_with(|_| {}).await;
    let res = get_metrics(&app, Some("")).await;
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "not_found");
}

#[tokio::test]
async fn metrics_without_or_with_a_wrong_token_are_401() {
    let app = spawn_with_metrics().await;
    for (token, case) in [(None, "no token"), (Some("nope"), "wrong token")] {
        let res = get_metrics(&app, token).await;
        assert_eq!(res.status(), 401, "{case}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "unauthorized", "{case}");
    }
}

#[tokio::test]
async fn a_join_and_a_claim_move_the_counters_and_the_gauges() {
    let app = spawn_with_metrics().await;
    let before = scrape(&app).await;
    assert_eq!(must(&before, "loyalty_joins_total"), 0);
    assert_eq!(must(&before, "loyalty_members_total"), 0);
    let credited = r#"loyalty_order_claims_total{channel="manychat",result="credited"}"#;
    assert_eq!(must(&before, credited), 0);

    jane_joins_and_claims(&app).await;
    let after = scrape(&app).await;
    assert!(!after.contains("_total_total"), "{after}");
    assert_eq!(must(&after, "loyalty_joins_total"), 1);
    assert_eq!(must(&after, "loyalty_points_credited_total"), 260);
    assert_eq!(must(&after, credited), 1);
    assert_eq!(
        must(
            &after,
            r#"loyalty_webhook_events_total{channel="manychat"}"#
        ),
        2
    );
    assert_eq!(must(&after, "loyalty_members_total"), 1);
    assert_eq!(must(&after, "loyalty_points_outstanding"), 260);
    let shop_calls = r#"loyalty_shop_request_seconds_count{operation="find_order"}"#;
    assert_eq!(must(&after, shop_calls), 1);
    let flushes_le_inf = r#"loyalty_store_flush_seconds_bucket{le="+Inf"}"#;
    assert!(must(&after, flushes_le_inf) > 0, "the writes were flushed");
    for histogram in [
        "loyalty_shop_request_seconds",
        "loyalty_store_flush_seconds",
    ] {
        assert!(
            after.contains(&format!("# TYPE {histogram} histogram")),
            "{after}"
        );
        let buckets = after
            .lines()
            .filter(|l| l.starts_with(&format!("{histogram}_bucket{{")))
            .count();
        assert!(buckets > 5, "{histogram} has _bucket series:\n{after}");
    }

    // A second claim of the same order is counted under its own result.
    let res = app
        .post_manychat("/manychat/claim", &jane(&[("order_number", json!("1007"))]))
        .await;
    assert_eq!(res.status(), 200);
    let again = scrape(&app).await;
    let repeat = r#"loyalty_order_claims_total{channel="manychat",result="already_claimed"}"#;
    assert_eq!(must(&again, repeat), 1);
    assert_eq!(must(&again, "loyalty_points_credited_total"), 260);
}

#[tokio::test]
async fn redemptions_are_counted_by_reward_and_result() {
    let app = spawn_with_metrics().await;
    jane_joins_and_claims(&app).await;
    let subscriber = jane(&[])["id"].as_str().unwrap().to_owned();
    for reward in ["free-mug", "tote-bag"] {
        let body = json!({ "subscriber_id": subscriber, "reward_id": reward });
        let res = app.post_manychat("/manychat/redeem", &body).await;
        assert_eq!(res.status(), 200);
    }
    let text = scrape(&app).await;
    let mug = r#"loyalty_redemptions_total{reward="free-mug",result="redeemed"}"#;
    assert_eq!(must(&text, mug), 1);
    let bag = r#"loyalty_redemptions_total{reward="tote-bag",result="insufficient_points"}"#;
    assert_eq!(must(&text, bag), 1, "60 points left, 500 needed");
    assert_eq!(must(&text, "loyalty_points_redeemed_total"), 200);
    assert_eq!(must(&text, "loyalty_points_outstanding"), 60);
    let coupons = r#"loyalty_shop_request_seconds_count{operation="create_coupon"}"#;
    assert_eq!(must(&text, coupons), 1);
}

#[tokio::test]
async fn after_a_restart_the_gauges_still_show_the_members_and_points() {
    let mut app = spawn_with_metrics().await;
    jane_joins_and_claims(&app).await;
    app.restart().await;
    let text = scrape(&app).await;
    assert_eq!(must(&text, "loyalty_members_total"), 1);
    assert_eq!(must(&text, "loyalty_points_outstanding"), 260);
    assert_eq!(
        must(&text, "loyalty_joins_total"),
        0,
        "counters count this run"
    );
}

#[tokio::test]
async fn messenger_events_are_counted_and_the_queues_drain_to_zero() {
    let app = spawn_with_metrics().await;
    let body = serde_json::to_vec(&json!({"object": "page", "entry": [{"id": "1", "time": 1,
        "messaging": [{"sender": {"id": "6915"}, "recipient": {"id": "1"}, "timestamp": 1,
        "message": {"mid": "m-1", "text": "hi"}}]}]}))
    .unwrap();
    let res = app
        .post_messenger_webhook("/webhooks/messenger", &body)
        .await;
    assert_eq!(res.status(), 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(&app).await;
        let events = must(
            &text,
            r#"loyalty_webhook_events_total{channel="messenger"}"#,
        );
        assert_eq!(events, 1);
        let inbox = value(&text, "loyalty_inbox_pending");
        let outbox = value(&text, "loyalty_outbox_pending");
        let answered = !app.graph_api.sent().is_empty();
        if answered && inbox == Some(0) && outbox == Some(0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the queues did not drain: inbox {inbox:?}, outbox {outbox:?}, answered {answered}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The 503 of a stopping service is pinned by `startup::shutdown`'s unit test: over HTTP it
/// cannot be seen, because a draining actix server takes no new connection and closes each
/// open one once its request in flight is answered.
#[tokio::test]
async fn readyz_and_healthz_are_200_while_serving() {
    let app = spawn_with_metrics().await;
    assert_eq!(app.get("/readyz").await.status(), 200);
    assert_eq!(app.get("/healthz").await.status(), 200);
}
