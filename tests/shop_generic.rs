//! The generic shop adapter against `FakeShop` over a real socket: signed requests, every way a
//! shop can fail, and what the program does with each failure (credit nothing, spend nothing).

mod common;

use common::{spawn_app, FakeShop, SHOP_SECRET};
use loyalty_bot::config::Secret;
use loyalty_bot::domain::{Channel, ChatIdentity, Email, OrderNumber, Points, Profile};
use loyalty_bot::program::{ClaimResult, JoinResult, RedeemResult};
use loyalty_bot::shop::{CouponRequest, GenericShop, Shop, ShopError};
use std::time::Duration;

fn adapter(shop: &FakeShop, secret: &str) -> GenericShop {
    let timeout = Duration::from_secs(1);
    GenericShop::new(
        shop.verify_url(),
        shop.coupon_url(),
        Secret::new(secret),
        timeout,
    )
    .unwrap()
}

fn order(n: &str) -> OrderNumber {
    OrderNumber::parse(n).unwrap()
}

fn email(e: &str) -> Email {
    Email::parse(e).unwrap()
}

fn coupon_request() -> CouponRequest {
    CouponRequest {
        code: "MUG-2345-6789-ABCD-EFGH".into(),
        reward_id: "free-mug".into(),
        product_ids: vec!["mug-classic".into()],
        expires_at: chrono::Utc::now() + chrono::Duration::days(30),
        email: email("jane@example.com"),
        discount: Default::default(),
    }
}

#[tokio::test]
async fn verify_requests_are_signed_and_the_answer_parsed() {
    let fake = FakeShop::start().await;
    fake.add_order("1001", "jane@example.com", "42.50", "paid");
    let found = adapter(&fake, SHOP_SECRET)
        .find_order(&order("1001"), &email("jane@example.com"))
        .await
        .unwrap()
        .expect("order found");
    assert_eq!(found.number.as_str(), "1001");
    assert_eq!(found.total.to_string(), "42.50");
    assert_eq!(found.currency, "EUR");
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/verify");
    assert!(requests[0].signature_ok);
    assert_eq!(requests[0].body["order_number"], "1001");
    assert_eq!(requests[0].body["email"], "jane@example.com");
}

#[tokio::test]
async fn an_order_the_shop_does_not_know_is_not_found() {
    let fake = FakeShop::start().await;
    fake.add_order("1001", "jane@example.com", "42.50", "paid");
    let shop = adapter(&fake, SHOP_SECRET);
    let (jane, max) = (email("jane@example.com"), email("max@example.com"));
    let unknown = shop.find_order(&order("9999"), &jane).await.unwrap();
    assert!(unknown.is_none());
    let other_email = shop.find_order(&order("1001"), &max).await.unwrap();
    assert!(other_email.is_none());
}

#[tokio::test]
async fn a_wrong_secret_is_refused_by_the_shop() {
    let fake = FakeShop::start().await;
    fake.add_order("1001", "jane@example.com", "42.50", "paid");
    let res = adapter(&fake, "not-the-secret")
        .find_order(&order("1001"), &email("jane@example.com"))
        .await;
    assert!(matches!(res, Err(ShopError::Status(401))), "{res:?}");
    assert!(!fake.requests()[0].signature_ok);
}

#[tokio::test]
async fn a_slow_shop_times_out_after_timeout_secs() {
    let fake = FakeShop::start().await;
    fake.add_order("1001", "jane@example.com", "42.50", "paid");
    fake.set_delay(Duration::from_millis(1500));
    let started = std::time::Instant::now();
    let res = adapter(&fake, SHOP_SECRET)
        .find_order(&order("1001"), &email("jane@example.com"))
        .await;
    assert!(matches!(res, Err(ShopError::Timeout(1))), "{res:?}");
    assert!(started.elapsed() < Duration::from_millis(1450));
}

#[tokio::test]
async fn server_errors_and_garbage_are_errors_not_orders() {
    let fake = FakeShop::start().await;
    let shop = adapter(&fake, SHOP_SECRET);
    let (n, e) = (order("1001"), email("jane@example.com"));
    for status in [500, 502, 503] {
        fake.fail_verify_with(status);
        let res = shop.find_order(&n, &e).await;
        assert!(
            matches!(res, Err(ShopError::Status(s)) if s == status),
            "{status}: {res:?}"
        );
    }
    fake.heal();
    for garbage in [
        "not json",
        "{}",
        r#"{"order_number":"1001","email":"jane@example.com","total":"lots","currency":"EUR","status":"paid"}"#,
    ] {
        fake.answer_verify_with_raw(garbage);
        let res = shop.find_order(&n, &e).await;
        assert!(
            matches!(res, Err(ShopError::BadAnswer(_))),
            "{garbage}: {res:?}"
        );
    }
}

