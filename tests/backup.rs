//! Backups and moving house: `GET /admin/export` streams the whole store as NDJSON while the
//! service runs; `loyalty_bot::backup::import` loads such a file into an empty store, all or
//! nothing; export → import → export gives the same records, and the imported store serves
//! (an operator's adjustment retried after the move is answered as the first time, not applied
//! again).

mod common;

use chrono::Utc;
use common::{spawn_app, spawn_app_with, TestApp, ADMIN_TOKEN};
use loyalty_bot::backup::{self, BackupError};
use loyalty_bot::domain::{
    Channel, ChatIdentity, Email, MemberId, OrderNumber, Points, Profile, ReversalReason,
};
use loyalty_bot::program::{JoinResult, RedeemResult};
use loyalty_bot::store::{LoyaltyStore, NewMember, SledStore, StoreError};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const PAGE: &str = "104857600000001";
const BO: &str = "6915800000000009";
const CY: &str = "6915800000000010";

/// A Messenger message from `psid` (`message`: its text, maybe a tapped quick reply), signed
/// and posted as Meta does.
async fn messenger(app: &TestApp, psid: &str, mid: &str, ts: i64, mut message: Value) {
    message["mid"] = json!(mid);
    let event = json!({"sender": {"id": psid}, "recipient": {"id": PAGE}, "timestamp": ts,
        "message": message});
    let body = json!({"object": "page", "entry": [{"id": PAGE, "time": ts, "messaging": [event]}]});
    let res = app
        .post_messenger_webhook("/webhooks/messenger", &serde_json::to_vec(&body).unwrap())
        .await;
    assert_eq!(res.status(), 200);
}

async fn join(app: &TestApp, id: &str, email: &str) -> loyalty_bot::domain::Member {
    let who = ChatIdentity::new(Channel::Manychat, id).unwrap();
    let email = Email::parse(email).unwrap();
    match app
        .program()
        .join(&who, email, Profile::default())
        .await
        .unwrap()
    {
        JoinResult::Joined(a) => a.member,
        other => panic!("{other:?}"),
    }
}

/// An operator's adjustment of Max over HTTP, under its `Idempotency-Key`.
async fn adjust_max(app: &TestApp, max: MemberId) -> reqwest::Response {
    app.client()
        .post(app.url(&format!("/admin/members/{max}/adjustments")))
        .bearer_auth(ADMIN_TOKEN)
        .header("Idempotency-Key", "goodwill-7f3a")
        .json(&json!({"points": 25, "reason": "late parcel"}))
        .send()
        .await
        .unwrap()
}

