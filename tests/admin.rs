//! The operator HTTP surface: health, the admin API (member look-up behind the admin bearer
//! token), disabled channels, and start-up checks that stop a misconfigured service.

mod common;

use common::{
    get_admin_member, spawn_app, spawn_app_with, try_spawn_app_with, ADMIN_TOKEN, MANYCHAT_TOKEN,
};
use loyalty_bot::config::{Secret, ShopKind};
use loyalty_bot::domain::{Channel, ChatIdentity, Email, OrderNumber, Profile};
use loyalty_bot::program::JoinResult;
use loyalty_bot::startup::StartupError;

#[tokio::test]
async fn health_check_answers_200() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn member_lookup_without_or_with_a_wrong_token_is_401() {
    let app = spawn_app().await;
    for (token, case) in [
        (None, "no token"),
        (Some("nope"), "wrong token"),
        (Some(""), "empty token"),
    ] {
        let res = get_admin_member(app.client(), app.address(), "jane@example.com", token).await;
        assert_eq!(res.status(), 401, "{case}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["code"], "unauthorized", "{case}");
    }
}

#[tokio::test]
async fn unknown_member_is_404_with_the_error_shape() {
    let app = spawn_app().await;
    let res = app.get_admin_member("nobody@example.com").await;
    assert_eq!(res.status(), 404);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], "not_found");
    assert!(body["message"].is_string());
}

/// Without `email` the route lists members (tests/segments.rs); an empty one is a look-up.
#[tokio::test]
async fn invalid_or_empty_email_is_400() {
    let app = spawn_app().await;
    let res = app.get_admin_member("not-an-email").await;
    assert_eq!(res.status(), 400);
    let res = app
        .client()
        .get(app.url("/admin/members?email="))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400, "empty email");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], "bad_request");
}

#[tokio::test]
async fn admin_api_is_404_when_its_token_is_empty() {
    let app = spawn_app_with(|s| s.admin.token = Secret::new("")).await;
    for token in [None, Some(""), Some(ADMIN_TOKEN)] {
        let res = get_admin_member(app.client(), app.address(), "jane@example.com", token).await;
        assert_eq!(res.status(), 404, "{token:?}");
    }
}

#[tokio::test]
async fn unknown_routes_are_404_in_the_error_shape() {
    let app = spawn_app().await;
    let res = app.get("/no/such/route").await;
    assert_eq!(res.status(), 404);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], "not_found");
}

#[tokio::test]
async fn member_lookup_shows_balance_and_ledger_after_join_and_claim() {
    let app = spawn_app().await;
    app.shop
        .add_order("1001", "Jane@Example.com", "42.50", "paid");
    let program = app.program();
    let who = ChatIdentity::new(Channel::Terminal, "jane").unwrap();
    let email = Email::parse("jane@example.com").unwrap();
    let JoinResult::Joined(account) = program.join(&who, email, Profile::default()).await.unwrap()
    else {
        panic!("join failed");
    };
    let order = OrderNumber::parse("1001").unwrap();
    program.claim(&account.member, order).await.unwrap();

    let res = app.get_admin_member(" JANE@example.com ").await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["id"], account.member.id.0);
    assert_eq!(body["email"], "jane@example.com");
    assert_eq!(body["points"], 92);
    let ledger = body["ledger"].as_array().unwrap();
    assert_eq!(ledger.len(), 2);
    assert_eq!(ledger[0]["kind"], "signup_bonus");
    assert_eq!(ledger[0]["points"], 50);
    assert!(ledger[0].get("order_number").is_none());
    assert_eq!(ledger[1]["kind"], "order_credit");
    assert_eq!(ledger[1]["points"], 42);
    assert_eq!(ledger[1]["order_number"], "1001");
    let at = ledger[1]["at"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
}

#[tokio::test]
async fn a_disabled_channel_answers_404() {
    let app = spawn_app_with(|s| {
        s.manychat.token = Secret::new("");
        s.messenger.app_secret = Secret::new("");
    })
    .await;
    let auth = format!("Bearer {MANYCHAT_TOKEN}");
    let body = serde_json::json!({"subscriber_id": "1", "email": "jane@example.com"});
    let res = app
        .post_json("/manychat/join", &body, &[("Authorization", &auth)])
        .await;
    assert_eq!(res.status(), 404, "manychat");
    let res = app
        .post_messenger_webhook("/webhooks/messenger", b"{}")
        .await;
    assert_eq!(res.status(), 404, "messenger");
}

#[tokio::test]
async fn a_broken_fixture_orders_file_stops_the_start() {
    let res = try_spawn_app_with(|s| {
        s.shop.kind = ShopKind::Fixture;
        s.shop.orders_file = Some("does/not/exist.json".into());
    })
    .await;
    let Err(e @ StartupError::Shop(_)) = res else {
        panic!("expected a shop error");
    };
    assert!(format!("{e:?}").contains("exist.json"), "{e:?}");
}

#[tokio::test]
async fn a_missing_flows_dir_stops_the_start() {
    let res = try_spawn_app_with(|s| s.flows_dir = Some("no-such-flows".into())).await;
    assert!(matches!(res, Err(StartupError::Flows { .. })));
}

async fn put_processing(app: &common::TestApp, held: bool) -> serde_json::Value {
    let res = app
        .client()
        .put(app.url("/admin/messenger/processing"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({ "held": held }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[tokio::test]
async fn held_processing_still_acknowledges_webhooks_and_answers_them_once_let_go() {
    let app = spawn_app().await;
    let unauthorized = app
        .client()
        .put(app.url("/admin/messenger/processing"))
        .json(&serde_json::json!({ "held": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    assert_eq!(put_processing(&app, true).await["held"], true);

    let body = std::fs::read(common::repo_path(
        "fixtures/messenger/messenger-text-message.json",
    ))
    .unwrap();
    let res = app
        .post_messenger_webhook("/webhooks/messenger", &body)
        .await;
    assert_eq!(res.status(), 200, "held: still recorded and acknowledged");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(app.graph_api.sent().is_empty(), "held: nothing is sent");

    assert_eq!(put_processing(&app, false).await["held"], false);
    let sent = app
        .graph_api
        .wait_for_sent(1, std::time::Duration::from_secs(10))
        .await;
    assert_eq!(sent.len(), 1, "let go: the held event is answered once");
}
