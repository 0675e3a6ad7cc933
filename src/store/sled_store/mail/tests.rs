//! The due index, mail state and the outbox on sled: one rule per test.

use super::super::SledStore;
use crate::domain::mail::*;
use crate::domain::*;
use crate::store::*;
use chrono::{Duration, TimeZone};

pub(super) fn open(dir: &tempfile::TempDir) -> SledStore {
    SledStore::open(dir.path(), 8 << 20).unwrap()
}

pub(super) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap()
}

pub(super) fn join_at(store: &SledStore, psid: &str, at: DateTime<Utc>) -> MemberId {
    let new = NewMember {
        identity: ChatIdentity::new(Channel::Messenger, psid).unwrap(),
        email: Email::parse(&format!("m{psid}@example.com")).unwrap(),
        profile: Profile::default(),
        bonus: Points(50),
    };
    match store.join(new, at).unwrap() {
        JoinOutcome::Joined(a) => a.member.id,
        other => panic!("{other:?}"),
    }
}

pub(super) fn due(member: MemberId, kind: MailKind, at: DateTime<Utc>) -> DueMail {
    DueMail {
        at,
        member,
        kind,
        coupon: None,
    }
}

pub(super) fn statement(member: MemberId, at: DateTime<Utc>) -> DueMail {
    due(member, MailKind::Statement, at)
}

pub(super) fn begin(store: &SledStore, d: &DueMail, now: DateTime<Utc>) -> MailStart {
    let policy = MailPolicy::default();
    store.begin_mail(d, &policy, "<m@x>".into(), now).unwrap()
}

pub(super) fn sent(start: MailStart) -> OutboxMail {
    match start {
        MailStart::Send(mail) => mail,
        other => panic!("expected a send, got {other:?}"),
    }
}

#[test]
fn a_join_schedules_the_first_statement_a_period_later() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.set_mail_policy(MailPolicy {
        statement_every: Duration::days(7),
        ..MailPolicy::default()
    });
    let ana = join_at(&store, "1", t0());
    let first = t0() + Duration::days(7);
    assert_eq!(
        store.mail_state(ana).unwrap().next_statement_at,
        Some(first)
    );
    assert!(store
        .due_mails(first - Duration::nanoseconds(1), 10)
        .unwrap()
        .is_empty());
    assert_eq!(
        store.due_mails(first, 10).unwrap(),
        vec![statement(ana, first)]
    );
}

#[test]
fn due_mails_are_the_entries_due_by_now_earliest_first_up_to_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let now = t0();
    // Before 1970 too: the time key orders negative seconds first.
    let times = [
        now - Duration::days(20_000),
        now - Duration::hours(1),
        now - Duration::seconds(1),
        now,
    ];
    let mut want = Vec::new();
    for (i, at) in times.iter().enumerate().rev() {
        let d = due(MemberId(i as u64 + 1), MailKind::RewardReminder, *at);
        store.schedule_mail(d.clone()).unwrap();
        want.insert(0, d);
    }
    store
        .schedule_mail(due(
            MemberId(9),
            MailKind::RewardReminder,
            now + Duration::nanoseconds(1),
        ))
        .unwrap();
    assert_eq!(store.due_mails(now, 100).unwrap(), want);
    assert_eq!(store.due_mails(now, 2).unwrap(), want[..2].to_vec());
}

#[test]
fn scheduling_again_replaces_the_entry_of_the_same_member_kind_and_coupon() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let now = t0();
    let m = MemberId(1);
    let coupon = |c: &str| DueMail {
        coupon: Some(CouponCode::from_stored(c.into())),
        ..due(m, MailKind::CouponReminder, now)
    };
    store.schedule_mail(coupon("A-1")).unwrap();
    store.schedule_mail(coupon("B-2")).unwrap();
    store
        .schedule_mail(due(m, MailKind::RewardReminder, now))
        .unwrap();
    let moved = DueMail {
        at: now - Duration::hours(1),
        ..coupon("A-1")
    };
    store.schedule_mail(moved.clone()).unwrap();
    let got = store.due_mails(now, 10).unwrap();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0], moved);
}

#[test]
fn a_statement_scheduled_again_moves_next_statement_at_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let ana = join_at(&store, "1", t0());
    let sooner = t0() + Duration::days(10);
    store.schedule_mail(statement(ana, sooner)).unwrap();
    let state = store.mail_state(ana).unwrap();
    assert_eq!(state.next_statement_at, Some(sooner));
    let far = t0() + Duration::days(400);
    assert_eq!(
        store.due_mails(far, 10).unwrap(),
        vec![statement(ana, sooner)]
    );
}