/// A store with some of everything, built through the running application: members with
/// claims, a refund, a coupon issued and one cancelled (with their request keys), an
/// operator's adjustment (its answer is returned), a refund before any claim, a Messenger
/// conversation in progress whose reply waits for the Send API, and a Messenger event held
/// back from processing.
async fn varied_app() -> (TestApp, Value) {
    let app = spawn_app().await;
    let program = app.program();
    for (n, total) in [("1001", "210.00"), ("1002", "42.50")] {
        app.shop.add_order(n, "ana@example.com", total, "paid");
    }
    app.shop
        .add_order("2001", "max@example.com", "300.00", "paid");
    let ana = join(&app, "1", "ana@example.com").await;
    let max = join(&app, "2", "max@example.com").await;
    for n in ["1001", "1002"] {
        program.claim(&ana, order(n)).await.unwrap();
    }
    program.claim(&max, order("2001")).await.unwrap();
    let redeemed = program.redeem(&ana, "free-mug", Some("tap-1")).await;
    assert!(matches!(redeemed.unwrap(), RedeemResult::Redeemed { .. }));
    app.shop.fail_coupons_with(500);
    let refused = program.redeem(&max, "free-mug", Some("tap-2")).await;
    assert!(matches!(
        refused.unwrap(),
        RedeemResult::ShopUnavailable { .. }
    ));
    app.shop.heal();
    for n in ["1002", "9999"] {
        program
            .reverse_order(order(n), ReversalReason::Refunded)
            .await
            .unwrap();
    }
    drop(program);
    let adjusted = adjust_max(&app, max.id).await;
    assert_eq!(adjusted.status(), 201);
    let adjusted: Value = adjusted.json().await.unwrap();

    // Bo starts joining on Messenger and is asked for their email: the conversation waits
    // for the answer. Then the Send API goes down, and the answer to Cy waits in the queue.
    let ts = 1_763_846_400_000;
    messenger(&app, BO, "m-1", ts, json!({"text": "join"})).await;
    app.graph_api
        .wait_for_sent(1, Duration::from_secs(10))
        .await;
    let yes = json!({"text": "Yes, join", "quick_reply": {"payload": "LOYALTY_JOIN_YES"}});
    messenger(&app, BO, "m-2", ts + 1000, yes).await;
    app.graph_api
        .wait_for_sent(2, Duration::from_secs(10))
        .await;
    app.graph_api.go_down();
    messenger(&app, CY, "m-3", ts + 2000, json!({"text": "help"})).await;
    let start = std::time::Instant::now();
    while app.graph_api.received() < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no reply attempted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let res = app
        .client()
        .put(app.url("/admin/messenger/processing"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"held": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Bo's answer is recorded, not processed.
    messenger(
        &app,
        BO,
        "m-4",
        ts + 3000,
        json!({"text": "bo@example.com"}),
    )
    .await;
    (app, adjusted)
}

fn order(n: &str) -> OrderNumber {
    OrderNumber::parse(n).unwrap()
}

async fn export_over_http(app: &TestApp, token: Option<&str>) -> reqwest::Response {
    let mut req = app.client().get(app.url("/admin/export"));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap()
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The lines without the header's `exported_at`, the one thing two exports may differ in.
fn comparable(text: &str) -> Vec<Value> {
    let mut lines = lines(text);
    lines[0].as_object_mut().unwrap().remove("exported_at");
    lines
}

fn export_of(store: &SledStore) -> String {
    let mut out = Vec::new();
    backup::export(store, &mut out, &mut |_| {}).unwrap();
    String::from_utf8(out).unwrap()
}

fn import(store: &SledStore, text: &str) -> Result<backup::ImportSummary, BackupError> {
    backup::import(store, &mut text.as_bytes(), &mut |_| {})
}

fn fresh_store(dir: &Path) -> SledStore {
    SledStore::open_for_restore(dir, 8 << 20).unwrap()
}

#[tokio::test]
async fn export_then_import_then_export_gives_the_same_records_and_the_move_serves() {
    let (app, adjusted) = varied_app().await;
    let res = export_over_http(&app, Some(ADMIN_TOKEN)).await;
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(content_type, "application/x-ndjson");
    let first = res.text().await.unwrap();

    let records = lines(&first);
    let header = &records[0];
    assert_eq!(
        (
            &header["format"],
            &header["version"],
            &header["store_version"]
        ),
        (&json!("loyalty-bot-export"), &json!(1), &json!(1))
    );
    let kinds: Vec<&str> = records[1..]
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    let counts = &records.last().unwrap()["counts"];
    assert_eq!(kinds.last(), Some(&"end"));
    for (kind, count) in [
        ("member", "members"),
        ("order", "orders"),
        ("coupon", "coupons"),
        ("member_mail", "member_mails"),
        ("adjustment_key", "adjustment_keys"),
        ("conversation", "conversations"),
        ("pending_event", "pending_events"),
        ("processed_event", "processed_events"),
    ] {
        let n = kinds.iter().filter(|k| **k == kind).count();
        assert!(n > 0, "no {kind} line in\n{first}");
        assert_eq!(counts[count], n, "{count}");
    }
    // Ana: 50 + 210 + 42 − 200 (mug) − 42 (refund of 1002); her orders and coupon follow her.
    let ana = &records[1];
    assert_eq!(
        (&ana["type"], &ana["email"]),
        (&json!("member"), &json!("ana@example.com"))
    );
    assert_eq!(ana["balance"], 60);
    let sum: i64 = ana["ledger"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["points"].as_i64().unwrap())
        .sum();
    assert_eq!(sum, 60);
    assert_eq!(records[2]["number"], "1001");
    assert_eq!(records[3]["reversal"]["taken"], 42);
    assert_eq!(records[4]["status"], "issued");
    assert_eq!(records[4]["requests"], json!(["tap-1"]));
    assert_eq!(counts["pending_replies"], 1);
    let key = records
        .iter()
        .find(|r| r["type"] == "adjustment_key")
        .unwrap();
    assert_eq!(key["key"], "goodwill-7f3a");
    assert_eq!(key["adjusted"]["entry"]["reason"], "late parcel");
    let unclaimed = records.iter().find(|r| r["number"] == "9999").unwrap();
    assert!(unclaimed.get("claim").is_none() && unclaimed["reversal"].is_object());

    // Into a fresh store, and out again: the same lines.
    let moved = tempfile::tempdir().unwrap();
    let store = fresh_store(moved.path());
    let summary = import(&store, &first).unwrap();
    assert_eq!(serde_json::to_value(summary.counts).unwrap(), *counts);
    let second = export_of(&store);
    assert_eq!(comparable(&second), comparable(&first));
    store.close().unwrap().write_snapshot().unwrap();
    drop(app);

    // The moved store serves: balances; the waiting reply to Cy goes out; Bo's held answer
    // is processed in the conversation that asked for it, so Bo joins; and a newcomer gets an
    // id of their own.
    let app = spawn_app_with(|s| s.store.path = moved.path().to_path_buf()).await;
    assert_eq!(app.balance_of("ana@example.com").await, 60);
    // The operator retries Max's adjustment: answered as the first time, applied once.
    let max = MemberId(adjusted["member_id"].as_u64().unwrap());
    let replayed = adjust_max(&app, max).await;
    assert_eq!(replayed.status(), 201);
    assert_eq!(replayed.headers()["Idempotent-Replayed"], "true");
    assert_eq!(replayed.json::<Value>().await.unwrap(), adjusted);
    let balance = adjusted["points"].as_u64().unwrap();
    assert_eq!(app.balance_of("max@example.com").await, balance);
    app.graph_api
        .wait_for_sent(2, Duration::from_secs(10))
        .await;
    assert_eq!(app.graph_api.texts_to(CY).len(), 1);
    let to_bo = app.graph_api.texts_to(BO);
    assert!(to_bo[0].starts_with("Welcome"), "{to_bo:?}");
    assert_eq!(app.balance_of("bo@example.com").await, 50);
    let newcomer = join(&app, "3", "dee@example.com").await;
    let highest = records
        .iter()
        .filter(|r| r["type"] == "member")
        .map(|r| r["id"].as_u64().unwrap())
        .max()
        .unwrap();
    assert!(newcomer.id > MemberId(highest));
}

#[tokio::test]
async fn the_export_needs_the_admin_token() {
    let app = spawn_app().await;
    for token in [None, Some("nope")] {
        let res = export_over_http(&app, token).await;
        assert_eq!(res.status(), 401, "{token:?}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "unauthorized");
    }
}

/// An export of a small store made with the store's own operations.
fn small_export() -> String {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), 8 << 20).unwrap();
    for (i, email) in ["ana@example.com", "max@example.com"].iter().enumerate() {
        let new = NewMember {
            identity: ChatIdentity::new(Channel::Terminal, &i.to_string()).unwrap(),
            email: Email::parse(email).unwrap(),
            profile: Profile::default(),
            bonus: Points(50),
        };
        store.join(new, Utc::now()).unwrap();
    }
    export_of(&store)
}

fn is_empty(store: &SledStore) -> bool {
    lines(&export_of(store)).last().unwrap()["counts"]
        .as_object()
        .unwrap()
        .values()
        .all(|n| n == 0)
}

#[test]
fn an_import_into_a_store_that_is_not_empty_is_refused_and_changes_nothing() {
    let file = small_export();
    let dir = tempfile::tempdir().unwrap();
    let store = fresh_store(dir.path());
    import(&store, &file).unwrap();
    let Err(e) = import(&store, &file) else {
        panic!("imported twice");
    };
    assert!(matches!(e, BackupError::NotEmpty), "{e}");
    assert!(e.to_string().contains("not empty"), "{e}");
    assert_eq!(comparable(&export_of(&store)), comparable(&file));
}

#[test]
fn a_file_cut_short_is_refused_and_leaves_the_store_empty() {
    let file = small_export();
    let without_trailer: String = file
        .lines()
        .take(file.lines().count() - 1)
        .map(|l| format!("{l}\n"))
        .collect();
    let mid_line = &file[..file.len() - 10];
    for cut in [without_trailer.as_str(), mid_line] {
        let dir = tempfile::tempdir().unwrap();
        let store = fresh_store(dir.path());
        let e = import(&store, cut).unwrap_err();
        assert!(matches!(e, BackupError::Truncated), "{e}");
        assert!(is_empty(&store));
        // Not marked as half-imported: the store opens normally, and takes the whole file.
        drop(store);
        let store = SledStore::open(dir.path(), 8 << 20).unwrap();
        import(&store, &file).unwrap();
    }
}

#[test]
fn a_file_that_is_not_a_current_export_is_refused_before_the_store_is_touched() {
    let file = small_export();
    let mut lines: Vec<String> = file.lines().map(String::from).collect();
    let header = lines[0].clone();
    for (first, expect) in [
        (header.replace("loyalty-bot-export", "other-app"), "format"),
        (
            header.replace("\"version\":1", "\"version\":2"),
            "version 2",
        ),
        ("{\"type\":\"member\"}".to_owned(), "header"),
    ] {
        lines[0] = first;
        let bad = lines.join("\n") + "\n";
        let dir = tempfile::tempdir().unwrap();
        let store = fresh_store(dir.path());
        let e = import(&store, &bad).unwrap_err();
        assert!(e.to_string().contains(expect), "{e}");
        assert!(is_empty(&store));
    }
}

#[test]
fn a_member_whose_balance_is_not_their_ledger_sum_or_wrong_counts_refuse_the_file() {
    let file = small_export();
    let lines: Vec<&str> = file.lines().collect();
    let unbalanced = file.replacen("\"balance\":50", "\"balance\":51", 1);
    let miscounted = file.replace("\"members\":2", "\"members\":3");
    let twice = format!(
        "{}\n{}\n{}\n",
        lines[0],
        [lines[1], lines[1]].join("\n"),
        lines[3]
    );
    for (bad, expect) in [
        (unbalanced, "line 2"),
        (miscounted, "members"),
        (twice, "twice"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = fresh_store(dir.path());
        let e = import(&store, &bad).unwrap_err();
        assert!(e.to_string().contains(expect), "{expect}: {e}");
        assert!(is_empty(&store));
    }
}

/// An export of one member, Ana, with an operator's adjustment under the key `k-1`.
fn export_with_an_adjustment() -> String {
    use loyalty_bot::domain::{Adjustment, RequestKey};
    use loyalty_bot::store::{AdjustOutcome, JoinOutcome};
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), 8 << 20).unwrap();
    let new = NewMember {
        identity: ChatIdentity::new(Channel::Terminal, "ana").unwrap(),
        email: Email::parse("ana@example.com").unwrap(),
        profile: Profile::default(),
        bonus: Points(50),
    };
    let Ok(JoinOutcome::Joined(ana)) = store.join(new, Utc::now()) else {
        panic!("no join");
    };
    let (gift, key) = (
        Adjustment::new(7, "gift").unwrap(),
        RequestKey::parse("k-1"),
    );
    let outcome = store.adjust(ana.member.id, &gift, &key.unwrap(), Utc::now());
    assert!(
        matches!(outcome, Ok(AdjustOutcome::Applied(_))),
        "{outcome:?}"
    );
    export_of(&store)
}

#[test]
fn an_adjustment_key_twice_or_without_its_member_or_its_adjustment_refuses_the_file() {
    let file = export_with_an_adjustment();
    let lines: Vec<&str> = file.lines().collect();
    // Ana, her mail, her adjustment's key.
    let (member, mail, key) = (lines[1], lines[2], lines[3]);
    assert!(key.contains("\"type\":\"adjustment_key\""), "{file}");
    let with = |member: &str, keys: &[&str]| {
        let mut out = vec![lines[0], member];
        out.extend(keys);
        out.push(mail);
        out.extend(&lines[4..]);
        out.join("\n") + "\n"
    };
    let elsewhere = key.replace("\"member\":1,", "\"member\":9,");
    let other_reason = key.replace("\"reason\":\"gift\"", "\"reason\":\"gifts\"");
    let bad_key = key.replace("\"key\":\"k-1\"", "\"key\":\"k 1\"");
    for (bad, expect) in [
        (
            with(member, &[key, key]),
            "line 4: adjustment key k-1 twice",
        ),
        (
            with(member, &[&elsewhere]),
            "line 3: adjustment key k-1 of unknown member 9",
        ),
        (
            with(member, &[&other_reason]),
            "its adjustment is not in member 1's ledger",
        ),
        (with(member, &[&bad_key]), "no request key"),
    ] {
        assert_ne!(bad, file, "{expect}: the fault was not planted");
        let dir = tempfile::tempdir().unwrap();
        let store = fresh_store(dir.path());
        let e = import(&store, &bad).unwrap_err();
        assert!(e.to_string().contains(expect), "{expect}: {e}");
        assert!(is_empty(&store));
    }
    let dir = tempfile::tempdir().unwrap();
    let store = fresh_store(dir.path());
    let summary = import(&store, &with(member, &[key])).unwrap();
    assert_eq!(summary.counts.adjustment_keys, 1);
}

#[test]
fn an_import_killed_half_way_keeps_the_store_from_serving_until_an_import_starts_over() {
    let file = small_export();
    let dir = tempfile::tempdir().unwrap();
    {
        // What a kill after the first records leaves: the mark, and part of the file.
        let store = fresh_store(dir.path());
        store.restore_begin().unwrap();
        let first =
            loyalty_bot::store::backup::BackupRecord::from_json(file.lines().nth(1).unwrap());
        store.restore(first.unwrap().unwrap()).unwrap();
        store.flush_now().unwrap();
    }
    let Err(e) = SledStore::open(dir.path(), 8 << 20) else {
        panic!("a half-imported store opened");
    };
    assert!(matches!(e, StoreError::RestoreUnfinished), "{e}");
    assert!(e.to_string().contains("import"), "{e}");
    let store = fresh_store(dir.path());
    import(&store, &file).unwrap();
    assert_eq!(comparable(&export_of(&store)), comparable(&file));
    drop(store);
    SledStore::open(dir.path(), 8 << 20).unwrap();
}

#[test]
fn after_an_import_newcomers_get_ids_above_every_imported_member() {
    let file = small_export();
    // Ids far beyond what the new store's id counter would reach by itself, even reopened.
    let file = file.replacen("\"id\":1,", "\"id\":7000001,", 1).replacen(
        "\"id\":2,",
        "\"id\":7000002,",
        1,
    );
    // Their mail records (state and statement due) name them too.
    let file = file
        .replace("\"member\":1,", "\"member\":7000001,")
        .replace("\"member\":2,", "\"member\":7000002,");
    let newcomer = |n: &str| NewMember {
        identity: ChatIdentity::new(Channel::Terminal, n).unwrap(),
        email: Email::parse(&format!("{n}@example.com")).unwrap(),
        profile: Profile::default(),
        bonus: Points(50),
    };
    let joined = |store: &SledStore, n: &str| match store.join(newcomer(n), Utc::now()) {
        Ok(loyalty_bot::store::JoinOutcome::Joined(a)) => a.member.id,
        other => panic!("{other:?}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let store = fresh_store(dir.path());
    import(&store, &file).unwrap();
    assert!(joined(&store, "dee") > MemberId(7000002));
    drop(store);
    let store = SledStore::open(dir.path(), 8 << 20).unwrap();
    assert!(joined(&store, "eve") > MemberId(7000002));
    let ana = store.member(MemberId(7000001)).unwrap().unwrap();
    assert_eq!(ana.member.email.as_str(), "ana@example.com");
}

#[test]
fn every_member_in_an_export_taken_under_load_has_the_balance_of_their_ledger() {
    use loyalty_bot::domain::{CouponCode, OrderStatus, Reward, VerifiedOrder};
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path(), 8 << 20).unwrap());
    let ids = twenty_members(&store);
    let stop = Arc::new(AtomicBool::new(false));
    // Each writer credits orders and spends points, many ledger entries a second.
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let (store, stop, ids) = (Arc::clone(&store), Arc::clone(&stop), ids.clone());
            std::thread::spawn(move || {
                let reward = Reward {
                    id: "pen".into(),
                    title: "Pen".into(),
                    points: Points(3),
                    product_ids: vec![],
                    checkout_url: "https://shop.example/pen".into(),
                    value: None,
                    discount: Default::default(),
                };
                let mut n = 0;
                while !stop.load(Relaxed) {
                    let id = ids[n % ids.len()];
                    let order = VerifiedOrder {
                        id: loyalty_bot::domain::OrderId::from(&order(&format!("{w}-{n}"))),
                        number: order(&format!("{w}-{n}")),
                        email: Email::parse("x@example.com").unwrap(),
                        total: "5.00".parse().unwrap(),
                        currency: "EUR".into(),
                        status: OrderStatus::Paid,
                    };
                    store
                        .claim_order(id, &order, Points(5), Utc::now())
                        .unwrap();
                    let (code, now) = (CouponCode::generate("pen"), Utc::now());
                    store
                        .redeem_reward(id, &reward, code, now, now, None)
                        .unwrap();
                    n += 1;
                }
            })
        })
        .collect();
    for _ in 0..15 {
        // The export refuses to write a member whose balance is not their ledger's sum.
        let text = export_of(&store);
        for member in lines(&text).iter().filter(|l| l["type"] == "member") {
            let ledger = member["ledger"].as_array().unwrap();
            let sum: i64 = ledger.iter().map(|e| e["points"].as_i64().unwrap()).sum();
            assert_eq!(member["balance"].as_i64(), Some(sum));
        }
    }
    stop.store(true, Relaxed);
    for w in writers {
        w.join().unwrap();
    }
}

