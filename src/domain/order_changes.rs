//! Points follow the order: what an order earns in the state the shop reports now, and how a
//! change of that becomes one ledger entry.
//!
//! The policy, in one place (the reversal rules of [`super::reversals`] still hold):
//!
//! - **The shop's current state is the truth.** A webhook only says "look again"; the order is
//!   read back from the shop and its points are *set* to what that state earns, so redelivered
//!   or out-of-order webhooks converge on the same ledger and nothing is applied twice.
//! - **What an order earns**: floor(net total × rate) while it is paid (a partial refund lowers
//!   the net total), nothing while it is pending, on hold or a test.
//! - **A refund of everything, or a cancellation, ends the order.** Everything it still stands
//!   at is reversed once, the reversal is kept with the order forever, and no later state can
//!   credit it again (an order refunded before anyone claimed it can never be claimed).
//! - **Each change is one entry naming the order**: a decrease is an order reversal, capped at
//!   the balance with the rest recorded as `shortfall`; an increase (an order edited upwards, a
//!   payment completed after an on-hold spell) is an order credit.

use super::reversals::{settle, Settlement};
use super::{points_for, OrderId, OrderNumber, OrderStatus, Points, ReversalReason};
use rust_decimal::Decimal;

/// An order as the shop describes it now, reduced to what the points rules need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderState {
    /// The shop's own id: what the order is kept under.
    pub id: OrderId,
    /// The number customers see, which ledger entries name.
    pub number: OrderNumber,
    /// The order's net total now.
    pub total: Decimal,
    /// What the order earns in this state.
    pub earns: Points,
    /// Set when the order is over: refunded in full or cancelled.
    pub ended: Option<ReversalReason>,
}

impl OrderState {
    /// The state of an order of `status` worth `total` now, at `points_per_unit`.
    pub fn of(
        id: OrderId,
        number: OrderNumber,
        status: &OrderStatus,
        total: Decimal,
        points_per_unit: Decimal,
    ) -> Self {
        let ended = match status {
            OrderStatus::Refunded => Some(ReversalReason::Refunded),
            OrderStatus::Cancelled => Some(ReversalReason::Cancelled),
            _ => None,
        };
        let earns = match status.earns() {
            true => points_for(total, points_per_unit),
            false => Points::ZERO,
        };
        OrderState {
            id,
            number,
            total,
            earns,
            ended,
        }
    }

    /// What a claimed order should stand at: nothing once it has ended.
    pub fn target(&self) -> Points {
        match self.ended {
            Some(_) => Points::ZERO,
            None => self.earns,
        }
    }
}

/// How a claimed order's points move from what it stands at to its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointsChange {
    Unchanged,
    /// Take back the difference, never below zero ([`settle`]).
    Debit(Settlement),
    /// Credit the difference.
    Credit(Points),
}

/// The change from `earned` (what the order stands at) to `target`, for a member whose
/// balance is `balance`.
pub fn points_change(earned: Points, target: Points, balance: Points) -> PointsChange {
    use std::cmp::Ordering::*;
    match target.cmp(&earned) {
        Equal => PointsChange::Unchanged,
        Less => PointsChange::Debit(settle(Points(earned.0 - target.0), balance)),
        Greater => PointsChange::Credit(Points(target.0 - earned.0)),
    }
}

/// The ledger's words for an order change (`reason` of the entry), which the statement email
/// and the admin ledger show.
pub mod reasons {
    /// A paid order credited from the shop's webhook, nobody having claimed it.
    pub const AUTO_CREDIT: &str = "credited automatically when the shop reported it paid";
    /// The order's total went down (a partial refund, an edit) or it stopped earning.
    pub const LOWERED: &str = "the order now earns less (a partial refund or a change)";
    /// The order's total went up, or it earns again.
    pub const RAISED: &str = "the order now earns more (a change or a completed payment)";
    /// The order was refunded in full.
    pub const REFUNDED: &str = "the order was refunded";
    /// The order was cancelled.
    pub const CANCELLED: &str = "the order was cancelled";
}

impl ReversalReason {
    /// The ledger's words for a reversal of this reason.
    pub fn ledger_reason(self) -> &'static str {
        match self {
            ReversalReason::Refunded => reasons::REFUNDED,
            ReversalReason::Cancelled => reasons::CANCELLED,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn state(status: &str, total: &str) -> OrderState {
        OrderState::of(
            OrderId::parse("gid://shopify/Order/1").unwrap(),
            OrderNumber::parse("1001").unwrap(),
            &OrderStatus::parse(status),
            Decimal::from_str(total).unwrap(),
            Decimal::ONE,
        )
    }

    #[test]
    fn a_paid_order_earns_its_net_total_floored() {
        let s = state("partially_refunded", "39.99");
        assert_eq!(
            (s.earns, s.ended, s.target()),
            (Points(39), None, Points(39))
        );
    }

    #[test]
    fn refunds_and_cancellations_end_the_order_at_nothing() {
        let s = state("refunded", "0.00");
        assert_eq!(
            (s.ended, s.target()),
            (Some(ReversalReason::Refunded), Points::ZERO)
        );
        let s = state("cancelled", "59.90");
        assert_eq!(
            (s.ended, s.target()),
            (Some(ReversalReason::Cancelled), Points::ZERO)
        );
    }

    #[test]
    fn orders_on_hold_or_tests_earn_nothing_without_ending() {
        for status in ["on-hold", "pending", "test"] {
            let s = state(status, "59.90");
            assert_eq!((s.earns, s.ended), (Points::ZERO, None), "{status}");
        }
    }

    #[test]
    fn a_lower_target_debits_the_difference_never_below_zero() {
        assert_eq!(
            points_change(Points(59), Points(39), Points(100)),
            PointsChange::Debit(Settlement {
                taken: Points(20),
                shortfall: Points::ZERO
            })
        );
        assert_eq!(
            points_change(Points(59), Points(39), Points(5)),
            PointsChange::Debit(Settlement {
                taken: Points(5),
                shortfall: Points(15)
            })
        );
    }

    proptest! {
        #[test]
        fn a_change_lands_exactly_on_the_target_or_records_the_rest(
            earned in 0..1_000_000u64, target in 0..1_000_000u64, balance in 0..1_000_000u64
        ) {
            match points_change(Points(earned), Points(target), Points(balance)) {
                PointsChange::Unchanged => prop_assert_eq!(earned, target),
                PointsChange::Credit(p) => prop_assert_eq!(earned + p.0, target),
                PointsChange::Debit(s) => {
                    prop_assert_eq!(earned - s.taken.0 - s.shortfall.0, target);
                    prop_assert!(s.taken.0 <= balance);
                }
            }
        }
    }
}
