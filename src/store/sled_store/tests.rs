//! Behaviour of the `LoyaltyStore` side of the sled store, one rule per test.

use super::SledStore;
use crate::domain::*;
use crate::store::*;
use chrono::Duration;
use std::sync::Arc;

fn open() -> (tempfile::TempDir, SledStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), 8 << 20).unwrap();
    (dir, store)
}

fn newcomer(psid: &str, email: &str) -> NewMember {
    NewMember {
        identity: ChatIdentity::new(Channel::Messenger, psid).unwrap(),
        email: Email::parse(email).unwrap(),
        profile: Profile::default(),
        bonus: Points(50),
    }
}

fn join(store: &SledStore, psid: &str, email: &str) -> MemberId {
    match store.join(newcomer(psid, email), Utc::now()).unwrap() {
        JoinOutcome::Joined(a) => a.member.id,
        other => panic!("expected a new member, got {other:?}"),
    }
}

fn order(number: &str) -> VerifiedOrder {
    VerifiedOrder {
        id: crate::domain::OrderId::from(&OrderNumber::parse(number).unwrap()),
        number: OrderNumber::parse(number).unwrap(),
        email: Email::parse("ana@example.com").unwrap(),
        total: "42.50".parse().unwrap(),
        currency: "EUR".into(),
        status: OrderStatus::Paid,
    }
}

fn mug(points: u64) -> Reward {
    Reward {
        id: "free-mug".into(),
        title: "Mug".into(),
        points: Points(points),
        product_ids: vec!["p1".into()],
        checkout_url: "https://shop.example/mug".into(),
        value: None,
        discount: Default::default(),
    }
}

fn redeem(store: &SledStore, id: MemberId, points: u64) -> RedeemOutcome {
    let now = Utc::now();
    let code = CouponCode::generate("free-mug");
    store
        .redeem_reward(id, &mug(points), code, now + Duration::days(30), now, None)
        .unwrap()
}

fn reserved(outcome: RedeemOutcome) -> Coupon {
    match outcome {
        RedeemOutcome::Reserved { coupon, .. } => coupon,
        other => panic!("expected a reservation, got {other:?}"),
    }
}

fn balance(store: &SledStore, id: MemberId) -> Points {
    store.member(id).unwrap().unwrap().balance
}

#[test]
fn joining_twice_with_one_identity_credits_the_bonus_once() {
    let (_d, store) = open();
    let id = join(&store, "100", "ana@example.com");
    let again = store
        .join(newcomer("100", "ana@example.com"), Utc::now())
        .unwrap();
    assert!(
        matches!(again, JoinOutcome::AlreadyMember(a) if a.member.id == id && a.balance == Points(50))
    );
    assert_eq!(store.ledger(id).unwrap().len(), 1);
    let who = ChatIdentity::new(Channel::Messenger, "100").unwrap();
    assert_eq!(
        store.member_by_identity(&who).unwrap().unwrap().member.id,
        id
    );
}

#[test]
fn an_email_owned_by_another_identity_is_refused_and_nothing_changes() {
    let (_d, store) = open();
    join(&store, "100", "ana@example.com");
    let out = store
        .join(newcomer("200", " ANA@example.com"), Utc::now())
        .unwrap();
    assert_eq!(out, JoinOutcome::EmailTaken);
    assert_eq!(store.members().unwrap().len(), 1);
    let who = ChatIdentity::new(Channel::Messenger, "200").unwrap();
    assert!(store.member_by_identity(&who).unwrap().is_none());
}

#[test]
fn an_order_is_credited_once_whatever_its_case() {
    let (_d, store) = open();
    let ana = join(&store, "100", "ana@example.com");
    let bob = join(&store, "200", "bob@example.com");
    let first = store
        .claim_order(ana, &order("a-1001"), Points(42), Utc::now())
        .unwrap();
    assert!(matches!(
        first,
        ClaimOutcome::Credited {
            balance: Points(92),
            ..
        }
    ));
    let second = store
        .claim_order(bob, &order("A-1001"), Points(42), Utc::now())
        .unwrap();
    assert!(matches!(second, ClaimOutcome::AlreadyClaimed { by, .. } if by == ana));
    assert_eq!(balance(&store, bob), Points(50));
    let claim = store
        .order_claim(&(&OrderNumber::parse("A-1001").unwrap()).into())
        .unwrap();
    assert_eq!(claim.map(|c| c.0), Some(ana));
}

#[test]
fn fifty_concurrent_claims_of_one_order_credit_it_exactly_once() {
    let (_d, store) = open();
    let store = Arc::new(store);
    let ids: Vec<_> = (0..50)
        .map(|i| join(&store, &format!("{i}"), &format!("m{i}@example.com")))
        .collect();
    let handles: Vec<_> = ids
        .iter()
        .map(|&id| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                store
                    .claim_order(id, &order("7777"), Points(10), Utc::now())
                    .unwrap()
            })
        })
        .collect();
    let credited = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|o| matches!(o, ClaimOutcome::Credited { .. }))
        .count();
    assert_eq!(credited, 1);
    let total: u64 = ids.iter().map(|&id| balance(&store, id).0).sum();
    assert_eq!(total, 50 * 50 + 10);
}

