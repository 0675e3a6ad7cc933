//! The store seam: every method is one atomic, durable domain operation. When a method returns
//! `Ok`, its effect is on disk (group-committed flush), so a reply that announces it survives
//! `kill -9`. Backends (sled today) implement [`LoyaltyStore`] and [`EventQueue`]; flows and
//! handlers only ever see these traits, and call them through [`run_durably`], which awaits
//! the flush instead of parking a thread on it.

pub mod backup;
pub mod durability;
mod flusher;
mod keys;
mod manual;
mod sled_store;

pub use durability::{
    collecting, run_durably, run_durably_now, AwaitDurable, Durability, FlushStats, Mark,
};
pub use flusher::{GroupCommit, Pacing};
pub use manual::{AdjustOutcome, Adjusted, ImportOutcome, ImportRow};
pub use sled_store::{ClosedStore, SledStore};

use crate::domain::mail::{DueMail, MailPolicy, MailResult, MailState, OutboxMail};
use crate::domain::verification::{PendingJoin, VerificationCode};
use crate::domain::{
    Adjustment, Channel, ChatIdentity, Coupon, CouponCode, Email, ImportedBalance, LedgerEntry,
    MemberId, MemberRow, OrderId, OrderNumber, OrderState, Points, Profile, RequestKey, Reversal,
    ReversalReason, Reward, SegmentFilter, VerifiedOrder,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage backend failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("stored record is unreadable: {what}")]
    Corrupt {
        what: String,
        #[source]
        source: Option<serde_json::Error>,
    },
    #[error("unknown member {0}")]
    UnknownMember(MemberId),
    #[error("unknown coupon {0}")]
    UnknownCoupon(CouponCode),
    #[error(
        "the store's layout is version {found}, newer than this loyalty-bot knows ({known}): \
         run the newer loyalty-bot that wrote it"
    )]
    NewerLayout { found: u32, known: u32 },
    #[error("the store is not empty")]
    NotEmpty,
    #[error(
        "an import into this store did not finish, so it holds part of a backup: run the \
         import again (it starts over) or remove the store"
    )]
    RestoreUnfinished,
    #[error("the backup does not fit the store: {0}")]
    Conflict(String),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Backend(Box::new(e))
    }
}

pub use crate::domain::MemberAccount;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinOutcome {
    /// New member; the signup bonus is in their ledger.
    Joined(MemberAccount),
    /// This chat identity is already a member (no second bonus).
    AlreadyMember(MemberAccount),
    /// The email belongs to a member reached through another chat identity; nothing changed.
    EmailTaken,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    Credited {
        points: Points,
        balance: Points,
    },
    /// The order was credited before (to `by`, at `at`); nothing changed. A claimed order
    /// stays claimed after a reversal, so this is also the answer for reversed claims.
    AlreadyClaimed {
        by: MemberId,
        at: DateTime<Utc>,
    },
    /// The shop refunded or cancelled the order before anyone claimed it; nothing changed.
    Reversed {
        reason: ReversalReason,
        at: DateTime<Utc>,
    },
}

/// An order as the store holds it ([`LoyaltyStore::order_standing`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderStanding {
    /// The number customers see, when the store knows it apart from the id.
    pub number: Option<OrderNumber>,
    /// Who claimed it (or had it credited automatically), and when.
    pub claim: Option<(MemberId, DateTime<Utc>)>,
    /// The order's net total when it was claimed.
    pub total: Option<rust_decimal::Decimal>,
    /// What it stands at now (after partial refunds or changes).
    pub earned: Points,
    pub reversal: Option<Reversal>,
}

