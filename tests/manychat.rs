//! ManyChat Dynamic Block endpoints over a real socket: bearer auth before anything else, Full
//! Contact Data in, valid v2 out (within ManyChat's limits), and callbacks that, when followed
//! the way ManyChat follows them, continue the conversation. Reply wording lives in `flows/`,
//! so these tests assert on numbers, codes and structure rather than sentences.

mod common;

use common::{spawn_app, TestApp, MANYCHAT_TOKEN};
use loyalty_bot::domain::{Channel, ChatIdentity};
use serde_json::{json, Value};

const MODERN: &str = include_str!("../fixtures/manychat/full-contact-data-request.json");
const DOCS_SHAPE: &str =
    include_str!("../fixtures/manychat/full-contact-data-request-docs-shape.json");
/// The subscriber in [`MODERN`] (string id, email jane@example.com, order_number_input 1001).
const JANE: &str = "1515862162";
/// The subscriber in [`DOCS_SHAPE`] (numeric id, no email anywhere).
const DOCS_ID: &str = "1324564712345678";

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

/// ManyChat's contact data for Jane without any step fields, so each test says what it sends.
fn jane_plain() -> Value {
    let mut c = fixture(MODERN);
    c["custom_fields"] = json!({ "loyalty_points": 0 });
    c
}

/// Posts with the right token, checks 200 + valid v2, returns `content`.
async fn call(app: &TestApp, path: &str, body: &Value) -> Value {
    let res = app.post_manychat(path, body).await;
    assert_eq!(res.status(), 200, "POST {path}");
    let v2: Value = res.json().await.expect("JSON body");
    assert_valid_v2(&v2);
    v2["content"].clone()
}

/// Does what ManyChat does with a `dynamic_block_callback` or `external_message_callback`:
/// POSTs its payload with its headers. Only the origin is swapped (`public_url` in tests is not
/// the test server's). `typed` replaces `{{last_input_text}}`, as ManyChat substitutes it.
async fn follow(app: &TestApp, callback: &Value, typed: Option<&str>) -> Value {
    let url = callback["url"].as_str().expect("callback url");
    let path = &url[url.find("/manychat/").expect("points at our endpoints")..];
    let mut payload = callback["payload"].clone();
    for v in payload.as_object_mut().unwrap().values_mut() {
        if v == "{{last_input_text}}" {
            *v = json!(typed.expect("this callback needs typed text"));
        }
    }
    let mut req = app.client().post(app.url(path)).json(&payload);
    for (k, v) in callback["headers"].as_object().expect("headers") {
        req = req.header(k.as_str(), v.as_str().unwrap());
    }
    let res = req.send().await.expect("callback POST");
    assert_eq!(
        res.status(),
        200,
        "callback to {path} authenticates with its own headers"
    );
    let v2: Value = res.json().await.unwrap();
    assert_valid_v2(&v2);
    v2["content"].clone()
}

async fn balance(app: &TestApp, subscriber: &str) -> Option<u64> {
    let who = ChatIdentity::new(Channel::Manychat, subscriber).unwrap();
    let account = app.program().account(&who).await.expect("store readable");
    account.map(|a| a.balance.value())
}

fn all_text(content: &Value) -> String {
    let messages = content["messages"].as_array().unwrap();
    messages
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

fn points_field(content: &Value) -> Option<u64> {
    content["actions"]
        .as_array()?
        .iter()
        .find(|a| a["action"] == "set_field_value" && a["field_name"] == "loyalty_points")
        .map(|a| {
            a["value"]
                .as_u64()
                .expect("loyalty_points is a Number field")
        })
}

fn tagged_member(content: &Value) -> bool {
    content["actions"].as_array().is_some_and(|a| {
        a.iter()
            .any(|a| a["action"] == "add_tag" && a["tag_name"] == "loyalty_member")
    })
}

/// A quick reply whose callback goes to `path` and carries `key` = `value` (if given).
fn quick_reply<'a>(
    content: &'a Value,
    path: &str,
    key_value: Option<(&str, &str)>,
) -> Option<&'a Value> {
    content["quick_replies"].as_array()?.iter().find(|q| {
        q["url"].as_str().is_some_and(|u| u.ends_with(path))
            && key_value.into_iter().all(|(k, v)| q["payload"][k] == v)
    })
}

