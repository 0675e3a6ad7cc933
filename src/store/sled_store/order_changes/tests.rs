//! Order reversals and changes on the sled store, one rule per test.

use super::super::records::{encode, OrderRecord};
use super::super::test_members::{claim, join};
use super::super::SledStore;
use crate::domain::*;
use crate::store::*;
use chrono::{Duration, Utc};
use std::sync::Arc;

fn open() -> (tempfile::TempDir, SledStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), 8 << 20).unwrap();
    (dir, store)
}

fn number(n: &str) -> OrderNumber {
    OrderNumber::parse(n).unwrap()
}

fn reverse(store: &SledStore, n: &str) -> ReverseOutcome {
    store
        .reverse_order(&number(n).into(), ReversalReason::Refunded, Utc::now())
        .unwrap()
}

/// A reversal that must take points back: its record and the balance after it.
fn reversed(store: &SledStore, n: &str) -> (Reversal, Points) {
    match reverse(store, n) {
        ReverseOutcome::Reversed { reversal, balance } => (reversal, balance),
        other => panic!("expected a reversal, got {other:?}"),
    }
}

fn balance(store: &SledStore, id: MemberId) -> Points {
    store.member(id).unwrap().unwrap().balance
}

#[test]
fn a_reversal_debits_the_orders_credit_once() {
    let (_d, store) = open();
    let id = join(&store, "ana");
    claim(&store, id, "1001", 42);
    let (reversal, after) = reversed(&store, "1001");
    assert_eq!(after, Points(50));
    assert_eq!(reversal.member, Some(id));
    assert_eq!(
        (reversal.credited, reversal.taken, reversal.shortfall),
        (Points(42), Points(42), Points::ZERO)
    );
    let again = store
        .reverse_order(
            &number("#1001").into(),
            ReversalReason::Cancelled,
            Utc::now(),
        )
        .unwrap();
    assert_eq!(again, ReverseOutcome::AlreadyReversed { reversal });
    assert_eq!(balance(&store, id), Points(50));
    let ledger = store.ledger(id).unwrap();
    let last = ledger.last().unwrap();
    assert_eq!(ledger.len(), 3);
    assert_eq!(
        (last.kind, last.points, last.shortfall),
        (EntryKind::OrderReversal, -42, Some(Points::ZERO))
    );
}

#[test]
fn a_spent_credit_is_debited_down_to_zero_and_the_rest_recorded_as_shortfall() {
    let (_d, store) = open();
    let id = join(&store, "ana");
    claim(&store, id, "1001", 42);
    let now = Utc::now();
    let reward = Reward {
        id: "bag".into(),
        title: "Bag".into(),
        points: Points(80),
        product_ids: vec![],
        checkout_url: "https://shop.example/".into(),
        value: None,
        discount: Default::default(),
    };
    let code = CouponCode::generate("bag");
    let spent = store.redeem_reward(id, &reward, code, now + Duration::days(30), now, None);
    assert!(matches!(spent, Ok(RedeemOutcome::Reserved { balance, .. }) if balance == Points(12)));
    let (reversal, after) = reversed(&store, "1001");
    assert_eq!(after, Points::ZERO);
    assert_eq!(
        (reversal.taken, reversal.shortfall),
        (Points(12), Points(30))
    );
    let last = store.ledger(id).unwrap().pop().unwrap();
    assert_eq!((last.points, last.shortfall), (-12, Some(Points(30))));
}

#[test]
fn a_refund_before_the_claim_blocks_every_later_claim() {
    let (_d, store) = open();
    let id = join(&store, "ana");
    let first = reverse(&store, "a-7");
    let ReverseOutcome::RecordedBeforeClaim { reversal } = first else {
        panic!("expected a recorded reversal, got {first:?}");
    };
    assert_eq!(reversal.member, None);
    assert!(matches!(
        claim(&store, id, "A-7", 42),
        ClaimOutcome::Reversed {
            reason: ReversalReason::Refunded,
            ..
        }
    ));
    assert_eq!(balance(&store, id), Points(50));
    assert_eq!(store.order_claim(&number("A-7").into()).unwrap(), None);
    assert!(matches!(
        reverse(&store, "A-7"),
        ReverseOutcome::AlreadyReversed { .. }
    ));
}

#[test]
fn a_reversed_order_stays_claimed_by_its_member() {
    let (_d, store) = open();
    let (ana, max) = (join(&store, "ana"), join(&store, "max"));
    claim(&store, ana, "1001", 42);
    reverse(&store, "1001");
    for who in [ana, max] {
        assert!(matches!(
            claim(&store, who, "1001", 42),
            ClaimOutcome::AlreadyClaimed { by, .. } if by == ana
        ));
    }
    assert_eq!(
        store
            .order_claim(&number("1001").into())
            .unwrap()
            .map(|c| c.0),
        Some(ana)
    );
    assert_eq!(
        (balance(&store, ana), balance(&store, max)),
        (Points(50), Points(50))
    );
}

