//! The append-only ledger: every change of a balance is one entry, and a balance is their sum.

use super::{Adjustment, OrderId, OrderNumber, Points};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    SignupBonus,
    OrderCredit,
    Redemption,
    /// Gives back the points of a redemption whose coupon the shop did not create.
    RedemptionReversal,
    /// Takes back an order's credit because the shop refunded or cancelled the order; at most
    /// the balance (see [`super::reversals`]), the rest is recorded as `shortfall`.
    OrderReversal,
    /// An operator's manual change, either way, with its `reason`.
    Adjustment,
    /// A balance brought over from another program (`loyalty-bot import-balances`).
    Import,
}

/// One ledger line. `points` is signed: credits are positive, redemptions negative.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub kind: EntryKind,
    pub points: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_number: Option<OrderNumber>,
    /// The shop's own id of the order, where it is not its number (a Shopify GID, a
    /// WooCommerce id): what the order is kept under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<OrderId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupon_code: Option<String>,
    /// For an [`EntryKind::OrderReversal`]: the part of the order's credit that was already
    /// spent and so not debited (`-points + shortfall` is what the order had credited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shortfall: Option<Points>,
    /// For an [`EntryKind::Adjustment`]: why the operator changed the balance; for an order's
    /// entry written from the shop's report: what happened to the order
    /// ([`super::order_changes::reasons`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

impl LedgerEntry {
    pub fn signup_bonus(points: Points, at: DateTime<Utc>) -> Self {
        Self::new(EntryKind::SignupBonus, signed(points), at)
    }

    pub fn order_credit(order: OrderNumber, points: Points, at: DateTime<Utc>) -> Self {
        LedgerEntry {
            order_number: Some(order),
            ..Self::new(EntryKind::OrderCredit, signed(points), at)
        }
    }

    pub fn redemption(reward_id: &str, code: &str, points: Points, at: DateTime<Utc>) -> Self {
        LedgerEntry {
            reward_id: Some(reward_id.to_owned()),
            coupon_code: Some(code.to_owned()),
            ..Self::new(EntryKind::Redemption, -signed(points), at)
        }
    }

    pub fn reversal(reward_id: &str, code: &str, points: Points, at: DateTime<Utc>) -> Self {
        LedgerEntry {
            reward_id: Some(reward_id.to_owned()),
            coupon_code: Some(code.to_owned()),
            ..Self::new(EntryKind::RedemptionReversal, signed(points), at)
        }
    }

    /// Debits `taken` for a refunded or cancelled order; `shortfall` was spent already.
    pub fn order_reversal(
        order: OrderNumber,
        taken: Points,
        shortfall: Points,
        at: DateTime<Utc>,
    ) -> Self {
        LedgerEntry {
            order_number: Some(order),
            shortfall: Some(shortfall),
            ..Self::new(EntryKind::OrderReversal, -signed(taken), at)
        }
    }

    /// The entry names the order by its shop id too, where that is not its number.
    pub fn of_order(mut self, id: &OrderId) -> Self {
        let same = self
            .order_number
            .as_ref()
            .is_some_and(|n| n.as_str().eq_ignore_ascii_case(id.as_str()));
        if !same {
            self.order_id = Some(id.clone());
        }
        self
    }

    /// The entry says why (an order change the shop reported).
    pub fn because(mut self, reason: &str) -> Self {
        self.reason = Some(reason.to_owned());
        self
    }

    /// The key of the order this entry names: its shop id, else its number.
    pub fn order_key(&self) -> Option<OrderId> {
        self.order_id
            .clone()
            .or_else(|| self.order_number.as_ref().map(OrderId::from))
    }

    pub fn adjustment(adjustment: &Adjustment, at: DateTime<Utc>) -> Self {
        LedgerEntry {
            reason: Some(adjustment.reason().to_owned()),
            ..Self::new(EntryKind::Adjustment, adjustment.points(), at)
        }
    }

    pub fn import(points: Points, at: DateTime<Utc>) -> Self {
        Self::new(EntryKind::Import, signed(points), at)
    }

    fn new(kind: EntryKind, points: i64, at: DateTime<Utc>) -> Self {
        LedgerEntry {
            kind,
            points,
            order_number: None,
            order_id: None,
            reward_id: None,
            coupon_code: None,
            shortfall: None,
            reason: None,
            at,
        }
    }
}

fn signed(points: Points) -> i64 {
    // Balances are bounded far below i64::MAX by the order totals that create them.
    i64::try_from(points.0).unwrap_or(i64::MAX)
}

/// The balance a ledger adds up to; `None` if it would be negative (a broken invariant).
pub fn balance_of(entries: &[LedgerEntry]) -> Option<Points> {
    let sum: i128 = entries.iter().map(|e| i128::from(e.points)).sum();
    u64::try_from(sum).ok().map(Points)
}