/// Jane joins (50) and claims a 210.00 order: 260 points, enough for a mug, not for a bag.
async fn jane_with_260_points(app: &TestApp) {
    app.shop
        .add_order("1007", "jane@example.com", "210.00", "paid");
    join_jane(app).await;
    let mut body = jane_plain();
    body["order_number"] = json!("1007");
    call(app, "/manychat/claim", &body).await;
}

async fn join_jane(app: &TestApp) {
    let mut body = jane_plain();
    body["custom_fields"]["email_input"] = json!("jane@example.com");
    call(app, "/manychat/join", &body).await;
    assert_eq!(balance(app, JANE).await, Some(50));
}

/// Checks the v2 envelope, ManyChat's limits and the shape of everything we emit.
fn assert_valid_v2(v: &Value) {
    assert_eq!(v["version"], "v2", "{v}");
    let content = v["content"].as_object().expect("content object");
    for key in content.keys() {
        let known = [
            "messages",
            "actions",
            "quick_replies",
            "external_message_callback",
        ];
        assert!(
            known.contains(&key.as_str()),
            "unexpected content key {key}"
        );
    }
    let messages = content["messages"].as_array().expect("messages array");
    assert!(
        messages.len() <= 10,
        "at most 10 messages: {}",
        messages.len()
    );
    for m in messages {
        assert_eq!(m["type"], "text", "{m}");
        let text = m["text"].as_str().expect("text");
        assert!(
            !text.trim().is_empty() && text.chars().count() <= 2000,
            "text length: {m}"
        );
        if let Some(buttons) = m.get("buttons") {
            let buttons = buttons.as_array().expect("buttons array");
            assert!(buttons.len() <= 3, "at most 3 buttons: {m}");
            buttons.iter().for_each(assert_tappable);
        }
    }
    let quick = content
        .get("quick_replies")
        .map_or(&[][..], |q| q.as_array().unwrap());
    assert!(
        quick.len() <= 11,
        "at most 11 quick replies: {}",
        quick.len()
    );
    for q in quick {
        assert_eq!(
            q["type"], "dynamic_block_callback",
            "quick replies call us back: {q}"
        );
        assert_tappable(q);
    }
    let actions = content
        .get("actions")
        .map_or(&[][..], |a| a.as_array().unwrap());
    assert!(actions.len() <= 5, "at most 5 actions: {}", actions.len());
    for a in actions {
        match a["action"].as_str() {
            Some("set_field_value") => {
                assert!(a["field_name"].is_string(), "{a}");
                assert!(a["value"].is_u64(), "Number field takes a JSON number: {a}");
            }
            Some("add_tag") => assert!(a["tag_name"].is_string(), "{a}"),
            _ => panic!("unexpected action {a}"),
        }
    }
    if let Some(cb) = content.get("external_message_callback") {
        assert_callback(cb);
        let timeout = cb["timeout"].as_u64().expect("timeout");
        assert!(
            (1..=86_400).contains(&timeout),
            "timeout at most a day: {cb}"
        );
    }
}

fn assert_tappable(b: &Value) {
    let caption = b["caption"].as_str().expect("caption");
    assert!(
        !caption.is_empty() && caption.chars().count() <= 20,
        "caption ≤ 20 chars: {b}"
    );
    match b["type"].as_str() {
        Some("url") => assert!(
            b["url"].as_str().is_some_and(|u| u.starts_with("http")),
            "{b}"
        ),
        Some("dynamic_block_callback") => assert_callback(b),
        _ => panic!("unexpected button type {b}"),
    }
}

fn assert_callback(cb: &Value) {
    assert!(
        cb["url"].as_str().is_some_and(|u| u.contains("/manychat/")),
        "{cb}"
    );
    assert_eq!(cb["method"], "post", "{cb}");
    assert_eq!(
        cb["headers"]["Authorization"],
        format!("Bearer {MANYCHAT_TOKEN}")
    );
    assert!(
        cb["payload"]["subscriber_id"].is_string(),
        "callbacks name the subscriber: {cb}"
    );
}

