//! Pure domain types and rules: members, points, the ledger, orders, rewards and coupons.
//! Nothing here knows about HTTP, sled, reqwest or the chat channels.

pub mod adjustments;
pub mod coupons;
pub mod ledger;
pub mod mail;
pub mod member_stats;
pub mod members;
pub mod order_changes;
pub mod orders;
pub mod points;
pub mod reversals;
pub mod rewards;
pub mod segments;
pub mod verification;

pub use adjustments::{Adjustment, AppliedImport, ImportedBalance, RequestKey, MAX_MANUAL_POINTS};
pub use coupons::{Coupon, CouponCode, CouponStatus};
pub use ledger::{EntryKind, LedgerEntry};
pub use member_stats::{MemberRow, MemberStats};
pub use members::{Channel, ChatIdentity, Email, Member, MemberAccount, MemberId, Profile};
pub use order_changes::{points_change, OrderState, PointsChange};
pub use orders::{points_for, OrderId, OrderNumber, OrderStatus, VerifiedOrder};
pub use points::Points;
pub use reversals::{Reversal, ReversalReason};
pub use rewards::{Catalogue, Discount, Reward};
pub use segments::{FilterError, SegmentFilter};

/// A value from outside failed the domain's rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("not a valid email address: {0}")]
    InvalidEmail(&'static str),
    #[error("not a valid order number: {0}")]
    InvalidOrderNumber(&'static str),
    #[error("not a valid amount: {0}")]
    InvalidAmount(String),
    #[error("not a valid chat identity: {0}")]
    InvalidIdentity(&'static str),
    #[error("not a valid adjustment: {0}")]
    InvalidAdjustment(String),
    #[error("the Idempotency-Key must be 1 to {0} visible ASCII characters")]
    InvalidRequestKey(usize),
}
