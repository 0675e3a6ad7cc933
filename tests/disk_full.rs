//! The disk stops taking writes while the service runs (a full disk, made real with a file-size
//! limit on the process: every write past the store log's current end and a little room fails
//! with `EFBIG`).
//! What a customer or Meta is told must be true: nothing is acknowledged that is not on disk,
//! each request gets a clear answer, SIGTERM then exits non-zero because the final flush
//! failed, and a restart with room again finds the store as it was and works.

mod common;

use common::{
    get_admin_member, meta_signature, test_overrides, BinaryApp, FakeGraphApi, FakeShop,
    ADMIN_TOKEN, MANYCHAT_TOKEN,
};
use rustix::process::{prlimit, Pid, Resource, Rlimit};
use serde_json::{json, Value};
use std::time::Duration;

async fn manychat_join(client: &reqwest::Client, address: &str, id: &str, email: &str) -> Value {
    let res = client
        .post(format!("{address}/manychat/join"))
        .bearer_auth(MANYCHAT_TOKEN)
        .json(&json!({"subscriber_id": id, "email": email}))
        .send()
        .await
        .expect("POST /manychat/join");
    assert_eq!(res.status(), 200, "ManyChat always gets a v2 answer");
    res.json().await.expect("v2 JSON")
}

async fn post_webhook(client: &reqwest::Client, address: &str, body: &[u8]) -> reqwest::Response {
    client
        .post(format!("{address}/webhooks/messenger"))
        .header("X-Hub-Signature-256", meta_signature(body))
        .header("Content-Type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .expect("POST /webhooks/messenger")
}

fn texts(v2: &Value) -> String {
    v2["content"]["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

fn sets_points(v2: &Value) -> bool {
    v2["content"]["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|a| a["action"] == "set_field_value" && a["field_name"] == "loyalty_points")
}

async fn admin_points(client: &reqwest::Client, address: &str, email: &str) -> Option<u64> {
    let res = get_admin_member(client, address, email, Some(ADMIN_TOKEN)).await;
    if res.status() == 404 {
        return None;
    }
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    body["points"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_gets_clear_answers_acknowledges_nothing_and_sigterm_exits_non_zero() {
    let (graph, shop) = (FakeGraphApi::start().await, FakeShop::start().await);
    let data = tempfile::tempdir().unwrap();
    let env = test_overrides(data.path(), &shop, &graph);
    let client = reqwest::Client::new();

    let mut app = BinaryApp::start_ignoring_sigxfsz(&env).await;
    let welcome = manychat_join(&client, &app.address, "5001", "ada@example.com").await;
    assert!(sets_points(&welcome), "{welcome}");

    // From here on the store's log file can grow by `ROOM` bytes only: the disk is nearly full.
    // Joins are taken until the log has used that room; the first one refused gets an apology
    // and no points field (nothing was credited).
    const ROOM: u64 = 64 * 1024;
    let log = data.path().join("db").join("db");
    let end = std::fs::metadata(&log).expect("sled's log file").len();
    let pid = Pid::from_raw(app.pid() as i32).unwrap();
    let full = Rlimit {
        current: Some(end + ROOM),
        maximum: None,
    };
    prlimit(Some(pid), Resource::Fsize, full).expect("prlimit");
    let mut taken = Vec::new();
    let refused = loop {
        let n = taken.len();
        assert!(
            n < 1_000,
            "{n} joins taken in {ROOM} bytes of room: the log still grows"
        );
        let (id, email) = (format!("6{n:05}"), format!("m{n}@example.com"));
        let answer = manychat_join(&client, &app.address, &id, &email).await;
        if !sets_points(&answer) {
            break (answer, email);
        }
        taken.push(email);
    };
    assert!(!taken.is_empty(), "joins are taken while there is room");
    let (refused, refused_email) = refused;
    assert!(
        texts(&refused).contains("went wrong"),
        "an apology: {refused}"
    );
    // Once the log has failed a write, sled takes no more: every later join is refused too.
    let again = manychat_join(&client, &app.address, "5002", "bea@example.com").await;
    assert!(!sets_points(&again), "no balance announced: {again}");
    // Messenger: not acknowledged, so Meta delivers it again later.
    let body = serde_json::to_vec(
        &json!({"object": "page", "entry": [{"id": "104857600000001",
        "time": 1, "messaging": [{"sender": {"id": "5003"}, "recipient": {"id": "104857600000001"},
        "timestamp": 1, "message": {"mid": "m_full_disk", "text": "join"}}]}]}),
    )
    .unwrap();
    let webhook = post_webhook(&client, &app.address, &body).await;
    assert_eq!(
        webhook.status(),
        500,
        "a webhook that was not recorded is not acknowledged"
    );
    let answer: Value = webhook.json().await.unwrap();
    assert_eq!(answer["code"], "internal");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("deliver them again")),
        "{answer}"
    );

    app.send_sigterm();
    let status = app
        .wait_exit(Duration::from_secs(20))
        .await
        .expect("exits within its shutdown budget");
    let logs = app.logs();
    assert_eq!(status.code(), Some(1), "exit status {status}:\n{logs}");
    assert!(
        logs.contains("final store flush failed"),
        "says why:\n{logs}"
    );
    drop(app);

    // Room on the disk again: the store is as it was before the disk filled up.
    let app = BinaryApp::start(&env).await;
    assert_eq!(
        admin_points(&client, &app.address, "ada@example.com").await,
        Some(50)
    );
    assert_eq!(
        admin_points(&client, &app.address, "bea@example.com").await,
        None,
        "the join that was refused did not happen"
    );
    // The first join refused may have reached the disk all the same: when the log fills at a
    // segment's end, the write sled fails is the next segment's, after the one holding the join
    // went through, and the flush reports the error. An answer of failure is "not known to be
    // done", so the join happened at most once and joining again pays no second bonus.
    let first_refused = admin_points(&client, &app.address, &refused_email).await;
    assert!(
        matches!(first_refused, None | Some(50)),
        "{refused_email}: {first_refused:?}"
    );
    let n = taken.len();
    let rejoin = manychat_join(&client, &app.address, &format!("6{n:05}"), &refused_email).await;
    assert!(sets_points(&rejoin), "{rejoin}");
    assert_eq!(
        admin_points(&client, &app.address, &refused_email).await,
        Some(50),
        "one signup bonus, whether or not the refused join had happened"
    );
    // A join taken before the disk filled was on disk when it was answered: the last one, and a
    // spread of the others (the admin route's rate limit allows a few dozen look-ups a minute).
    let step = (taken.len() / 10).max(1);
    let sample = taken.iter().step_by(step).chain(taken.last());
    for email in sample {
        assert_eq!(
            admin_points(&client, &app.address, email).await,
            Some(50),
            "{email}, taken before the disk filled"
        );
    }
    let welcome = manychat_join(&client, &app.address, "5002", "bea@example.com").await;
    assert!(sets_points(&welcome), "{welcome}");
    assert_eq!(
        admin_points(&client, &app.address, "bea@example.com").await,
        Some(50)
    );
    // Meta's redelivery of the webhook is taken now and answered.
    let webhook = post_webhook(&client, &app.address, &body).await;
    assert_eq!(webhook.status(), 200);
    graph.wait_for_sent(1, Duration::from_secs(10)).await;
    let logs = app.terminate_and_collect();
    assert!(!logs.contains("final store flush failed"), "{logs}");
}