#[tokio::test]
async fn a_redirect_is_reported_not_followed() {
    let fake = FakeShop::start().await;
    let shop = adapter(&fake, SHOP_SECRET);
    for code in [301, 302, 307, 308] {
        fake.fail_verify_with(code);
        let res = shop
            .find_order(&order("1001"), &email("jane@example.com"))
            .await;
        assert!(
            matches!(res, Err(ShopError::Status(s)) if s == code),
            "{code}: {res:?}"
        );
    }
    assert_eq!(fake.requests().len(), 4, "nothing was sent anywhere else");
}

#[tokio::test]
async fn an_unreachable_shop_is_reported_as_such() {
    let fake = FakeShop::start().await;
    let shop = adapter(&fake, SHOP_SECRET);
    fake.stop().await;
    let res = shop
        .find_order(&order("1001"), &email("jane@example.com"))
        .await;
    assert!(matches!(res, Err(ShopError::Unreachable(_))), "{res:?}");
}

#[tokio::test]
async fn coupons_are_created_with_a_signed_request() {
    let fake = FakeShop::start().await;
    adapter(&fake, SHOP_SECRET)
        .create_coupon(&coupon_request())
        .await
        .unwrap();
    let coupons = fake.coupons();
    assert_eq!(coupons.len(), 1);
    assert_eq!(coupons[0]["code"], "MUG-2345-6789-ABCD-EFGH");
    assert_eq!(coupons[0]["reward_id"], "free-mug");
    assert_eq!(coupons[0]["product_ids"][0], "mug-classic");
    assert_eq!(coupons[0]["email"], "jane@example.com");
    assert!(coupons[0]["expires_at"].as_str().unwrap().ends_with('Z'));
    assert!(fake.requests()[0].signature_ok);
}

#[tokio::test]
async fn a_refused_coupon_is_told_apart_from_a_broken_shop() {
    let fake = FakeShop::start().await;
    let shop = adapter(&fake, SHOP_SECRET);
    fake.fail_coupons_with(422);
    let res = shop.create_coupon(&coupon_request()).await;
    assert!(matches!(res, Err(ShopError::CouponRefused(422))), "{res:?}");
    fake.fail_coupons_with(503);
    let res = shop.create_coupon(&coupon_request()).await;
    assert!(matches!(res, Err(ShopError::Status(503))), "{res:?}");
    assert!(fake.coupons().is_empty());
}

// ---- through the program, with the real store ----------------------------------------------

async fn joined(app: &common::TestApp, who: &str, mail: &str) -> loyalty_bot::domain::Member {
    let who = ChatIdentity::new(Channel::Terminal, who).unwrap();
    match app
        .program()
        .join(&who, email(mail), Profile::default())
        .await
        .unwrap()
    {
        JoinResult::Joined(account) => account.member,
        other => panic!("join: {other:?}"),
    }
}

#[tokio::test]
async fn a_claim_credits_nothing_when_the_shop_is_slow_or_broken() {
    let app = spawn_app().await;
    app.shop
        .add_order("1001", "jane@example.com", "42.50", "paid");
    let member = joined(&app, "jane", "jane@example.com").await;
    let program = app.program();
    for (case, break_it) in [
        (
            "timeout",
            (|s: &FakeShop| s.set_delay(Duration::from_millis(1500))) as fn(&FakeShop),
        ),
        ("503", |s| s.fail_verify_with(503)),
        ("garbage", |s| s.answer_verify_with_raw("<html>")),
    ] {
        app.shop.heal();
        break_it(&app.shop);
        let res = program.claim(&member, order("1001")).await.unwrap();
        assert_eq!(res, ClaimResult::ShopUnavailable, "{case}");
        assert_eq!(
            program.balance(member.id).await.unwrap(),
            Points(50),
            "{case}"
        );
    }
    app.shop.heal();
    let res = program.claim(&member, order("1001")).await.unwrap();
    assert!(
        matches!(
            res,
            ClaimResult::Credited {
                points: Points(42),
                ..
            }
        ),
        "{res:?}"
    );
}

#[tokio::test]
async fn a_coupon_the_shop_does_not_create_spends_no_points() {
    let app = spawn_app().await;
    app.shop
        .add_order("1002", "jane@example.com", "159.90", "paid");
    let member = joined(&app, "jane", "jane@example.com").await;
    let program = app.program();
    program.claim(&member, order("1002")).await.unwrap();
    let before = program.balance(member.id).await.unwrap();
    assert_eq!(before, Points(209));
    for status in [422, 503] {
        app.shop.fail_coupons_with(status);
        let res = program.redeem(&member, "free-mug", None).await.unwrap();
        assert!(
            matches!(res, RedeemResult::ShopUnavailable { balance } if balance == before),
            "{status}: {res:?}"
        );
        assert_eq!(
            program.balance(member.id).await.unwrap(),
            before,
            "{status}"
        );
    }
    assert!(app.shop.coupons().is_empty());
    app.shop.heal();
    let res = program.redeem(&member, "free-mug", None).await.unwrap();
    assert!(
        matches!(
            res,
            RedeemResult::Redeemed {
                balance: Points(9),
                ..
            }
        ),
        "{res:?}"
    );
    assert_eq!(app.shop.coupons().len(), 1);
}
