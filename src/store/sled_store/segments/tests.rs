//! The ordered pass over members and ledgers: every row's figures are its ledger's, a cursor
//! and a break are honoured, filters are applied, and rows stay whole while writers append.

use super::super::SledStore;
use crate::domain::*;
use crate::store::{durability, ClaimOutcome, JoinOutcome, LoyaltyStore, NewMember};
use chrono::{Duration, Utc};
use std::ops::ControlFlow;

fn open() -> (tempfile::TempDir, SledStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), 8 << 20).unwrap();
    (dir, store)
}

fn join(store: &SledStore, n: usize) -> MemberId {
    let new = NewMember {
        identity: ChatIdentity::new(Channel::Messenger, &format!("p{n}")).unwrap(),
        email: Email::parse(&format!("m{n}@example.com")).unwrap(),
        profile: Profile::default(),
        bonus: Points(10),
    };
    match store.join(new, Utc::now()).unwrap() {
        JoinOutcome::Joined(a) => a.member.id,
        other => panic!("expected a new member, got {other:?}"),
    }
}

fn claim(store: &SledStore, id: MemberId, order: &str, points: u64) {
    let order = VerifiedOrder {
        id: crate::domain::OrderId::from(&OrderNumber::parse(order).unwrap()),
        number: OrderNumber::parse(order).unwrap(),
        email: Email::parse("x@example.com").unwrap(),
        total: "1".parse().unwrap(),
        currency: "EUR".into(),
        status: OrderStatus::Paid,
    };
    let out = store.claim_order(id, &order, Points(points), Utc::now());
    assert!(matches!(out.unwrap(), ClaimOutcome::Credited { .. }));
}

fn rows(store: &SledStore, filter: &SegmentFilter, after: Option<MemberId>) -> Vec<MemberRow> {
    let mut out = Vec::new();
    store
        .member_rows(filter, after, &mut |row| {
            out.push(row);
            ControlFlow::Continue(())
        })
        .unwrap();
    out
}

fn filter(pairs: &[(&str, &str)]) -> SegmentFilter {
    SegmentFilter::parse(pairs.iter().copied(), &Catalogue::default(), Utc::now()).unwrap()
}

#[test]
fn every_member_comes_once_in_id_order_with_their_ledger_s_figures() {
    let (_d, store) = open();
    // More than one batch, and ledgers of different lengths next to each other.
    let ((), _) = durability::deferred(|| {
        for n in 0..1500 {
            let id = join(&store, n);
            for k in 0..(n % 3) {
                claim(&store, id, &format!("{n}-{k}"), 5);
            }
        }
    });
    store.flush_now().unwrap();
    let all = rows(&store, &SegmentFilter::default(), None);
    assert_eq!(all.len(), 1500);
    assert!(all.windows(2).all(|w| w[0].member.id < w[1].member.id));
    for row in all.iter().step_by(7) {
        let ledger = store.ledger(row.member.id).unwrap();
        assert_eq!(row.stats, MemberStats::of(&ledger), "{}", row.member.id);
        assert_eq!(Some(row.points), ledger::balance_of(&ledger));
    }
}

#[test]
fn a_scan_starts_after_the_cursor_and_stops_when_told() {
    let (_d, store) = open();
    let ids: Vec<MemberId> = (0..5).map(|n| join(&store, n)).collect();
    let after: Vec<_> = rows(&store, &SegmentFilter::default(), Some(ids[1]))
        .iter()
        .map(|r| r.member.id)
        .collect();
    assert_eq!(after, ids[2..]);
    assert!(rows(&store, &SegmentFilter::default(), Some(MemberId(u64::MAX))).is_empty());
    let mut seen = 0;
    store
        .member_rows(&SegmentFilter::default(), None, &mut |_| {
            seen += 1;
            ControlFlow::Break(())
        })
        .unwrap();
    assert_eq!(seen, 1);
}

#[test]
fn filters_on_points_and_on_activity_are_applied() {
    let (_d, store) = open();
    let ids: Vec<MemberId> = (0..4).map(|n| join(&store, n)).collect();
    claim(&store, ids[1], "A-1", 100);
    claim(&store, ids[2], "A-2", 300);
    let picked = |pairs: &[(&str, &str)]| -> Vec<MemberId> {
        rows(&store, &filter(pairs), None)
            .iter()
            .map(|r| r.member.id)
            .collect()
    };
    assert_eq!(picked(&[("min_points", "100")]), [ids[1], ids[2]]);
    assert_eq!(
        picked(&[("min_points", "100"), ("max_points", "200")]),
        [ids[1]]
    );
    assert!(picked(&[("inactive_days", "1")]).is_empty());
    let later = SegmentFilter {
        inactive_since: Some(Utc::now() + Duration::days(1)),
        ..SegmentFilter::default()
    };
    assert_eq!(rows(&store, &later, None).len(), 4);
}

#[test]
fn rows_stay_whole_while_writers_append() {
    let (_d, store) = open();
    let ids: Vec<MemberId> = (0..200).map(|n| join(&store, n)).collect();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..2 {
            let (store, ids, stop) = (&store, &ids, &stop);
            s.spawn(move || {
                let mut k = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let ((), _) = durability::deferred(|| {
                        for id in ids.iter().skip(t).step_by(2) {
                            claim(store, *id, &format!("{t}-{k}-{id}"), 1);
                        }
                    });
                    k += 1;
                }
            });
        }
        // Stops the writers however the scans end, a failed assertion included.
        struct Stop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let _stop = Stop(&stop);
        for _ in 0..30 {
            // The scan itself refuses a row whose figures do not add up to its balance.
            for row in rows(&store, &SegmentFilter::default(), None) {
                assert_eq!(
                    i128::from(row.points.0),
                    i128::from(row.stats.points_earned - row.stats.points_redeemed)
                );
            }
        }
    });
}

#[test]
fn a_scan_told_to_stop_stops_its_reading_thread_too() {
    let (_d, store) = open();
    let ((), _) = durability::deferred(|| {
        for n in 0..2000 {
            join(&store, n);
        }
    });
    store.flush_now().unwrap();
    // Past the hand-over to the reading thread, with most of the ledger still unread.
    let mut seen = 0;
    store
        .member_rows(&SegmentFilter::default(), None, &mut |_| {
            seen += 1;
            if seen == 1100 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(seen, 1100);
}