#[tokio::test]
async fn requests_without_the_right_bearer_token_are_rejected_and_change_nothing() {
    let app = spawn_app().await;
    let mut body = jane_plain();
    body["email"] = json!("jane@example.com");
    let wrong = format!("Bearer {MANYCHAT_TOKEN}x");
    let basic = format!("Basic {MANYCHAT_TOKEN}");
    let cases: &[(&str, Option<&str>)] = &[
        ("no header", None),
        ("wrong token", Some(&wrong)),
        ("not bearer", Some(&basic)),
    ];
    for path in [
        "/manychat/join",
        "/manychat/claim",
        "/manychat/redeem",
        "/manychat/rewards",
        "/manychat/balance",
    ] {
        for (case, header) in cases {
            let mut req = app.client().post(app.url(path)).json(&body);
            if let Some(h) = header {
                req = req.header("Authorization", *h);
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 401, "{path}, {case}");
            let err: Value = res.json().await.unwrap();
            assert_eq!(err["error"], "unauthorized", "{path}, {case}");
        }
    }
    // Even a garbage body gets 401, not 400: the token is checked before the body is read.
    let res = app
        .client()
        .post(app.url("/manychat/join"))
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(balance(&app, JANE).await, None, "nobody joined");
}

#[tokio::test]
async fn malformed_bodies_are_rejected_with_a_precise_400() {
    let app = spawn_app().await;
    let cases: &[(&str, &str, &str)] = &[
        ("{\"id\": \"1\",", "malformed_json", "line 1 column"),
        ("", "malformed_json", "EOF"),
        ("[1]", "not_an_object", "object"),
        (
            "{\"first_name\": \"Jane\"}",
            "missing_subscriber_id",
            "subscriber",
        ),
        ("{\"id\": 1.5}", "invalid_subscriber_id", "whole number"),
    ];
    for (body, code, mentions) in cases {
        let res = app
            .client()
            .post(app.url("/manychat/join"))
            .bearer_auth(MANYCHAT_TOKEN)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "body {body:?}");
        let err: Value = res.json().await.unwrap();
        assert_eq!(err["error"], *code, "body {body:?}");
        assert!(
            err["message"].as_str().unwrap().contains(mentions),
            "body {body:?}: {err}"
        );
    }
}

#[tokio::test]
async fn join_with_an_email_welcomes_sets_the_points_field_and_tags_the_member() {
    let app = spawn_app().await;
    let content = call(&app, "/manychat/join", &fixture(MODERN)).await;
    assert!(
        all_text(&content).contains("50"),
        "welcome mentions the bonus: {content}"
    );
    assert_eq!(points_field(&content), Some(50));
    assert!(tagged_member(&content));
    assert!(content.get("external_message_callback").is_none());
    assert_eq!(balance(&app, JANE).await, Some(50));
}

#[tokio::test]
async fn join_without_an_email_asks_for_it_and_routes_the_typed_answer_back() {
    let app = spawn_app().await;
    let content = call(&app, "/manychat/join", &fixture(DOCS_SHAPE)).await;
    let cb = &content["external_message_callback"];
    assert!(
        cb["url"].as_str().unwrap().ends_with("/manychat/join"),
        "{cb}"
    );
    assert_eq!(
        cb["payload"]["subscriber_id"], DOCS_ID,
        "numeric id kept digit for digit"
    );
    assert_eq!(cb["payload"]["email"], "{{last_input_text}}");
    assert!(
        content["actions"].as_array().unwrap().is_empty(),
        "not a member yet"
    );
    assert_eq!(balance(&app, DOCS_ID).await, None);

    let content = follow(&app, cb, Some("subscriber@example.com")).await;
    assert_eq!(points_field(&content), Some(50));
    assert!(tagged_member(&content));
    assert_eq!(balance(&app, DOCS_ID).await, Some(50));
}

#[tokio::test]
async fn an_invalid_email_is_asked_again_and_nothing_is_stored() {
    let app = spawn_app().await;
    let content = call(&app, "/manychat/join", &fixture(DOCS_SHAPE)).await;
    let content = follow(
        &app,
        &content["external_message_callback"],
        Some("not an email"),
    )
    .await;
    let cb = &content["external_message_callback"];
    assert_eq!(
        cb["payload"]["email"], "{{last_input_text}}",
        "asked again: {content}"
    );
    assert!(content["actions"].as_array().unwrap().is_empty());
    assert_eq!(balance(&app, DOCS_ID).await, None);
}