#[test]
fn an_order_record_round_trips_and_half_a_claim_is_refused() {
    // Claims without their points are layout 0's; after the migration none is left.
    for half in [
        r#"{"member":7}"#,
        r#"{"member":7,"at":"2026-01-01T00:00:00Z"}"#,
    ] {
        let record: OrderRecord = serde_json::from_str(half).unwrap();
        assert!(record.claim().is_err(), "{half}");
    }
    let fresh = OrderRecord::claimed(MemberId(7), Utc::now(), Points(3));
    let back: OrderRecord = serde_json::from_slice(&encode("r", &fresh).unwrap()).unwrap();
    assert_eq!(back.claim().unwrap().unwrap().points, Points(3));
}

#[test]
fn concurrent_reversals_and_claims_of_one_order_settle_it_once() {
    let (_d, store) = open();
    let store = Arc::new(store);
    let members: Vec<_> = (0..4).map(|i| join(&store, &format!("p{i}"))).collect();
    // Each thread says what it achieved: a credit, or a first (not repeated) reversal.
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let (store, id) = (Arc::clone(&store), members[i % 4]);
            std::thread::spawn(move || match i % 2 {
                0 => matches!(claim(&store, id, "1001", 42), ClaimOutcome::Credited { .. }),
                _ => !matches!(
                    reverse(&store, "1001"),
                    ReverseOutcome::AlreadyReversed { .. }
                ),
            })
        })
        .collect();
    let won: Vec<bool> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let credits = won.iter().step_by(2).filter(|w| **w).count();
    let reversals = won.iter().skip(1).step_by(2).filter(|w| **w).count();
    assert!(credits <= 1, "credited {credits} times");
    assert_eq!(reversals, 1, "reversed {reversals} times");
    // Either a claim came first (credited, then taken back) or the refund did (no credit).
    let reversal = store
        .order_reversal(&number("1001").into())
        .unwrap()
        .expect("reversed");
    assert_eq!(reversal.member.is_some(), credits == 1);
    let total: u64 = members.iter().map(|m| balance(&store, *m).0).sum();
    assert_eq!(total, 4 * 50);
}

// Points follow the order: `settle_order`.

const GID: &str = "gid://shopify/Order/450789469";

fn shop_claim(store: &SledStore, id: MemberId, total: &str) -> ClaimOutcome {
    let order = VerifiedOrder {
        id: OrderId::parse(GID).unwrap(),
        number: number("1001"),
        email: Email::parse("ana@example.com").unwrap(),
        total: total.parse().unwrap(),
        currency: "EUR".into(),
        status: OrderStatus::Paid,
    };
    let points = points_for(order.total, rust_decimal::Decimal::ONE);
    store.claim_order(id, &order, points, Utc::now()).unwrap()
}

fn state(status: &str, total: &str) -> OrderState {
    OrderState::of(
        OrderId::parse(GID).unwrap(),
        number("1001"),
        &OrderStatus::parse(status),
        total.parse().unwrap(),
        rust_decimal::Decimal::ONE,
    )
}

fn settle(store: &SledStore, s: &OrderState, to: Option<MemberId>) -> SettleOutcome {
    store.settle_order(s, to, Utc::now()).unwrap()
}

fn order_entries(store: &SledStore, id: MemberId) -> Vec<LedgerEntry> {
    store
        .ledger(id)
        .unwrap()
        .into_iter()
        .filter(|e| e.order_number.is_some())
        .collect()
}

