//! The sled backend of [`super::LoyaltyStore`] and [`super::EventQueue`].
//!
//! Trees (keys from [`super::keys`], values serde_json unless noted):
//! - `members`: member id → [`Account`] (the member, cached balance, next ledger sequence)
//! - `identities`: chat identity key → member id; `emails`: email → member id
//! - `ledger`: (member id, seq) → [`LedgerEntry`], append-only
//! - `orders`: upper-cased order number → [`Claim`], global across members and channels
//! - `coupons`: code → [`Coupon`]; `member_coupons`: (member id, seq of the redemption entry)
//!   → code; `pending_coupons`: code → empty, the coupons whose shop answer is outstanding
//! - `conversations`: chat identity key → [`ConversationState`]
//! - `inbox`: event key → [`Inbox`] (pending event or done-at time); `outbox`: id → reply
//!
//! Business operations span trees and run as sled transactions; every balance change rewrites
//! the member's [`Account`], so concurrent operations on one member conflict and retry instead
//! of interleaving. Webhook intake avoids transactions (3x slower here): one insert-if-absent
//! per event. Every mutating method waits for a group-committed flush before returning.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::transaction::{
    ConflictableTransactionError, TransactionError, Transactional, TransactionalTree,
};
use sled::Tree;

use super::flusher::GroupCommit;
use super::{
    keys, ClaimOutcome, ConversationState, EventQueue, InboundEvent, JoinOutcome, LoyaltyStore,
    MemberAccount, NewMember, OutboundMessage, RedeemOutcome, StoreError,
};
use crate::domain::{
    ChatIdentity, Coupon, CouponCode, CouponStatus, Email, LedgerEntry, Member, MemberId,
    OrderNumber, Points, Reward, VerifiedOrder,
};

/// A member as stored: the cached balance and the next ledger sequence travel with the member,
/// so every ledger append rewrites this record and conflicting writers serialise on it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Account {
    member: Member,
    balance: Points,
    next_seq: u64,
}

impl Account {
    fn view(self) -> MemberAccount {
        MemberAccount {
            member: self.member,
            balance: self.balance,
        }
    }
}

/// Who claimed an order, and when.
#[derive(Debug, Serialize, Deserialize)]
struct Claim {
    member: MemberId,
    at: DateTime<Utc>,
}

/// An inbox slot: the event while it waits, only its done-at time once processed (the key alone
/// is what de-duplicates redeliveries).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Inbox<E = InboundEvent> {
    Pending { event: E },
    Done { at: DateTime<Utc> },
}

/// Why a transaction gave up. Kept apart from [`StoreError`] because the closure may rerun and
/// must only describe, not act.
#[derive(Debug)]
enum Abort {
    UnknownMember(MemberId),
    UnknownCoupon(CouponCode),
    Corrupt(String, Option<serde_json::Error>),
}

impl From<Abort> for StoreError {
    fn from(a: Abort) -> Self {
        match a {
            Abort::UnknownMember(id) => StoreError::UnknownMember(id),
            Abort::UnknownCoupon(code) => StoreError::UnknownCoupon(code),
            Abort::Corrupt(what, source) => StoreError::Corrupt { what, source },
        }
    }
}

impl From<TransactionError<Abort>> for StoreError {
    fn from(e: TransactionError<Abort>) -> Self {
        match e {
            TransactionError::Abort(a) => a.into(),
            TransactionError::Storage(e) => e.into(),
        }
    }
}

type Tx<T> = Result<T, ConflictableTransactionError<Abort>>;

fn abort<T>(a: Abort) -> Tx<T> {
    Err(ConflictableTransactionError::Abort(a))
}

