//! Invariants of the sled store under random operation sequences, sequential and concurrent:
//! balance = ledger sum and never negative, an order credited at most once across all members,
//! exactly one signup bonus per member, coupons and their ledger entries in step. Plus: a
//! reopened store keeps everything.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{Duration, Utc};
use loyalty_bot::domain::{
    Channel, ChatIdentity, CouponCode, CouponStatus, Email, EntryKind, MemberId, OrderNumber,
    OrderStatus, Points, Profile, Reward, VerifiedOrder,
};
use loyalty_bot::store::{
    ClaimOutcome, ConversationState, EventQueue, InboundEvent, JoinOutcome, LoyaltyStore,
    NewMember, OutboundMessage, RedeemOutcome, SledStore,
};
use proptest::prelude::*;

const PEOPLE: u8 = 5;
const ORDERS: u8 = 6;
const BONUS: u64 = 20;

#[derive(Debug, Clone)]
enum Op {
    Join {
        who: u8,
        email: u8,
    },
    Claim {
        who: u8,
        order: u8,
        upper: bool,
        points: u64,
    },
    Redeem {
        who: u8,
        cost: u64,
    },
    Confirm {
        coupon: usize,
    },
    Cancel {
        coupon: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..PEOPLE, 0..PEOPLE).prop_map(|(who, email)| Op::Join { who, email }),
        (0..PEOPLE, 0..ORDERS, any::<bool>(), 0..60u64).prop_map(|(who, order, upper, points)| {
            Op::Claim {
                who,
                order,
                upper,
                points,
            }
        }),
        (0..PEOPLE, 1..80u64).prop_map(|(who, cost)| Op::Redeem { who, cost }),
        any::<usize>().prop_map(|coupon| Op::Confirm { coupon }),
        any::<usize>().prop_map(|coupon| Op::Cancel { coupon }),
    ]
}

fn identity(who: u8) -> ChatIdentity {
    ChatIdentity::new(Channel::Messenger, &format!("psid-{who}")).unwrap()
}

fn order(n: u8, upper: bool) -> VerifiedOrder {
    let number = if upper {
        format!("A-{n}00")
    } else {
        format!("a-{n}00")
    };
    VerifiedOrder {
        number: OrderNumber::parse(&number).unwrap(),
        email: Email::parse("someone@example.com").unwrap(),
        total: "10".parse().unwrap(),
        currency: "EUR".into(),
        status: OrderStatus::Paid,
    }
}

fn reward(cost: u64) -> Reward {
    Reward {
        id: format!("reward-{cost}"),
        title: "Reward".into(),
        points: Points(cost),
        product_ids: vec![],
        checkout_url: "https://shop.example/".into(),
    }
}

/// Applies one operation; coupons created are shared so any thread may settle any of them.
fn apply(store: &SledStore, op: &Op, coupons: &Mutex<Vec<CouponCode>>) {
    let now = Utc::now();
    let member_of = |who| {
        store
            .member_by_identity(&identity(who))
            .unwrap()
            .map(|a| a.member.id)
    };
    let pick = |i: usize| {
        let all = coupons.lock().unwrap();
        (!all.is_empty()).then(|| all[i % all.len()].clone())
    };
    match *op {
        Op::Join { who, email } => {
            let new = NewMember {
                identity: identity(who),
                email: Email::parse(&format!("person{email}@example.com")).unwrap(),
                profile: Profile::default(),
                bonus: Points(BONUS),
            };
            let out = store.join(new, now).unwrap();
            if let JoinOutcome::Joined(a) | JoinOutcome::AlreadyMember(a) = out {
                assert_eq!(a.member.identity, identity(who));
            }
        }
        Op::Claim {
            who,
            order: n,
            upper,
            points,
        } => {
            if let Some(id) = member_of(who) {
                let out = store
                    .claim_order(id, &order(n, upper), Points(points), now)
                    .unwrap();
                if let ClaimOutcome::AlreadyClaimed { by, .. } = out {
                    assert!(store.member(by).unwrap().is_some(), "claimed by a stranger");
                }
            }
        }
        Op::Redeem { who, cost } => {
            if let Some(id) = member_of(who) {
                let code = CouponCode::generate("reward");
                let out = store
                    .redeem_reward(id, &reward(cost), code, now + Duration::days(30), now, None)
                    .unwrap();
                match out {
                    RedeemOutcome::Reserved { coupon, .. } => {
                        coupons.lock().unwrap().push(coupon.code)
                    }
                    RedeemOutcome::InsufficientPoints { balance, needed } => {
                        assert!(balance < needed)
                    }
                    RedeemOutcome::Repeated { .. } => panic!("repeated without a request key"),
                }
            }
        }
        Op::Confirm { coupon } => {
            if let Some(code) = pick(coupon) {
                store.confirm_coupon(&code).unwrap();
            }
        }
        Op::Cancel { coupon } => {
            if let Some(code) = pick(coupon) {
                store.cancel_coupon(&code, now).unwrap();
            }
        }
    }
}

