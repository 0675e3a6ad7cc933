//! The totals record follows every change of members and balances, survives a reopen, and is
//! counted once for a store written before it existed.

use super::super::{test_members, SledStore};
use super::KEY;
use crate::domain::*;
use crate::store::*;
use chrono::{Duration, Utc};
use test_members::join;

fn open(dir: &tempfile::TempDir) -> SledStore {
    SledStore::open(dir.path(), 8 << 20).expect("open")
}

/// A claim whose outcome the totals test does not look at.
fn claim(store: &SledStore, id: MemberId, n: &str, points: u64) {
    test_members::claim(store, id, n, points);
}

fn redeem(store: &SledStore, id: MemberId, points: u64) -> Option<Coupon> {
    let reward = Reward {
        id: "mug".into(),
        title: "Mug".into(),
        points: Points(points),
        product_ids: vec!["p1".into()],
        checkout_url: "https://shop.example/mug".into(),
        value: None,
        discount: Default::default(),
    };
    let now = Utc::now();
    let code = CouponCode::generate("mug");
    match store
        .redeem_reward(id, &reward, code, now + Duration::days(30), now, None)
        .unwrap()
    {
        RedeemOutcome::Reserved { coupon, .. } => Some(coupon),
        _ => None,
    }
}

/// What a scan says the totals are.
fn scanned(store: &SledStore) -> Totals {
    let members = store.members().unwrap();
    Totals {
        members: members.len() as u64,
        points: members.iter().map(|a| a.balance.0).sum(),
    }
}

#[test]
fn the_totals_follow_joins_credits_redemptions_refunds_and_reversals() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    assert_eq!(store.totals().unwrap(), Totals::default());
    let ana = join(&store, "100");
    let bob = join(&store, "200");
    let again = NewMember {
        identity: ChatIdentity::new(Channel::Messenger, "200").unwrap(),
        email: Email::parse("200@example.com").unwrap(),
        profile: Profile::default(),
        bonus: Points(50),
    };
    let again = store.join(again, Utc::now()).unwrap();
    assert!(
        matches!(again, JoinOutcome::AlreadyMember(_)),
        "nothing changes"
    );
    claim(&store, ana, "1001", 120);
    claim(&store, bob, "1001", 120); // already claimed: nothing changes
    claim(&store, bob, "1002", 30);
    let kept = redeem(&store, ana, 100).unwrap();
    store.confirm_coupon(&kept.code).unwrap();
    let refunded = redeem(&store, bob, 60).unwrap();
    store.cancel_coupon(&refunded.code, Utc::now()).unwrap();
    assert!(
        redeem(&store, bob, 1000).is_none(),
        "insufficient: nothing changes"
    );
    store
        .reverse_order(
            &OrderNumber::parse("1002").unwrap().into(),
            ReversalReason::Refunded,
            Utc::now(),
        )
        .unwrap();
    let totals = store.totals().unwrap();
    assert_eq!(
        totals,
        Totals {
            members: 2,
            points: 50 + 50 + 120 + 30 - 100 - 30
        }
    );
    assert_eq!(totals, scanned(&store));
}

#[test]
fn the_totals_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let ana = join(&store, "100");
    claim(&store, ana, "1001", 70);
    drop(store.close().unwrap());
    let store = open(&dir);
    assert_eq!(
        store.totals().unwrap(),
        Totals {
            members: 1,
            points: 120
        }
    );
}

#[test]
fn a_store_without_totals_is_counted_once_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let ana = join(&store, "100");
    join(&store, "200");
    claim(&store, ana, "1001", 7);
    // What a store written before the totals existed looks like.
    store.atomic.totals_tree().remove(KEY).unwrap();
    drop(store.close().unwrap());
    let store = open(&dir);
    let want = Totals {
        members: 2,
        points: 107,
    };
    assert_eq!(store.totals().unwrap(), want);
    assert_eq!(scanned(&store), want);
}

#[test]
fn a_recount_repairs_totals_that_writes_outside_the_operations_left_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    join(&store, "100");
    store
        .atomic
        .totals_tree()
        .insert(KEY, &super::encode(Totals::default())[..])
        .unwrap();
    assert_eq!(store.totals().unwrap().members, 0);
    assert_eq!(store.recount_totals().unwrap(), scanned(&store));
    assert_eq!(store.totals().unwrap(), scanned(&store));
}