fn encode<T: Serialize>(what: &str, v: &T) -> Result<Vec<u8>, Abort> {
    serde_json::to_vec(v).map_err(|e| Abort::Corrupt(format!("cannot encode {what}"), Some(e)))
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, Abort> {
    serde_json::from_slice(bytes).map_err(|e| Abort::Corrupt(what.to_owned(), Some(e)))
}

fn decode_id(bytes: &[u8]) -> Result<MemberId, Abort> {
    keys::read_u64(bytes)
        .map(MemberId)
        .ok_or_else(|| Abort::Corrupt("member id in an index".into(), None))
}

/// Lifts a plain [`Abort`] result into a transaction result.
fn tx<T>(r: Result<T, Abort>) -> Tx<T> {
    r.map_err(ConflictableTransactionError::Abort)
}

fn tx_account(members: &TransactionalTree, id: MemberId) -> Tx<Account> {
    match members.get(keys::member(id))? {
        Some(raw) => tx(decode("member record", &raw)),
        None => abort(Abort::UnknownMember(id)),
    }
}

/// Appends `entry` to the member's ledger and moves the cached balance by exactly the entry's
/// signed points, so the balance equals the ledger sum by construction.
fn tx_append(
    members: &TransactionalTree,
    ledger: &TransactionalTree,
    mut acct: Account,
    entry: &LedgerEntry,
) -> Tx<Account> {
    let id = acct.member.id;
    let balance = i128::from(acct.balance.0) + i128::from(entry.points);
    let Ok(balance) = u64::try_from(balance) else {
        return abort(Abort::Corrupt(
            format!("balance of member {id} out of range"),
            None,
        ));
    };
    ledger.insert(
        &keys::member_seq(id, acct.next_seq),
        tx(encode("ledger entry", entry))?,
    )?;
    acct.next_seq += 1;
    acct.balance = Points(balance);
    members.insert(&keys::member(id), tx(encode("member record", &acct))?)?;
    Ok(acct)
}

/// The sled store; share it as `Arc<SledStore>`. Dropping it stops the flusher thread.
pub struct SledStore {
    members: Tree,
    identities: Tree,
    emails: Tree,
    ledger: Tree,
    orders: Tree,
    coupons: Tree,
    member_coupons: Tree,
    pending_coupons: Tree,
    conversations: Tree,
    inbox: Tree,
    outbox: Tree,
    commit: GroupCommit,
    db: sled::Db,
}

impl SledStore {
    /// Opens (or creates) the database at `path`. `cache_capacity_bytes` bounds sled's page
    /// cache, which is what the process's memory follows.
    pub fn open(path: &Path, cache_capacity_bytes: u64) -> Result<SledStore, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_capacity_bytes)
            .open()?;
        let tree = |name: &str| db.open_tree(name);
        let store = SledStore {
            members: tree("members")?,
            identities: tree("identities")?,
            emails: tree("emails")?,
            ledger: tree("ledger")?,
            orders: tree("orders")?,
            coupons: tree("coupons")?,
            member_coupons: tree("member_coupons")?,
            pending_coupons: tree("pending_coupons")?,
            conversations: tree("conversations")?,
            inbox: tree("inbox")?,
            outbox: tree("outbox")?,
            commit: GroupCommit::start(db.clone())?,
            db,
        };
        tracing::info!(path = %path.display(), members = store.members.len(), "store opened");
        Ok(store)
    }

    /// Blocks until every write so far is on disk; for shutdown.
    pub fn flush_now(&self) -> Result<(), StoreError> {
        self.commit.wait()
    }

    /// How many group-commit flushes have run since opening (diagnostics and tests).
    pub fn flush_count(&self) -> u64 {
        self.commit.flush_count()
    }

    fn account(&self, id: MemberId) -> Result<Option<Account>, StoreError> {
        match self.members.get(keys::member(id))? {
            Some(raw) => Ok(Some(decode("member record", &raw)?)),
            None => Ok(None),
        }
    }

    fn account_via(&self, index: &Tree, key: &[u8]) -> Result<Option<MemberAccount>, StoreError> {
        let Some(raw) = index.get(key)? else {
            return Ok(None);
        };
        Ok(self.account(decode_id(&raw)?)?.map(Account::view))
    }

    fn read_coupon(&self, code: &[u8]) -> Result<Option<Coupon>, StoreError> {
        match self.coupons.get(code)? {
            Some(raw) => Ok(Some(decode("coupon", &raw)?)),
            None => Ok(None),
        }
    }
}

impl LoyaltyStore for SledStore {
    fn member(&self, id: MemberId) -> Result<Option<MemberAccount>, StoreError> {
        Ok(self.account(id)?.map(Account::view))
    }

    fn member_by_identity(&self, who: &ChatIdentity) -> Result<Option<MemberAccount>, StoreError> {
        self.account_via(&self.identities, &keys::identity(who))
    }

    fn member_by_email(&self, email: &Email) -> Result<Option<MemberAccount>, StoreError> {
        self.account_via(&self.emails, &keys::email(email))
    }

    fn ledger(&self, id: MemberId) -> Result<Vec<LedgerEntry>, StoreError> {
        self.ledger
            .scan_prefix(keys::member(id))
            .map(|kv| Ok(decode("ledger entry", &kv?.1)?))
            .collect()
    }

    fn members(&self) -> Result<Vec<MemberAccount>, StoreError> {
        self.members
            .iter()
            .map(|kv| Ok(decode::<Account>("member record", &kv?.1)?.view()))
            .collect()
    }

