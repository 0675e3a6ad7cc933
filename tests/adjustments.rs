//! `POST /admin/members/{id}/adjustments` over a real socket: an operator's credit or debit is
//! one `adjustment` ledger entry with its reason, the balance stays the ledger's sum and never
//! goes below zero, and the `Idempotency-Key` makes a repeated request (also after a restart)
//! answer as the first one did without changing anything.

mod common;

use common::{spawn_app, TestApp, ADMIN_TOKEN};
use loyalty_bot::domain::{Channel, ChatIdentity, Email, Profile};
use loyalty_bot::program::JoinResult;
use serde_json::{json, Value};

/// Jane joins with the signup bonus (50 points); her member id.
async fn jane(app: &TestApp) -> u64 {
    let who = ChatIdentity::new(Channel::Terminal, "jane").unwrap();
    let email = Email::parse("jane@example.com").unwrap();
    let joined = app.program().join(&who, email, Profile::default()).await;
    let Ok(JoinResult::Joined(account)) = joined else {
        panic!("join failed: {joined:?}");
    };
    account.member.id.0
}

async fn adjust(
    app: &TestApp,
    id: impl std::fmt::Display,
    key: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut req = app
        .client()
        .post(app.url(&format!("/admin/members/{id}/adjustments")))
        .bearer_auth(ADMIN_TOKEN)
        .json(body);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    req.send().await.expect("POST adjustments")
}

/// Status and JSON body.
async fn answer(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    (status, res.json().await.expect("JSON body"))
}

/// The admin view of Jane: her balance and ledger, checked to add up.
async fn jane_view(app: &TestApp) -> (u64, Vec<Value>) {
    let res = app.get_admin_member("jane@example.com").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let ledger = body["ledger"].as_array().unwrap().clone();
    let points = body["points"].as_u64().unwrap();
    let sum: i64 = ledger.iter().map(|e| e["points"].as_i64().unwrap()).sum();
    assert_eq!(sum, points as i64, "the balance is the ledger's sum");
    (points, ledger)
}

#[tokio::test]
async fn credits_and_debits_are_adjustment_entries_with_their_reason() {
    let app = spawn_app().await;
    let id = jane(&app).await;
    let credit = json!({"points": 30, "reason": "  birthday gift "});
    let (status, body) = answer(adjust(&app, id, Some("k-credit"), &credit).await).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["member_id"], id);
    assert_eq!(body["points"], 80, "the balance after it");
    assert_eq!(body["entry"]["kind"], "adjustment");
    assert_eq!(body["entry"]["points"], 30);
    assert_eq!(body["entry"]["reason"], "birthday gift");
    assert!(body["entry"]["at"].is_string());

    let debit = json!({"points": -20, "reason": "damaged parcel goodwill"});
    let (status, body) = answer(adjust(&app, id, Some("k-debit"), &debit).await).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["points"], 60);

    let (points, ledger) = jane_view(&app).await;
    assert_eq!(points, 60);
    let kinds: Vec<&str> = ledger.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["signup_bonus", "adjustment", "adjustment"]);
    assert!(
        ledger[0].get("reason").is_none(),
        "only adjustments carry one"
    );
    assert_eq!(ledger[2]["points"], -20);
    assert_eq!(ledger[2]["reason"], "damaged parcel goodwill");
}

#[tokio::test]
async fn a_replayed_key_answers_as_the_first_time_and_changes_nothing_even_after_a_restart() {
    let mut app = spawn_app().await;
    let id = jane(&app).await;
    let body = json!({"points": -20, "reason": "damaged parcel goodwill"});
    let first = adjust(&app, id, Some("9f0c-replay"), &body).await;
    assert!(first.headers().get("Idempotent-Replayed").is_none());
    let first = answer(first).await;
    assert_eq!(first.0, 201, "{}", first.1);
    // Another adjustment in between: the replay still reports the first one's balance.
    let other = json!({"points": 5, "reason": "other"});
    assert_eq!(adjust(&app, id, Some("other"), &other).await.status(), 201);

    let again = adjust(&app, id, Some("9f0c-replay"), &body).await;
    assert_eq!(again.headers()["Idempotent-Replayed"], "true");
    assert_eq!(answer(again).await, first);
    assert_eq!(jane_view(&app).await.0, 35);

    app.restart().await;
    let after_restart = answer(adjust(&app, id, Some("9f0c-replay"), &body).await).await;
    assert_eq!(after_restart, first);
    let (points, ledger) = jane_view(&app).await;
    assert_eq!((points, ledger.len()), (35, 3));
}

