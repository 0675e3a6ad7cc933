//! Crash and restart tests with the real binary: what a reply announced must still be there
//! after `kill -9` and a restart, read back through the admin API.

mod common;

use common::{
    get_admin_member, member_points, spawn_app, test_overrides, BinaryApp, ChatProcess,
    FakeGraphApi, FakeShop, ADMIN_TOKEN, MANYCHAT_TOKEN,
};
use loyalty_bot::domain::{Channel, ChatIdentity, Email, Profile};
use serde_json::json;

struct Upstreams {
    shop: FakeShop,
    env: Vec<(String, String)>,
    _graph_api: FakeGraphApi,
    _data_dir: tempfile::TempDir,
}

async fn upstreams() -> Upstreams {
    let (shop, graph_api) = (FakeShop::start().await, FakeGraphApi::start().await);
    let data_dir = tempfile::tempdir().unwrap();
    let env = test_overrides(data_dir.path(), &shop, &graph_api);
    Upstreams {
        shop,
        env,
        _graph_api: graph_api,
        _data_dir: data_dir,
    }
}

async fn points_of(server: &BinaryApp, email: &str) -> u64 {
    let client = reqwest::Client::new();
    let res = get_admin_member(&client, &server.address, email, Some(ADMIN_TOKEN)).await;
    member_points(res).await
}

#[tokio::test]
async fn the_binary_serves_and_stops_gracefully_on_sigterm() {
    let up = upstreams().await;
    let server = BinaryApp::start(&up.env).await;
    let res = reqwest::get(format!("{}/healthz", server.address))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let logs = server.logs();
    let status = server.terminate();
    assert!(status.success(), "exit {status:?}");
    assert!(
        !logs.contains(ADMIN_TOKEN) && !logs.contains(MANYCHAT_TOKEN),
        "{logs}"
    );
}

#[tokio::test]
async fn a_claim_the_terminal_chat_confirmed_survives_kill_9() {
    let up = upstreams().await;
    up.shop
        .add_order("1001", "jane@example.com", "42.50", "paid");
    let mut chat = ChatProcess::start(&up.env, "jane");
    chat.expect("1) ").await;
    chat.say("1");
    chat.expect("email").await;
    chat.say("jane@example.com");
    chat.expect("50 points").await;
    chat.say("1001");
    chat.expect("now have 92 points").await;
    chat.kill9();

    let server = BinaryApp::start(&up.env).await;
    assert_eq!(points_of(&server, "jane@example.com").await, 92);
}

#[tokio::test]
async fn a_claim_acknowledged_over_manychat_survives_kill_9() {
    let up = upstreams().await;
    up.shop
        .add_order("1001", "jane@example.com", "42.50", "paid");
    let server = BinaryApp::start(&up.env).await;
    let client = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| {
        client
            .post(format!("{}{path}", server.address))
            .bearer_auth(MANYCHAT_TOKEN)
            .json(&body)
            .send()
    };
    let joined = post(
        "/manychat/join",
        json!({"subscriber_id": "77", "email": "jane@example.com"}),
    );
    assert_eq!(joined.await.unwrap().status(), 200);
    let claimed = post(
        "/manychat/claim",
        json!({"subscriber_id": "77", "order_number": "1001"}),
    );
    assert_eq!(claimed.await.unwrap().status(), 200);
    server.kill9();

    let server = BinaryApp::start(&up.env).await;
    assert_eq!(points_of(&server, "jane@example.com").await, 92);
}

#[tokio::test]
async fn members_survive_a_graceful_restart() {
    let mut app = spawn_app().await;
    let who = ChatIdentity::new(Channel::Manychat, "77").unwrap();
    let email = Email::parse("jane@example.com").unwrap();
    app.program()
        .join(&who, email, Profile::default())
        .await
        .unwrap();
    app.restart().await;
    assert_eq!(app.balance_of("jane@example.com").await, 50);
    let body: serde_json::Value = app
        .get_admin_member("jane@example.com")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["ledger"][0]["kind"], "signup_bonus");
}

#[tokio::test]
async fn restart_serves_again_on_the_same_data_dir() {
    let mut app = spawn_app().await;
    let who = ChatIdentity::new(Channel::Manychat, "78").unwrap();
    let email = "restart-only@example.com";
    app.program()
        .join(&who, Email::parse(email).unwrap(), Profile::default())
        .await
        .unwrap();
    let before = app.address.clone();
    app.restart().await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.balance_of(email).await, 50);
    assert_ne!(app.address, before, "a restart binds a fresh port");
    app.stop().await;
    // The old port is free once the first instance stopped, and a server of a test running
    // alongside may have been given it since: so the check is that no instance serves this
    // store there any more (an unknown member for another app's store, or nothing at all).
    let old = reqwest::Client::new()
        .get(format!("{before}/admin/members"))
        .query(&[("email", email)])
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await;
    if let Ok(res) = old {
        assert_ne!(
            res.status(),
            200,
            "the stopped instance still serves its store"
        );
    }
}

/// The log position of sled's newest snapshot of the store under `data_dir` (its files are
/// `snap.<lsn as 16 hex digits>`).
fn snapshot_lsn(data_dir: &std::path::Path) -> Option<u64> {
    std::fs::read_dir(data_dir.join("db"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            let hex = name.strip_prefix("snap.")?;
            (hex.len() == 16).then(|| u64::from_str_radix(hex, 16).ok())?
        })
        .max()
}

/// sled writes its snapshot only when it opens a store, so without one written at the stop
/// the next start recovers everything the last run wrote; after a run that wrote a lot (a
/// million members), that took seconds from a cold page cache. An open writes a new snapshot
/// exactly when it recovered something past the newest one.
#[tokio::test]
async fn a_graceful_stop_leaves_the_next_start_nothing_to_recover() {
    let mut app = spawn_app().await;
    let started_from = snapshot_lsn(app.data_dir.path());
    for i in 0..200 {
        let who = ChatIdentity::new(Channel::Manychat, &format!("5{i}")).unwrap();
        let email = Email::parse(&format!("snap-{i}@example.com")).unwrap();
        app.program()
            .join(&who, email, Profile::default())
            .await
            .unwrap();
    }
    app.stop().await;
    let stopped_at = snapshot_lsn(app.data_dir.path());
    assert!(
        stopped_at > started_from,
        "the stop wrote a snapshot past the start's ({stopped_at:?}, {started_from:?})"
    );
    app.restart().await;
    assert_eq!(
        snapshot_lsn(app.data_dir.path()),
        stopped_at,
        "the start found nothing past the stop's snapshot"
    );
    assert_eq!(app.balance_of("snap-199@example.com").await, 50);
    app.stop().await;
}
