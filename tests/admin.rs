//! The operator API: member look-up by email, behind the admin bearer token.

mod common;

use common::{get_admin_member, spawn_app, spawn_app_with, ADMIN_TOKEN};
use loyalty_bot::config::Secret;

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

#[tokio::test]
async fn invalid_or_missing_email_is_400() {
    let app = spawn_app().await;
    let res = app.get_admin_member("not-an-email").await;
    assert_eq!(res.status(), 400);
    let res = app
        .client()
        .get(app.url("/admin/members"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400, "missing email");
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
