//! Invariants of the sled store under random operation sequences (join, claim, redeem, settle a
//! coupon, reverse an order), sequential and concurrent: balance = ledger sum and never
//! negative, an order credited at most once across all members, reversed at most once and
//! never claimable again, exactly one signup bonus per member, coupons and their ledger entries
//! in step, and every acknowledged credit, coupon and reversal in the ledger. Plus: a reopened
//! store keeps everything.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{Duration, Utc};
use loyalty_bot::domain::{
    Channel, ChatIdentity, CouponCode, CouponStatus, Email, EntryKind, LedgerEntry, MemberId,
    OrderNumber, OrderStatus, Points, Profile, ReversalReason, Reward, VerifiedOrder,
};
use loyalty_bot::store::{
    ClaimOutcome, ConversationState, EventQueue, InboundEvent, JoinOutcome, LoyaltyStore,
    NewMember, OutboundMessage, RedeemOutcome, ReverseOutcome, SledStore, Totals,
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
    /// The shop refunded (or cancelled) an order, claimed or not.
    Reverse {
        order: u8,
        upper: bool,
        cancelled: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..PEOPLE, 0..PEOPLE).prop_map(|(who, email)| Op::Join { who, email }),
        3 => (0..PEOPLE, 0..ORDERS, any::<bool>(), 0..60u64).prop_map(
            |(who, order, upper, points)| Op::Claim {
                who,
                order,
                upper,
                points,
            }
        ),
        2 => (0..PEOPLE, 1..80u64).prop_map(|(who, cost)| Op::Redeem { who, cost }),
        1 => any::<usize>().prop_map(|coupon| Op::Confirm { coupon }),
        1 => any::<usize>().prop_map(|coupon| Op::Cancel { coupon }),
        2 => (0..ORDERS, any::<bool>(), any::<bool>()).prop_map(|(order, upper, cancelled)| {
            Op::Reverse {
                order,
                upper,
                cancelled,
            }
        }),
    ]
}

fn identity(who: u8) -> ChatIdentity {
    ChatIdentity::new(Channel::Messenger, &format!("psid-{who}")).unwrap()
}

fn number(n: u8, upper: bool) -> OrderNumber {
    let number = if upper {
        format!("A-{n}00")
    } else {
        format!("a-{n}00")
    };
    OrderNumber::parse(&number).unwrap()
}

/// The one identity of an order, whatever case it was given in.
fn order_key(number: &OrderNumber) -> String {
    number.as_str().to_ascii_uppercase()
}

fn order(n: u8, upper: bool) -> VerifiedOrder {
    VerifiedOrder {
        id: loyalty_bot::domain::OrderId::from(&number(n, upper)),
        number: number(n, upper),
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
        value: None,
        discount: Default::default(),
    }
}

/// What the store acknowledged (returned `Ok` for), shared by every thread: coupons so any
/// thread may settle any of them, and credits and reversals to check against the ledger.
#[derive(Default)]
struct Acks {
    coupons: Mutex<Vec<CouponCode>>,
    /// (order key, member, points) of every `Credited`.
    credits: Mutex<Vec<(String, MemberId, Points)>>,
    /// (order key, outcome) of every reversal.
    reversals: Mutex<Vec<(String, ReverseOutcome)>>,
}

/// Applies one operation and records what the store acknowledged.
fn apply(store: &SledStore, op: &Op, acks: &Acks) {
    let coupons = &acks.coupons;
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
                let order = order(n, upper);
                let out = store.claim_order(id, &order, Points(points), now).unwrap();
                match out {
                    ClaimOutcome::AlreadyClaimed { by, .. } => {
                        assert!(store.member(by).unwrap().is_some(), "claimed by a stranger")
                    }
                    ClaimOutcome::Credited { points: p, .. } => {
                        assert_eq!(p, Points(points));
                        let ack = (order_key(&order.number), id, p);
                        acks.credits.lock().unwrap().push(ack);
                    }
                    ClaimOutcome::Reversed { .. } => {
                        let r = store.order_reversal(&(&order.number).into()).unwrap();
                        assert!(
                            r.is_some_and(|r| r.member.is_none()),
                            "refused without cause"
                        );
                    }
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
        Op::Reverse {
            order: n,
            upper,
            cancelled,
        } => {
            let reason = if cancelled {
                ReversalReason::Cancelled
            } else {
                ReversalReason::Refunded
            };
            let number = number(n, upper);
            let out = store.reverse_order(&(&number).into(), reason, now).unwrap();
            let ack = (order_key(&number), out);
            acks.reversals.lock().unwrap().push(ack);
        }
    }
}