#[test]
fn claiming_for_an_unknown_member_is_an_error() {
    let (_d, store) = open();
    let err = store.claim_order(MemberId(999), &order("1001"), Points(1), Utc::now());
    assert!(matches!(err, Err(StoreError::UnknownMember(MemberId(999)))));
    assert!(store
        .order_claim(&(&OrderNumber::parse("1001").unwrap()).into())
        .unwrap()
        .is_none());
}

#[test]
fn redeeming_with_too_few_points_leaves_the_balance_unchanged() {
    let (_d, store) = open();
    let id = join(&store, "100", "ana@example.com");
    let out = redeem(&store, id, 51);
    assert_eq!(
        out,
        RedeemOutcome::InsufficientPoints {
            balance: Points(50),
            needed: Points(51)
        }
    );
    assert_eq!(store.ledger(id).unwrap().len(), 1);
    assert!(store.coupons_of(id).unwrap().is_empty());
}

#[test]
fn redeeming_deducts_points_and_records_a_pending_coupon() {
    let (_d, store) = open();
    let id = join(&store, "100", "ana@example.com");
    let coupon = reserved(redeem(&store, id, 30));
    assert_eq!(coupon.status, CouponStatus::Pending);
    assert_eq!(balance(&store, id), Points(20));
    assert_eq!(store.pending_coupons().unwrap(), vec![coupon.clone()]);
    assert_eq!(store.coupons_of(id).unwrap(), vec![coupon.clone()]);
    let issued = store.confirm_coupon(&coupon.code).unwrap();
    assert_eq!(issued.status, CouponStatus::Issued);
    assert!(store.pending_coupons().unwrap().is_empty());
}

#[test]
fn cancelling_gives_the_points_back_once() {
    let (_d, store) = open();
    let id = join(&store, "100", "ana@example.com");
    let coupon = reserved(redeem(&store, id, 30));
    assert_eq!(
        store.cancel_coupon(&coupon.code, Utc::now()).unwrap(),
        Points(50)
    );
    assert_eq!(
        store.cancel_coupon(&coupon.code, Utc::now()).unwrap(),
        Points(50)
    );
    assert_eq!(store.ledger(id).unwrap().len(), 3);
    // Points given back are not handed out a second time by a late confirmation.
    let late = store.confirm_coupon(&coupon.code).unwrap();
    assert_eq!(late.status, CouponStatus::Cancelled);
}

#[test]
fn cancelling_an_issued_coupon_changes_nothing() {
    let (_d, store) = open();
    let id = join(&store, "100", "ana@example.com");
    let coupon = reserved(redeem(&store, id, 30));
    store.confirm_coupon(&coupon.code).unwrap();
    assert_eq!(
        store.cancel_coupon(&coupon.code, Utc::now()).unwrap(),
        Points(20)
    );
    assert_eq!(
        store.coupon(&coupon.code).unwrap().unwrap().status,
        CouponStatus::Issued
    );
}

#[test]
fn an_unknown_coupon_code_is_an_error() {
    let (_d, store) = open();
    let code = CouponCode::from_stored("NOPE".into());
    assert!(matches!(
        store.confirm_coupon(&code),
        Err(StoreError::UnknownCoupon(_))
    ));
    assert!(matches!(
        store.cancel_coupon(&code, Utc::now()),
        Err(StoreError::UnknownCoupon(_))
    ));
}

#[test]
fn conversation_state_is_saved_and_cleared() {
    let (_d, store) = open();
    let who = ChatIdentity::new(Channel::Manychat, "42").unwrap();
    let state = ConversationState {
        data: serde_json::json!({"flow": "join", "step": 2}),
    };
    store.save_conversation(&who, &state).unwrap();
    assert_eq!(store.conversation(&who).unwrap(), Some(state));
    store.clear_conversation(&who).unwrap();
    assert_eq!(store.conversation(&who).unwrap(), None);
}

#[test]
fn a_replayed_redemption_request_returns_its_first_coupon_and_spends_nothing_more() {
    let (_dir, store) = open();
    let id = join(&store, "p1", "a@example.com"); // 50 points
    let now = Utc::now();
    let first = CouponCode::generate("free-mug");
    let out = store
        .redeem_reward(id, &mug(20), first.clone(), now, now, Some("page:mid-1"))
        .unwrap();
    assert!(matches!(out, RedeemOutcome::Reserved { .. }), "{out:?}");
    for _ in 0..2 {
        let again = CouponCode::generate("free-mug");
        let out = store
            .redeem_reward(id, &mug(20), again, now, now, Some("page:mid-1"))
            .unwrap();
        let RedeemOutcome::Repeated { coupon, balance } = out else {
            panic!("expected the first coupon back, got {out:?}");
        };
        assert_eq!(coupon.code, first);
        assert_eq!(balance, Points(30));
    }
    // Another request of the same member is a new redemption.
    let out = store
        .redeem_reward(
            id,
            &mug(20),
            CouponCode::generate("m"),
            now,
            now,
            Some("page:mid-2"),
        )
        .unwrap();
    assert!(matches!(out, RedeemOutcome::Reserved { .. }), "{out:?}");
    assert_eq!(balance(&store, id), Points(10));
    assert_eq!(store.coupons_of(id).unwrap().len(), 2);
}