#[tokio::test]
async fn concurrent_requests_with_one_key_apply_once() {
    let app = spawn_app().await;
    let id = jane(&app).await;
    let body = json!({"points": 7, "reason": "double click"});
    let calls = (0..6).map(|_| adjust(&app, id, Some("same"), &body));
    let answers = futures_util::future::join_all(calls).await;
    for res in answers {
        assert_eq!(res.status(), 201);
    }
    let (points, ledger) = jane_view(&app).await;
    assert_eq!((points, ledger.len()), (57, 2));
}

#[tokio::test]
async fn the_same_key_with_a_different_request_is_422_and_changes_nothing() {
    let app = spawn_app().await;
    let id = jane(&app).await;
    let body = json!({"points": 10, "reason": "welcome back"});
    assert_eq!(adjust(&app, id, Some("k1"), &body).await.status(), 201);
    for other in [
        json!({"points": 11, "reason": "welcome back"}),
        json!({"points": 10, "reason": "something else"}),
    ] {
        let (status, body) = answer(adjust(&app, id, Some("k1"), &other).await).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["code"], "idempotency_key_reused");
    }
    let (points, ledger) = jane_view(&app).await;
    assert_eq!((points, ledger.len()), (60, 2));
}

#[tokio::test]
async fn a_missing_key_reason_or_points_is_400_naming_it_and_changes_nothing() {
    let app = spawn_app().await;
    let id = jane(&app).await;
    let good = json!({"points": 10, "reason": "goodwill"});
    let cases = [
        (None, good.clone(), "Idempotency-Key"),
        (Some(""), good.clone(), "Idempotency-Key"),
        (Some("has space"), good.clone(), "Idempotency-Key"),
        (Some("k"), json!({"points": 10}), "reason"),
        (Some("k"), json!({"points": 10, "reason": "   "}), "reason"),
        (Some("k"), json!({"reason": "goodwill"}), "points"),
        (
            Some("k"),
            json!({"points": 0, "reason": "goodwill"}),
            "points",
        ),
        (
            Some("k"),
            json!({"points": 1.5, "reason": "goodwill"}),
            "points",
        ),
        (
            Some("k"),
            json!({"points": "10", "reason": "goodwill"}),
            "points",
        ),
        (
            Some("k"),
            json!({"points": 10_000_001, "reason": "goodwill"}),
            "points",
        ),
        (
            Some("k"),
            json!({"points": 10, "reson": "goodwill"}),
            "reson",
        ),
    ];
    for (key, body, names) in cases {
        let (status, answer) = answer(adjust(&app, id, key, &body).await).await;
        assert_eq!(status, 400, "{key:?} {body}: {answer}");
        assert_eq!(answer["code"], "bad_request");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(names), "{message} should name {names}");
    }
    assert_eq!(jane_view(&app).await.1.len(), 1);
    // A refused request does not use up its key.
    assert_eq!(adjust(&app, id, Some("k"), &good).await.status(), 201);
    assert_eq!(jane_view(&app).await.0, 60);
}

#[tokio::test]
async fn a_debit_below_zero_is_409_and_changes_nothing() {
    let app = spawn_app().await;
    let id = jane(&app).await;
    let too_much = json!({"points": -51, "reason": "fraud"});
    let (status, body) = answer(adjust(&app, id, Some("d"), &too_much).await).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "insufficient_points");
    assert!(body["message"].as_str().unwrap().contains("50"), "{body}");
    let (points, ledger) = jane_view(&app).await;
    assert_eq!((points, ledger.len()), (50, 1));
    // Down to exactly zero is fine, under the same key.
    let all = json!({"points": -50, "reason": "fraud"});
    let (status, body) = answer(adjust(&app, id, Some("d"), &all).await).await;
    assert_eq!((status, &body["points"]), (201, &json!(0)));
}

#[tokio::test]
async fn without_the_admin_token_it_is_401_and_changes_nothing() {
    let app = spawn_app().await;
    let id = jane(&app).await;
    let res = app
        .client()
        .post(app.url(&format!("/admin/members/{id}/adjustments")))
        .header("Idempotency-Key", "k")
        .json(&json!({"points": 1000, "reason": "free points"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(jane_view(&app).await.0, 50);
}

#[tokio::test]
async fn an_unknown_member_is_404() {
    let app = spawn_app().await;
    jane(&app).await;
    let body = json!({"points": 5, "reason": "goodwill"});
    for id in ["999999", "abc", "-1"] {
        let (status, answer) = answer(adjust(&app, id, Some("k"), &body).await).await;
        assert_eq!(status, 404, "{id}: {answer}");
        assert_eq!(answer["code"], "not_found");
    }
}