    fn join(&self, new: NewMember, now: DateTime<Utc>) -> Result<JoinOutcome, StoreError> {
        // Ids come from sled's persistent counter, outside the closure so a rerun cannot burn
        // more than one; an unused id (the identity was a member already) is simply skipped.
        let id = MemberId(self.db.generate_id()? + 1);
        let (ikey, ekey) = (keys::identity(&new.identity), keys::email(&new.email));
        let trees = (&self.members, &self.identities, &self.emails, &self.ledger);
        let outcome = trees.transaction(|(members, identities, emails, ledger)| {
            if let Some(raw) = identities.get(&ikey)? {
                let existing = tx(decode_id(&raw))?;
                return Ok(JoinOutcome::AlreadyMember(
                    tx_account(members, existing)?.view(),
                ));
            }
            if emails.get(&ekey)?.is_some() {
                return Ok(JoinOutcome::EmailTaken);
            }
            let member = Member {
                id,
                email: new.email.clone(),
                identity: new.identity.clone(),
                first_name: new.profile.first_name.clone(),
                locale: new.profile.locale.clone(),
                joined_at: now,
            };
            let fresh = Account {
                member,
                balance: Points::ZERO,
                next_seq: 0,
            };
            let acct = tx_append(
                members,
                ledger,
                fresh,
                &LedgerEntry::signup_bonus(new.bonus, now),
            )?;
            identities.insert(ikey.as_slice(), &keys::member(id))?;
            emails.insert(ekey.as_slice(), &keys::member(id))?;
            Ok(JoinOutcome::Joined(acct.view()))
        })?;
        // Even a refusal waits: the state it reports may come from a concurrent join that has
        // not been flushed yet, and the reply must not announce what a crash could undo.
        self.commit.wait()?;
        if let JoinOutcome::Joined(a) = &outcome {
            tracing::info!(member.id = %a.member.id, email = %new.email.masked(), "member joined");
        }
        Ok(outcome)
    }

    fn claim_order(
        &self,
        member: MemberId,
        order: &VerifiedOrder,
        points: Points,
        now: DateTime<Utc>,
    ) -> Result<ClaimOutcome, StoreError> {
        let okey = keys::order(&order.number);
        let trees = (&self.members, &self.orders, &self.ledger);
        let outcome = trees.transaction(|(members, orders, ledger)| {
            let acct = tx_account(members, member)?;
            if let Some(raw) = orders.get(&okey)? {
                let c: Claim = tx(decode("order claim", &raw))?;
                return Ok(ClaimOutcome::AlreadyClaimed {
                    by: c.member,
                    at: c.at,
                });
            }
            let entry = LedgerEntry::order_credit(order.number.clone(), points, now);
            let acct = tx_append(members, ledger, acct, &entry)?;
            orders.insert(
                okey.as_slice(),
                tx(encode("order claim", &Claim { member, at: now }))?,
            )?;
            Ok(ClaimOutcome::Credited {
                points,
                balance: acct.balance,
            })
        })?;
        self.commit.wait()?;
        Ok(outcome)
    }

    fn order_claim(
        &self,
        order: &OrderNumber,
    ) -> Result<Option<(MemberId, DateTime<Utc>)>, StoreError> {
        match self.orders.get(keys::order(order))? {
            Some(raw) => {
                let c: Claim = decode("order claim", &raw)?;
                Ok(Some((c.member, c.at)))
            }
            None => Ok(None),
        }
    }

