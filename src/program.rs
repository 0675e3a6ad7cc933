//! The use cases every channel shares: join, claim an order, show a balance, redeem a reward.
//! This is the only code that orders side effects: ask the shop, then commit atomically (and
//! durably) in the store, and only then report success to the caller. Rate limits come first:
//! a refused claim or redemption reads nothing, asks the shop nothing and changes nothing.

use crate::domain::{ledger::balance_of, FilterError, LedgerEntry, MemberRow, SegmentFilter};
use crate::domain::{
    points_for, Adjustment, Catalogue, ChatIdentity, Coupon, CouponCode, CouponStatus, Email,
    Member, MemberId, OrderId, OrderNumber, OrderStatus, Points, Profile, RequestKey,
    ReversalReason, Reward,
};
use crate::limits::{Limited, Limits};
use crate::metrics::Metrics;
use crate::segments::{self, SegmentError, SegmentFormat};
use crate::shop::{CouponRequest, Shop, ShopError};
use crate::store::{
    AdjustOutcome, ClaimOutcome, JoinOutcome, LoyaltyStore, MemberAccount, NewMember,
    RedeemOutcome, ReverseOutcome, StoreError,
};
use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;

mod locks;
mod mail;
mod orders;
mod verification;

pub use mail::MailSubject;
pub use orders::{FollowError, Followed, OrderNews, OrderNotice};
pub use verification::{CodeMail, CodeResult};

/// The program's rules, from `[program]`.
#[derive(Debug, Clone)]
pub struct Rules {
    pub signup_bonus: Points,
    pub points_per_currency_unit: rust_decimal::Decimal,
    pub coupon_valid_days: u32,
    pub currency: String,
    /// Credit a paid order from the shop's webhook to the member with its email, unclaimed.
    pub auto_credit: bool,
}

/// Coupon codes tried per redemption when the shop says a code is taken.
const CODE_ATTEMPTS: u32 = 3;

/// One try at a redemption: done, or the shop had the code already (the points are back).
enum Attempt {
    Done(Box<RedeemResult>),
    CodeTaken,
}

/// How long a repeated redemption waits for the first attempt's shop call (whose own timeout
/// is at most 60 s, usually 5).
const SETTLE_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a storage task failed to complete")]
    Join(#[from] tokio::task::JoinError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinResult {
    Joined(MemberAccount),
    AlreadyMember(MemberAccount),
    EmailTaken,
    /// Verification is on: nobody joined yet; a code went to this address.
    CodeSent(Email),
    /// Verification is on and a code went out less than the cool-down ago; nothing changed.
    CodeCoolingDown {
        wait_secs: u64,
    },
    /// The join waits for its code, but the code's email could not be sent.
    CodeNotSent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimResult {
    Credited {
        order: OrderNumber,
        points: Points,
        balance: Points,
    },
    AlreadyClaimedByYou {
        at: DateTime<Utc>,
        balance: Points,
    },
    AlreadyClaimedByOther,
    /// No such order, or it belongs to another email (the two are not told apart on purpose).
    NotFound,
    NotPaid(OrderStatus),
    OtherCurrency(String),
    /// The shop withholds the order's email (Shopify without protected customer data access),
    /// so it cannot be matched to anyone: the owner must fix the app's access.
    EmailWithheld,
    ShopUnavailable,
    /// Too many claims (or failed claims) by this member lately; nothing was looked up.
    Limited(Limited),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedeemResult {
    Redeemed {
        coupon: Coupon,
        reward: Reward,
        balance: Points,
    },
    Insufficient {
        reward: Reward,
        balance: Points,
        gap: Points,
    },
    UnknownReward,
    /// The shop did not create the coupon; the points were not spent.
    ShopUnavailable {
        balance: Points,
    },
    /// Too many redemptions by this member lately; nothing was spent.
    Limited(Limited),
}

impl ClaimResult {
    /// The `result` label of `loyalty_order_claims_total`.
    pub fn label(&self) -> &'static str {
        match self {
            ClaimResult::Credited { .. } => "credited",
            ClaimResult::AlreadyClaimedByYou { .. } => "already_claimed",
            ClaimResult::AlreadyClaimedByOther => "claimed_by_other",
            ClaimResult::NotFound => "not_found",
            ClaimResult::NotPaid(_) => "not_paid",
            ClaimResult::OtherCurrency(_) => "other_currency",
            ClaimResult::EmailWithheld => "email_withheld",
            ClaimResult::ShopUnavailable => "shop_unavailable",
            ClaimResult::Limited(_) => "limited",
        }
    }

    /// The points this claim credited.
    fn credited(&self) -> Points {
        match self {
            ClaimResult::Credited { points, .. } => *points,
            _ => Points::ZERO,
        }
    }
}

impl RedeemResult {
    /// The `result` label of `loyalty_redemptions_total` (a replayed request is `repeated`).
    pub fn label(&self) -> &'static str {
        match self {
            RedeemResult::Redeemed { .. } => "redeemed",
            RedeemResult::Insufficient { .. } => "insufficient_points",
            RedeemResult::UnknownReward => "unknown_reward",
            RedeemResult::ShopUnavailable { .. } => "shop_unavailable",
            RedeemResult::Limited(_) => "limited",
        }
    }
}