/// Checks every invariant the store promises, over its whole content.
fn check_invariants(store: &SledStore) -> Result<(), TestCaseError> {
    let mut credited: HashMap<String, MemberId> = HashMap::new();
    let (mut identities, mut emails) = (HashSet::new(), HashSet::new());
    for account in store.members().unwrap() {
        let id = account.member.id;
        prop_assert!(
            identities.insert(account.member.identity.key()),
            "identity reused"
        );
        prop_assert!(emails.insert(account.member.email.clone()), "email reused");
        let ledger = store.ledger(id).unwrap();
        let mut running: i128 = 0;
        for entry in &ledger {
            running += i128::from(entry.points);
            prop_assert!(running >= 0, "member {id} went below zero");
        }
        prop_assert_eq!(
            running,
            i128::from(account.balance.0),
            "balance != ledger sum for {}",
            id
        );
        let bonuses = ledger
            .iter()
            .filter(|e| e.kind == EntryKind::SignupBonus)
            .count();
        prop_assert_eq!(bonuses, 1, "member {} has {} signup bonuses", id, bonuses);
        prop_assert_eq!(ledger[0].kind, EntryKind::SignupBonus);
        for e in ledger.iter().filter(|e| e.kind == EntryKind::OrderCredit) {
            let number = e.order_number.as_ref().unwrap();
            let key = number.as_str().to_ascii_uppercase();
            prop_assert!(
                credited.insert(key, id).is_none(),
                "order {} credited twice",
                number
            );
            let claim = store.order_claim(number).unwrap().map(|c| c.0);
            prop_assert_eq!(claim, Some(id), "claims index disagrees with the ledger");
        }
        for c in store.coupons_of(id).unwrap() {
            let count = |kind| {
                let code = Some(c.code.as_str().to_owned());
                ledger
                    .iter()
                    .filter(|e| e.kind == kind && e.coupon_code == code)
                    .count()
            };
            prop_assert_eq!(count(EntryKind::Redemption), 1);
            let reversals = usize::from(c.status == CouponStatus::Cancelled);
            prop_assert_eq!(
                count(EntryKind::RedemptionReversal),
                reversals,
                "{:?}",
                c.status
            );
        }
    }
    for c in store.pending_coupons().unwrap() {
        prop_assert_eq!(c.status, CouponStatus::Pending);
    }
    Ok(())
}

fn open(dir: &tempfile::TempDir) -> SledStore {
    SledStore::open(dir.path(), 4 << 20).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_operation_sequences_keep_every_invariant(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let coupons = Mutex::new(Vec::new());
        for op in &ops {
            apply(&store, op, &coupons);
        }
        check_invariants(&store)?;
    }

    #[test]
    fn concurrent_operation_sequences_keep_every_invariant(
        threads in prop::collection::vec(prop::collection::vec(op(), 1..20), 3..=4)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(open(&dir));
        let coupons = Arc::new(Mutex::new(Vec::new()));
        // Everyone joins first so the threads fight over the same members, orders and coupons.
        for who in 0..PEOPLE {
            apply(&store, &Op::Join { who, email: who }, &coupons);
        }
        let handles: Vec<_> = threads
            .into_iter()
            .map(|ops| {
                let (store, coupons) = (Arc::clone(&store), Arc::clone(&coupons));
                std::thread::spawn(move || ops.iter().for_each(|op| apply(&store, op, &coupons)))
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        check_invariants(&store)?;
    }
}

#[test]
fn concurrent_redemptions_never_overdraw_a_balance() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir));
    let coupons = Arc::new(Mutex::new(Vec::new()));
    apply(&store, &Op::Join { who: 0, email: 0 }, &coupons);
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (store, coupons) = (Arc::clone(&store), Arc::clone(&coupons));
            std::thread::spawn(move || apply(&store, &Op::Redeem { who: 0, cost: 7 }, &coupons))
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // 20 points buy two 7-point rewards, never three.
    assert_eq!(coupons.lock().unwrap().len(), 2);
    let id = member_id(&store, 0);
    assert_eq!(store.member(id).unwrap().unwrap().balance, Points(6));
    check_invariants(&store).unwrap();
}