    fn redeem_reward(
        &self,
        member: MemberId,
        reward: &Reward,
        code: CouponCode,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<RedeemOutcome, StoreError> {
        let ckey = code.as_str().as_bytes();
        let trees = (
            &self.members,
            &self.ledger,
            &self.coupons,
            &self.member_coupons,
            &self.pending_coupons,
        );
        let outcome = trees.transaction(|(members, ledger, coupons, by_member, pending)| {
            if coupons.get(ckey)?.is_some() {
                // 80 random bits make this a caller bug (a reused code), not bad luck.
                return abort(Abort::Corrupt(
                    format!("coupon code {code} already exists"),
                    None,
                ));
            }
            let acct = tx_account(members, member)?;
            if acct.balance < reward.points {
                return Ok(RedeemOutcome::InsufficientPoints {
                    balance: acct.balance,
                    needed: reward.points,
                });
            }
            let seq = acct.next_seq;
            let entry = LedgerEntry::redemption(&reward.id, code.as_str(), reward.points, now);
            let acct = tx_append(members, ledger, acct, &entry)?;
            let coupon = Coupon {
                code: code.clone(),
                member,
                reward_id: reward.id.clone(),
                product_ids: reward.product_ids.clone(),
                points: reward.points,
                created_at: now,
                expires_at,
                status: CouponStatus::Pending,
            };
            coupons.insert(ckey, tx(encode("coupon", &coupon))?)?;
            by_member.insert(&keys::member_seq(member, seq), ckey)?;
            pending.insert(ckey, &[])?;
            Ok(RedeemOutcome::Reserved {
                coupon,
                balance: acct.balance,
            })
        })?;
        self.commit.wait()?;
        Ok(outcome)
    }

    /// Pending → Issued. Already issued: returned as is. Cancelled: returned as is (status
    /// `Cancelled`), because its points were given back and issuing it now would make it free.
    fn confirm_coupon(&self, code: &CouponCode) -> Result<Coupon, StoreError> {
        let ckey = code.as_str().as_bytes();
        let coupon = (&self.coupons, &self.pending_coupons).transaction(|(coupons, pending)| {
            let Some(raw) = coupons.get(ckey)? else {
                return abort(Abort::UnknownCoupon(code.clone()));
            };
            let mut coupon: Coupon = tx(decode("coupon", &raw))?;
            if coupon.status == CouponStatus::Pending {
                coupon.status = CouponStatus::Issued;
                coupons.insert(ckey, tx(encode("coupon", &coupon))?)?;
                pending.remove(ckey)?;
            }
            Ok(coupon)
        })?;
        self.commit.wait()?;
        if coupon.status == CouponStatus::Cancelled {
            tracing::warn!(member.id = %coupon.member, "confirm of a cancelled coupon refused");
        }
        Ok(coupon)
    }

    /// Pending → Cancelled plus one reversal entry. Cancelled: nothing changes (idempotent).
    /// Issued: nothing changes either: the shop made the coupon and the customer has its code,
    /// so giving the points back would pay the reward twice. Returns the balance either way.
    fn cancel_coupon(&self, code: &CouponCode, now: DateTime<Utc>) -> Result<Points, StoreError> {
        let ckey = code.as_str().as_bytes();
        let trees = (
            &self.coupons,
            &self.pending_coupons,
            &self.members,
            &self.ledger,
        );
        let (status, balance, member) =
            trees.transaction(|(coupons, pending, members, ledger)| {
                let Some(raw) = coupons.get(ckey)? else {
                    return abort(Abort::UnknownCoupon(code.clone()));
                };
                let mut coupon: Coupon = tx(decode("coupon", &raw))?;
                let acct = tx_account(members, coupon.member)?;
                if coupon.status != CouponStatus::Pending {
                    return Ok((coupon.status, acct.balance, coupon.member));
                }
                coupon.status = CouponStatus::Cancelled;
                coupons.insert(ckey, tx(encode("coupon", &coupon))?)?;
                pending.remove(ckey)?;
                let entry =
                    LedgerEntry::reversal(&coupon.reward_id, code.as_str(), coupon.points, now);
                let acct = tx_append(members, ledger, acct, &entry)?;
                Ok((CouponStatus::Pending, acct.balance, coupon.member))
            })?;
        self.commit.wait()?;
        if status == CouponStatus::Issued {
            tracing::warn!(member.id = %member, "cancel of an issued coupon refused");
        }
        Ok(balance)
    }

    fn coupon(&self, code: &CouponCode) -> Result<Option<Coupon>, StoreError> {
        self.read_coupon(code.as_str().as_bytes())
    }

    fn coupons_of(&self, member: MemberId) -> Result<Vec<Coupon>, StoreError> {
        let mut out = Vec::new();
        for kv in self.member_coupons.scan_prefix(keys::member(member)) {
            let (_, code) = kv?;
            match self.read_coupon(&code)? {
                Some(c) => out.push(c),
                None => {
                    return Err(Abort::Corrupt("coupon index points nowhere".into(), None).into())
                }
            }
        }
        Ok(out)
    }

    fn pending_coupons(&self) -> Result<Vec<Coupon>, StoreError> {
        let mut out = Vec::new();
        for kv in self.pending_coupons.iter() {
            let (code, _) = kv?;
            // A coupon settled between the two reads is simply no longer pending.
            if let Some(c) = self
                .read_coupon(&code)?
                .filter(|c| c.status == CouponStatus::Pending)
            {
                out.push(c);
            }
        }
        out.sort_by_key(|c| c.created_at);
        Ok(out)
    }

    fn conversation(&self, who: &ChatIdentity) -> Result<Option<ConversationState>, StoreError> {
        match self.conversations.get(keys::identity(who))? {
            Some(raw) => Ok(Some(decode("conversation", &raw)?)),
            None => Ok(None),
        }
    }

    fn save_conversation(
        &self,
        who: &ChatIdentity,
        state: &ConversationState,
    ) -> Result<(), StoreError> {
        self.conversations
            .insert(keys::identity(who), encode("conversation", state)?)?;
        self.commit.wait()
    }

    fn clear_conversation(&self, who: &ChatIdentity) -> Result<(), StoreError> {
        self.conversations.remove(keys::identity(who))?;
        self.commit.wait()
    }
}

impl EventQueue for SledStore {
    fn record_inbound(&self, events: Vec<InboundEvent>) -> Result<Vec<InboundEvent>, StoreError> {
        if events.is_empty() {
            return Ok(events);
        }
        let mut fresh = Vec::with_capacity(events.len());
        for event in events {
            let slot = encode("inbox entry", &Inbox::Pending { event: &event })?;
            // Insert-if-absent: the key alone de-duplicates, so no transaction is needed.
            let absent: Option<&[u8]> = None;
            if self
                .inbox
                .compare_and_swap(event.key.as_bytes(), absent, Some(slot))?
                .is_ok()
            {
                fresh.push(event);
            }
        }
        // Wait even when every event was a duplicate: the first copy may still be unflushed,
        // and acknowledging the redelivery would let a crash lose the event.
        self.commit.wait()?;
        Ok(fresh)
    }

