//! Races over real HTTP: many requests at the same instant must not credit an order twice or
//! spend points that are not there. The store's own proptests cover the same rules below HTTP.

mod common;

use common::{spawn_app, spawn_app_with};
use futures_util::future::join_all;
use serde_json::{json, Value};

async fn join(app: &common::TestApp, subscriber: &str, email: &str) {
    let res = app
        .post_manychat("/manychat/join", &json!({"id": subscriber, "email": email}))
        .await;
    assert_eq!(res.status(), 200);
}

async fn ledger_sum(app: &common::TestApp, email: &str) -> (u64, i64) {
    let body: Value = app.get_admin_member(email).await.json().await.unwrap();
    let sum = body["ledger"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["points"].as_i64().unwrap())
        .sum();
    (body["points"].as_u64().unwrap(), sum)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_claims_of_one_order_credit_it_once() {
    // One member, fifty claims at once: above the per-member claim budgets (each claim in
    // flight holds a failed-claim token until it succeeds), which are not what this test is
    // about (tests/rate_limits.rs is).
    let app = spawn_app_with(|s| {
        s.limits.claims_per_member.max = 100;
        s.limits.failed_claims_per_member.max = 100;
    })
    .await;
    app.shop
        .add_order("5001", "jane@example.com", "120.00", "paid");
    join(&app, "1515862162", "jane@example.com").await;

    let body = json!({"id": "1515862162", "order_number": "5001"});
    let claims = (0..50).map(|_| app.post_manychat("/manychat/claim", &body));
    let statuses: Vec<u16> = join_all(claims)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");

    assert_eq!(app.balance_of("jane@example.com").await, 50 + 120);
    let (points, sum) = ledger_sum(&app, "jane@example.com").await;
    assert_eq!(points as i64, sum, "balance equals the ledger sum");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_redemptions_never_take_a_balance_below_zero() {
    let app = spawn_app().await;
    app.shop
        .add_order("5002", "ana@example.com", "400.00", "paid");
    join(&app, "2001", "ana@example.com").await;
    let res = app
        .post_manychat(
            "/manychat/claim",
            &json!({"id": "2001", "order_number": "5002"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.balance_of("ana@example.com").await, 450);

    let body = json!({"id": "2001", "reward_id": "free-mug"});
    let redemptions = (0..10).map(|_| app.post_manychat("/manychat/redeem", &body));
    for r in join_all(redemptions).await {
        assert_eq!(r.status(), 200);
    }

    // 450 buys exactly two 200-point mugs.
    assert_eq!(app.balance_of("ana@example.com").await, 50);
    assert_eq!(
        app.shop.coupons().len(),
        2,
        "one shop coupon per successful redemption"
    );
    let (points, sum) = ledger_sum(&app, "ana@example.com").await;
    assert_eq!(points as i64, sum);
}