#[test]
fn a_reopened_store_keeps_members_ledgers_coupons_conversations_and_queues() {
    let dir = tempfile::tempdir().unwrap();
    let coupons = Mutex::new(Vec::new());
    let (id, outbox_id) = {
        let store = open(&dir);
        apply(&store, &Op::Join { who: 0, email: 0 }, &coupons);
        apply(
            &store,
            &Op::Claim {
                who: 0,
                order: 1,
                upper: true,
                points: 30,
            },
            &coupons,
        );
        apply(&store, &Op::Redeem { who: 0, cost: 15 }, &coupons);
        apply(&store, &Op::Redeem { who: 0, cost: 5 }, &coupons);
        apply(&store, &Op::Confirm { coupon: 0 }, &coupons);
        apply(&store, &Op::Cancel { coupon: 1 }, &coupons);
        let state = ConversationState {
            data: serde_json::json!({"step": "ask_email"}),
        };
        store.save_conversation(&identity(0), &state).unwrap();
        let events = ["m1", "m2"].map(|k| InboundEvent {
            key: k.into(),
            sender: "psid-0".into(),
            timestamp_ms: 1,
            payload: serde_json::json!({}),
        });
        store.record_inbound(events.to_vec()).unwrap();
        let reply = OutboundMessage {
            recipient: "psid-0".into(),
            body: serde_json::json!({"text": "hi"}),
            in_reply_to: "m1".into(),
            attempts: 0,
        };
        let ids = store.finish_inbound("m1", vec![reply]).unwrap();
        let id = member_id(&store, 0);
        (id, ids[0])
    };

    let store = open(&dir);
    let account = store.member(id).unwrap().unwrap();
    assert_eq!(account.balance, Points(BONUS + 30 - 15));
    assert_eq!(store.ledger(id).unwrap().len(), 5);
    let statuses: Vec<_> = store
        .coupons_of(id)
        .unwrap()
        .iter()
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, [CouponStatus::Issued, CouponStatus::Cancelled]);
    assert_eq!(
        store
            .order_claim(&OrderNumber::parse("a-100").unwrap())
            .unwrap()
            .map(|c| c.0),
        Some(id)
    );
    assert!(store.conversation(&identity(0)).unwrap().is_some());
    let pending: Vec<_> = store
        .pending_inbound()
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(pending, ["m2"]);
    let outbox: Vec<_> = store
        .pending_outbound()
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(outbox, [outbox_id]);
    check_invariants(&store).unwrap();

    // Counters resume past what was used before the restart: no reused ids.
    apply(&store, &Op::Join { who: 1, email: 1 }, &coupons);
    let newcomer = member_id(&store, 1);
    assert!(newcomer > id);
    let later = store.finish_inbound(
        "m2",
        vec![OutboundMessage {
            recipient: "psid-0".into(),
            body: serde_json::json!({}),
            in_reply_to: "m2".into(),
            attempts: 0,
        }],
    );
    assert!(later.unwrap()[0] > outbox_id);
}

/// The id of the member behind test identity `i`; panics if they never joined.
fn member_id(store: &SledStore, i: u8) -> MemberId {
    store
        .member_by_identity(&identity(i))
        .unwrap()
        .unwrap()
        .member
        .id
}
