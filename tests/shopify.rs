//! `shop.kind = "shopify"` against `FakeShopify` over a real socket, driven through the ManyChat
//! endpoints as a customer would: the exact GraphQL requests we send (path, token, variables),
//! what each order state earns, throttling, failures and tokens, and the coupons we create.

mod common;

use common::fake_shopify::{
    FakeShopify, CLIENT_ID, CLIENT_SECRET, GRAPHQL_PATH, STATIC_TOKEN, TOKEN_PATH,
};
use common::shopify_app::*;
use common::{spawn_app_with, try_spawn_app_with, TestApp};
use loyalty_bot::config::{DiscountKind, DiscountSettings, Secret, Settings};
use loyalty_bot::domain::OrderId;
use loyalty_bot::shop::{shopify, Shop, ShopError, ShopifyShop};
use serde_json::json;
use std::time::Duration;

/// The `q` variable of every order search sent, in order.
fn searches(fake: &FakeShopify) -> Vec<String> {
    fake.graphql_with("orders(")
        .iter()
        .map(|r| r.variables()["q"].as_str().unwrap().to_owned())
        .collect()
}

const UNAVAILABLE: &str = "can't reach the shop";

// ---- finding orders --------------------------------------------------------------------------

#[tokio::test]
async fn a_claim_searches_by_name_in_variables_and_credits_the_current_total() {
    let fake = FakeShopify::start().await;
    // Charged 42.50 at first (the fixture); 30.00 after a partial refund.
    fake.add_order(
        "#1001",
        Some("jane@example.com"),
        "30.00",
        "PARTIALLY_REFUNDED",
    );
    let app = app_with(&fake, Auth::Static).await;
    join_jane(&app).await;

    let reply = claim(&app, "#1001").await;
    assert!(reply.contains("30 points"), "{reply}");
    assert_eq!(balance(&app).await, 80);

    let sent = fake.graphql_with("orders(");
    assert_eq!(sent.len(), 1, "one search found it");
    let r = &sent[0];
    assert_eq!(r.path, GRAPHQL_PATH);
    assert_eq!(r.token(), Some(STATIC_TOKEN));
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.variables(), &json!({ "q": "name:#1001" }));
    assert!(
        r.query().contains("orders(first: 2, query: $q)"),
        "{}",
        r.query()
    );
    assert!(
        !r.query().contains("1001"),
        "the number is not in the query text"
    );
    assert!(fake.requests().iter().all(|r| r.path == GRAPHQL_PATH));
}

#[tokio::test]
async fn the_number_typed_with_a_hash_bare_or_after_order_finds_the_order() {
    let fake = FakeShopify::start().await;
    for name in ["#1001", "#1002", "#1003"] {
        fake.add_order(name, Some("jane@example.com"), "10.00", "PAID");
    }
    let app = app_with(&fake, Auth::Static).await;
    join_jane(&app).await;
    for typed in ["#1001", "1002", "order 1003"] {
        let reply = claim(&app, typed).await;
        assert!(reply.contains("10 points"), "{typed}: {reply}");
    }
    assert_eq!(balance(&app).await, 80);
    assert_eq!(searches(&fake), ["name:#1001", "name:#1002", "name:#1003"]);
}

#[tokio::test]
async fn only_an_order_with_exactly_that_name_is_taken() {
    let fake = FakeShopify::start().await;
    fake.add_order("#10010", Some("jane@example.com"), "99.00", "PAID");
    let app = app_with(&fake, Auth::Static).await;
    join_jane(&app).await;
    let reply = claim(&app, "1001").await;
    assert!(reply.contains("couldn't find order #1001"), "{reply}");
    assert_eq!(balance(&app).await, 50);
    assert_eq!(
        searches(&fake),
        ["name:#1001", "name:1001"],
        "both spellings asked"
    );
}

