//! Mail records through an export and an import.

use super::super::super::SledStore;
use super::super::tests::{begin, due, join_at, open, sent, statement, t0};
use crate::domain::mail::*;
use crate::domain::*;
use crate::store::*;
use chrono::Duration;

fn export_of(store: &SledStore) -> String {
    let mut out = Vec::new();
    crate::backup::export(store, &mut out, &mut |_| {}).unwrap();
    String::from_utf8(out).unwrap()
}

fn import_into(dir: &tempfile::TempDir, text: &str) -> SledStore {
    let store = SledStore::open_for_restore(dir.path(), 8 << 20).unwrap();
    crate::backup::import(&store, &mut text.as_bytes(), &mut |_| {}).unwrap();
    store
}

/// The lines without the header's `exported_at`.
fn comparable(text: &str) -> Vec<serde_json::Value> {
    let mut lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    lines[0].as_object_mut().unwrap().remove("exported_at");
    lines
}

#[test]
fn a_move_keeps_mail_states_due_mails_unsent_mail_and_the_link_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let ana = join_at(&store, "1", t0());
    let bob = join_at(&store, "2", t0());
    let at = t0() + Duration::days(28);
    let mail = sent(begin(&store, &statement(ana, at), at));
    store.set_unsubscribed(bob, true, t0()).unwrap();
    let reminder = DueMail {
        coupon: Some(CouponCode::from_stored("MUG-1".into())),
        ..due(bob, MailKind::CouponReminder, t0() + Duration::days(10))
    };
    store.schedule_mail(reminder).unwrap();
    let key = store.mail_link_key().unwrap();
    let first = export_of(&store);
    // The statements are where `next_statement_at` says: only the reminder is listed.
    let trailer: serde_json::Value = serde_json::from_str(first.lines().last().unwrap()).unwrap();
    assert_eq!(trailer["counts"]["due_mails"], 1, "{first}");
    let far = t0() + Duration::days(400);

    let moved_dir = tempfile::tempdir().unwrap();
    let moved = import_into(&moved_dir, &first);
    assert_eq!(comparable(&export_of(&moved)), comparable(&first));
    for id in [ana, bob] {
        assert_eq!(moved.mail_state(id).unwrap(), store.mail_state(id).unwrap());
    }
    assert_eq!(
        moved.due_mails(far, 10).unwrap(),
        store.due_mails(far, 10).unwrap()
    );
    assert_eq!(moved.due_mails(far, 10).unwrap().len(), 3);
    assert_eq!(moved.unsent_mails().unwrap(), vec![mail.clone()]);
    assert_eq!(moved.mail_link_key().unwrap(), key);
    // Nobody is missing a statement, and new sends get ids of their own.
    let policy = MailPolicy::default();
    assert_eq!(moved.ensure_statement_schedule(&policy, at).unwrap(), 0);
    let next = at + Duration::days(28);
    moved.set_unsubscribed(bob, false, at).unwrap();
    let again = sent(begin(&moved, &statement(bob, at), at + Duration::days(5)));
    assert!(again.id > mail.id);
    assert!(moved.mail_state(bob).unwrap().next_statement_at > Some(next));
}

#[test]
fn members_of_a_backup_without_mail_get_their_statements_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let ana = join_at(&store, "1", t0());
    // As an export written before mail existed: no mail lines, no mail counts.
    let old: Vec<String> = export_of(&store)
        .lines()
        .filter(|l| !l.contains("\"type\":\"member_mail\""))
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if let Some(counts) = v.get_mut("counts").and_then(|c| c.as_object_mut()) {
                counts.retain(|k, _| !["member_mails", "due_mails"].contains(&k.as_str()));
            }
            v.to_string()
        })
        .collect();
    let moved_dir = tempfile::tempdir().unwrap();
    let moved = open(&moved_dir);
    // The new store was started once before the import: its backfill found nobody.
    assert_eq!(
        moved
            .ensure_statement_schedule(&MailPolicy::default(), t0())
            .unwrap(),
        0
    );
    drop(moved);
    let moved = import_into(&moved_dir, &(old.join("\n") + "\n"));
    assert_eq!(moved.mail_state(ana).unwrap(), MailState::default());
    let now = t0() + Duration::days(30);
    let policy = MailPolicy::default();
    assert_eq!(moved.ensure_statement_schedule(&policy, now).unwrap(), 1);
    let when = t0() + Duration::days(56);
    assert_eq!(
        moved.due_mails(when, 10).unwrap(),
        vec![statement(ana, when)]
    );
}
