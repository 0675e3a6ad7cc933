//! Redemptions: the exact coupon body, and refusals that spend nothing.

use super::harness::*;
use crate::common::fake_woo::{basic_auth, FakeWoo, WooRequest, WOO_KEY, WOO_SECRET};
use crate::common::TestApp;
use loyalty_bot::domain::Email;
use loyalty_bot::shop::{Shop, ShopError};
use serde_json::{json, Value};

/// Jane with 50 + 460 points, from order 1001.
async fn jane_with_510_points(woo: &FakeWoo, app: &TestApp) {
    woo.add_order(1001, "jane@example.com", "460.00", "processing");
    join_jane(app).await;
    claim(app, "1001").await;
    assert_eq!(app.balance_of("jane@example.com").await, 510);
}

fn coupon_posts(woo: &FakeWoo) -> Vec<WooRequest> {
    let posts: Vec<WooRequest> = woo
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    for p in &posts {
        assert_eq!(p.path, "/wp-json/wc/v3/coupons");
        assert_eq!(p.query, "");
        assert_eq!(
            p.header("authorization"),
            Some(basic_auth(WOO_KEY, WOO_SECRET).as_str())
        );
        assert_eq!(p.header("content-type"), Some("application/json"));
    }
    posts
}

/// `date_expires_gmt` is UTC without an offset, `program.coupon_valid_days` (30) from now.
fn assert_expiry(body: &Value) {
    let raw = body["date_expires_gmt"].as_str().expect("date_expires_gmt");
    let at = chrono::NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S")
        .unwrap_or_else(|e| panic!("{raw}: {e}"))
        .and_utc();
    let days = (at - chrono::Utc::now()).num_hours() as f64 / 24.0;
    assert!((29.0..=30.0).contains(&days), "{raw} is {days} days away");
}

#[tokio::test]
async fn redeeming_the_free_product_sends_a_single_use_percent_coupon_for_janes_email() {
    let woo = FakeWoo::start().await;
    let app = app_on(&woo).await;
    jane_with_510_points(&woo, &app).await;
    let reply = redeem(&app, "free-mug").await;
    assert_eq!(app.balance_of("jane@example.com").await, 310);
    let posts = coupon_posts(&woo);
    assert_eq!(posts.len(), 1);
    let mut body = posts[0].body.clone();
    let code = body["code"].as_str().unwrap().to_owned();
    assert!(reply.contains(&code), "the reply shows {code}: {reply}");
    assert_expiry(&body);
    body.as_object_mut().unwrap().remove("date_expires_gmt");
    assert_eq!(
        body,
        json!({
            "code": code,
            "discount_type": "percent",
            "amount": "100",
            "description": "Loyalty reward free-mug",
            "individual_use": true,
            "product_ids": [93],
            "usage_limit": 1,
            "usage_limit_per_user": 1,
            "limit_usage_to_x_items": 1,
            "email_restrictions": ["jane@example.com"],
        })
    );
}

#[tokio::test]
async fn an_amount_reward_sends_a_fixed_product_coupon() {
    let woo = FakeWoo::start().await;
    let app = app_on(&woo).await;
    jane_with_510_points(&woo, &app).await;
    redeem(&app, "tote-bag").await;
    assert_eq!(app.balance_of("jane@example.com").await, 10);
    let body = &coupon_posts(&woo)[0].body;
    assert_eq!(body["discount_type"], "fixed_product");
    assert_eq!(body["amount"], "5.00");
    assert_eq!(body["product_ids"], json!([93, 94]));
    assert_eq!(body["description"], "Loyalty reward tote-bag");
    assert_expiry(body);
}

#[tokio::test]
async fn a_coupon_the_shop_refuses_or_cannot_make_spends_no_points() {
    let woo = FakeWoo::start().await;
    let app = app_on(&woo).await;
    jane_with_510_points(&woo, &app).await;
    let invalid = json!({"code": "rest_invalid_param", "message": "Invalid parameter(s): product_ids", "data": {"status": 400}});
    for (case, status, body) in [
        ("refusal", 400, invalid),
        (
            "credentials",
            401,
            json!({"code": "woocommerce_rest_cannot_create", "message": "Sorry, you are not allowed to create resources.", "data": {"status": 401}}),
        ),
        ("server error", 500, json!({})),
    ] {
        woo.fail_coupons_with(status, body);
        redeem(&app, "free-mug").await;
        assert_eq!(app.balance_of("jane@example.com").await, 510, "{case}");
    }
    assert!(woo.coupons().is_empty());
    woo.heal();
    redeem(&app, "free-mug").await;
    assert_eq!(app.balance_of("jane@example.com").await, 310);
}

#[tokio::test]
async fn a_taken_code_spends_no_points() {
    let woo = FakeWoo::start().await;
    let app = app_on(&woo).await;
    jane_with_510_points(&woo, &app).await;
    woo.collide_next_codes(1);
    redeem(&app, "free-mug").await;
    let balance = app.balance_of("jane@example.com").await;
    assert!(
        balance == 510 || balance == 310,
        "spent once or not at all: {balance}"
    );
    assert_eq!(510 - balance, 200 * woo.coupons().len() as u64);
}

#[tokio::test]
async fn a_taken_code_is_retried_with_a_new_code() {
    let woo = FakeWoo::start().await;
    let app = app_on(&woo).await;
    jane_with_510_points(&woo, &app).await;
    woo.collide_next_codes(1);
    let reply = redeem(&app, "free-mug").await;
    let posts = coupon_posts(&woo);
    assert_eq!(posts.len(), 2, "tried again");
    assert_ne!(posts[0].body["code"], posts[1].body["code"]);
    let code = woo.coupons()[0]["code"].as_str().unwrap().to_owned();
    assert!(reply.contains(&code), "{reply}");
    assert_eq!(app.balance_of("jane@example.com").await, 310);
}

#[tokio::test]
async fn a_second_attempt_with_the_same_code_is_not_a_second_coupon() {
    let woo = FakeWoo::start().await;
    let shop = adapter(&woo, WOO_SECRET);
    let request = loyalty_bot::shop::CouponRequest {
        code: "MUG-2345-6789-ABCD-EFGH".into(),
        reward_id: "free-mug".into(),
        product_ids: vec!["93".into()],
        expires_at: chrono::Utc::now() + chrono::Duration::days(30),
        email: Email::parse("jane@example.com").unwrap(),
        discount: Default::default(),
    };
    shop.create_coupon(&request).await.unwrap();
    // The first answer lost on the way, the program asks again: the shop has it already.
    shop.create_coupon(&request).await.unwrap();
    assert_eq!(woo.coupons().len(), 1);
    assert_eq!(
        calls(&woo.requests()),
        [
            "POST /wp-json/wc/v3/coupons",
            "POST /wp-json/wc/v3/coupons",
            "GET /wp-json/wc/v3/coupons code=MUG-2345-6789-ABCD-EFGH",
        ]
    );
    // Someone else's coupon with the code is a collision.
    woo.collide_next_codes(1);
    let other = loyalty_bot::shop::CouponRequest {
        code: "MUG-0000".into(),
        ..request
    };
    let res = shop.create_coupon(&other).await;
    assert!(matches!(res, Err(ShopError::CodeTaken)), "{res:?}");
}