#[tokio::test]
async fn claiming_a_shop_order_credits_points_and_syncs_the_new_balance() {
    let app = spawn_app().await;
    app.shop
        .add_order("1001", "jane@example.com", "42.50", "paid");
    join_jane(&app).await;
    let mut body = jane_plain();
    body["order_number"] = json!("1001");
    let content = call(&app, "/manychat/claim", &body).await;
    let text = all_text(&content);
    assert!(
        text.contains("1001") && text.contains("42") && text.contains("92"),
        "{text}"
    );
    assert_eq!(points_field(&content), Some(92));
    assert!(tagged_member(&content));
    assert_eq!(balance(&app, JANE).await, Some(92));
}

#[tokio::test]
async fn a_second_claim_of_the_same_order_is_refused() {
    let app = spawn_app().await;
    app.shop
        .add_order("1001", "jane@example.com", "42.50", "paid");
    join_jane(&app).await;
    let mut body = jane_plain();
    body["custom_fields"]["order_number_input"] = json!(1001);
    call(&app, "/manychat/claim", &body).await;
    let content = call(&app, "/manychat/claim", &body).await;
    assert_eq!(
        points_field(&content),
        Some(92),
        "unchanged balance, still synced"
    );
    assert_eq!(balance(&app, JANE).await, Some(92));
}

#[tokio::test]
async fn a_non_member_with_an_email_is_joined_and_then_credited() {
    let app = spawn_app().await;
    app.shop
        .add_order("1001", "jane@example.com", "42.50", "paid");
    // The fixture carries email_input and order_number_input, as a ManyChat flow would.
    let content = call(&app, "/manychat/claim", &fixture(MODERN)).await;
    assert_eq!(
        points_field(&content),
        Some(92),
        "50 signup + 42 for the order: {content}"
    );
    assert!(tagged_member(&content));
    assert_eq!(balance(&app, JANE).await, Some(92));
}

#[tokio::test]
async fn a_claim_by_a_non_member_does_not_join_them_with_manychats_own_email() {
    let app = spawn_app().await;
    app.shop
        .add_order("1001", "jane@example.com", "42.50", "paid");
    let mut body = jane_plain(); // only the contact's system email, no email field
    body["order_number"] = json!("1001");
    let content = call(&app, "/manychat/claim", &body).await;
    let cb = &content["external_message_callback"];
    assert_eq!(
        cb["payload"]["email"], "{{last_input_text}}",
        "asks which email: {content}"
    );
    assert_eq!(balance(&app, JANE).await, None, "nobody joined silently");
}

#[tokio::test]
async fn a_non_member_without_an_email_is_asked_for_it_and_the_order_number_is_kept() {
    let app = spawn_app().await;
    app.shop
        .add_order("1001", "subscriber@example.com", "42.50", "paid");
    let mut body = fixture(DOCS_SHAPE);
    body["order_number"] = json!("1001");
    let content = call(&app, "/manychat/claim", &body).await;
    let cb = &content["external_message_callback"];
    assert!(
        cb["url"].as_str().unwrap().ends_with("/manychat/claim"),
        "{cb}"
    );
    assert_eq!(cb["payload"]["order_number"], "1001");
    assert_eq!(cb["payload"]["email"], "{{last_input_text}}");

    let content = follow(&app, cb, Some("subscriber@example.com")).await;
    assert_eq!(points_field(&content), Some(92));
    assert_eq!(balance(&app, DOCS_ID).await, Some(92));
}

#[tokio::test]
async fn rewards_are_offered_as_quick_replies_that_call_the_redeem_endpoint() {
    let app = spawn_app().await;
    join_jane(&app).await;
    let content = call(&app, "/manychat/rewards", &jane_plain()).await;
    for reward in ["free-mug", "tote-bag"] {
        let q = quick_reply(&content, "/manychat/redeem", Some(("reward_id", reward)))
            .unwrap_or_else(|| panic!("a quick reply redeems {reward}: {content}"));
        assert_eq!(q["payload"]["subscriber_id"], JANE);
    }
    assert_eq!(points_field(&content), Some(50));
    assert_eq!(
        balance(&app, JANE).await,
        Some(50),
        "listing spends nothing"
    );
}