pub struct Program {
    store: Arc<dyn LoyaltyStore>,
    shop: Arc<dyn Shop>,
    catalogue: Catalogue,
    rules: Rules,
    limits: Arc<Limits>,
    metrics: Metrics,
    /// Set when joins wait for a code sent to the address.
    codes: Option<Arc<dyn CodeMail>>,
    /// Set when member email is on: reminders are scheduled by these rules.
    mail: Option<crate::domain::mail::MailPolicy>,
    /// The time verification codes and mail go by.
    clock: Arc<dyn crate::clock::Clock>,
    /// Tells members about order changes they did not ask about; set once the channel that
    /// carries it exists (after the program).
    notice: std::sync::OnceLock<Arc<dyn OrderNotice>>,
    /// One claim or shop webhook per order at a time (`locks.rs`).
    turns: locks::Turns,
}

impl Program {
    pub fn new(
        store: Arc<dyn LoyaltyStore>,
        shop: Arc<dyn Shop>,
        catalogue: Catalogue,
        rules: Rules,
    ) -> Self {
        Program {
            store,
            shop,
            catalogue,
            rules,
            limits: Arc::new(Limits::unlimited()),
            metrics: Metrics::default(),
            codes: None,
            mail: None,
            clock: Arc::new(crate::clock::SystemClock),
            notice: std::sync::OnceLock::new(),
            turns: locks::Turns::default(),
        }
    }

    /// Members hear about order changes through `notice` (their chat, in its window). The
    /// first one set stays.
    pub fn set_order_notice(&self, notice: Arc<dyn OrderNotice>) {
        let _ = self.notice.set(notice);
    }

    /// A member by id.
    pub async fn account_of(&self, id: MemberId) -> Result<Option<MemberAccount>, ProgramError> {
        self.durably(move |s| s.member(id)).await
    }

    /// The metrics to count joins, claims and redemptions into (the default counts into
    /// handles nobody reads).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The metrics, also for the channels' webhook counters.
    /// Joins wait for a code that `codes` sends to the address (`email.verify`).
    pub fn with_verification(mut self, codes: Arc<dyn CodeMail>) -> Self {
        self.codes = Some(codes);
        self
    }

    /// Member email is on: credits that make a reward affordable and new coupons schedule
    /// their reminders by `policy`.
    pub fn with_mail(mut self, policy: crate::domain::mail::MailPolicy) -> Self {
        self.mail = Some(policy);
        self
    }

