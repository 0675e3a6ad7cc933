//! What a member's ledger adds up to beyond the balance: the figures a segment shows for each
//! member. They are folded entry by entry, oldest first, so that a store computes them in the
//! same pass that reads the ledger; nothing is stored besides the ledger.
//!
//! The definitions keep `points = points_earned - points_redeemed` true for every member:
//! - `points_earned`: every entry except redemptions and their reversals, with its sign: the
//!   signup bonus and order credits, less what refunded or cancelled orders took back (the
//!   part of such an order already spent stays earned; see [`super::reversals`]), and any other
//!   kind of entry (a manual adjustment, an imported balance) as it moved the balance.
//! - `points_redeemed`: points spent on rewards, less those given back for coupons the shop
//!   did not create.
//! - `rewards_redeemed`: redemptions less those given back: the coupons the member got.
//! - `orders_claimed`: orders credited to the member. One refunded later still counts (a claim
//!   is forever); its points have left `points_earned`.
//! - `last_activity_at`: the time of the member's most recent ledger entry.

use super::{EntryKind, LedgerEntry, Member, Points};
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemberStats {
    pub last_activity_at: Option<DateTime<Utc>>,
    pub orders_claimed: u64,
    pub points_earned: i64,
    pub points_redeemed: i64,
    pub rewards_redeemed: i64,
    /// How many entries were folded.
    pub entries: u64,
    /// Their sum: the balance they make.
    pub sum: i128,
}

impl MemberStats {
    /// Folds one entry in.
    pub fn add(&mut self, kind: EntryKind, points: i64, at: DateTime<Utc>) {
        match kind {
            EntryKind::Redemption => {
                self.points_redeemed -= points;
                self.rewards_redeemed += 1;
            }
            EntryKind::RedemptionReversal => {
                self.points_redeemed -= points;
                self.rewards_redeemed -= 1;
            }
            EntryKind::OrderCredit => {
                self.points_earned += points;
                self.orders_claimed += 1;
            }
            // The signup bonus, order reversals, and whatever else moves a balance: earned
            // (or taken back) with its sign, so that a kind of entry added later keeps
            // `points = earned - redeemed` without a change here.
            _ => self.points_earned += points,
        }
        self.entries += 1;
        self.sum += i128::from(points);
        self.last_activity_at = Some(self.last_activity_at.map_or(at, |last| last.max(at)));
    }

    /// The figures of a whole ledger.
    pub fn of(entries: &[LedgerEntry]) -> MemberStats {
        let mut stats = MemberStats::default();
        for e in entries {
            stats.add(e.kind, e.points, e.at);
        }
        stats
    }

    /// Whether these figures are those of a ledger whose sum is `balance`.
    pub fn add_up_to(&self, balance: Points) -> bool {
        self.sum == i128::from(balance.0)
    }
}

/// One member of a segment: who, their balance, and their ledger's figures, all as at one
/// instant (`points` is the sum of the entries `stats` folded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    pub member: Member,
    pub points: Points,
    pub stats: MemberStats,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OrderNumber;
    use chrono::TimeZone;

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, day, 12, 0, 0).unwrap()
    }

    #[test]
    fn earned_and_redeemed_are_net_of_reversals_and_make_the_balance() {
        let order = |n: &str| OrderNumber::parse(n).unwrap();
        let ledger = vec![
            LedgerEntry::signup_bonus(Points(50), at(1)),
            LedgerEntry::order_credit(order("1001"), Points(120), at(2)),
            LedgerEntry::order_credit(order("1002"), Points(80), at(3)),
            LedgerEntry::redemption("mug", "MUG-1", Points(200), at(4)),
            LedgerEntry::redemption("mug", "MUG-2", Points(20), at(9)),
            // The shop did not create the second coupon: its points come back.
            LedgerEntry::reversal("mug", "MUG-2", Points(20), at(5)),
            // Order 1002 refunded; 30 of its 80 points were spent already.
            LedgerEntry::order_reversal(order("1002"), Points(30), Points(50), at(6)),
        ];
        let s = MemberStats::of(&ledger);
        assert_eq!(s.points_earned, 50 + 120 + 80 - 30);
        assert_eq!(s.points_redeemed, 200);
        assert_eq!(s.rewards_redeemed, 1);
        assert_eq!(s.orders_claimed, 2, "a refunded order was still claimed");
        assert_eq!(s.entries, 7);
        let balance = crate::domain::ledger::balance_of(&ledger).unwrap();
        assert_eq!(
            i128::from(s.points_earned - s.points_redeemed),
            i128::from(balance.0)
        );
        assert!(s.add_up_to(balance));
        assert!(!s.add_up_to(Points(balance.0 + 1)));
        assert_eq!(
            s.last_activity_at,
            Some(at(9)),
            "the latest entry, not the last appended"
        );
    }

    #[test]
    fn an_empty_ledger_has_no_activity() {
        let s = MemberStats::of(&[]);
        assert_eq!(s, MemberStats::default());
        assert!(s.last_activity_at.is_none());
        assert!(s.add_up_to(Points::ZERO));
    }
}
