//! The parts of a [`super::MailModel`]: a member's standing (balance, rewards, what was won,
//! coupons) and a verification code, each value in the form a template prints.

use rust_decimal::Decimal;
use serde::Serialize;

/// A member's standing, for the statement and the reminders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountView {
    pub points: u64,
    pub currency: String,
    /// Rewards the balance affords now, cheapest first.
    pub rewards_now: Vec<RewardView>,
    /// The cheapest reward not affordable yet; `none` when every reward is.
    pub next_reward: Option<RewardView>,
    pub points_to_next: Option<u64>,
    /// The balance as a share of the next reward's points, 0–100 (100 when there is none).
    pub progress_percent: u64,
    pub won: Won,
    /// Issued coupons not expired yet, soonest expiry first.
    pub open_coupons: Vec<CouponView>,
    /// The coupon a coupon reminder is about (absent in other kinds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coupon: Option<CouponView>,
    /// What the shop's reports did to the member's orders since the previous statement (empty
    /// in other kinds), oldest first.
    pub order_changes: Vec<OrderChangeView>,
}

/// One change the shop reported to an order: a ledger entry written from a webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderChangeView {
    /// The number the customer knows the order by.
    pub order: String,
    /// `credited` (a paid order credited without a claim), `lowered` (a partial refund or a
    /// change), `raised`, `refunded` or `cancelled`.
    pub change: &'static str,
    /// What it did to the balance, signed (`-20`).
    pub points: i64,
    /// Of the order's points, what had been spent already and was written off, not taken.
    pub shortfall: u64,
    /// The day, as the chat prints dates.
    pub on: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RewardView {
    pub title: String,
    pub points: u64,
    pub checkout_url: Option<String>,
}

/// "What you have won so far": every redemption whose coupon was not cancelled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Won {
    pub count: u64,
    /// The sum of the rewards' values; `none` when none of them has a value.
    pub total: Option<String>,
    /// Per reward, in the order first won.
    pub rewards: Vec<WonReward>,
    /// The exact total, for code (not shown to templates).
    #[serde(skip)]
    pub total_value: Option<Decimal>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WonReward {
    pub title: String,
    pub count: u64,
    /// `count` times the reward's value; `none` when it has none.
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CouponView {
    pub code: String,
    pub reward: String,
    pub expires_on: String,
    pub checkout_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CodeView {
    pub code: String,
    pub valid_minutes: i64,
}