#[test]
fn begin_mail_sends_a_statement_records_it_and_schedules_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let ana = join_at(&store, "1", t0());
    let at = t0() + Duration::days(28);
    let now = at + Duration::minutes(1);
    let mail = sent(begin(&store, &statement(ana, at), now));
    assert_eq!(
        (mail.member, mail.kind, mail.attempts),
        (ana, MailKind::Statement, 1)
    );
    assert_eq!(
        (mail.state.clone(), mail.message_id.as_str()),
        (SendState::Sending, "<m@x>")
    );
    let state = store.mail_state(ana).unwrap();
    let next = now + Duration::days(28);
    assert_eq!(state.last_marketing_at, Some(now));
    assert_eq!(state.last_statement_at, Some(now));
    assert_eq!(state.statements_sent, 1);
    assert_eq!(state.next_statement_at, Some(next));
    assert!(store
        .due_mails(next - Duration::seconds(1), 10)
        .unwrap()
        .is_empty());
    assert_eq!(
        store.due_mails(next, 10).unwrap(),
        vec![statement(ana, next)]
    );
    assert_eq!(store.unsent_mails().unwrap(), vec![mail]);
    // Handled already: a second scheduler pass finds nothing to send.
    assert_eq!(begin(&store, &statement(ana, at), now), MailStart::Gone);
}

#[test]
fn a_reminder_too_soon_after_a_mail_is_postponed_and_one_near_a_statement_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let ana = join_at(&store, "1", t0());
    let now = t0() + Duration::days(1);
    let first = due(ana, MailKind::RewardReminder, now);
    store.schedule_mail(first.clone()).unwrap();
    sent(begin(&store, &first, now));
    let second = due(ana, MailKind::CouponReminder, now + Duration::hours(1));
    store.schedule_mail(second.clone()).unwrap();
    let free = now + Duration::days(3);
    assert_eq!(
        begin(&store, &second, second.at),
        MailStart::Postponed(free)
    );
    let later = DueMail { at: free, ..second };
    assert_eq!(store.due_mails(free, 10).unwrap(), vec![later.clone()]);
    // Two days before the statement: the statement wins.
    let near = t0() + Duration::days(26);
    store
        .schedule_mail(DueMail {
            at: near,
            ..later.clone()
        })
        .unwrap();
    let out = begin(&store, &DueMail { at: near, ..later }, near);
    assert_eq!(out, MailStart::Dropped("a statement is due soon"));
    let statement_at = t0() + Duration::days(28);
    assert_eq!(
        store.due_mails(statement_at, 10).unwrap(),
        vec![statement(ana, statement_at)]
    );
}

#[test]
fn an_unsubscribed_members_statement_is_dropped_and_the_next_still_scheduled() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let ana = join_at(&store, "1", t0());
    assert!(store.set_unsubscribed(ana, true, t0()).unwrap());
    assert!(
        !store.set_unsubscribed(ana, true, t0()).unwrap(),
        "no change"
    );
    let at = t0() + Duration::days(28);
    assert_eq!(
        begin(&store, &statement(ana, at), at),
        MailStart::Dropped("unsubscribed")
    );
    let state = store.mail_state(ana).unwrap();
    assert_eq!(
        (state.unsubscribed, state.unsubscribed_at),
        (true, Some(t0()))
    );
    assert_eq!(state.statements_sent, 0);
    let next = at + Duration::days(28);
    assert_eq!(state.next_statement_at, Some(next));
    assert_eq!(
        store.due_mails(next, 10).unwrap(),
        vec![statement(ana, next)]
    );
    assert!(store.unsent_mails().unwrap().is_empty());
    assert!(store.set_unsubscribed(ana, false, t0()).unwrap());
    assert_eq!(store.mail_state(ana).unwrap().unsubscribed_at, None);
    let nobody = store.set_unsubscribed(MemberId(99), true, t0());
    assert!(matches!(nobody, Err(StoreError::UnknownMember(_))));
}