#[test]
fn imported_balances_waiting_for_their_member_travel_with_the_export() {
    let dir = tempfile::tempdir().unwrap();
    {
        // As the balance import keeps them: by normalised email, the record as JSON.
        let db = common::raw_sled(dir.path());
        let tree = db.open_tree("imported_balances").unwrap();
        let zoe = json!({"email": "zoe@example.com", "points": 120,
            "imported_at": "2026-11-01T10:00:00Z", "joined_at": "2019-03-02T00:00:00Z"});
        tree.insert("zoe@example.com", serde_json::to_vec(&zoe).unwrap())
            .unwrap();
        db.flush().unwrap();
    }
    let store = SledStore::open(dir.path(), 8 << 20).unwrap();
    let first = export_of(&store);
    let line = lines(&first)
        .into_iter()
        .find(|l| l["type"] == "imported_balance")
        .expect("an imported_balance line");
    assert_eq!(
        (&line["email"], &line["points"]),
        (&json!("zoe@example.com"), &json!(120))
    );
    let moved = tempfile::tempdir().unwrap();
    let copy = fresh_store(moved.path());
    import(&copy, &first).unwrap();
    assert_eq!(comparable(&export_of(&copy)), comparable(&first));
}

#[tokio::test]
async fn an_export_that_fails_half_way_is_cut_off_before_its_trailer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let store = SledStore::open(&path, 8 << 20).unwrap();
        for i in 0..3 {
            let new = NewMember {
                identity: ChatIdentity::new(Channel::Terminal, &i.to_string()).unwrap(),
                email: Email::parse(&format!("m{i}@example.com")).unwrap(),
                profile: Profile::default(),
                bonus: Points(50),
            };
            store.join(new, Utc::now()).unwrap();
        }
        store.close().unwrap().write_snapshot().unwrap();
        // The last member's cached balance no longer matches their ledger.
        let db = common::raw_sled(&path);
        let members = db.open_tree("members").unwrap();
        let (k, v) = members.last().unwrap().unwrap();
        let text = String::from_utf8(v.to_vec()).unwrap();
        members
            .insert(
                k,
                text.replace("\"balance\":50", "\"balance\":51").as_bytes(),
            )
            .unwrap();
        db.flush().unwrap();
    }
    let app = spawn_app_with(|s| s.store.path = path.clone()).await;
    // The export fails after its first lines are on their way, so the connection breaks off:
    // before the client has read the head (on a loaded machine the head may still be in
    // actix's buffer when the connection is dropped), or in the body. Either way no trailer.
    let sent = app.client().get(app.url("/admin/export"));
    let Ok(res) = sent.bearer_auth(ADMIN_TOKEN).send().await else {
        return;
    };
    assert_eq!(res.status(), 200, "the failure comes after the first bytes");
    match res.text().await {
        Err(_) => {}
        Ok(text) => assert!(!text.contains("\"type\":\"end\""), "{text}"),
    }
}

