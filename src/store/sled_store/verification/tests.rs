//! Joins waiting for their code: one rule per test.

use super::super::SledStore;
use crate::domain::verification::{PendingJoin, VerificationCode, CODE_TTL, RESEND_COOLDOWN};
use crate::domain::*;
use crate::store::*;
use chrono::Duration;

fn open(dir: &tempfile::TempDir) -> SledStore {
    SledStore::open(dir.path(), 8 << 20).unwrap()
}

fn who(psid: &str) -> ChatIdentity {
    ChatIdentity::new(Channel::Messenger, psid).unwrap()
}

fn code(digits: &str) -> VerificationCode {
    VerificationCode::parse(digits).unwrap()
}

fn pending(psid: &str, email: &str, digits: &str, now: DateTime<Utc>) -> PendingJoin {
    let email = Email::parse(email).unwrap();
    PendingJoin::new(who(psid), email, Profile::default(), &code(digits), now)
}

/// Ana (psid 100) waits for code 123456, sent at `now`.
fn begun(store: &SledStore, now: DateTime<Utc>) {
    let out = store
        .begin_verification(pending("100", "ana@example.com", "123456", now), now)
        .unwrap();
    assert_eq!(out, BeginVerification::Started);
}

fn joined(out: VerifyOutcome) -> MemberAccount {
    match out {
        VerifyOutcome::Joined(a) => a,
        other => panic!("expected a join, got {other:?}"),
    }
}

#[test]
fn the_right_code_joins_with_the_bonus_and_an_imported_balance_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let now = Utc::now();
    let row = ImportRow {
        email: Email::parse("ana@example.com").unwrap(),
        points: Points(70),
        joined_at: None,
    };
    store.import_balances(&[row], now).unwrap();
    begun(&store, now);
    assert!(store.member_by_identity(&who("100")).unwrap().is_none());
    let ana = joined(
        store
            .verify_code(&who("100"), &code("123456"), Points(50), now)
            .unwrap(),
    );
    assert_eq!(ana.balance, Points(120));
    assert_eq!(store.ledger(ana.member.id).unwrap().len(), 2);
    assert!(store.pending_join(&who("100")).unwrap().is_none());
    let again = store.verify_code(&who("100"), &code("123456"), Points(50), now);
    assert_eq!(again.unwrap(), VerifyOutcome::NoPending);
    assert_eq!(
        store.member(ana.member.id).unwrap().unwrap().balance,
        Points(120)
    );
    assert_eq!(
        store.totals().unwrap(),
        Totals {
            members: 1,
            points: 120
        }
    );
}

#[test]
fn a_wrong_code_counts_a_try_and_five_lock_the_code_even_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now();
    {
        let store = open(&dir);
        begun(&store, now);
        let out = store.verify_code(&who("100"), &code("000000"), Points(50), now);
        assert_eq!(out.unwrap(), VerifyOutcome::Wrong { tries_left: 4 });
        store.close().unwrap();
    }
    let store = open(&dir);
    assert_eq!(store.pending_join(&who("100")).unwrap().unwrap().tries, 1);
    for left in [3, 2, 1] {
        let out = store.verify_code(&who("100"), &code("000000"), Points(50), now);
        assert_eq!(out.unwrap(), VerifyOutcome::Wrong { tries_left: left });
    }
    let out = store.verify_code(&who("100"), &code("000000"), Points(50), now);
    assert_eq!(out.unwrap(), VerifyOutcome::Locked);
    let out = store.verify_code(&who("100"), &code("123456"), Points(50), now);
    assert_eq!(out.unwrap(), VerifyOutcome::Locked);
    assert!(store.members().unwrap().is_empty());
}

#[test]
fn a_code_typed_after_fifteen_minutes_is_expired_and_joins_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let now = Utc::now();
    begun(&store, now);
    let out = store.verify_code(&who("100"), &code("123456"), Points(50), now + CODE_TTL);
    assert_eq!(out.unwrap(), VerifyOutcome::Expired);
    assert!(store.members().unwrap().is_empty());
    assert!(store.pending_join(&who("100")).unwrap().is_some());
}

