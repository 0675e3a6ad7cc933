//! Rate limits on claims and redemptions (order-number guessing above all) and on the admin
//! API, through the real server with tiny limits set in the settings: over a limit, the admin
//! API answers 429 with `Retry-After`; chat, ManyChat included, answers politely in the
//! customer's language (ManyChat with a 200, since it shows nothing of an error status); and in
//! every case the store is unchanged and the shop is not asked.

mod common;

use common::{spawn_app_with, TestApp, ADMIN_TOKEN};
use loyalty_bot::config::Settings;
use loyalty_bot::domain::{Channel, ChatIdentity, Email, Profile};
use loyalty_bot::flows::{Input, InputEvent};
use loyalty_bot::limits::{parse_trusted_proxies, RateSettings};
use serde_json::{json, Value};

fn per_hour(max: u32) -> RateSettings {
    RateSettings {
        max,
        window_secs: 3600,
    }
}

/// A ManyChat subscriber's Full Contact Data, with step fields added by each test.
fn contact(id: &str) -> Value {
    json!({"id": id, "key": format!("user:{id}"), "first_name": "Jane", "locale": "en_US"})
}

async fn manychat(app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
    app.post_manychat(path, body).await
}

async fn join_on_manychat(app: &TestApp, id: &str, email: &str) {
    let mut body = contact(id);
    body["email"] = json!(email);
    assert_eq!(manychat(app, "/manychat/join", &body).await.status(), 200);
}

async fn claim_on_manychat(app: &TestApp, id: &str, order: &str) -> reqwest::Response {
    let mut body = contact(id);
    body["order_number"] = json!(order);
    manychat(app, "/manychat/claim", &body).await
}

fn verify_requests(app: &TestApp) -> usize {
    app.shop
        .requests()
        .iter()
        .filter(|r| r.path == "/verify")
        .count()
}

async fn ledger_len(app: &TestApp, email: &str) -> usize {
    let body: Value = app.get_admin_member(email).await.json().await.unwrap();
    body["ledger"].as_array().unwrap().len()
}

/// A ManyChat answer's v2 message texts, checked to be a 200 with a valid v2 body.
async fn v2_text(res: reqwest::Response) -> String {
    assert_eq!(
        res.status(),
        200,
        "ManyChat shows nothing of another status"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["version"], "v2", "{body}");
    let messages = body["content"]["messages"].as_array().expect("messages");
    assert!(!messages.is_empty(), "{body}");
    let texts: Vec<&str> = messages
        .iter()
        .map(|m| {
            assert_eq!(m["type"], "text", "{body}");
            m["text"].as_str().expect("text")
        })
        .collect();
    texts.join("\n")
}

/// The number just before `unit` in `text` ("about 20 seconds" → 20).
fn wait_in(text: &str, unit: &str) -> u64 {
    let before = &text[..text
        .find(unit)
        .unwrap_or_else(|| panic!("no {unit:?}: {text}"))];
    let n: u64 = before
        .split_whitespace()
        .last()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no number before {unit:?}: {text}"));
    assert!(n >= 1, "{text}");
    n
}

/// Seconds from a 429's `Retry-After`, checked to be there and sensible.
fn retry_after(res: &reqwest::Response) -> u64 {
    let secs: u64 = res
        .headers()
        .get("retry-after")
        .expect("a 429 says when to retry")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in whole seconds");
    assert!((1..=3600).contains(&secs), "Retry-After {secs}");
    secs
}

#[tokio::test]
async fn manychat_claims_over_the_member_limit_are_answered_with_the_wait_and_change_nothing() {
    let app = spawn_app_with(|s| s.limits.failed_claims_per_member = per_hour(2)).await;
    app.shop
        .add_order("1001", "jane@example.com", "42.50", "paid");
    join_on_manychat(&app, "1515862162", "jane@example.com").await;

    // Two guesses: answered normally (200, "not found"), each asking the shop once.
    for guess in ["9001", "9002"] {
        assert_eq!(
            claim_on_manychat(&app, "1515862162", guess).await.status(),
            200
        );
    }
    assert_eq!(verify_requests(&app), 2);

    // The third claim is refused even for a real order of hers: the budget is spent.
    let text = v2_text(claim_on_manychat(&app, "1515862162", "1001").await).await;
    assert!(
        text.contains("paused claims") && text.contains("Nothing has changed"),
        "the contact's polite message: {text}"
    );
    let minutes = wait_in(&text, " min");
    assert!(
        minutes <= 30,
        "one guess comes back after half an hour: {minutes}"
    );
    assert_eq!(verify_requests(&app), 2, "the shop was not asked");
    assert_eq!(app.balance_of("jane@example.com").await, 50);
    assert_eq!(ledger_len(&app, "jane@example.com").await, 1, "signup only");
}