#[tokio::test]
async fn a_shop_that_prints_numbers_without_a_hash_is_found_too() {
    let fake = FakeShopify::start().await;
    fake.add_order("A-2031", Some("jane@example.com"), "20.00", "PAID");
    let app = app_with(&fake, Auth::Static).await;
    join_jane(&app).await;
    let reply = claim(&app, "A-2031").await;
    assert!(reply.contains("20 points"), "{reply}");
    let sent = fake.graphql_with("orders(");
    assert_eq!(searches(&fake).last().unwrap(), "name:A-2031");
    for r in &sent {
        assert!(
            !r.query().contains("2031"),
            "only in variables: {}",
            r.query()
        );
    }
}

#[tokio::test]
async fn graphql_typed_into_the_order_number_reaches_shopify_only_as_a_variable() {
    let fake = FakeShopify::start().await;
    let app = app_with(&fake, Auth::Static).await;
    join_jane(&app).await;
    claim(&app, r#"1001") { shop { name } } #"#).await;
    let sent = fake.graphql_with("orders(");
    assert!(!sent.is_empty());
    for r in &sent {
        let q = r.variables()["q"].as_str().unwrap();
        assert!(q == "name:#1001" || q == "name:1001", "{q}");
        assert!(!r.query().contains("1001") && !r.query().contains(r#"")"#));
    }
    assert_eq!(balance(&app).await, 50);
}

#[tokio::test]
async fn an_order_with_another_email_is_not_credited() {
    let fake = FakeShopify::start().await;
    fake.add_order("#1001", Some("max@example.com"), "42.50", "PAID");
    let app = app_with(&fake, Auth::Static).await;
    join_jane(&app).await;
    let reply = claim(&app, "1001").await;
    assert!(reply.contains("couldn't find order #1001"), "{reply}");
    assert_eq!(balance(&app).await, 50);
    assert_eq!(
        fake.graphql_with("orders(")[0].variables(),
        &json!({ "q": "name:#1001" }),
        "emails are compared by us, not searched for"
    );
}

#[tokio::test]
async fn the_email_is_compared_without_regard_to_case() {
    let fake = FakeShopify::start().await;
    fake.add_order("#1001", Some("Jane@Example.COM"), "42.50", "PAID");
    let app = app_with(&fake, Auth::Static).await;
    join_jane(&app).await;
    claim(&app, "1001").await;
    assert_eq!(balance(&app).await, 92);
}

#[tokio::test]
async fn test_cancelled_unpaid_and_refunded_orders_are_refused_each_with_its_reason() {
    let fake = FakeShopify::start().await;
    let test = fake.add_order("#1001", Some("jane@example.com"), "42.50", "PAID");
    fake.edit_order(&test, |o| o["test"] = json!(true));
    let cancelled = fake.add_order("#1002", Some("jane@example.com"), "42.50", "PAID");
    fake.edit_order(&cancelled, |o| {
        o["cancelledAt"] = json!("2026-11-19T10:00:00Z");
    });
    fake.add_order("#1003", Some("jane@example.com"), "42.50", "PENDING");
    fake.add_order("#1004", Some("jane@example.com"), "0.00", "REFUNDED");
    let app = app_with(&fake, Auth::Static).await;
    join_jane(&app).await;
    for (typed, word) in [
        ("1001", "is a test order"),
        ("1002", "is cancelled"),
        ("1003", "is not paid yet"),
        ("1004", "is refunded"),
    ] {
        let reply = claim(&app, typed).await;
        assert!(
            reply.contains(word) && reply.contains("doesn't earn points"),
            "{typed}: {reply}"
        );
    }
    assert_eq!(balance(&app).await, 50);
}

#[tokio::test]
async fn an_order_whose_email_shopify_withholds_gets_its_own_answer() {
    let fake = FakeShopify::start().await;
    fake.add_order("#1001", None, "42.50", "PAID");
    let app = app_with(&fake, Auth::Static).await;
    join_jane(&app).await;
    let reply = claim(&app, "1001").await;
    assert!(
        reply.contains("the shop doesn't tell me its email address"),
        "{reply}"
    );
    assert_eq!(balance(&app).await, 50);
}

// ---- throttling, failures, tokens -------------------------------------------------------------

#[tokio::test]
async fn a_throttled_search_is_sent_again_after_the_wait_and_credits() {
    let fake = FakeShopify::start().await;
    fake.add_order("#1001", Some("jane@example.com"), "42.50", "PAID");
    let app = app_with(&fake, Auth::Static).await;
    join_jane(&app).await;
    fake.throttle_once();
    claim(&app, "1001").await;
    assert_eq!(balance(&app).await, 92);
    let statuses: Vec<u16> = fake
        .graphql_with("orders(")
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [200, 200], "THROTTLED comes in a 200");
    assert_eq!(searches(&fake), ["name:#1001", "name:#1001"]);
}

#[tokio::test]
async fn a_429_is_waited_out_as_retry_after_says_and_credits() {
    let fake = FakeShopify::start().await;
    fake.add_order("#1001", Some("jane@example.com"), "42.50", "PAID");
    let app = app_with(&fake, Auth::Static).await;
    join_jane(&app).await;
    fake.too_many_once("0.2");
    claim(&app, "1001").await;
    assert_eq!(balance(&app).await, 92);
    let statuses: Vec<u16> = fake
        .graphql_with("orders(")
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [429, 200]);
}

#[tokio::test]
async fn throttling_longer_than_the_customer_can_wait_is_answered_at_once_and_credits_nothing() {
    let fake = FakeShopify::start().await;
    fake.add_order("#1001", Some("jane@example.com"), "42.50", "PAID");
    let app = app_with(&fake, Auth::Static).await;
    join_jane(&app).await;
    fake.throttle_always();
    let reply = claim(&app, "1001").await;
    assert!(reply.contains(UNAVAILABLE), "{reply}");
    assert_eq!(balance(&app).await, 50);
    assert_eq!(
        fake.graphql_with("orders(").len(),
        1,
        "a 10 s wait is not started when 1 s is all there is"
    );
    fake.heal();
    claim(&app, "1001").await;
    assert_eq!(balance(&app).await, 92, "the order is still there to claim");
}

#[tokio::test]
async fn server_errors_and_a_slow_shop_tell_the_customer_to_try_later_and_credit_nothing() {
    let fake = FakeShopify::start().await;
    fake.add_order("#1001", Some("jane@example.com"), "42.50", "PAID");
    let app = app_with(&fake, Auth::Static).await;
    join_jane(&app).await;
    for (case, break_it) in [
        (
            "500",
            (|f: &FakeShopify| f.fail_with(500)) as fn(&FakeShopify),
        ),
        ("503", |f| f.fail_with(503)),
        ("timeout", |f| f.set_delay(Duration::from_millis(1500))),
    ] {
        fake.heal();
        break_it(&fake);
        let reply = claim(&app, "1001").await;
        assert!(reply.contains(UNAVAILABLE), "{case}: {reply}");
        assert_eq!(balance(&app).await, 50, "{case}");
    }
    fake.heal();
    claim(&app, "1001").await;
    assert_eq!(balance(&app).await, 92);
}

#[tokio::test]
async fn client_credentials_are_exchanged_at_start_and_a_revoked_token_is_renewed_once() {
    let fake = FakeShopify::start().await;
    fake.add_order("#1001", Some("jane@example.com"), "42.50", "PAID");
    let app = app_with(&fake, Auth::ClientCredentials).await;
    let grants = fake.token_requests();
    assert_eq!(grants.len(), 1, "fetched at start");
    assert_eq!(
        grants[0].body,
        json!({"grant_type": "client_credentials", "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET})
    );
    assert_eq!(
        grants[0].headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    join_jane(&app).await;

    fake.revoke_tokens();
    claim(&app, "1001").await;
    assert_eq!(balance(&app).await, 92);
    assert_eq!(fake.token_requests().len(), 2, "one new token");
    let sent = fake.graphql_with("orders(");
    let seen: Vec<(u16, Option<&str>)> = sent.iter().map(|r| (r.status, r.token())).collect();
    assert_eq!(
        seen,
        [
            (401, Some("shpat_granted_1")),
            (200, Some("shpat_granted_2"))
        ]
    );
}

#[tokio::test]
async fn a_token_is_renewed_before_it_expires_without_a_401() {
    let fake = FakeShopify::start().await;
    fake.add_order("#1001", Some("jane@example.com"), "42.50", "PAID");
    fake.set_token_life(1);
    let app = app_with(&fake, Auth::ClientCredentials).await;
    join_jane(&app).await;
    // Past nine tenths of the token's one-second life.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    claim(&app, "1001").await;
    assert_eq!(balance(&app).await, 92);
    assert_eq!(fake.token_requests().len(), 2);
    assert!(fake.requests().iter().all(|r| r.status != 401));
}

/// The start's error with `configure`d settings, changed by `change`.
async fn start_error(fake: &FakeShopify, auth: Auth, change: impl FnOnce(&mut Settings)) -> String {
    try_spawn_app_with(|s| {
        configure(s, fake, &auth);
        change(s);
    })
    .await
    .err()
    .expect("the start fails")
    .to_string()
}

#[tokio::test]
async fn refused_credentials_stop_the_start_naming_their_settings() {
    let fake = FakeShopify::start().await;
    let err = start_error(&fake, Auth::Static, |s| {
        s.shop.shopify.access_token = Secret::new("shpat_wrong");
    })
    .await;
    assert!(err.contains("shop.shopify.access_token"), "{err}");
    let err = start_error(&fake, Auth::ClientCredentials, |s| {
        s.shop.shopify.client_secret = Secret::new("not-the-secret");
    })
    .await;
    assert!(err.contains("shop.shopify.client_secret"), "{err}");
    let err = start_error(&fake, Auth::Static, |s| {
        s.rewards[0].product_ids = vec!["mug-classic".into()];
    })
    .await;
    assert!(err.contains("rewards[0].product_ids"), "{err}");
}

#[tokio::test]
async fn a_shopify_that_is_down_at_start_does_not_stop_the_start() {
    let fake = FakeShopify::start().await;
    fake.add_order("#1001", Some("jane@example.com"), "42.50", "PAID");
    fake.fail_with(503);
    let app = app_with(&fake, Auth::Static).await;
    join_jane(&app).await;
    let reply = claim(&app, "1001").await;
    assert!(reply.contains(UNAVAILABLE), "{reply}");
    fake.heal();
    claim(&app, "1001").await;
    assert_eq!(balance(&app).await, 92);
}

// ---- coupons --------------------------------------------------------------------------------

/// Jane joins (50) and claims a 210.00 order: 260 points, enough for a mug.
async fn jane_with_260_points(app: &TestApp, fake: &FakeShopify) {
    fake.add_order("#1007", Some("jane@example.com"), "210.00", "PAID");
    join_jane(app).await;
    claim(app, "1007").await;
    assert_eq!(balance(app).await, 260);
}

#[tokio::test]
async fn a_free_product_reward_creates_a_single_use_code_for_its_products() {
    let fake = FakeShopify::start().await;
    let app = app_with(&fake, Auth::Static).await;
    jane_with_260_points(&app, &fake).await;
    let reply = redeem(&app, "free-mug").await;
    assert_eq!(balance(&app).await, 60);

    let sent = fake.graphql_with("discountCodeBasicCreate");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].path, GRAPHQL_PATH);
    assert_eq!(sent[0].token(), Some(STATIC_TOKEN));
    assert!(sent[0]
        .query()
        .contains("discountCodeBasicCreate(basicCodeDiscount: $discount)"));
    let mut input = sent[0].variables()["discount"].clone();
    let code = input["code"].as_str().unwrap().to_owned();
    assert!(reply.contains(&code), "the reply shows {code}: {reply}");
    assert!(!sent[0].query().contains(&code), "the code is a variable");
    let starts = input["startsAt"].as_str().unwrap().to_owned();
    let ends = input["endsAt"].as_str().unwrap().to_owned();
    let (starts, ends) = (
        chrono::DateTime::parse_from_rfc3339(&starts).unwrap(),
        chrono::DateTime::parse_from_rfc3339(&ends).unwrap(),
    );
    // The code ends when the coupon expires, `coupon_valid_days` after the redemption, and
    // starts when it is created: a moment later, so up to a few seconds (whole seconds both)
    // less than the full 30 days between the two.
    let valid = (ends - starts).num_seconds();
    let thirty_days = 30 * 24 * 3600;
    assert!(
        (thirty_days - 60..=thirty_days).contains(&valid),
        "coupon_valid_days: {valid} s between startsAt and endsAt"
    );
    for k in ["startsAt", "endsAt", "code", "title"] {
        input.as_object_mut().unwrap().remove(k);
    }
    assert_eq!(
        input,
        json!({
            "usageLimit": 1,
            "appliesOncePerCustomer": true,
            "context": {"all": "ALL"},
            "customerGets": {
                "value": {"percentage": 1},
                "items": {"products": {"productsToAdd": [format!("gid://shopify/Product/{MUG_PRODUCT}")]}}
            }
        })
    );
    assert_eq!(fake.discounts().len(), 1);
}

#[tokio::test]
async fn an_amount_reward_takes_that_amount_off_each_of_its_products() {
    let fake = FakeShopify::start().await;
    let app = spawn_app_with(|s| {
        configure(s, &fake, &Auth::Static);
        s.rewards[0].discount = Some(DiscountSettings {
            kind: DiscountKind::Amount,
            value: "5.00".parse().unwrap(),
        });
    })
    .await;
    jane_with_260_points(&app, &fake).await;
    redeem(&app, "free-mug").await;
    let discounts = fake.discounts();
    assert_eq!(
        discounts[0]["customerGets"]["value"],
        json!({"discountAmount": {"amount": "5.00", "appliesOnEachItem": true}})
    );
    assert_eq!(balance(&app).await, 60);
}

#[tokio::test]
async fn a_coupon_shopify_refuses_with_user_errors_spends_no_points() {
    let fake = FakeShopify::start().await;
    let app = app_with(&fake, Auth::Static).await;
    jane_with_260_points(&app, &fake).await;
    fake.refuse_next_coupon("Ends at needs to be after starts_at");
    let reply = redeem(&app, "free-mug").await;
    assert!(reply.contains("couldn't create your coupon"), "{reply}");
    assert_eq!(balance(&app).await, 260);
    assert!(fake.discounts().is_empty());
    redeem(&app, "free-mug").await;
    assert_eq!(balance(&app).await, 60, "the next try works");
}

#[tokio::test]
async fn a_coupon_call_that_fails_or_times_out_spends_no_points() {
    let fake = FakeShopify::start().await;
    let app = app_with(&fake, Auth::Static).await;
    jane_with_260_points(&app, &fake).await;
    for (case, break_it) in [
        (
            "503",
            (|f: &FakeShopify| f.fail_with(503)) as fn(&FakeShopify),
        ),
        ("throttled", |f| f.throttle_always()),
    ] {
        fake.heal();
        break_it(&fake);
        let reply = redeem(&app, "free-mug").await;
        assert!(
            reply.contains("couldn't create your coupon"),
            "{case}: {reply}"
        );
        assert_eq!(balance(&app).await, 260, "{case}");
    }
}

#[tokio::test]
async fn a_taken_code_is_tried_again_with_a_new_code() {
    let fake = FakeShopify::start().await;
    let app = app_with(&fake, Auth::Static).await;
    jane_with_260_points(&app, &fake).await;
    fake.refuse_next_coupon_as_taken();
    let reply = redeem(&app, "free-mug").await;
    let sent = fake.graphql_with("discountCodeBasicCreate");
    assert_eq!(sent.len(), 2, "asked again");
    let codes: Vec<&str> = sent
        .iter()
        .map(|r| r.variables()["discount"]["code"].as_str().unwrap())
        .collect();
    assert_ne!(codes[0], codes[1], "with a new code");
    assert!(reply.contains(codes[1]), "{reply}");
    assert_eq!(balance(&app).await, 60);
}

// ---- the adapter alone: reading an order again by GID (webhooks) -----------------------------

fn adapter(fake: &FakeShopify) -> ShopifyShop {
    let mut settings = loyalty_bot::config::Settings::from_toml(
        include_str!("../config.toml"),
        std::path::Path::new("config.toml"),
        Vec::<(String, String)>::new(),
    )
    .unwrap();
    configure(&mut settings, fake, &Auth::Static);
    ShopifyShop::new(&settings.shop.shopify, Duration::from_secs(1)).unwrap()
}

#[tokio::test]
async fn an_order_is_read_again_by_its_gid_and_an_unknown_one_is_none() {
    let fake = FakeShopify::start().await;
    let gid = fake.add_order(
        "#1001",
        Some("jane@example.com"),
        "12.00",
        "PARTIALLY_REFUNDED",
    );
    let shop = adapter(&fake);
    let id = OrderId::parse(&gid).unwrap();
    let order = shop.order_by_id(&id).await.unwrap().expect("found");
    assert_eq!(order.id, id);
    assert_eq!(order.number.as_str(), "1001");
    assert_eq!(order.total.to_string(), "12.00");
    assert_eq!(order.currency, "EUR");
    let sent = fake.graphql_with("order(id:");
    assert_eq!(sent[0].variables(), &json!({ "id": gid }));
    assert!(!sent[0].query().contains(&gid));

    let unknown = OrderId::parse("gid://shopify/Order/1").unwrap();
    assert_eq!(shop.order_by_id(&unknown).await.unwrap(), None);
    fake.fail_with(502);
    let res = shop.order_by_id(&id).await;
    assert!(matches!(res, Err(ShopError::Status(502))), "{res:?}");
}

#[tokio::test]
async fn both_searches_for_one_number_share_the_one_deadline() {
    let fake = FakeShopify::start().await;
    fake.add_order("#10010", Some("jane@example.com"), "99.00", "PAID");
    fake.set_delay(Duration::from_millis(600));
    let shop = adapter(&fake);
    let (number, email) = (
        loyalty_bot::domain::OrderNumber::parse("1001").unwrap(),
        loyalty_bot::domain::Email::parse("jane@example.com").unwrap(),
    );
    let res = shop.find_order(&number, &email).await;
    assert!(matches!(res, Err(ShopError::Timeout(1))), "{res:?}");
}

#[tokio::test]
async fn the_fakes_webhooks_are_signed_and_name_their_order() {
    let fake = FakeShopify::start().await;
    let gid = fake.add_order("#1001", Some("jane@example.com"), "42.50", "PAID");
    for topic in ["orders/paid", "orders/updated", "refunds/create"] {
        let (body, signature) = fake.webhook(topic, &gid);
        let secret = CLIENT_SECRET.as_bytes();
        assert!(
            shopify::verify_webhook(secret, &body, Some(&signature)),
            "{topic}"
        );
        let named = shopify::order_gid_from_webhook(topic, &body).unwrap();
        assert_eq!(named.as_str(), gid, "{topic}");
    }
}

#[tokio::test]
async fn the_token_endpoint_is_not_used_with_a_static_token() {
    let fake = FakeShopify::start().await;
    let _app = app_with(&fake, Auth::Static).await;
    assert!(fake.token_requests().is_empty());
    assert!(fake.requests().iter().all(|r| r.path != TOKEN_PATH));
    assert_eq!(fake.graphql_with("shop").len(), 1, "one call at start");
}

#[tokio::test]
async fn a_replayed_request_after_a_taken_code_finds_the_coupon_of_the_retry() {
    use loyalty_bot::domain::{Channel, ChatIdentity};
    use loyalty_bot::program::RedeemResult;
    let fake = FakeShopify::start().await;
    let app = app_with(&fake, Auth::Static).await;
    jane_with_260_points(&app, &fake).await;
    let who = ChatIdentity::new(Channel::Manychat, JANE).unwrap();
    let jane = app.program().account(&who).await.unwrap().unwrap().member;
    fake.refuse_next_coupon_as_taken();
    let first = app
        .program()
        .redeem(&jane, "free-mug", Some("tap-1"))
        .await
        .unwrap();
    let RedeemResult::Redeemed { coupon, .. } = first else {
        panic!("{first:?}");
    };
    let again = app
        .program()
        .redeem(&jane, "free-mug", Some("tap-1"))
        .await
        .unwrap();
    match again {
        RedeemResult::Redeemed {
            coupon: c, balance, ..
        } => {
            assert_eq!(c.code, coupon.code, "the retry's coupon");
            assert_eq!(balance.value(), 60, "spent once");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.graphql_with("discountCodeBasicCreate").len(), 2);
}