#[test]
fn three_permanent_failures_in_a_row_mark_the_address_undeliverable() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let ana = join_at(&store, "1", t0());
    let mut now = t0();
    let mut send = |kind| {
        now += Duration::days(4);
        let d = due(ana, kind, now);
        store.schedule_mail(d.clone()).unwrap();
        sent(begin(&store, &d, now)).id
    };
    let permanent = || MailResult::Permanent {
        reason: "550 no such user".into(),
    };
    let (a, b) = (
        send(MailKind::RewardReminder),
        send(MailKind::RewardReminder),
    );
    store.finish_mail(a, permanent(), t0()).unwrap();
    store.finish_mail(a, permanent(), t0()).unwrap(); // a repeat counts once
    store.finish_mail(b, MailResult::Sent, t0()).unwrap();
    assert_eq!(
        store.mail_state(ana).unwrap().bounces,
        0,
        "a delivery resets the count"
    );
    for _ in 0..2 {
        let id = send(MailKind::RewardReminder);
        store.finish_mail(id, permanent(), t0()).unwrap();
        assert!(!store.mail_state(ana).unwrap().undeliverable);
    }
    let id = send(MailKind::RewardReminder);
    store.finish_mail(id, permanent(), t0()).unwrap();
    let state = store.mail_state(ana).unwrap();
    assert_eq!((state.bounces, state.undeliverable), (MAX_BOUNCES, true));
    let d = due(ana, MailKind::RewardReminder, now + Duration::days(9));
    store.schedule_mail(d.clone()).unwrap();
    assert_eq!(begin(&store, &d, d.at), MailStart::Dropped("undeliverable"));
    assert!(store.unsent_mails().unwrap().is_empty());
}

#[test]
fn unsent_mail_survives_a_restart_oldest_first_and_retries_count_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second);
    {
        let store = open(&dir);
        let ana = join_at(&store, "1", t0());
        let bob = join_at(&store, "2", t0());
        let at = t0() + Duration::days(28);
        first = sent(begin(&store, &statement(ana, at), at));
        second = sent(begin(
            &store,
            &statement(bob, at),
            at + Duration::seconds(1),
        ));
        let retry_at = at + Duration::minutes(5);
        store
            .finish_mail(first.id, MailResult::Retry { at: retry_at }, at)
            .unwrap();
        store.close().unwrap();
    }
    let store = open(&dir);
    let unsent = store.unsent_mails().unwrap();
    assert_eq!(unsent.len(), 2);
    assert_eq!((unsent[0].id, unsent[0].attempts), (first.id, 2));
    assert!(matches!(unsent[0].state, SendState::Retry { .. }));
    assert_eq!(unsent[1], second);
    store.finish_mail(first.id, MailResult::Sent, t0()).unwrap();
    assert_eq!(store.unsent_mails().unwrap(), vec![second]);
}

#[test]
fn the_member_locale_and_the_link_key_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let key;
    let ana;
    {
        let store = open(&dir);
        ana = join_at(&store, "1", t0());
        store.set_member_locale(ana, "de").unwrap();
        key = store.mail_link_key().unwrap();
        assert_eq!(store.mail_link_key().unwrap(), key);
        assert_ne!(key, [0; 32]);
        store.close().unwrap();
    }
    let store = open(&dir);
    assert_eq!(store.mail_link_key().unwrap(), key);
    let member = store.member(ana).unwrap().unwrap().member;
    assert_eq!(member.locale.as_deref(), Some("de"));
    assert!(store.set_member_locale(MemberId(99), "en").is_err());
    let other = tempfile::tempdir().unwrap();
    assert_ne!(open(&other).mail_link_key().unwrap(), key);
}

#[test]
fn a_join_writes_no_mail_state_record_and_the_index_is_where_the_next_statement_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let ana = join_at(&store, "1", t0());
    assert!(
        store.mail.state.is_empty(),
        "a new member's state is the default"
    );
    // A state written by an older build kept its own copy of the due time; the index wins.
    let stale = MailState {
        next_statement_at: Some(t0() + Duration::days(400)),
        unsubscribed: true,
        ..MailState::default()
    };
    let raw = serde_json::to_vec(&stale).unwrap();
    store
        .mail
        .state
        .insert(crate::store::keys::member(ana), raw)
        .unwrap();
    let state = store.mail_state(ana).unwrap();
    assert!(state.unsubscribed);
    assert_eq!(state.next_statement_at, Some(t0() + Duration::days(28)));
    // Opting back in leaves nothing but defaults: the record goes.
    store.set_unsubscribed(ana, false, t0()).unwrap();
    assert!(store.mail.state.is_empty());
}

#[test]
fn a_statement_sent_keeps_the_one_before_it_so_its_changes_can_be_listed_since() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let ana = join_at(&store, "1", t0());
    let first = t0() + Duration::days(28);
    sent(begin(&store, &statement(ana, first), first));
    let state = store.mail_state(ana).unwrap();
    assert_eq!(
        (state.last_statement_at, state.previous_statement_at),
        (Some(first), None)
    );
    let second = first + Duration::days(28);
    sent(begin(&store, &statement(ana, second), second));
    let state = store.mail_state(ana).unwrap();
    assert_eq!(
        (state.last_statement_at, state.previous_statement_at),
        (Some(second), Some(first))
    );
}
