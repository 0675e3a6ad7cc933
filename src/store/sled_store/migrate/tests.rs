//! The migration from layout 0 cut off as a crash would cut it: after any of its steps, or
//! part-way through mending the claims. The next open finishes it, and a step run again
//! changes nothing.

use super::super::SledStore;
use super::*;
use crate::domain::{OrderNumber, Points, ReversalReason};
use crate::store::{EventQueue, LoyaltyStore, ReverseOutcome};
use serde_json::json;
use std::path::Path;

const EVENTS: usize = 25;

fn put(db: &sled::Db, tree: &str, key: impl AsRef<[u8]>, value: Value) {
    let tree = db.open_tree(tree).unwrap();
    tree.insert(key.as_ref(), serde_json::to_vec(&value).unwrap())
        .unwrap();
}

/// A layout-0 store: member 1 with claims of orders 1001 (42) and 1002 (7) stored without
/// their points, events waiting in inbox slots, and replies in the outbox and in a slot.
fn plant(path: &Path) {
    let db = crate::store::sled_store::raw_db(path);
    let id = db.generate_id().unwrap() + 1;
    let at = "2026-11-01T10:00:00Z";
    let member = json!({"id": id, "email": "ana@example.com",
        "identity": {"channel": "terminal", "id": "ana"}, "joined_at": at});
    put(
        &db,
        "members",
        id.to_be_bytes(),
        json!({"member": member, "balance": 99, "next_seq": 3}),
    );
    let entries = [
        json!({"kind": "signup_bonus", "points": 50, "at": at}),
        json!({"kind": "order_credit", "points": 42, "order_number": "1001", "at": at}),
        json!({"kind": "order_credit", "points": 7, "order_number": "1002", "at": at}),
    ];
    for (seq, entry) in entries.into_iter().enumerate() {
        put(
            &db,
            "ledger",
            keys::member_seq(MemberId(id), seq as u64),
            entry,
        );
    }
    for n in ["1001", "1002"] {
        put(&db, "orders", n, json!({"member": id, "at": at}));
    }
    for i in 0..EVENTS {
        let key = format!("e{i:02}");
        let event = json!({"key": key, "sender": "p", "timestamp_ms": i,
            "payload": {"text": "x".repeat(600)}});
        put(
            &db,
            "inbox",
            &key,
            json!({"state": "pending", "event": event}),
        );
    }
    let reply = |to: &str, n: u32| json!({"recipient": "p", "body": {"n": n}, "in_reply_to": to});
    put(&db, "outbox", 5u64.to_be_bytes(), reply("a", 0));
    put(&db, "outbox", 6u64.to_be_bytes(), reply("a", 1));
    put(&db, "inbox", "a", json!({"state": "done", "at": at}));
    put(
        &db,
        "inbox",
        "c",
        json!({"state": "done", "at": at, "seq": 3, "replies": [reply("c", 2)]}),
    );
    db.flush().unwrap();
}

/// Everything layout 0 promised, kept by layout 1.
fn check(path: &Path) {
    let store = SledStore::open(path, 8 << 20).unwrap();
    let pending: Vec<_> = store
        .pending_inbound()
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    let expected: Vec<_> = (0..EVENTS).map(|i| format!("e{i:02}")).collect();
    assert_eq!(pending, expected, "each waiting event once");
    let replies: Vec<_> = store
        .pending_outbound()
        .unwrap()
        .into_iter()
        .map(|(_, m)| m.body["n"].as_u64().unwrap())
        .collect();
    assert_eq!(replies, [0, 1, 2], "each reply once, in order");
    for (n, points) in [("1001", 42), ("1002", 7)] {
        let order = OrderNumber::parse(n).unwrap();
        let outcome = store.reverse_order(
            &(&order).into(),
            ReversalReason::Refunded,
            chrono::Utc::now(),
        );
        let Ok(ReverseOutcome::Reversed { reversal, .. }) = outcome else {
            panic!("{n}: {outcome:?}");
        };
        assert_eq!(reversal.credited, Points(points));
    }
    drop(store);
    let db = crate::store::sled_store::raw_db(path);
    assert_eq!(
        version(&db.open_tree("meta").unwrap()).unwrap(),
        Some(CURRENT)
    );
}

type Step = fn(&sled::Db, &Atomic) -> Result<usize, StoreError>;

const STEPS: [Step; 3] = [
    |db, _| claims_get_their_points(db),
    pending_slots_to_intake,
    outbox_into_inbox,
];

#[test]
fn a_migration_cut_off_after_any_step_is_finished_by_the_next_open() {
    for done in 0..=STEPS.len() {
        let dir = tempfile::tempdir().unwrap();
        plant(dir.path());
        {
            let db = crate::store::sled_store::raw_db(dir.path());
            let atomic = Atomic::recover(&db).unwrap();
            for step in &STEPS[..done] {
                step(&db, &atomic).unwrap();
            }
            db.flush().unwrap();
        }
        check(dir.path());
    }
}

#[test]
fn each_step_run_again_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    plant(dir.path());
    let db = crate::store::sled_store::raw_db(dir.path());
    let atomic = Atomic::recover(&db).unwrap();
    let moved: Vec<usize> = STEPS.iter().map(|s| s(&db, &atomic).unwrap()).collect();
    assert_eq!(moved, [2, EVENTS, 2]);
    let again: Vec<usize> = STEPS.iter().map(|s| s(&db, &atomic).unwrap()).collect();
    assert_eq!(again, [0, 0, 0]);
}

#[test]
fn claims_cut_off_half_way_are_finished_and_keep_their_points() {
    let dir = tempfile::tempdir().unwrap();
    plant(dir.path());
    {
        let db = crate::store::sled_store::raw_db(dir.path());
        // 1001 mended already, 1002 not.
        let orders = db.open_tree("orders").unwrap();
        let mut record: Map<String, Value> =
            serde_json::from_slice(&orders.get("1001").unwrap().unwrap()).unwrap();
        record.insert("points".into(), 42.into());
        orders
            .insert("1001", serde_json::to_vec(&record).unwrap())
            .unwrap();
        db.flush().unwrap();
    }
    check(dir.path());
}