#[test]
fn an_export_taken_while_adjustments_run_has_a_key_exactly_for_each_adjustment_it_holds() {
    use loyalty_bot::domain::{Adjustment, RequestKey};
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path(), 8 << 20).unwrap());
    let ids = twenty_members(&store);
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let (store, stop, ids) = (Arc::clone(&store), Arc::clone(&stop), ids.clone());
            std::thread::spawn(move || {
                let gift = Adjustment::new(1, "gift").unwrap();
                let mut n = 0;
                while !stop.load(Relaxed) {
                    // Members read late in the export are adjusted most: from the last one.
                    let id = ids[ids.len() - 1 - n % ids.len()];
                    let key = RequestKey::parse(&format!("{w}-{n}")).unwrap();
                    store.adjust(id, &gift, &key, Utc::now()).unwrap();
                    n += 1;
                }
            })
        })
        .collect();
    let exports: Vec<String> = (0..10).map(|_| export_of(&store)).collect();
    stop.store(true, Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    for text in exports {
        let records = lines(&text);
        let adjustments = records
            .iter()
            .filter(|r| r["type"] == "member")
            .flat_map(|m| m["ledger"].as_array().unwrap())
            .filter(|e| e["kind"] == "adjustment")
            .count();
        let keys = records
            .iter()
            .filter(|r| r["type"] == "adjustment_key")
            .count();
        assert_eq!(keys, adjustments);
        // Each key with its member's adjustment, as the import checks.
        let moved = tempfile::tempdir().unwrap();
        import(&fresh_store(moved.path()), &text).unwrap();
    }
}