/// What [`LoyaltyStore::settle_order`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettleOutcome {
    /// Nobody has the order and it has not ended: nothing recorded (a claim credits what it
    /// earns then).
    Unclaimed,
    /// The order ended before anyone claimed it: recorded, so later claims are refused.
    EndedBeforeClaim { reversal: Reversal },
    /// The order already stands where its state says (or ended before); nothing changed.
    Unchanged { member: Option<MemberId> },
    /// The claimed order moved `from` → `to` points by one ledger entry (`taken` debited and
    /// `shortfall` written off, or `credited`); `ended` when this change ended it.
    Changed {
        member: MemberId,
        from: Points,
        to: Points,
        taken: Points,
        shortfall: Points,
        credited: Points,
        balance: Points,
        ended: Option<Reversal>,
    },
    /// Credited to `member` without a claim.
    AutoCredited {
        member: MemberId,
        points: Points,
        balance: Points,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReverseOutcome {
    /// The order's credit was taken back now (at most the balance; see
    /// [`crate::domain::reversals`]). `balance` is the member's balance afterwards.
    Reversed { reversal: Reversal, balance: Points },
    /// Nobody had claimed the order: the reversal is recorded and every later claim of the
    /// order is refused.
    RecordedBeforeClaim { reversal: Reversal },
    /// The order was reversed before (this `reversal`); nothing changed.
    AlreadyReversed { reversal: Reversal },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedeemOutcome {
    /// Points deducted and the coupon recorded as pending until the shop confirms it.
    Reserved {
        coupon: Coupon,
        balance: Points,
    },
    InsufficientPoints {
        balance: Points,
        needed: Points,
    },
    /// The same request (`request` key) redeemed before: its coupon, whatever its status now.
    Repeated {
        coupon: Coupon,
        balance: Points,
    },
}

/// Everything needed to enrol someone.
#[derive(Debug, Clone)]
pub struct NewMember {
    pub identity: ChatIdentity,
    pub email: Email,
    pub profile: Profile,
    pub bonus: Points,
}

/// A paused conversation: which flow and step waits for the customer, with collected values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationState {
    pub data: serde_json::Value,
}

pub trait LoyaltyStore: AwaitDurable + Send + Sync + 'static {
    fn member(&self, id: MemberId) -> Result<Option<MemberAccount>, StoreError>;
    fn member_by_identity(&self, who: &ChatIdentity) -> Result<Option<MemberAccount>, StoreError>;
    fn member_by_email(&self, email: &Email) -> Result<Option<MemberAccount>, StoreError>;
    /// The member's ledger, oldest first.
    fn ledger(&self, id: MemberId) -> Result<Vec<LedgerEntry>, StoreError>;
    /// All members at once, ordered by id: for tests and small stores. Segments and exports
    /// stream instead ([`LoyaltyStore::member_rows`], [`LoyaltyStore::backup`]).
    fn members(&self) -> Result<Vec<MemberAccount>, StoreError>;

    /// Enrols a member and credits the signup bonus, exactly once per identity and per email.
    fn join(&self, new: NewMember, now: DateTime<Utc>) -> Result<JoinOutcome, StoreError>;

    /// Credits a verified order once, ever: the claimed-orders index (keyed by the shop's order
    /// id) is global across members and channels, and concurrent calls for one order credit
    /// it exactly once. The order's total is kept with the claim.
    fn claim_order(
        &self,
        member: MemberId,
        order: &VerifiedOrder,
        points: Points,
        now: DateTime<Utc>,
    ) -> Result<ClaimOutcome, StoreError>;

    /// Who claimed an order, if anyone (reversed or not: a claim is forever).
    fn order_claim(&self, order: &OrderId)
        -> Result<Option<(MemberId, DateTime<Utc>)>, StoreError>;

    /// What the store knows of an order: its claim, what it stands at, its reversal.
    fn order_standing(&self, order: &OrderId) -> Result<Option<OrderStanding>, StoreError>;

    /// Sets a claimed order's points to what `state` earns now, atomically, as one ledger
    /// entry naming the order (see [`crate::domain::order_changes`]); repeats change nothing.
    /// An order that `state` says ended (refunded in full, cancelled) is reversed as
    /// [`LoyaltyStore::reverse_order`] does, once. An unclaimed order that earns is credited to
    /// `credit_to` when given (auto-credit), once, ever, exactly as a claim would.
    fn settle_order(
        &self,
        state: &OrderState,
        credit_to: Option<MemberId>,
        now: DateTime<Utc>,
    ) -> Result<SettleOutcome, StoreError>;

    /// Whether a webhook delivery id of `source` was recorded as handled.
    fn delivery_seen(&self, source: &str, delivery: &str) -> Result<bool, StoreError>;

    /// Records a webhook delivery of `source` as handled (after its effect is stored, so that
    /// a crash in between has the redelivery handled). Ids are kept a week.
    fn record_delivery(
        &self,
        source: &str,
        delivery: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Takes back what a refunded or cancelled order credited, atomically and once per order,
    /// ever: a ledger entry debits the credit, capped at the balance (the rest is recorded as
    /// shortfall), and the order stays claimed. An order nobody claimed gets the reversal
    /// recorded so that later claims are refused. Concurrent calls, and calls concurrent with
    /// a claim of the same order, serialise on the order.
    fn reverse_order(
        &self,
        order: &OrderId,
        reason: ReversalReason,
        now: DateTime<Utc>,
    ) -> Result<ReverseOutcome, StoreError>;

    /// The reversal of an order, if the shop reported one.
    fn order_reversal(&self, order: &OrderId) -> Result<Option<Reversal>, StoreError>;

    /// Deducts the reward's points and records a pending coupon in one atomic step; never takes
    /// a balance below zero, even under concurrent calls. `request` identifies the customer's
    /// request (a webhook event, a tapped choice): a replay of it returns
    /// [`RedeemOutcome::Repeated`] with the first coupon instead of spending points again.
    fn redeem_reward(
        &self,
        member: MemberId,
        reward: &Reward,
        code: CouponCode,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
        request: Option<&str>,
    ) -> Result<RedeemOutcome, StoreError>;

    /// Binds the member's `request` to coupon `code` instead of the one it named: a
    /// redemption tried again with a new code (the shop had the first one already) is what a
    /// replay of that request must find.
    fn rebind_request(
        &self,
        member: MemberId,
        request: &str,
        code: &CouponCode,
    ) -> Result<(), StoreError>;

    /// The shop created the coupon: mark it issued.
    fn confirm_coupon(&self, code: &CouponCode) -> Result<Coupon, StoreError>;

    /// The shop did not create the coupon: cancel it and give the points back (a reversal entry),
    /// once; a second call changes nothing. Returns the balance afterwards.
    fn cancel_coupon(&self, code: &CouponCode, now: DateTime<Utc>) -> Result<Points, StoreError>;

    fn coupon(&self, code: &CouponCode) -> Result<Option<Coupon>, StoreError>;
    /// Coupons of a member, oldest first.
    fn coupons_of(&self, member: MemberId) -> Result<Vec<Coupon>, StoreError>;
    /// Coupons still pending (e.g. after a crash between reserving and the shop's answer).
    fn pending_coupons(&self) -> Result<Vec<Coupon>, StoreError>;

    fn conversation(&self, who: &ChatIdentity) -> Result<Option<ConversationState>, StoreError>;
    fn save_conversation(
        &self,
        who: &ChatIdentity,
        state: &ConversationState,
    ) -> Result<(), StoreError>;
    fn clear_conversation(&self, who: &ChatIdentity) -> Result<(), StoreError>;

    // Balances changed by hand: operator adjustments and imported balances.

    /// Appends an adjustment entry and moves the balance, never below zero, and remembers
    /// `key` with the result in the same atomic step: a repeat of the same request answers
    /// [`AdjustOutcome::Repeated`] with the first result, a different request under the same
    /// key [`AdjustOutcome::KeyReused`]. A refusal remembers nothing.
    fn adjust(
        &self,
        member: MemberId,
        adjustment: &Adjustment,
        key: &RequestKey,
        now: DateTime<Utc>,
    ) -> Result<AdjustOutcome, StoreError>;

    /// Imports balances, one atomic step per row and one flush for all (a row either is
    /// recorded whole or not at all): a row whose email is a member's is credited to them, the
    /// others wait for [`LoyaltyStore::join`] with that email, which credits them with the
    /// signup bonus. An email imported before is skipped. Outcomes are in `rows`' order.
    fn import_balances(
        &self,
        rows: &[ImportRow],
        now: DateTime<Utc>,
    ) -> Result<Vec<ImportOutcome>, StoreError>;

    /// The imported balance recorded for an email, waiting or applied.
    fn imported_balance(&self, email: &Email) -> Result<Option<ImportedBalance>, StoreError>;

    /// Imported balances, waiting or applied, in email order: up to `limit` after `after`
    /// (exclusive; `None` from the first), so that a whole store's worth is read page by page.
    fn imported_balances(
        &self,
        after: Option<&Email>,
        limit: usize,
    ) -> Result<Vec<ImportedBalance>, StoreError>;

    // ---- Observability: what the metrics' gauges read; no scans ----

    /// How many members there are and the sum of their balances. Kept by the same atomic step
    /// as every join and every ledger entry, so it is right after a restart without a scan.
    fn totals(&self) -> Result<Totals, StoreError>;

    // ---- Backups (`crate::backup`): the whole store read as records while it serves, and
    // written back into an empty store. The records include the chat queue's pending work
    // (`EventQueue`), which the same backend object keeps. ----

    /// The layout version of the store (after any migration at open: the current one).
    fn layout_version(&self) -> u32;

    /// Calls `visit` with every record of the store, in the order of [`backup::BackupRecord`]'s
    /// kinds: each member (their ledger, balance, claimed orders, coupons and mail read at one
    /// instant, under the same guard as the writers that change them), then the orders nobody
    /// claimed, imported balances, conversations, pending events, processed events, the mail
    /// link key and the mail not confirmed sent (not the joins waiting for a code). Holds
    /// a member's records at a time, not the store's. Stops early when `visit` breaks. Returns
    /// once everything read is durable.
    fn backup(
        &self,
        visit: &mut dyn FnMut(backup::BackupRecord) -> std::ops::ControlFlow<()>,
    ) -> Result<(), StoreError>;

    /// Starts writing a backup into this store: refuses with [`StoreError::NotEmpty`] a store
    /// that holds anything, except the remains of a restore that did not finish (a crash),
    /// which are removed first. Until [`LoyaltyStore::restore_finish`], the store is marked as
    /// being restored, and opening it for anything but a restore is refused.
    fn restore_begin(&self) -> Result<(), StoreError>;

    /// Writes one record of a backup, as it is (no bonus, no rule applied), with the indexes
    /// it needs. Not durable until [`LoyaltyStore::restore_finish`].
    fn restore(&self, record: backup::BackupRecord) -> Result<(), StoreError>;

    /// Makes everything restored durable and clears the mark.
    fn restore_finish(&self) -> Result<(), StoreError>;

    /// Removes everything restored (the store is empty again) and clears the mark.
    fn restore_abort(&self) -> Result<(), StoreError>;

    // Members and segments: operator listings that walk the whole store.

    /// Visits, in id order from the first id above `after`, every member `filter` admits, each
    /// with their ledger's figures as at one instant (`points` is the sum of the entries its
    /// `stats` folded), until `visit` breaks. Holds a bounded number of rows at a time however
    /// large the store, stops no writer, and hands out nothing a crash could undo.
    fn member_rows(
        &self,
        filter: &SegmentFilter,
        after: Option<MemberId>,
        visit: &mut dyn FnMut(MemberRow) -> std::ops::ControlFlow<()>,
    ) -> Result<(), StoreError>;

    // Address verification (see `domain::verification`). A join waits here until its code is
    // typed: no member, no bonus, no imported balance before that.

    /// The join waiting for a code in this conversation, if any.
    fn pending_join(&self, who: &ChatIdentity) -> Result<Option<PendingJoin>, StoreError>;

    /// Records `pending` (replacing this conversation's earlier one, whatever its email) unless
    /// the conversation is a member, the email is another member's, or the earlier code is
    /// younger than the cool-down.
    fn begin_verification(
        &self,
        pending: PendingJoin,
        now: DateTime<Utc>,
    ) -> Result<BeginVerification, StoreError>;

    /// A new code for the waiting join (`code_hash` from [`crate::domain::VerificationCode::hash_for`]),
    /// after the cool-down.
    fn reissue_code(
        &self,
        who: &ChatIdentity,
        code_hash: String,
        now: DateTime<Utc>,
    ) -> Result<Reissue, StoreError>;

    /// Checks a typed code, counting a wrong one. The right code joins in the same atomic step
    /// (as [`LoyaltyStore::join`]: `bonus`, any imported balance, the first statement due) and
    /// removes the waiting join, so a code works once.
    fn verify_code(
        &self,
        who: &ChatIdentity,
        code: &VerificationCode,
        bonus: Points,
        now: DateTime<Utc>,
    ) -> Result<VerifyOutcome, StoreError>;

    // Email to members (see `domain::mail`). Every join puts the member's first statement in a
    // due-date index (`mail_policy().statement_every` after joining); the scheduler reads the
    // index's head instead of walking members.

    /// The mail rules the store applies by itself: the period of the first statement that
    /// every join schedules.
    fn mail_policy(&self) -> MailPolicy;

    /// Once in a store's life: members joined before joins scheduled statements (no
    /// `next_statement_at`) get a statement at the first `joined_at + k * statement_every`
    /// (k ≥ 1) not before `now`. A mark in the store makes later calls return at once, without
    /// reading members. Returns how many were scheduled.
    fn ensure_statement_schedule(
        &self,
        policy: &MailPolicy,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// Puts `due` in the index, replacing an entry of the same member, kind and coupon. A
    /// statement also becomes the member's `next_statement_at`.
    fn schedule_mail(&self, due: DueMail) -> Result<(), StoreError>;

    /// Up to `limit` index entries due at or before `now`, earliest first. Reads only those.
    fn due_mails(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<DueMail>, StoreError>;

    /// A member's mail state (the default for a member with none yet).
    fn mail_state(&self, member: MemberId) -> Result<MailState, StoreError>;

    /// Atomically takes `due` off the index and applies [`crate::domain::mail::decide`]:
    /// `Send` records an [`OutboxMail`] in state `Sending` with `message_id` and updates the
    /// member's state (the last marketing mail; for a statement also the last statement and
    /// the next one, `statement_every` from now, back in the index); `Postpone` puts the entry
    /// back at the later time; `Drop` removes it (a dropped statement still schedules the
    /// next). An entry no longer in the index (handled already) gives `Gone`.
    fn begin_mail(
        &self,
        due: &DueMail,
        policy: &MailPolicy,
        message_id: String,
        now: DateTime<Utc>,
    ) -> Result<MailStart, StoreError>;

    /// Records how an attempt of outbox mail `id` ended. `Permanent` counts a bounce; the
    /// [`crate::domain::mail::MAX_BOUNCES`]th in a row marks the member undeliverable. `Sent`
    /// resets the count.
    fn finish_mail(
        &self,
        id: u64,
        result: MailResult,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Outbox mail not finished: `Sending` (a crash between the record and its answer) and
    /// `Retry`, oldest first.
    fn unsent_mails(&self) -> Result<Vec<OutboxMail>, StoreError>;

    /// Opts the member out of (`true`) or back into marketing mail. `Ok(false)`: no change.
    fn set_unsubscribed(
        &self,
        member: MemberId,
        unsubscribed: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Keeps the language the member chats in (`en`, `de`), for their mail.
    fn set_member_locale(&self, member: MemberId, locale: &str) -> Result<(), StoreError>;

    /// The key that signs unsubscribe links: made at the first call and kept in the store (and
    /// its backups), so links in sent mail keep working across restarts and moves.
    fn mail_link_key(&self) -> Result<[u8; 32], StoreError>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeginVerification {
    /// Recorded: send the code.
    Started,
    AlreadyMember(MemberAccount),
    /// The email belongs to another member; nothing recorded.
    EmailTaken,
    /// The last code went out less than the cool-down ago; nothing changed.
    CoolingDown {
        wait: chrono::Duration,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reissue {
    /// The new code is recorded: send it to `pending.email`.
    Reissued(PendingJoin),
    CoolingDown {
        wait: chrono::Duration,
    },
    /// No join waits in this conversation.
    NoPending,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyOutcome {
    Joined(MemberAccount),
    Wrong {
        tries_left: u8,
    },
    Expired,
    Locked,
    NoPending,
    AlreadyMember(MemberAccount),
    /// Someone else joined with the email while this code waited.
    EmailTaken,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailStart {
    Send(OutboxMail),
    Postponed(DateTime<Utc>),
    Dropped(&'static str),
    Gone,
}

/// Members and points, for the metrics (see [`LoyaltyStore::totals`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub members: u64,
    /// The sum of all balances: points earned and not yet spent or taken back.
    pub points: u64,
}

/// How much chat work waits, for the metrics; `None` where the backend cannot tell without a
/// scan (yet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepths {
    /// Events recorded and not processed yet.
    pub inbox: Option<u64>,
    /// Replies queued and not delivered (nor dropped) yet.
    pub outbox: Option<u64>,
}

/// An inbound chat event, recorded before the webhook is acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundEvent {
    /// De-duplication key (`mid`, or a key derived from sender, kind, timestamp, ref).
    pub key: String,
    /// Who it is from (the channel's id for the person).
    pub sender: String,
    /// Event time in milliseconds, for ordering per sender.
    pub timestamp_ms: i64,
    /// The channel's event, as JSON, to be parsed again by the channel when processed.
    pub payload: EventPayload,
}

/// A channel event's JSON text, kept as received: the webhook hot path copies it instead of
/// building (and cloning) a `serde_json::Value` tree, and it is stored as the same JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventPayload(Box<serde_json::value::RawValue>);

impl EventPayload {
    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Copies one JSON value's text (as found inside a parsed body).
    pub fn from_raw(raw: &serde_json::value::RawValue) -> Self {
        EventPayload(raw.to_owned())
    }
}

impl From<serde_json::Value> for EventPayload {
    fn from(v: serde_json::Value) -> Self {
        // A `Value` always serializes.
        EventPayload(serde_json::value::to_raw_value(&v).expect("a JSON value serializes"))
    }
}

impl PartialEq for EventPayload {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for EventPayload {}

/// A reply waiting to be delivered, in order, to one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundMessage {
    pub recipient: String,
    /// The request body for the platform (e.g. a Send API body).
    pub body: serde_json::Value,
    /// The inbound event this answers, for tracing and crash tests.
    pub in_reply_to: String,
    /// Delivery attempts so far.
    #[serde(default)]
    pub attempts: u32,
}

/// Names one queued reply: the event it answers and its place among that event's replies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReplyId {
    Event { key: String, index: u32 },
}

impl std::fmt::Display for ReplyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ReplyId::Event { key, index } = self;
        write!(f, "{key}#{index}")
    }
}

/// How many events of each customer a read of pending events may take: `default` each, fewer
/// for those in `left` (already holding some). So that one customer with very many events
/// waiting cannot fill a read meant for everyone.
#[derive(Clone, Debug)]
pub struct SenderQuota {
    pub default: usize,
    pub left: std::collections::HashMap<String, usize>,
}

impl SenderQuota {
    /// No cap on anyone.
    pub fn unlimited() -> Self {
        SenderQuota {
            default: usize::MAX,
            left: Default::default(),
        }
    }

    /// How many more of `sender`'s events a read may take.
    pub fn of(&self, sender: &str) -> usize {
        self.left.get(sender).copied().unwrap_or(self.default)
    }

    /// `sorted` (oldest first) without each sender's events beyond their quota, and whether
    /// any was cut. Each sender's remaining events are a prefix of theirs in `sorted`.
    pub fn cut(&self, sorted: impl IntoIterator<Item = InboundEvent>) -> (Vec<InboundEvent>, bool) {
        let mut taken = std::collections::HashMap::<String, usize>::new();
        let (mut out, mut cut) = (Vec::new(), false);
        for event in sorted {
            let n = taken.entry(event.sender.clone()).or_default();
            if *n >= self.of(&event.sender) {
                cut = true;
                continue;
            }
            *n += 1;
            out.push(event);
        }
        (out, cut)
    }
}

/// When people last wrote on each chat channel, kept across a graceful restart so that news
/// their 24-hour window allows still goes out after it (`channels::window`). Saved at a stop
/// and read at the next start; an entry is only a time, checked against the clock when used,
/// so one saved long ago does no harm.
pub trait RecentSenders: Send + Sync {
    /// Replaces what is kept for `channel` with `seen` (the person's id on it, and when they
    /// last wrote).
    fn keep_recent_senders(
        &self,
        channel: Channel,
        seen: &[(String, DateTime<Utc>)],
    ) -> Result<(), StoreError>;
    /// What was kept for `channel`, if anything.
    fn recent_senders(&self, channel: Channel) -> Result<Vec<(String, DateTime<Utc>)>, StoreError>;
}

/// A durable queue for one chat channel: inbound events (de-duplicated) and outbound replies.
pub trait EventQueue: AwaitDurable + Send + Sync + 'static {
    /// Records events durably, skipping keys seen before. Returns the ones that were new.
    fn record_inbound(&self, events: Vec<InboundEvent>) -> Result<Vec<InboundEvent>, StoreError>;
    /// Events recorded but not processed yet, ordered by sender then timestamp. A slot that
    /// cannot be read is logged and skipped.
    fn pending_inbound(&self) -> Result<Vec<InboundEvent>, StoreError>;
    /// The `limit` oldest pending events (by timestamp, then sender and key), in that order,
    /// less those beyond a sender's `quota`, and whether more are pending. Senders with no
    /// quota left are passed over before the `limit` is counted; the others' events beyond
    /// their quota are cut from the `limit` oldest (so a read where one customer's events fill
    /// the first `limit` returns fewer, and the next read, with that customer at quota, gets
    /// the others'). Each sender's events among them are a prefix of theirs in time order, and
    /// the customers who have waited longest come first. A backend overrides it to hold no
    /// more than `limit` events while it reads: it is how a backlog far larger than memory is
    /// worked through. Events whose key is in `skip` are left out.
    fn pending_inbound_first(
        &self,
        limit: usize,
        skip: &std::collections::HashSet<String>,
        quota: &SenderQuota,
    ) -> Result<(Vec<InboundEvent>, bool), StoreError> {
        let mut all = self.pending_inbound()?;
        all.retain(|e| !skip.contains(&e.key));
        let before = all.len();
        all.retain(|e| quota.of(&e.sender) > 0);
        let passed_over = all.len() < before;
        all.sort_by(|a, b| {
            (a.timestamp_ms, &a.sender, &a.key).cmp(&(b.timestamp_ms, &b.sender, &b.key))
        });
        let more = all.len() > limit;
        all.truncate(limit);
        let (events, cut) = quota.cut(all);
        Ok((events, more || cut || passed_over))
    }
    /// Whether the event is recorded as processed (an unknown key is not).
    fn inbound_finished(&self, key: &str) -> Result<bool, StoreError>;
    /// Atomically marks an event processed and queues its replies; returns their ids, in order.
    /// An event already processed queues nothing and returns no ids.
    fn finish_inbound(
        &self,
        key: &str,
        replies: Vec<OutboundMessage>,
    ) -> Result<Vec<ReplyId>, StoreError>;
    /// Replies not delivered yet, in the order they were queued.
    fn pending_outbound(&self) -> Result<Vec<(ReplyId, OutboundMessage)>, StoreError>;
    /// The reply was delivered, or failed for good: forget it. One event's replies are
    /// finished in order.
    fn finish_outbound(&self, id: &ReplyId) -> Result<(), StoreError>;
    /// Forgets processed event keys older than `before` (Meta stops redelivering after hours).
    fn prune_inbound(&self, before: DateTime<Utc>) -> Result<usize, StoreError>;

    // ---- Observability ----

    /// The queue's depths, as far as known without a scan.
    fn queue_depths(&self) -> QueueDepths {
        QueueDepths::default()
    }
}
