//! The adapter alone: reads by id, credentials, timeouts, the addresses it accepts.

use super::harness::*;
use crate::common::fake_woo::{FakeWoo, WOO_KEY, WOO_SECRET};
use loyalty_bot::config::{Secret, WoocommerceSettings};
use loyalty_bot::domain::{Email, OrderId, OrderNumber};
use loyalty_bot::shop::{Shop, ShopError, ShopOrder, WooShop};
use std::time::Duration;

#[tokio::test]
async fn an_order_is_read_again_by_its_id_and_a_missing_one_is_none() {
    let woo = FakeWoo::start().await;
    woo.add_numbered_order(727, "A-727", "jane@example.com", "42.50", "refunded");
    let shop = adapter(&woo, WOO_SECRET);
    let id = |s: &str| OrderId::parse(s).unwrap();
    let o = shop.order_by_id(&id("727")).await.unwrap().expect("found");
    assert_eq!((o.id.as_str(), o.number.as_str()), ("727", "A-727"));
    assert!(shop.order_by_id(&id("728")).await.unwrap().is_none());
    // Not a WooCommerce id: not asked.
    assert!(shop
        .order_by_id(&id("gid://shopify/Order/1"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        calls(&woo.requests()),
        [
            "GET /wp-json/wc/v3/orders/727",
            "GET /wp-json/wc/v3/orders/728"
        ]
    );
}

#[tokio::test]
async fn wrong_keys_are_unauthorized_at_warm_up_and_on_each_call() {
    let woo = FakeWoo::start().await;
    let wrong = adapter(&woo, "cs_wrong");
    assert!(matches!(
        wrong.warm_up().await,
        Err(ShopError::Unauthorized(401))
    ));
    let res = wrong
        .find_order(
            &OrderNumber::parse("1").unwrap(),
            &Email::parse("a@b.co").unwrap(),
        )
        .await;
    assert!(matches!(res, Err(ShopError::Unauthorized(401))), "{res:?}");
    assert!(adapter(&woo, WOO_SECRET).warm_up().await.is_ok());
    assert_eq!(
        calls(&woo.requests())[2],
        "GET /wp-json/wc/v3/orders per_page=1"
    );
    // A shop that is down at start is not a reason to refuse to start.
    woo.fail_with(503);
    assert!(adapter(&woo, WOO_SECRET).warm_up().await.is_ok());
}

/// The adapter alone looks up Jane's order 1001.
async fn find_jane_1001(woo: &FakeWoo) -> Result<Option<ShopOrder>, ShopError> {
    adapter(woo, WOO_SECRET)
        .find_order(
            &OrderNumber::parse("1001").unwrap(),
            &Email::parse("jane@example.com").unwrap(),
        )
        .await
}

#[tokio::test]
async fn a_timeout_is_reported_as_such() {
    let woo = FakeWoo::start().await;
    woo.add_order(1001, "jane@example.com", "1.00", "processing");
    woo.set_delay(Duration::from_millis(1500));
    let res = find_jane_1001(&woo).await;
    assert!(matches!(res, Err(ShopError::Timeout(1))), "{res:?}");
}

#[tokio::test]
async fn plain_http_on_loopback_is_accepted_for_the_adapter() {
    let settings = |url: &str| WoocommerceSettings {
        url: url.into(),
        consumer_key: Secret::new(WOO_KEY),
        consumer_secret: Secret::new(WOO_SECRET),
        webhook_secret: Secret::new("w"),
    };
    let t = Duration::from_secs(1);
    for ok in [
        "http://127.0.0.1:9",
        "http://localhost:9/shop/",
        "http://[::1]:9",
        "https://shop.example",
    ] {
        assert!(WooShop::new(&settings(ok), t).is_ok(), "{ok}");
    }
    for bad in [
        "http://shop.example",
        "ftp://127.0.0.1",
        "not a url",
        "https://shop.example/?x=1",
    ] {
        assert!(
            matches!(WooShop::new(&settings(bad), t), Err(ShopError::BadUrl(_))),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn a_look_up_that_takes_two_calls_keeps_to_one_time_limit() {
    let woo = FakeWoo::start().await;
    woo.add_numbered_order(88, "1001", "jane@example.com", "1.00", "processing");
    // Each call alone is within the 1 s limit; the id look-up and the search together are not.
    woo.set_delay(Duration::from_millis(600));
    let res = find_jane_1001(&woo).await;
    assert!(matches!(res, Err(ShopError::Timeout(1))), "{res:?}");
}