#[tokio::test]
async fn successful_claims_do_not_use_up_the_guessing_budget() {
    let app = spawn_app_with(|s| s.limits.failed_claims_per_member = per_hour(1)).await;
    for n in 1..=3 {
        app.shop
            .add_order(&format!("100{n}"), "jane@example.com", "10.00", "paid");
    }
    join_on_manychat(&app, "1515862162", "jane@example.com").await;
    for order in ["1001", "1002", "1003", "1001"] {
        let res = claim_on_manychat(&app, "1515862162", order).await;
        assert_eq!(res.status(), 200, "order {order}");
    }
    assert_eq!(app.balance_of("jane@example.com").await, 80);
}

#[tokio::test]
async fn manychat_claims_over_the_address_limit_are_answered_with_the_wait_and_ask_the_shop_nothing(
) {
    let app = spawn_app_with(|s| {
        s.limits.claims_per_ip = RateSettings {
            max: 3,
            window_secs: 60,
        }
    })
    .await;
    // Three different contacts: the budget is ManyChat's (one address), not theirs.
    for (i, id) in ["2001", "2002", "2003"].iter().enumerate() {
        let res = claim_on_manychat(&app, id, &format!("900{i}")).await;
        assert_eq!(res.status(), 200, "{id}");
    }
    let asked = app.shop.requests().len();
    let text = v2_text(claim_on_manychat(&app, "2004", "9004").await).await;
    assert!(
        text.contains("paused claims") && text.contains("Nothing has changed"),
        "{text}"
    );
    let secs = wait_in(&text, " second");
    assert!(secs <= 20, "one claim per 20 s comes back: {secs}");
    assert_eq!(app.shop.requests().len(), asked);
    // Other endpoints are not part of this budget.
    let res = manychat(&app, "/manychat/balance", &contact("2004")).await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn manychat_redemptions_over_the_member_limit_are_answered_with_the_wait_and_spend_nothing() {
    let app = spawn_app_with(|s| s.limits.redemptions_per_member = per_hour(1)).await;
    app.shop
        .add_order("1001", "jane@example.com", "450.00", "paid");
    join_on_manychat(&app, "1515862162", "jane@example.com").await;
    assert_eq!(
        claim_on_manychat(&app, "1515862162", "1001").await.status(),
        200
    );
    let mut body = contact("1515862162");
    body["reward_id"] = json!("free-mug");

    assert_eq!(
        manychat(&app, "/manychat/redeem", &body).await.status(),
        200
    );
    assert_eq!(app.balance_of("jane@example.com").await, 300);

    let text = v2_text(manychat(&app, "/manychat/redeem", &body).await).await;
    assert!(
        text.contains("paused rewards") && text.contains("No points were spent"),
        "{text}"
    );
    assert!(wait_in(&text, " min") <= 60, "{text}");
    assert_eq!(
        app.balance_of("jane@example.com").await,
        300,
        "nothing spent"
    );
    assert_eq!(app.shop.coupons().len(), 1, "no second coupon asked for");
}

#[tokio::test]
async fn manychat_redemptions_over_the_address_limit_are_answered_with_the_wait_and_spend_nothing()
{
    let app = spawn_app_with(|s| {
        s.limits.redemptions_per_ip = RateSettings {
            max: 2,
            window_secs: 60,
        }
    })
    .await;
    // Three contacts with points enough, each redeeming once: the budget is ManyChat's address.
    for (n, id) in ["4001", "4002", "4003"].iter().enumerate() {
        let email = format!("c{n}@example.com");
        let order = format!("200{n}");
        app.shop.add_order(&order, &email, "450.00", "paid");
        join_on_manychat(&app, id, &email).await;
        assert_eq!(claim_on_manychat(&app, id, &order).await.status(), 200);
    }
    let redeem = |id: &str| {
        let mut body = contact(id);
        body["reward_id"] = json!("free-mug");
        body
    };
    for id in ["4001", "4002"] {
        let res = manychat(&app, "/manychat/redeem", &redeem(id)).await;
        assert_eq!(res.status(), 200, "{id}");
    }
    let text = v2_text(manychat(&app, "/manychat/redeem", &redeem("4003")).await).await;
    assert!(
        text.contains("paused rewards") && text.contains("No points were spent"),
        "{text}"
    );
    let secs = wait_in(&text, " second");
    assert!(secs <= 30, "one redemption per 30 s comes back: {secs}");
    assert_eq!(app.shop.coupons().len(), 2, "no third coupon asked for");
    assert_eq!(app.balance_of("c2@example.com").await, 500, "nothing spent");
    // Claims have a budget of their own.
    app.shop
        .add_order("2009", "c2@example.com", "10.00", "paid");
    assert_eq!(claim_on_manychat(&app, "4003", "2009").await.status(), 200);
}

#[tokio::test]
async fn claims_beyond_the_member_budget_are_refused_even_when_each_one_succeeds() {
    let app = spawn_app_with(|s| s.limits.claims_per_member = per_hour(3)).await;
    for n in 1..=4 {
        app.shop
            .add_order(&format!("100{n}"), "jane@example.com", "10.00", "paid");
    }
    join_on_manychat(&app, "1515862162", "jane@example.com").await;
    for order in ["1001", "1002", "1003"] {
        let res = claim_on_manychat(&app, "1515862162", order).await;
        assert_eq!(res.status(), 200, "order {order}");
    }
    let asked = verify_requests(&app);
    let text = v2_text(claim_on_manychat(&app, "1515862162", "1004").await).await;
    let minutes = wait_in(&text, " min");
    assert!(minutes <= 20, "one claim per 20 min comes back: {minutes}");
    assert_eq!(verify_requests(&app), asked, "the shop was not asked");
    assert_eq!(app.balance_of("jane@example.com").await, 80);
    // Another member's budget is untouched.
    app.shop
        .add_order("1009", "ann@example.com", "10.00", "paid");
    join_on_manychat(&app, "1515862163", "ann@example.com").await;
    assert_eq!(
        claim_on_manychat(&app, "1515862163", "1009").await.status(),
        200
    );
}

#[tokio::test]
async fn a_german_contact_over_the_address_limit_is_told_in_german() {
    let app = spawn_app_with(|s| {
        s.limits.claims_per_ip = RateSettings {
            max: 1,
            window_secs: 120,
        }
    })
    .await;
    let german = |id: &str| {
        let mut body = contact(id);
        body["locale"] = json!("de_DE");
        body["order_number"] = json!("9001");
        body
    };
    assert_eq!(
        manychat(&app, "/manychat/claim", &german("5001"))
            .await
            .status(),
        200
    );
    let text = v2_text(manychat(&app, "/manychat/claim", &german("5002")).await).await;
    assert!(
        text.contains("pausiere ich das Melden") && text.contains("nichts geändert"),
        "{text}"
    );
    let minutes = wait_in(&text, " Minute");
    assert!(minutes <= 2, "one claim per 2 min comes back: {minutes}");
}

#[tokio::test]
async fn order_guessing_in_the_terminal_chat_is_answered_politely_in_german() {
    let app = spawn_app_with(|s| s.limits.failed_claims_per_member = per_hour(2)).await;
    app.shop
        .add_order("1001", "ana@example.com", "42.50", "paid");
    let who = ChatIdentity::new(Channel::Terminal, "ana").unwrap();
    let german = Profile {
        first_name: Some("Ana".into()),
        locale: Some("de_DE".into()),
    };
    let email = Email::parse("ana@example.com").unwrap();
    app.program()
        .join(&who, email, german.clone())
        .await
        .unwrap();
    let engine = app.engine();
    let say = |text: &str| {
        engine.converse(Input {
            who: who.clone(),
            profile: german.clone(),
            event: InputEvent::Text(text.into()),
            request_id: None,
        })
    };

    for guess in ["9001", "9002"] {
        let turn = say(guess).await.unwrap();
        assert!(turn.limited.is_none(), "{guess}: {:?}", turn.replies);
    }
    let turn = say("1001").await.unwrap();
    let text: String = turn.replies.iter().map(|r| r.text.as_str()).collect();
    assert!(turn.limited.is_some());
    assert!(
        text.contains("Bestellnummern in kurzer Zeit") && text.contains("nichts geändert"),
        "{text}"
    );
    assert!(!turn.points_changed);
    assert_eq!(
        verify_requests(&app),
        2,
        "the shop was not asked about 1001"
    );
    assert_eq!(app.balance_of("ana@example.com").await, 50);
}

#[tokio::test]
async fn admin_requests_over_the_ip_limit_get_429() {
    let app = spawn_app_with(|s| {
        s.limits.admin_per_ip = RateSettings {
            max: 3,
            window_secs: 60,
        }
    })
    .await;
    let get = |token: &'static str| {
        app.client()
            .get(app.url("/admin/members"))
            .query(&[("email", "jane@example.com")])
            .bearer_auth(token)
            .send()
    };
    // Wrong tokens count too: guessing the token is as slow as using it.
    assert_eq!(get("wrong").await.unwrap().status(), 401);
    assert_eq!(get("wrong").await.unwrap().status(), 401);
    assert_eq!(get(ADMIN_TOKEN).await.unwrap().status(), 404);
    let res = get(ADMIN_TOKEN).await.unwrap();
    assert_eq!(res.status(), 429);
    let secs = retry_after(&res);
    assert!(secs <= 20, "{secs}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited");
    // The ManyChat routes have budgets of their own.
    let res = manychat(&app, "/manychat/balance", &contact("3001")).await;
    assert_eq!(res.status(), 200);
}