#[test]
fn a_new_join_or_code_waits_out_the_cool_down() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let now = Utc::now();
    begun(&store, now);
    let soon = now + Duration::seconds(20);
    let again = pending("100", "ana@other.example", "222222", soon);
    let out = store.begin_verification(again, soon).unwrap();
    assert_eq!(
        out,
        BeginVerification::CoolingDown {
            wait: Duration::seconds(40)
        }
    );
    let hash = code("333333").hash_for(&who("100"));
    let out = store.reissue_code(&who("100"), hash.clone(), soon).unwrap();
    assert_eq!(
        out,
        Reissue::CoolingDown {
            wait: Duration::seconds(40)
        }
    );

    let later = now + RESEND_COOLDOWN;
    let Reissue::Reissued(join) = store.reissue_code(&who("100"), hash, later).unwrap() else {
        panic!("no new code after the cool-down");
    };
    assert_eq!((join.sends, join.tries, join.issued_at), (2, 0, later));
    let out = store.verify_code(&who("100"), &code("123456"), Points(50), later);
    assert_eq!(out.unwrap(), VerifyOutcome::Wrong { tries_left: 4 });
    joined(
        store
            .verify_code(&who("100"), &code("333333"), Points(50), later)
            .unwrap(),
    );
    let out = store.reissue_code(&who("200"), "x".into(), later).unwrap();
    assert_eq!(out, Reissue::NoPending);
}

#[test]
fn a_join_after_the_cool_down_replaces_the_earlier_one_whatever_its_email() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let now = Utc::now();
    begun(&store, now);
    let later = now + RESEND_COOLDOWN;
    let again = pending("100", "ana@other.example", "222222", later);
    assert_eq!(
        store.begin_verification(again, later).unwrap(),
        BeginVerification::Started
    );
    let ana = joined(
        store
            .verify_code(&who("100"), &code("222222"), Points(50), later)
            .unwrap(),
    );
    assert_eq!(ana.member.email.as_str(), "ana@other.example");
}

#[test]
fn members_and_taken_emails_are_refused_before_and_after_the_code() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let now = Utc::now();
    begun(&store, now);
    // Someone else joins with Ana's email while her code waits.
    let bob = NewMember {
        identity: who("200"),
        email: Email::parse("ana@example.com").unwrap(),
        profile: Profile::default(),
        bonus: Points(50),
    };
    assert!(matches!(
        store.join(bob, now).unwrap(),
        JoinOutcome::Joined(_)
    ));
    let out = store.verify_code(&who("100"), &code("123456"), Points(50), now);
    assert_eq!(out.unwrap(), VerifyOutcome::EmailTaken);
    assert!(
        store.pending_join(&who("100")).unwrap().is_none(),
        "the code is used up"
    );

    let later = now + RESEND_COOLDOWN;
    let taken = pending("100", "ana@example.com", "123456", later);
    assert_eq!(
        store.begin_verification(taken, later).unwrap(),
        BeginVerification::EmailTaken
    );
    let member = pending("200", "bob@example.com", "123456", later);
    let out = store.begin_verification(member, later).unwrap();
    assert!(matches!(out, BeginVerification::AlreadyMember(a) if a.member.identity == who("200")));
    assert!(store.pending_join(&who("200")).unwrap().is_none());
}

#[test]
fn a_verified_join_schedules_the_first_statement() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let now = Utc::now();
    begun(&store, now);
    let ana = joined(
        store
            .verify_code(&who("100"), &code("123456"), Points(50), now)
            .unwrap(),
    );
    let first = now + Duration::days(28);
    let state = store.mail_state(ana.member.id).unwrap();
    assert_eq!(state.next_statement_at, Some(first));
    let due = store.due_mails(first, 10).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].member, due[0].at), (ana.member.id, first));
}