/// Checks every invariant the store promises, over its whole content, and that everything it
/// acknowledged in `acks` is there.
fn check_invariants(store: &SledStore, acks: &Acks) -> Result<(), TestCaseError> {
    // order key → (member, points) of its one credit; order key → member of its one reversal.
    let mut credited: HashMap<String, (MemberId, i64)> = HashMap::new();
    let mut reversed: HashMap<String, MemberId> = HashMap::new();
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
            prop_assert!(
                credited.insert(order_key(number), (id, e.points)).is_none(),
                "order {} credited twice",
                number
            );
            let claim = store.order_claim(&number.into()).unwrap().map(|c| c.0);
            prop_assert_eq!(claim, Some(id), "claims index disagrees with the ledger");
        }
        for (i, e) in ledger.iter().enumerate() {
            if e.kind == EntryKind::OrderReversal {
                check_reversal_entry(store, id, &ledger[..i], e, &mut reversed)?;
            }
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
    let members = store.members().unwrap();
    let scanned = Totals {
        members: members.len() as u64,
        points: members.iter().map(|a| a.balance.0).sum(),
    };
    prop_assert_eq!(
        store.totals().unwrap(),
        scanned,
        "the totals record disagrees"
    );
    for n in 0..ORDERS {
        let number = number(n, true);
        let key = order_key(&number);
        let claim = store.order_claim(&(&number).into()).unwrap().map(|c| c.0);
        match store.order_reversal(&(&number).into()).unwrap() {
            None => prop_assert!(!reversed.contains_key(&key), "{} lost its reversal", key),
            Some(r) => {
                // A refund before the claim leaves the order unclaimed and uncredited forever;
                // after the claim, the credit and its one reversal are the same member's.
                prop_assert_eq!(r.member, claim, "reversal and claim of {} disagree", &key);
                prop_assert_eq!(r.member, credited.get(&key).map(|c| c.0));
                prop_assert_eq!(r.member, reversed.get(&key).copied());
            }
        }
    }
    check_acks(store, acks, &credited)
}

/// One `OrderReversal` entry of member `id`, `before` it in their ledger: it follows that
/// member's credit of the order, is the order's only reversal, and matches the order's record.
fn check_reversal_entry(
    store: &SledStore,
    id: MemberId,
    before: &[LedgerEntry],
    e: &LedgerEntry,
    reversed: &mut HashMap<String, MemberId>,
) -> Result<(), TestCaseError> {
    let number = e.order_number.as_ref().unwrap();
    let key = order_key(number);
    prop_assert!(
        reversed.insert(key.clone(), id).is_none(),
        "order {} reversed twice",
        &key
    );
    let credit = before.iter().find(|c| {
        c.kind == EntryKind::OrderCredit
            && c.order_number.as_ref().map(order_key) == Some(key.clone())
    });
    prop_assert!(credit.is_some(), "reversal of {} before its credit", &key);
    let r = store.order_reversal(&number.into()).unwrap();
    prop_assert!(r.is_some(), "reversal of {} without its record", &key);
    let r = r.unwrap();
    prop_assert_eq!(r.member, Some(id));
    prop_assert_eq!(i64::try_from(r.credited.0).unwrap(), credit.unwrap().points);
    prop_assert_eq!(-e.points, i64::try_from(r.taken.0).unwrap());
    prop_assert_eq!(e.shortfall, Some(r.shortfall));
    prop_assert_eq!(r.taken.0 + r.shortfall.0, r.credited.0);
    Ok(())
}

/// Everything acknowledged is stored: each credit in its member's ledger, each coupon, and each
/// order's first reversal (exactly one per order) as the order's record.
fn check_acks(
    store: &SledStore,
    acks: &Acks,
    credited: &HashMap<String, (MemberId, i64)>,
) -> Result<(), TestCaseError> {
    for (key, id, points) in acks.credits.lock().unwrap().iter() {
        let stored = credited.get(key).copied();
        prop_assert_eq!(stored, Some((*id, i64::try_from(points.0).unwrap())));
    }
    for code in acks.coupons.lock().unwrap().iter() {
        prop_assert!(store.coupon(code).unwrap().is_some(), "coupon lost");
    }
    let mut firsts: HashMap<&str, usize> = HashMap::new();
    let reversals = acks.reversals.lock().unwrap();
    for (key, out) in reversals.iter() {
        let stored = store
            .order_reversal(&OrderNumber::parse(key).unwrap().into())
            .unwrap();
        let reversal = match out {
            ReverseOutcome::Reversed { reversal, .. }
            | ReverseOutcome::RecordedBeforeClaim { reversal } => {
                *firsts.entry(key).or_default() += 1;
                reversal
            }
            ReverseOutcome::AlreadyReversed { reversal } => reversal,
        };
        prop_assert_eq!(
            stored.as_ref(),
            Some(reversal),
            "acknowledged reversal of {}",
            key
        );
        if let ReverseOutcome::RecordedBeforeClaim { .. } = out {
            prop_assert!(
                !credited.contains_key(key),
                "{} credited after its refund",
                key
            );
        }
    }
    for (key, n) in firsts {
        prop_assert_eq!(n, 1, "order {} reversed {} times", key, n);
    }
    Ok(())
}