async fn admin_from(app: &TestApp, forwarded_for: &str) -> u16 {
    app.client()
        .get(app.url("/admin/members"))
        .query(&[("email", "jane@example.com")])
        .bearer_auth(ADMIN_TOKEN)
        .header("X-Forwarded-For", forwarded_for)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn one_admin_request_per_minute(s: &mut Settings) {
    s.limits.admin_per_ip = RateSettings {
        max: 1,
        window_secs: 60,
    };
}

#[tokio::test]
async fn forwarded_addresses_are_believed_only_from_a_trusted_proxy() {
    // Not trusted (the default): the header is the client's word, and ignored.
    let app = spawn_app_with(one_admin_request_per_minute).await;
    assert_eq!(admin_from(&app, "198.51.100.1").await, 404);
    assert_eq!(admin_from(&app, "198.51.100.2").await, 429);

    // Behind a trusted proxy (the tests' loopback), each forwarded client has its own budget.
    let app = spawn_app_with(|s| {
        one_admin_request_per_minute(s);
        s.limits.trusted_proxies = parse_trusted_proxies("127.0.0.1").unwrap();
    })
    .await;
    assert_eq!(admin_from(&app, "198.51.100.1").await, 404);
    assert_eq!(admin_from(&app, "198.51.100.1").await, 429);
    assert_eq!(admin_from(&app, "198.51.100.2").await, 404);
    // A client-supplied entry to the left of the proxy's own is not believed.
    assert_eq!(admin_from(&app, "203.0.113.5, 198.51.100.2").await, 429);
}

#[tokio::test]
async fn forwarded_addresses_are_believed_from_inside_a_trusted_range_only() {
    // The tests' client connects from 127.0.0.1: inside 127.0.0.0/8, outside 10.0.0.0/8.
    let inside = spawn_app_with(|s| {
        one_admin_request_per_minute(s);
        s.limits.trusted_proxies = parse_trusted_proxies("10.0.0.0/8, 127.0.0.0/8").unwrap();
    })
    .await;
    assert_eq!(admin_from(&inside, "198.51.100.1").await, 404);
    assert_eq!(admin_from(&inside, "198.51.100.1").await, 429);
    assert_eq!(
        admin_from(&inside, "198.51.100.2").await,
        404,
        "another forwarded client has its own budget"
    );

    let outside = spawn_app_with(|s| {
        one_admin_request_per_minute(s);
        s.limits.trusted_proxies = parse_trusted_proxies("10.0.0.0/8, ::1/128").unwrap();
    })
    .await;
    assert_eq!(admin_from(&outside, "198.51.100.1").await, 404);
    assert_eq!(
        admin_from(&outside, "198.51.100.2").await,
        429,
        "the header of an untrusted peer is ignored: one budget for the peer"
    );
}

#[tokio::test]
async fn a_limit_with_max_zero_is_off() {
    let app = spawn_app_with(|s| {
        s.limits.failed_claims_per_member.max = 0;
        s.limits.claims_per_member.max = 0;
    })
    .await;
    join_on_manychat(&app, "1515862162", "jane@example.com").await;
    for n in 0..40 {
        let res = claim_on_manychat(&app, "1515862162", &format!("9{n:03}")).await;
        assert_eq!(res.status(), 200, "guess {n}");
    }
}
