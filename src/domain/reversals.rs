//! Reversals: the shop refunded or cancelled an order, so the points it earned go back.
//!
//! The policy, in one place:
//!
//! - **Once per order, ever.** An order is reversed at most once; a repeated reversal (a replayed
//!   webhook, a refund followed by a cancellation) changes nothing and is reported as a repeat.
//!   A reversed order stays claimed forever: it can never be claimed (and credited) again.
//! - **Refund before the claim.** Reversing an order nobody has claimed yet records the
//!   reversal alone, so a later claim of that order is refused, even if a stale shop answer
//!   still calls it paid. Nothing is debited, because nothing was credited.
//! - **Never below zero.** The debit is the points the order credited, capped at the member's
//!   balance at that moment ([`settle`]). What the member had already spent (on a reward
//!   whose coupon they hold) is the *shortfall*: it is written down in the ledger entry and in
//!   the reversal record, visible to the operator, and written off.
//!
//! Why not a negative balance (a debt)? Balances are [`Points`], unsigned, everywhere; a
//! redemption never overdraws, and every check, message and test relies on `balance >= 0`. A
//! debt would also make the next order the customer claims silently pay it off ("you earned
//! 40 points" while the balance does not move), a worse conversation than a written-off
//! shortfall of at most one reward. The shortfall is bounded: points buy only single-use,
//! product-bound coupons, which the shop itself can void.

use super::{MemberId, OrderStatus, Points};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Why the shop took an order back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReversalReason {
    Refunded,
    Cancelled,
}

impl ReversalReason {
    /// The order status a customer claiming such an order is told about.
    pub fn order_status(self) -> OrderStatus {
        match self {
            ReversalReason::Refunded => OrderStatus::Refunded,
            ReversalReason::Cancelled => OrderStatus::Cancelled,
        }
    }
}

/// How a reversal's debit splits: `taken + shortfall` is what the order credited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    /// Debited from the balance now.
    pub taken: Points,
    /// Already spent, so not debited (written off).
    pub shortfall: Points,
}

/// Takes back `credited` points from `balance`, never below zero.
pub fn settle(credited: Points, balance: Points) -> Settlement {
    let taken = credited.min(balance);
    Settlement {
        taken,
        shortfall: Points(credited.0 - taken.0),
    }
}

/// The record of one order's reversal, kept with the order forever.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reversal {
    pub reason: ReversalReason,
    pub at: DateTime<Utc>,
    /// Whose credit was taken back; `None` when the shop reported it before anyone claimed the
    /// order (then every amount is zero and a later claim is refused).
    pub member: Option<MemberId>,
    /// What the order had credited.
    pub credited: Points,
    /// What the reversal debited.
    pub taken: Points,
    /// What it could not debit because the member had spent it.
    pub shortfall: Points,
}

impl Reversal {
    /// A reversal of an order nobody has claimed: recorded only to refuse later claims.
    pub fn before_claim(reason: ReversalReason, at: DateTime<Utc>) -> Self {
        Reversal {
            reason,
            at,
            member: None,
            credited: Points::ZERO,
            taken: Points::ZERO,
            shortfall: Points::ZERO,
        }
    }

    /// The reversal of `credited` points of `member`, whose balance is `balance` before it.
    pub fn of_credit(
        reason: ReversalReason,
        at: DateTime<Utc>,
        member: MemberId,
        credited: Points,
        balance: Points,
    ) -> Self {
        let Settlement { taken, shortfall } = settle(credited, balance);
        Reversal {
            reason,
            at,
            member: Some(member),
            credited,
            taken,
            shortfall,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_unspent_credit_is_taken_back_whole() {
        let s = settle(Points(42), Points(92));
        assert_eq!((s.taken, s.shortfall), (Points(42), Points::ZERO));
    }

    #[test]
    fn a_spent_credit_takes_the_balance_and_records_the_rest() {
        let s = settle(Points(42), Points(10));
        assert_eq!((s.taken, s.shortfall), (Points(10), Points(32)));
        let s = settle(Points(42), Points::ZERO);
        assert_eq!((s.taken, s.shortfall), (Points::ZERO, Points(42)));
    }

    #[test]
    fn reasons_map_to_the_status_a_claimer_is_told() {
        assert_eq!(
            ReversalReason::Refunded.order_status(),
            OrderStatus::Refunded
        );
        assert_eq!(
            ReversalReason::Cancelled.order_status(),
            OrderStatus::Cancelled
        );
    }

    proptest! {
        #[test]
        fn settling_never_overdraws_and_accounts_for_every_point(
            credited in 0..u64::MAX, balance in any::<u64>()
        ) {
            let s = settle(Points(credited), Points(balance));
            prop_assert!(s.taken <= Points(balance));
            prop_assert_eq!(s.taken.0 + s.shortfall.0, credited);
            prop_assert!(s.shortfall == Points::ZERO || s.taken == Points(balance));
        }
    }
}