    /// The clock verification codes and mail go by (tests move it).
    pub fn with_clock(mut self, clock: Arc<dyn crate::clock::Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn clock(&self) -> &Arc<dyn crate::clock::Clock> {
        &self.clock
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The rate limits to apply (the default is none: start-up always sets them).
    pub fn with_limits(mut self, limits: Arc<Limits>) -> Self {
        self.limits = limits;
        self
    }

    /// The limits, also for the HTTP layer's per-address budgets.
    pub fn limits(&self) -> &Arc<Limits> {
        &self.limits
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The raw store, for tests and offline tools only: flows, channels and handlers go through
    /// the methods of `Program`, which keep the rules (limits, ordering of side effects).
    pub fn store(&self) -> &Arc<dyn LoyaltyStore> {
        &self.store
    }

    /// The group commit's counters, for the benchmark's flush figures.
    pub fn flush_stats(&self) -> Option<crate::store::FlushStats> {
        self.store.flush_stats()
    }

    /// Waits until the writes up to `mark` are on disk: a channel that collected a turn's
    /// writes ([`crate::store::collecting`]) awaits once before it answers.
    pub async fn await_durable(&self, mark: crate::store::Mark) -> Result<(), ProgramError> {
        Ok(self.store.durable(mark).await?)
    }

    /// The paused conversation of `who`, as the engine saved it (opaque to the program).
    pub async fn conversation(
        &self,
        who: &ChatIdentity,
    ) -> Result<Option<serde_json::Value>, ProgramError> {
        let who = who.clone();
        let state = self.durably(move |s| s.conversation(&who)).await?;
        Ok(state.map(|c| c.data))
    }

    /// Saves the engine's state of the conversation with `who`.
    pub async fn save_conversation(
        &self,
        who: &ChatIdentity,
        data: serde_json::Value,
    ) -> Result<(), ProgramError> {
        let who = who.clone();
        let state = crate::store::ConversationState { data };
        self.durably(move |s| s.save_conversation(&who, &state))
            .await
    }

    /// The member with this email, if any.
    pub async fn member_by_email(
        &self,
        email: &Email,
    ) -> Result<Option<MemberAccount>, ProgramError> {
        let email = email.clone();
        self.durably(move |s| s.member_by_email(&email)).await
    }

    /// The member with this email and their ledger (oldest first), read together.
    pub async fn member_with_ledger_by_email(
        &self,
        email: &Email,
    ) -> Result<Option<(MemberAccount, Vec<crate::domain::LedgerEntry>)>, ProgramError> {
        let email = email.clone();
        self.durably(move |s| match s.member_by_email(&email)? {
            Some(account) => {
                let ledger = s.ledger(account.member.id)?;
                Ok(Some((account, ledger)))
            }
            None => Ok(None),
        })
        .await
    }

    /// Runs one store operation (a point read or write, microseconds) on the current thread
    /// and returns once its effect is durable; the flush is awaited, not blocked on. Inside a
    /// channel's [`crate::store::collecting`] scope the wait is left to the channel, which
    /// awaits once before it answers.
    async fn durably<T, F>(&self, f: F) -> Result<T, ProgramError>
    where
        F: FnOnce(&dyn LoyaltyStore) -> Result<T, StoreError>,
    {
        Ok(crate::store::run_durably(self.store.as_ref(), f).await?)
    }

    /// [`Program::durably`] that is on disk when it returns, whatever the scope: for a write
    /// that a side effect outside the store (the shop making a coupon) must not overtake.
    async fn durably_now<T, F>(&self, f: F) -> Result<T, ProgramError>
    where
        F: FnOnce(&dyn LoyaltyStore) -> Result<T, StoreError>,
    {
        Ok(crate::store::run_durably_now(self.store.as_ref(), f).await?)
    }

    /// Writes the whole store to `out` in the export format ([`crate::backup`]), while it
    /// serves. Blocking (it walks the store): call it on a blocking thread.
    pub fn export(
        &self,
        out: &mut dyn std::io::Write,
    ) -> Result<crate::backup::ExportSummary, crate::backup::BackupError> {
        crate::backup::export(self.store.as_ref(), out, &mut |_| {})
    }

    pub async fn account(&self, who: &ChatIdentity) -> Result<Option<MemberAccount>, ProgramError> {
        let who = who.clone();
        self.durably(move |s| s.member_by_identity(&who)).await
    }

    pub async fn join(
        &self,
        who: &ChatIdentity,
        email: Email,
        profile: Profile,
    ) -> Result<JoinResult, ProgramError> {
        if let Some(codes) = self.codes.clone() {
            return self
                .begin_verified_join(codes.as_ref(), who, email, profile)
                .await;
        }
        let new = NewMember {
            identity: who.clone(),
            email,
            profile,
            bonus: self.rules.signup_bonus,
        };
        let out = self.durably(move |s| s.join(new, self.clock.now())).await?;
        Ok(match out {
            JoinOutcome::Joined(a) => {
                self.metrics.joined(self.rules.signup_bonus.0);
                tracing::info!(member.id = %a.member.id, "member joined");
                self.remind_if_affordable(a.member.id, Points::ZERO, a.balance)
                    .await;
                JoinResult::Joined(a)
            }
            JoinOutcome::AlreadyMember(a) => JoinResult::AlreadyMember(a),
            JoinOutcome::EmailTaken => JoinResult::EmailTaken,
        })
    }

    /// Claims an order for a member, within the member's claim budgets. An unknown order, or
    /// one claimed by someone else, is charged to the tighter failed-claims budget: that is
    /// what guessing order numbers looks like.
    pub async fn claim(
        &self,
        member: &Member,
        order: OrderNumber,
    ) -> Result<ClaimResult, ProgramError> {
        let result = self.try_claim(member, order).await;
        let (label, credited) = match &result {
            Ok(r) => (r.label(), r.credited().0),
            Err(_) => ("error", 0),
        };
        self.metrics
            .claimed(member.identity.channel, label, credited);
        result
    }

    async fn try_claim(
        &self,
        member: &Member,
        order: OrderNumber,
    ) -> Result<ClaimResult, ProgramError> {
        let id = member.id;
        if let Err(limited) = self.limits.start_claim(id) {
            tracing::warn!(member.id = %id, retry_after_secs = limited.retry_after_secs(), "claim refused: rate limit");
            return Ok(ClaimResult::Limited(limited));
        }
        // A claim abandoned half-way (the caller went away) keeps its failed-claim token:
        // it comes back with the refill, and erring that way never helps a guesser.
        let result = self.claim_within_limits(member, order).await;
        let failed = matches!(
            result,
            Ok(ClaimResult::NotFound | ClaimResult::AlreadyClaimedByOther)
        );
        if !failed {
            self.limits.claim_did_not_fail(id);
        }
        result
    }

    async fn claim_within_limits(
        &self,
        member: &Member,
        order: OrderNumber,
    ) -> Result<ClaimResult, ProgramError> {
        let id = member.id;
        // Cheap early answer for repeat claims where the typed number is the order's key;
        // the store's index is the real guard.
        if self.shop.ids_are_numbers() {
            let o = OrderId::from(&order);
            if let Some((by, at)) = self.durably(move |s| s.order_claim(&o)).await? {
                return self.already_claimed(id, by, at).await;
            }
        }
        // The shop's answer and the claim's write in one turn of this order: a webhook about
        // it waits, so it cannot settle between them (`locks.rs`).
        let _turn = self.turns.take(locks::number_key(order.as_str())).await;
        let found = match self.shop.find_order(&order, &member.email).await {
            Ok(found) => found,
            Err(e) => {
                log_shop_error(&e, "order look-up", id);
                return Ok(ClaimResult::ShopUnavailable);
            }
        };
        let Some(shop_order) =
            found.filter(|o| o.number.as_str().eq_ignore_ascii_case(order.as_str()))
        else {
            return Ok(ClaimResult::NotFound);
        };
        let Some(email) = shop_order.email.clone() else {
            tracing::error!(
                member.id = %id,
                order = %order,
                "the shop withheld the order's email: the app needs protected customer data \
                 access (Shopify: Level 2, see docs/shopify.md)"
            );
            return Ok(ClaimResult::EmailWithheld);
        };
        if email != member.email {
            return Ok(ClaimResult::NotFound);
        }
        if !shop_order.status.earns() {
            return Ok(ClaimResult::NotPaid(shop_order.status));
        }
        if !shop_order
            .currency
            .eq_ignore_ascii_case(&self.rules.currency)
        {
            return Ok(ClaimResult::OtherCurrency(shop_order.currency));
        }
        let points = points_for(shop_order.total, self.rules.points_per_currency_unit);
        let verified = crate::domain::VerifiedOrder {
            id: shop_order.id,
            number: shop_order.number,
            email,
            total: shop_order.total,
            currency: shop_order.currency,
            status: shop_order.status,
        };
        let out = self
            .durably(move |s| s.claim_order(id, &verified, points, self.clock.now()))
            .await?;
        match out {
            ClaimOutcome::Credited { points, balance } => {
                tracing::info!(member.id = %id, order = %order, points = points.0, "order credited");
                self.remind_if_affordable(id, Points(balance.0.saturating_sub(points.0)), balance)
                    .await;
                Ok(ClaimResult::Credited {
                    order,
                    points,
                    balance,
                })
            }
            ClaimOutcome::AlreadyClaimed { by, at } => self.already_claimed(id, by, at).await,
            // The shop's refund beat the claim (its verify answer was older than the refund).
            ClaimOutcome::Reversed { reason, .. } => {
                Ok(ClaimResult::NotPaid(reason.order_status()))
            }
        }
    }

    async fn already_claimed(
        &self,
        me: MemberId,
        by: MemberId,
        at: DateTime<Utc>,
    ) -> Result<ClaimResult, ProgramError> {
        if by != me {
            return Ok(ClaimResult::AlreadyClaimedByOther);
        }
        let balance = self.balance(me).await?;
        Ok(ClaimResult::AlreadyClaimedByYou { at, balance })
    }

    pub async fn balance(&self, member: MemberId) -> Result<Points, ProgramError> {
        let acc = self.account_of(member).await?;
        Ok(acc.map(|a| a.balance).unwrap_or_default())
    }

    /// Redeems a reward. `request` names the customer's request (the webhook event, a tapped
    /// choice's one-time id): replaying it returns the coupon of the first attempt instead of
    /// spending the points twice.
    pub async fn redeem(
        &self,
        member: &Member,
        reward_id: &str,
        request: Option<&str>,
    ) -> Result<RedeemResult, ProgramError> {
        let mut repeated = false;
        let result = self
            .try_redeem(member, reward_id, request, &mut repeated)
            .await;
        let (label, spent) = match &result {
            Ok(_) if repeated => ("repeated", 0),
            Ok(RedeemResult::Redeemed { reward, .. }) => ("redeemed", reward.points.0),
            Ok(r) => (r.label(), 0),
            Err(_) => ("error", 0),
        };
        // Only configured ids become label values: a typed id must not make a new series.
        let reward = self.catalogue.get(reward_id).map_or("unknown", |r| &r.id);
        self.metrics.redeemed(reward, label, spent);
        result
    }

    /// [`Program::redeem`]; `repeated` is set when the request was a replay of an earlier one.
    async fn try_redeem(
        &self,
        member: &Member,
        reward_id: &str,
        request: Option<&str>,
        repeated: &mut bool,
    ) -> Result<RedeemResult, ProgramError> {
        let id = member.id;
        if let Err(limited) = self.limits.redemptions_per_member.acquire(&id) {
            tracing::warn!(member.id = %id, retry_after_secs = limited.retry_after_secs(), "redemption refused: rate limit");
            return Ok(RedeemResult::Limited(limited));
        }
        let Some(reward) = self.catalogue.get(reward_id).cloned() else {
            return Ok(RedeemResult::UnknownReward);
        };
        let mut attempt = 1;
        loop {
            let bound = if attempt == 1 { request } else { None };
            let out = self.redeem_once(member, &reward, bound, repeated).await?;
            match out {
                Attempt::Done(result) => {
                    if let (RedeemResult::Redeemed { coupon, .. }, Some(r), true) =
                        (result.as_ref(), request, attempt > 1)
                    {
                        // A replay of the request must find this coupon, not the first try's.
                        let (code, r) = (coupon.code.clone(), r.to_owned());
                        self.durably(move |s| s.rebind_request(id, &r, &code))
                            .await?;
                    }
                    return Ok(*result);
                }
                // The shop has a discount with that code already (it is not one of ours: ours
                // are random and never sent twice): the points came back; a new code.
                Attempt::CodeTaken if attempt < CODE_ATTEMPTS => {
                    tracing::warn!(member.id = %id, attempt, "the shop has that coupon code already; trying a new one");
                    attempt += 1;
                }
                Attempt::CodeTaken => {
                    let balance = self.balance(id).await?;
                    return Ok(RedeemResult::ShopUnavailable { balance });
                }
            }
        }
    }

    /// One reservation and coupon request. `request` binds the first attempt; a retry's
    /// coupon is bound to it once issued ([`LoyaltyStore::rebind_request`]).
    async fn redeem_once(
        &self,
        member: &Member,
        reward: &Reward,
        request: Option<&str>,
        repeated: &mut bool,
    ) -> Result<Attempt, ProgramError> {
        let id = member.id;
        let reward = reward.clone();
        let now = self.clock.now();
        let expires_at = now + Duration::days(i64::from(self.rules.coupon_valid_days));
        let code = CouponCode::generate(&reward.id);
        let r = reward.clone();
        let req = request.map(str::to_owned);
        // Durable before the shop is asked: a crash after the coupon exists there must find
        // the pending coupon here (start-up gives its points back).
        let out = self
            .durably_now(move |s| s.redeem_reward(id, &r, code, expires_at, now, req.as_deref()))
            .await?;
        let (coupon, reward) = match out {
            RedeemOutcome::InsufficientPoints { balance, needed } => {
                return Ok(Attempt::Done(Box::new(RedeemResult::Insufficient {
                    gap: balance.gap_to(needed),
                    reward,
                    balance,
                })))
            }
            RedeemOutcome::Reserved { coupon, .. } => (coupon, reward),
            RedeemOutcome::Repeated { coupon, .. } => {
                *repeated = true;
                // Pending coupons left by a crash are cancelled at start-up, so a pending one
                // here belongs to the same request still in flight (a double tap): wait for
                // its outcome rather than asking the shop for the same code a second time.
                let coupon = self.settled(coupon).await?;
                let balance = self.balance(id).await?;
                let reward = self
                    .catalogue
                    .get(&coupon.reward_id)
                    .cloned()
                    .unwrap_or(reward);
                return Ok(Attempt::Done(Box::new(match coupon.status {
                    CouponStatus::Issued => RedeemResult::Redeemed {
                        coupon,
                        reward,
                        balance,
                    },
                    CouponStatus::Cancelled | CouponStatus::Pending => {
                        RedeemResult::ShopUnavailable { balance }
                    }
                })));
            }
        };
        let request = CouponRequest {
            code: coupon.code.to_string(),
            reward_id: reward.id.clone(),
            product_ids: reward.product_ids.clone(),
            expires_at: coupon.expires_at,
            email: member.email.clone(),
            discount: reward.discount,
        };
        let code = coupon.code.clone();
        if let Err(e) = self.shop.create_coupon(&request).await {
            log_shop_error(&e, "coupon creation", id);
            let balance = self
                .durably(move |s| s.cancel_coupon(&code, self.clock.now()))
                .await?;
            if matches!(e, ShopError::CodeTaken) {
                return Ok(Attempt::CodeTaken);
            }
            return Ok(Attempt::Done(Box::new(RedeemResult::ShopUnavailable {
                balance,
            })));
        }
        let coupon = self.durably(move |s| s.confirm_coupon(&code)).await?;
        let balance = self.balance(id).await?;
        if coupon.status != CouponStatus::Issued {
            return Ok(Attempt::Done(Box::new(RedeemResult::ShopUnavailable {
                balance,
            })));
        }
        tracing::info!(member.id = %id, reward = %reward.id, "reward redeemed");
        self.remind_of_coupon(&coupon).await;
        Ok(Attempt::Done(Box::new(RedeemResult::Redeemed {
            coupon,
            reward,
            balance,
        })))
    }

    /// The shop refunded or cancelled an order: take back what it credited, once per order,
    /// ever (see [`crate::domain::reversals`] for the policy). An order nobody has claimed is
    /// recorded so that its later claims are refused. The member hears of a reversal as of
    /// any order news (in the chat while their window is open, else in their statement).
    pub async fn reverse_order(
        &self,
        order: OrderNumber,
        reason: ReversalReason,
    ) -> Result<ReverseOutcome, ProgramError> {
        let id = OrderId::from(&order);
        let out = self
            .durably(move |s| s.reverse_order(&id, reason, self.clock.now()))
            .await?;
        if let ReverseOutcome::Reversed { reversal, balance } = &out {
            if let Some(member) = reversal.member {
                let news = OrderNews::Lowered {
                    order,
                    taken: reversal.taken,
                    ended: Some(reason),
                    balance: *balance,
                };
                self.tell(member, news);
            }
        }
        Ok(out)
    }

    /// The coupon once its first attempt has settled (issued or cancelled), or as it is after
    /// [`SETTLE_WAIT`].
    async fn settled(&self, mut coupon: Coupon) -> Result<Coupon, ProgramError> {
        let deadline = tokio::time::Instant::now() + SETTLE_WAIT;
        while coupon.status == CouponStatus::Pending && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let code = coupon.code.clone();
            match self.durably(move |s| s.coupon(&code)).await? {
                Some(c) => coupon = c,
                None => break,
            }
        }
        Ok(coupon)
    }

    /// An operator's adjustment of a member's balance, applied once per request `key` (see
    /// [`LoyaltyStore::adjust`]); never takes a balance below zero.
    pub async fn adjust(
        &self,
        member: MemberId,
        adjustment: Adjustment,
        key: RequestKey,
    ) -> Result<AdjustOutcome, ProgramError> {
        let out = self
            .durably(move |s| s.adjust(member, &adjustment, &key, self.clock.now()))
            .await?;
        if let AdjustOutcome::Applied(a) = &out {
            let before = Points(a.balance.0.saturating_add_signed(-a.entry.points));
            self.remind_if_affordable(member, before, a.balance).await;
        }
        Ok(out)
    }

    /// Coupons left pending by a crash between reserving points and the shop's answer: the
    /// customer never saw their code, so the points go back (the code, if the shop made it,
    /// is unguessable and unknown to anyone).
    pub async fn recover_pending_coupons(&self) -> Result<usize, ProgramError> {
        let pending = self.durably(|s| s.pending_coupons()).await?;
        let n = pending.len();
        for c in pending {
            let code = c.code.clone();
            self.durably(move |s| s.cancel_coupon(&code, self.clock.now()))
                .await?;
            tracing::warn!(member.id = %c.member, "pending coupon from an interrupted redemption cancelled; points restored");
        }
        Ok(n)
    }
}

// Members and segments: operator listings. Scans of the store run on the blocking pool.
impl Program {
    /// A segment filter from `name=value` pairs ([`crate::domain::segments::PARAMETERS`]),
    /// with this program's catalogue for `can_redeem`.
    pub fn segment_filter<'a>(
        &self,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<SegmentFilter, FilterError> {
        SegmentFilter::parse(pairs, &self.catalogue, self.clock.now())
    }

    /// Up to `limit` members of the segment, from the first id above `after`, and whether
    /// more follow.
    pub async fn member_page(
        &self,
        filter: SegmentFilter,
        after: Option<MemberId>,
        limit: usize,
    ) -> Result<(Vec<MemberRow>, bool), ProgramError> {
        let store = Arc::clone(&self.store);
        let page = tokio::task::spawn_blocking(move || {
            let mut rows = Vec::with_capacity(limit.min(1024) + 1);
            store.member_rows(&filter, after, &mut |row| {
                rows.push(row);
                if rows.len() > limit {
                    std::ops::ControlFlow::Break(())
                } else {
                    std::ops::ControlFlow::Continue(())
                }
            })?;
            let more = rows.len() > limit;
            rows.truncate(limit);
            Ok::<_, StoreError>((rows, more))
        });
        Ok(page.await??)
    }

    /// The whole segment written to `out` ([`crate::segments::write_segment`]). Blocking: call
    /// it from a blocking thread.
    pub fn write_segment(
        &self,
        filter: &SegmentFilter,
        format: SegmentFormat,
        out: &mut dyn std::io::Write,
    ) -> Result<u64, SegmentError> {
        segments::write_segment(self.store.as_ref(), filter, format, out, &mut |_| {})
    }

    /// A member and their ledger, oldest first; the balance is the ledger's sum, so the two
    /// agree even while a write lands between the reads.
    pub async fn member_with_ledger(
        &self,
        id: MemberId,
    ) -> Result<Option<(MemberAccount, Vec<LedgerEntry>)>, ProgramError> {
        self.durably(move |s| {
            let Some(mut account) = s.member(id)? else {
                return Ok(None);
            };
            let ledger = s.ledger(id)?;
            account.balance = balance_of(&ledger).ok_or_else(|| StoreError::Corrupt {
                what: format!("the ledger of member {id} adds up below zero"),
                source: None,
            })?;
            Ok(Some((account, ledger)))
        })
        .await
    }
}

fn log_shop_error(e: &ShopError, what: &str, member: MemberId) {
    tracing::warn!(member.id = %member, error = %e, "shop {what} failed");
}