    fn pending_inbound(&self) -> Result<Vec<InboundEvent>, StoreError> {
        let mut out = Vec::new();
        for kv in self.inbox.iter() {
            if let Inbox::Pending { event } = decode::<Inbox>("inbox entry", &kv?.1)? {
                out.push(event);
            }
        }
        out.sort_by(|a, b| {
            a.sender
                .cmp(&b.sender)
                .then(a.timestamp_ms.cmp(&b.timestamp_ms))
        });
        Ok(out)
    }

    /// Marks the event done and queues its replies in one transaction. An event already done
    /// queues nothing (a replayed processing step cannot send twice); an unknown key is recorded
    /// as done with its replies queued.
    fn finish_inbound(
        &self,
        key: &str,
        replies: Vec<OutboundMessage>,
    ) -> Result<Vec<u64>, StoreError> {
        // Ids and time are taken outside the closure, which must stay pure. Ids from sled's
        // persistent counter only grow, also across restarts, so outbox order is queue order.
        let ids = replies
            .iter()
            .map(|_| self.db.generate_id())
            .collect::<Result<Vec<u64>, _>>()?;
        let done = encode("inbox entry", &Inbox::<()>::Done { at: Utc::now() })?;
        let bodies = replies
            .iter()
            .map(|r| encode("outbound message", r))
            .collect::<Result<Vec<_>, _>>()?;
        let queued = (&self.inbox, &self.outbox).transaction(|(inbox, outbox)| {
            if let Some(raw) = inbox.get(key)? {
                if let Inbox::Done { .. } = tx(decode::<Inbox>("inbox entry", &raw))? {
                    return Ok(Vec::new());
                }
            }
            inbox.insert(key, done.as_slice())?;
            for (id, body) in ids.iter().zip(&bodies) {
                outbox.insert(&keys::outbox(*id), body.as_slice())?;
            }
            Ok(ids.clone())
        })?;
        self.commit.wait()?;
        Ok(queued)
    }

    fn pending_outbound(&self) -> Result<Vec<(u64, OutboundMessage)>, StoreError> {
        self.outbox
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                let id =
                    keys::read_u64(&k).ok_or_else(|| Abort::Corrupt("outbox key".into(), None))?;
                Ok((id, decode("outbound message", &v)?))
            })
            .collect()
    }

    fn finish_outbound(&self, id: u64) -> Result<(), StoreError> {
        self.outbox.remove(keys::outbox(id))?;
        self.commit.wait()
    }

    fn prune_inbound(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut pruned = 0;
        for kv in self.inbox.iter() {
            let (k, v) = kv?;
            if let Inbox::Done { at } = decode::<Inbox>("inbox entry", &v)? {
                // Compare-and-swap so a slot rewritten since we read it is left alone.
                if at < before
                    && self
                        .inbox
                        .compare_and_swap(&k, Some(&v), None as Option<&[u8]>)?
                        .is_ok()
                {
                    pruned += 1;
                }
            }
        }
        if pruned > 0 {
            self.commit.wait()?;
        }
        Ok(pruned)
    }
}