#[test]
fn a_partial_then_a_full_refund_are_one_entry_each_and_redeliveries_none() {
    let (_d, store) = open();
    let id = join(&store, "ana");
    shop_claim(&store, id, "59.90");
    assert_eq!(balance(&store, id), Points(109));
    let partial = state("partially_refunded", "39.90");
    match settle(&store, &partial, None) {
        SettleOutcome::Changed {
            from, to, taken, ..
        } => {
            assert_eq!((from, to, taken), (Points(59), Points(39), Points(20)))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        settle(&store, &partial, None),
        SettleOutcome::Unchanged { member: Some(id) }
    );
    let full = state("refunded", "0.00");
    match settle(&store, &full, None) {
        SettleOutcome::Changed { taken, ended, .. } => {
            assert_eq!(taken, Points(39));
            assert_eq!(ended.unwrap().credited, Points(39));
        }
        other => panic!("{other:?}"),
    }
    // A late partial-refund delivery after the full refund changes nothing.
    assert_eq!(
        settle(&store, &partial, None),
        SettleOutcome::Unchanged { member: Some(id) }
    );
    assert_eq!(balance(&store, id), Points(50));
    let entries = order_entries(&store, id);
    let points: Vec<i64> = entries.iter().map(|e| e.points).collect();
    assert_eq!(points, vec![59, -20, -39]);
    for e in &entries {
        assert_eq!(e.order_number, Some(number("1001")));
        assert_eq!(e.order_id, Some(OrderId::parse(GID).unwrap()));
    }
    let standing = store
        .order_standing(&OrderId::parse(GID).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(standing.earned, Points::ZERO);
    assert_eq!(standing.number, Some(number("1001")));
    assert_eq!(standing.total, Some("59.90".parse().unwrap()));
}

#[test]
fn a_refund_of_spent_points_takes_the_balance_and_records_the_shortfall() {
    let (_d, store) = open();
    let id = join(&store, "ana");
    shop_claim(&store, id, "100.00");
    let reward = Reward {
        id: "mug".into(),
        title: "Mug".into(),
        checkout_url: String::new(),
        points: Points(140),
        product_ids: vec!["1".into()],
        value: None,
        discount: Discount::default(),
    };
    let code = CouponCode::generate("mug");
    let at = Utc::now();
    store
        .redeem_reward(id, &reward, code, at + Duration::days(30), at, None)
        .unwrap();
    assert_eq!(balance(&store, id), Points(10));
    match settle(&store, &state("partially_refunded", "40.00"), None) {
        SettleOutcome::Changed {
            taken,
            shortfall,
            balance,
            ..
        } => assert_eq!(
            (taken, shortfall, balance),
            (Points(10), Points(50), Points(0))
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_order_that_earns_more_again_is_credited_the_difference() {
    let (_d, store) = open();
    let id = join(&store, "ana");
    shop_claim(&store, id, "59.90");
    settle(&store, &state("on-hold", "59.90"), None);
    assert_eq!(balance(&store, id), Points(50));
    match settle(&store, &state("paid", "59.90"), None) {
        SettleOutcome::Changed { credited, .. } => assert_eq!(credited, Points(59)),
        other => panic!("{other:?}"),
    }
    assert_eq!(balance(&store, id), Points(109));
}

#[test]
fn an_unclaimed_order_is_credited_automatically_once_and_a_claim_then_finds_it() {
    let (_d, store) = open();
    let id = join(&store, "ana");
    let paid = state("paid", "59.90");
    assert_eq!(settle(&store, &paid, None), SettleOutcome::Unclaimed);
    match settle(&store, &paid, Some(id)) {
        SettleOutcome::AutoCredited {
            member,
            points,
            balance,
        } => {
            assert_eq!((member, points, balance), (id, Points(59), Points(109)))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        settle(&store, &paid, Some(id)),
        SettleOutcome::Unchanged { member: Some(id) }
    );
    assert!(matches!(
        shop_claim(&store, id, "59.90"),
        ClaimOutcome::AlreadyClaimed { by, .. } if by == id
    ));
    assert_eq!(balance(&store, id), Points(109));
    let auto = &order_entries(&store, id)[0];
    assert_eq!(
        auto.reason.as_deref(),
        Some(order_changes::reasons::AUTO_CREDIT)
    );
}

#[test]
fn an_order_refunded_before_its_claim_is_never_credited() {
    let (_d, store) = open();
    let id = join(&store, "ana");
    assert!(matches!(
        settle(&store, &state("refunded", "0.00"), Some(id)),
        SettleOutcome::EndedBeforeClaim { .. }
    ));
    // The paid event arrives late: the order stays ended.
    assert_eq!(
        settle(&store, &state("paid", "59.90"), Some(id)),
        SettleOutcome::Unchanged { member: None }
    );
    assert!(matches!(
        shop_claim(&store, id, "59.90"),
        ClaimOutcome::Reversed { .. }
    ));
    assert_eq!(balance(&store, id), Points(50));
}

#[test]
fn a_generic_full_refund_after_a_partial_one_takes_back_what_is_left() {
    let (_d, store) = open();
    let id = join(&store, "ana");
    claim(&store, id, "1001", 42);
    let partial = OrderState {
        id: OrderId::from(&number("1001")),
        number: number("1001"),
        total: "22".parse().unwrap(),
        earns: Points(22),
        ended: None,
    };
    settle(&store, &partial, None);
    let (reversal, after) = reversed(&store, "1001");
    assert_eq!(
        (reversal.credited, reversal.taken),
        (Points(22), Points(22))
    );
    assert_eq!(after, Points(50));
}

#[test]
fn an_order_claimed_under_its_number_before_the_shop_had_ids_is_not_credited_again() {
    let (_d, store) = open();
    let id = join(&store, "ana");
    claim(&store, id, "1001", 42);
    assert!(matches!(
        shop_claim(&store, id, "59.90"),
        ClaimOutcome::AlreadyClaimed { by, .. } if by == id
    ));
    assert_eq!(
        settle(&store, &state("paid", "59.90"), Some(id)),
        SettleOutcome::Unchanged { member: Some(id) }
    );
    assert_eq!(balance(&store, id), Points(92));
}
