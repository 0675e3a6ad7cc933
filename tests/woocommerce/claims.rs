//! Claims: the order read by id or found by search, its net total, its status and email.

use super::harness::*;
use crate::common::fake_woo::{basic_auth, FakeWoo, WOO_KEY, WOO_SECRET};
use loyalty_bot::domain::{Email, OrderNumber};
use loyalty_bot::shop::Shop;
use std::time::Duration;

#[tokio::test]
async fn a_claim_reads_the_order_by_id_with_basic_auth_and_credits_its_total() {
    let woo = FakeWoo::start().await;
    woo.add_order(1001, "Jane@Example.com", "42.50", "processing");
    let app = app_on(&woo).await;
    join_jane(&app).await;
    claim(&app, "#1001").await;
    assert_eq!(app.balance_of("jane@example.com").await, 92);
    let requests = woo.requests();
    assert_eq!(calls(&requests), ["GET /wp-json/wc/v3/orders/1001"]);
    let auth = requests[0].header("authorization");
    assert_eq!(auth, Some(basic_auth(WOO_KEY, WOO_SECRET).as_str()));
    assert_eq!(requests[0].header("accept"), Some("application/json"));
}

#[tokio::test]
async fn a_completed_order_earns_on_its_total_minus_its_refunds() {
    let woo = FakeWoo::start().await;
    woo.add_order(1002, "jane@example.com", "159.90", "completed");
    woo.refund(1002, "20.00");
    woo.refund(1002, "0.45");
    let app = app_on(&woo).await;
    join_jane(&app).await;
    claim(&app, "1002").await;
    // 159.90 − 20.45 = 139.45: 139 points.
    assert_eq!(app.balance_of("jane@example.com").await, 50 + 139);
}

#[tokio::test]
async fn an_order_whose_number_is_not_its_id_is_found_by_search() {
    let woo = FakeWoo::start().await;
    // Order id 1001 exists but shows as 2001; the order shown as 1001 is id 88.
    woo.add_numbered_order(1001, "2001", "max@example.com", "10.00", "processing");
    woo.add_numbered_order(88, "1001", "jane@example.com", "30.00", "processing");
    woo.add_numbered_order(89, "WC-77", "jane@example.com", "20.00", "processing");
    let app = app_on(&woo).await;
    join_jane(&app).await;
    claim(&app, "1001").await;
    claim(&app, "WC-77").await;
    assert_eq!(app.balance_of("jane@example.com").await, 50 + 30 + 20);
    assert_eq!(
        calls(&woo.requests()),
        [
            "GET /wp-json/wc/v3/orders/1001",
            "GET /wp-json/wc/v3/orders search=1001&status=any&per_page=100",
            // Not all digits: never an id, straight to the search.
            "GET /wp-json/wc/v3/orders search=WC-77&status=any&per_page=100",
        ]
    );
    assert!(woo
        .requests()
        .iter()
        .all(|r| r.header("authorization") == Some(basic_auth(WOO_KEY, WOO_SECRET).as_str())));
}

#[tokio::test]
async fn an_order_billed_to_another_email_is_not_credited() {
    let woo = FakeWoo::start().await;
    woo.add_order(1001, "max@example.com", "42.50", "processing");
    let app = app_on(&woo).await;
    join_jane(&app).await;
    let reply = claim(&app, "1001").await;
    assert!(!reply.contains("42"), "{reply}");
    assert_eq!(app.balance_of("jane@example.com").await, 50);
    // Max can still claim it: nothing was recorded against the order.
    let found = adapter(&woo, WOO_SECRET)
        .find_order(
            &OrderNumber::parse("1001").unwrap(),
            &Email::parse("max@example.com").unwrap(),
        )
        .await
        .unwrap()
        .expect("found");
    assert_eq!(found.email.unwrap().as_str(), "max@example.com");
}

#[tokio::test]
async fn every_status_that_does_not_earn_is_refused_with_its_reason() {
    let woo = FakeWoo::start().await;
    let cases = [
        ("pending", "order_status_pending"),
        ("on-hold", "order_status_pending"),
        ("checkout-draft", "order_status_pending"),
        ("cancelled", "order_status_cancelled"),
        ("trash", "order_status_other"),
        ("refunded", "order_status_refunded"),
        ("failed", "order_status_other"),
    ];
    for (i, (status, _)) in cases.iter().enumerate() {
        woo.add_order(2000 + i as u64, "jane@example.com", "42.50", status);
    }
    let app = app_on(&woo).await;
    join_jane(&app).await;
    for (i, (status, word)) in cases.iter().enumerate() {
        let number = (2000 + i).to_string();
        let reply = claim(&app, &number).await;
        let reason = message_in("claim.toml", "order_not_paid")
            .replace("{order_number}", &number)
            .replace("{status}", &message(word));
        assert!(reply.contains(&reason), "{status}: `{reason}` in {reply}");
        assert_eq!(app.balance_of("jane@example.com").await, 50, "{status}");
    }
    // The same orders earn once paid: nothing about them was recorded as claimed.
    woo.set_status(2000, "processing");
    claim(&app, "2000").await;
    assert_eq!(app.balance_of("jane@example.com").await, 92);
}

#[tokio::test]
async fn a_broken_slow_or_refusing_shop_credits_nothing_and_says_so() {
    let woo = FakeWoo::start().await;
    woo.add_order(1001, "jane@example.com", "42.50", "processing");
    let app = app_on(&woo).await;
    join_jane(&app).await;
    let unavailable = message("shop_unavailable");
    for (case, break_it) in [
        ("500", (|w: &FakeWoo| w.fail_with(500)) as fn(&FakeWoo)),
        ("503", |w| w.fail_with(503)),
        ("401", |w| w.fail_with(401)),
        ("timeout", |w| w.set_delay(Duration::from_millis(1500))),
    ] {
        woo.heal();
        break_it(&woo);
        let reply = claim(&app, "1001").await;
        assert!(reply.contains(&unavailable), "{case}: {reply}");
        assert_eq!(app.balance_of("jane@example.com").await, 50, "{case}");
    }
    woo.heal();
    claim(&app, "1001").await;
    assert_eq!(app.balance_of("jane@example.com").await, 92);
}

#[tokio::test]
async fn a_displayed_number_that_is_another_orders_id_is_not_taken_for_that_order() {
    use loyalty_bot::domain::{Channel, ChatIdentity, Profile};
    use loyalty_bot::program::{ClaimResult, JoinResult};
    let woo = FakeWoo::start().await;
    // Max's order has id 1001 and shows 2001; Jane's shows 1001 and has id 88.
    woo.add_numbered_order(1001, "2001", "max@example.com", "10.00", "processing");
    woo.add_numbered_order(88, "1001", "jane@example.com", "30.00", "processing");
    let app = app_on(&woo).await;
    let program = app.program();
    let mut members = Vec::new();
    for (who, mail) in [("max", "max@example.com"), ("jane", "jane@example.com")] {
        let who = ChatIdentity::new(Channel::Terminal, who).unwrap();
        let email = Email::parse(mail).unwrap();
        match program.join(&who, email, Profile::default()).await.unwrap() {
            JoinResult::Joined(account) => members.push(account.member),
            other => panic!("join: {other:?}"),
        }
    }
    let number = |n: &str| OrderNumber::parse(n).unwrap();
    let max = program.claim(&members[0], number("2001")).await.unwrap();
    assert!(matches!(max, ClaimResult::Credited { .. }), "{max:?}");
    let jane = program.claim(&members[1], number("1001")).await.unwrap();
    assert!(matches!(jane, ClaimResult::Credited { .. }), "{jane:?}");
}