/// Twenty members joined straight in the store, with their signup bonus.
fn twenty_members(store: &SledStore) -> Vec<MemberId> {
    (0..20)
        .map(|i| {
            let new = NewMember {
                identity: ChatIdentity::new(Channel::Terminal, &i.to_string()).unwrap(),
                email: Email::parse(&format!("m{i}@example.com")).unwrap(),
                profile: Profile::default(),
                bonus: Points(50),
            };
            match store.join(new, Utc::now()).unwrap() {
                loyalty_bot::store::JoinOutcome::Joined(a) => a.member.id,
                other => panic!("{other:?}"),
            }
        })
        .collect()
}

#[test]
fn orders_kept_under_a_shops_own_id_move_with_their_number_total_and_changes() {
    use loyalty_bot::domain::{OrderId, OrderState, OrderStatus, VerifiedOrder};
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), 8 << 20).unwrap();
    let now = Utc::now();
    let join = |psid: &str, email: &str| {
        let new = NewMember {
            identity: ChatIdentity::new(Channel::Messenger, psid).unwrap(),
            email: Email::parse(email).unwrap(),
            profile: Profile::default(),
            bonus: Points(50),
        };
        match store.join(new, now).unwrap() {
            loyalty_bot::store::JoinOutcome::Joined(a) => a.member.id,
            other => panic!("{other:?}"),
        }
    };
    let ana = join("1", "ana@example.com");
    let bo = join("2", "bo@example.com");
    let gid = |n: u64| OrderId::parse(&format!("gid://shopify/Order/{n}")).unwrap();
    let state = |n: u64, number: &str, status: &str, total: &str| {
        OrderState::of(
            gid(n),
            OrderNumber::parse(number).unwrap(),
            &OrderStatus::parse(status),
            total.parse().unwrap(),
            1.into(),
        )
    };
    // Ana claims #1001 (59.90), then it is refunded in part: 39 left.
    let order = VerifiedOrder {
        id: gid(1),
        number: OrderNumber::parse("1001").unwrap(),
        email: Email::parse("ana@example.com").unwrap(),
        total: "59.90".parse().unwrap(),
        currency: "EUR".into(),
        status: OrderStatus::Paid,
    };
    store.claim_order(ana, &order, Points(59), now).unwrap();
    let partial = state(1, "1001", "partially_refunded", "39.90");
    store.settle_order(&partial, None, now).unwrap();
    // Bo's #1002 is credited automatically.
    store
        .settle_order(&state(2, "1002", "paid", "12.00"), Some(bo), now)
        .unwrap();

    let first = export_of(&store);
    let orders: Vec<Value> = lines(&first)
        .into_iter()
        .filter(|r| r["type"] == "order")
        .collect();
    assert_eq!(orders.len(), 2, "{first}");
    assert_eq!(orders[0]["number"], "1001");
    assert_eq!(orders[0]["id"], "gid://shopify/Order/1");
    assert_eq!(orders[0]["total"], "59.90");
    assert_eq!(orders[0]["earned"], 39);

    let moved = tempfile::tempdir().unwrap();
    let restored = fresh_store(moved.path());
    import(&restored, &first).unwrap();
    assert_eq!(comparable(&export_of(&restored)), comparable(&first));
    let standing = restored.order_standing(&gid(1)).unwrap().unwrap();
    assert_eq!(
        (
            standing.claim.map(|c| c.0),
            standing.earned,
            standing.number
        ),
        (
            Some(ana),
            Points(39),
            Some(OrderNumber::parse("1001").unwrap())
        )
    );
    // The moved store goes on from there: the rest refunded takes back the 39, not the 59.
    let out = restored
        .settle_order(&state(1, "1001", "refunded", "0.00"), None, now)
        .unwrap();
    assert!(
        matches!(out, loyalty_bot::store::SettleOutcome::Changed { taken, .. } if taken == Points(39)),
        "{out:?}"
    );
    let again = restored
        .settle_order(&state(2, "1002", "paid", "12.00"), Some(bo), now)
        .unwrap();
    assert_eq!(
        again,
        loyalty_bot::store::SettleOutcome::Unchanged { member: Some(bo) }
    );
}