/// Every member tries to claim every reversed order again: none may be credited.
fn reversed_orders_stay_unclaimable(store: &SledStore) -> Result<(), TestCaseError> {
    let now = Utc::now();
    for n in 0..ORDERS {
        let order = order(n, n % 2 == 0);
        if store.order_reversal(&order.id).unwrap().is_none() {
            continue;
        }
        for account in store.members().unwrap() {
            let out = store
                .claim_order(account.member.id, &order, Points(5), now)
                .unwrap();
            prop_assert!(
                !matches!(out, ClaimOutcome::Credited { .. }),
                "reversed order {} credited again",
                &order.number
            );
        }
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
        let acks = Acks::default();
        for op in &ops {
            apply(&store, op, &acks);
            check_invariants(&store, &acks)?;
        }
        reversed_orders_stay_unclaimable(&store)?;
        check_invariants(&store, &acks)?;
    }

    #[test]
    fn concurrent_operation_sequences_keep_every_invariant(
        threads in prop::collection::vec(prop::collection::vec(op(), 1..20), 3..=4)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(open(&dir));
        let acks = Arc::new(Acks::default());
        // Everyone joins first so the threads fight over the same members, orders and coupons.
        for who in 0..PEOPLE {
            apply(&store, &Op::Join { who, email: who }, &acks);
        }
        let handles: Vec<_> = threads
            .into_iter()
            .map(|ops| {
                let (store, acks) = (Arc::clone(&store), Arc::clone(&acks));
                std::thread::spawn(move || ops.iter().for_each(|op| apply(&store, op, &acks)))
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        check_invariants(&store, &acks)?;
        reversed_orders_stay_unclaimable(&store)?;
        check_invariants(&store, &acks)?;
    }
}

#[test]
fn concurrent_redemptions_never_overdraw_a_balance() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir));
    let acks = Arc::new(Acks::default());
    apply(&store, &Op::Join { who: 0, email: 0 }, &acks);
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (store, acks) = (Arc::clone(&store), Arc::clone(&acks));
            std::thread::spawn(move || apply(&store, &Op::Redeem { who: 0, cost: 7 }, &acks))
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // 20 points buy two 7-point rewards, never three.
    assert_eq!(acks.coupons.lock().unwrap().len(), 2);
    let id = member_id(&store, 0);
    assert_eq!(store.member(id).unwrap().unwrap().balance, Points(6));
    check_invariants(&store, &acks).unwrap();
}

#[test]
fn a_reopened_store_keeps_members_ledgers_coupons_reversals_conversations_and_queues() {
    let dir = tempfile::tempdir().unwrap();
    let acks = Acks::default();
    let (id, outbox_id) = {
        let store = open(&dir);
        apply(&store, &Op::Join { who: 0, email: 0 }, &acks);
        apply(
            &store,
            &Op::Claim {
                who: 0,
                order: 1,
                upper: true,
                points: 30,
            },
            &acks,
        );
        apply(&store, &Op::Redeem { who: 0, cost: 15 }, &acks);
        apply(&store, &Op::Redeem { who: 0, cost: 5 }, &acks);
        apply(&store, &Op::Confirm { coupon: 0 }, &acks);
        apply(&store, &Op::Cancel { coupon: 1 }, &acks);
        let claim_2 = Op::Claim {
            who: 0,
            order: 2,
            upper: false,
            points: 10,
        };
        apply(&store, &claim_2, &acks);
        for order in [2, 3] {
            let reverse = Op::Reverse {
                order,
                upper: true,
                cancelled: false,
            };
            apply(&store, &reverse, &acks);
        }
        let state = ConversationState {
            data: serde_json::json!({"step": "ask_email"}),
        };
        store.save_conversation(&identity(0), &state).unwrap();
        let events = ["m1", "m2"].map(|k| InboundEvent {
            key: k.into(),
            sender: "psid-0".into(),
            timestamp_ms: 1,
            payload: serde_json::json!({}).into(),
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
        (id, ids[0].clone())
    };

    let store = open(&dir);
    let account = store.member(id).unwrap().unwrap();
    assert_eq!(account.balance, Points(BONUS + 30 - 15));
    assert_eq!(store.ledger(id).unwrap().len(), 7);
    let reversal = |n| store.order_reversal(&number(n, false).into()).unwrap();
    assert_eq!(reversal(2).and_then(|r| r.member), Some(id));
    assert!(reversal(3).is_some_and(|r| r.member.is_none()));
    let statuses: Vec<_> = store
        .coupons_of(id)
        .unwrap()
        .iter()
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, [CouponStatus::Issued, CouponStatus::Cancelled]);
    assert_eq!(
        store
            .order_claim(&OrderNumber::parse("a-100").unwrap().into())
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
    assert_eq!(outbox, std::slice::from_ref(&outbox_id));
    check_invariants(&store, &acks).unwrap();

    // Counters resume past what was used before the restart: no reused ids, and replies queued
    // after the restart come after the ones queued before it.
    apply(&store, &Op::Join { who: 1, email: 1 }, &acks);
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
    let later = later.unwrap();
    let queued: Vec<_> = store
        .pending_outbound()
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        queued,
        [outbox_id, later[0].clone()],
        "queue order survives a restart"
    );
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
