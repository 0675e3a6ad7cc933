//! The one-time statement backfill.

use super::super::tests::{join_at, open, statement, t0};
use crate::domain::mail::*;
use crate::store::*;
use chrono::Duration;

#[test]
fn the_backfill_schedules_members_without_a_statement_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let now = t0();
    let old = join_at(&store, "1", now - Duration::days(60));
    let fresh = join_at(&store, "2", now - Duration::days(3));
    let current = join_at(&store, "3", now);
    // What a store written before joins scheduled statements holds: no mail records for
    // the first two.
    for tree in [&store.mail.due, &store.mail.due_by] {
        tree.clear().unwrap();
    }
    for id in [old, fresh] {
        store
            .mail
            .state
            .remove(crate::store::keys::member(id))
            .unwrap();
    }
    let policy = MailPolicy::default();
    store.set_mail_policy(policy);
    let mine = now + Duration::days(28);
    store.schedule_mail(statement(current, mine)).unwrap();
    assert_eq!(store.ensure_statement_schedule(&policy, now).unwrap(), 2);
    let every = Duration::days(28);
    let want = vec![
        statement(old, now - Duration::days(60) + every * 3),
        statement(fresh, now - Duration::days(3) + every),
        statement(current, mine),
    ];
    assert_eq!(store.due_mails(now + every, 10).unwrap(), want);
    assert_eq!(
        store.mail_state(old).unwrap().next_statement_at,
        Some(now + Duration::days(24))
    );
    // Marked: a second call reads no member (this one would be scheduled otherwise).
    store
        .mail
        .state
        .remove(crate::store::keys::member(old))
        .unwrap();
    assert_eq!(store.ensure_statement_schedule(&policy, now).unwrap(), 0);
}

#[test]
fn the_first_statement_date_of_a_cycle_is_not_in_the_past() {
    let every = Duration::days(28);
    let j = t0();
    assert_eq!(super::first_due(j, every, j), j + every);
    assert_eq!(super::first_due(j, every, j + every), j + every);
    let just_after = j + every + Duration::milliseconds(1);
    assert_eq!(super::first_due(j, every, just_after), j + every * 2);
    let years = j + Duration::days(3000);
    let at = super::first_due(j, every, years);
    assert!(at >= years && at - every < years && (at - j).num_days() % 28 == 0);
}