#[tokio::test]
async fn redeeming_with_enough_points_gives_a_coupon_code_and_a_checkout_button() {
    let app = spawn_app().await;
    jane_with_260_points(&app).await;
    assert_eq!(balance(&app, JANE).await, Some(260));

    // Tap the quick reply exactly as ManyChat would.
    let rewards = call(&app, "/manychat/rewards", &jane_plain()).await;
    let mug = quick_reply(
        &rewards,
        "/manychat/redeem",
        Some(("reward_id", "free-mug")),
    )
    .unwrap();
    let content = follow(&app, mug, None).await;

    let coupons = app.shop.coupons();
    assert_eq!(coupons.len(), 1, "one coupon created at the shop");
    let code = coupons[0]["code"].as_str().unwrap();
    assert!(
        all_text(&content).contains(code),
        "the reply shows {code}: {content}"
    );
    let url_button = content["messages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["buttons"].as_array().cloned().unwrap_or_default())
        .find(|b| b["type"] == "url");
    assert!(url_button.is_some(), "a checkout link button: {content}");
    assert_eq!(points_field(&content), Some(60));
    assert_eq!(balance(&app, JANE).await, Some(60));

    // A double tap (or ManyChat retrying the callback) shows the same coupon, spends nothing.
    let again = follow(&app, mug, None).await;
    assert!(all_text(&again).contains(code), "{again}");
    assert_eq!(app.shop.coupons().len(), 1);
    assert_eq!(balance(&app, JANE).await, Some(60));
}

#[tokio::test]
async fn a_concurrent_double_tap_redeems_once_and_both_taps_show_the_same_code() {
    let app = spawn_app().await;
    jane_with_260_points(&app).await;
    let rewards = call(&app, "/manychat/rewards", &jane_plain()).await;
    let mug = quick_reply(
        &rewards,
        "/manychat/redeem",
        Some(("reward_id", "free-mug")),
    )
    .unwrap()
    .clone();
    // A slow shop keeps the first tap in flight while the second arrives.
    app.shop.set_delay(std::time::Duration::from_millis(400));
    let (a, b) = tokio::join!(follow(&app, &mug, None), follow(&app, &mug, None));
    let code = app.shop.coupons()[0]["code"].as_str().unwrap().to_owned();
    assert_eq!(app.shop.coupons().len(), 1, "one coupon at the shop");
    let coupon_calls = app
        .shop
        .requests()
        .iter()
        .filter(|r| r.path.contains("coupon"))
        .count();
    assert_eq!(coupon_calls, 1, "the shop is asked once");
    for reply in [a, b] {
        assert!(all_text(&reply).contains(&code), "{reply}");
    }
    assert_eq!(balance(&app, JANE).await, Some(60));
}

#[tokio::test]
async fn redeeming_with_too_few_points_names_the_gap_and_deducts_nothing() {
    let app = spawn_app().await;
    join_jane(&app).await;
    let body = json!({ "subscriber_id": JANE, "reward_id": "free-mug" });
    let content = call(&app, "/manychat/redeem", &body).await;
    assert!(
        all_text(&content).contains("150"),
        "200 needed, 50 held: {content}"
    );
    assert_eq!(points_field(&content), Some(50));
    assert!(app.shop.coupons().is_empty());
    assert_eq!(balance(&app, JANE).await, Some(50));
}

#[tokio::test]
async fn balance_and_help_answer_valid_v2_for_members_and_strangers() {
    let app = spawn_app().await;
    for path in ["/manychat/balance", "/manychat/help"] {
        call(&app, path, &fixture(DOCS_SHAPE)).await;
    }
    join_jane(&app).await;
    let content = call(&app, "/manychat/balance", &jane_plain()).await;
    assert!(all_text(&content).contains("50"));
    assert_eq!(points_field(&content), Some(50));
    let content = call(&app, "/manychat/help", &jane_plain()).await;
    assert!(!content["messages"].as_array().unwrap().is_empty());
}
