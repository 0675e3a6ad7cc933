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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, OrderStatus, Profile};
    use chrono::Duration;
    use std::sync::Arc;

    fn open() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), 8 << 20).unwrap();
        (dir, store)
    }

    fn newcomer(psid: &str, email: &str) -> NewMember {
        NewMember {
            identity: ChatIdentity::new(Channel::Messenger, psid).unwrap(),
            email: Email::parse(email).unwrap(),
            profile: Profile::default(),
            bonus: Points(50),
        }
    }

    fn join(store: &SledStore, psid: &str, email: &str) -> MemberId {
        match store.join(newcomer(psid, email), Utc::now()).unwrap() {
            JoinOutcome::Joined(a) => a.member.id,
            other => panic!("expected a new member, got {other:?}"),
        }
    }

    fn order(number: &str) -> VerifiedOrder {
        VerifiedOrder {
            number: OrderNumber::parse(number).unwrap(),
            email: Email::parse("ana@example.com").unwrap(),
            total: "42.50".parse().unwrap(),
            currency: "EUR".into(),
            status: OrderStatus::Paid,
        }
    }

    fn mug(points: u64) -> Reward {
        Reward {
            id: "free-mug".into(),
            title: "Mug".into(),
            points: Points(points),
            product_ids: vec!["p1".into()],
            checkout_url: "https://shop.example/mug".into(),
        }
    }

    fn redeem(store: &SledStore, id: MemberId, points: u64) -> RedeemOutcome {
        let now = Utc::now();
        let code = CouponCode::generate("free-mug");
        store
            .redeem_reward(id, &mug(points), code, now + Duration::days(30), now)
            .unwrap()
    }

    fn reserved(outcome: RedeemOutcome) -> Coupon {
        match outcome {
            RedeemOutcome::Reserved { coupon, .. } => coupon,
            other => panic!("expected a reservation, got {other:?}"),
        }
    }

    fn balance(store: &SledStore, id: MemberId) -> Points {
        store.member(id).unwrap().unwrap().balance
    }

    #[test]
    fn joining_twice_with_one_identity_credits_the_bonus_once() {
        let (_d, store) = open();
        let id = join(&store, "100", "ana@example.com");
        let again = store
            .join(newcomer("100", "ana@example.com"), Utc::now())
            .unwrap();
        assert!(
            matches!(again, JoinOutcome::AlreadyMember(a) if a.member.id == id && a.balance == Points(50))
        );
        assert_eq!(store.ledger(id).unwrap().len(), 1);
        let who = ChatIdentity::new(Channel::Messenger, "100").unwrap();
        assert_eq!(
            store.member_by_identity(&who).unwrap().unwrap().member.id,
            id
        );
    }

    #[test]
    fn an_email_owned_by_another_identity_is_refused_and_nothing_changes() {
        let (_d, store) = open();
        join(&store, "100", "ana@example.com");
        let out = store
            .join(newcomer("200", " ANA@example.com"), Utc::now())
            .unwrap();
        assert_eq!(out, JoinOutcome::EmailTaken);
        assert_eq!(store.members().unwrap().len(), 1);
        let who = ChatIdentity::new(Channel::Messenger, "200").unwrap();
        assert!(store.member_by_identity(&who).unwrap().is_none());
    }

    #[test]
    fn an_order_is_credited_once_whatever_its_case() {
        let (_d, store) = open();
        let ana = join(&store, "100", "ana@example.com");
        let bob = join(&store, "200", "bob@example.com");
        let first = store
            .claim_order(ana, &order("a-1001"), Points(42), Utc::now())
            .unwrap();
        assert!(matches!(
            first,
            ClaimOutcome::Credited {
                balance: Points(92),
                ..
            }
        ));
        let second = store
            .claim_order(bob, &order("A-1001"), Points(42), Utc::now())
            .unwrap();
        assert!(matches!(second, ClaimOutcome::AlreadyClaimed { by, .. } if by == ana));
        assert_eq!(balance(&store, bob), Points(50));
        let claim = store
            .order_claim(&OrderNumber::parse("A-1001").unwrap())
            .unwrap();
        assert_eq!(claim.map(|c| c.0), Some(ana));
    }

    #[test]
    fn fifty_concurrent_claims_of_one_order_credit_it_exactly_once() {
        let (_d, store) = open();
        let store = Arc::new(store);
        let ids: Vec<_> = (0..50)
            .map(|i| join(&store, &format!("{i}"), &format!("m{i}@example.com")))
            .collect();
        let handles: Vec<_> = ids
            .iter()
            .map(|&id| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    store
                        .claim_order(id, &order("7777"), Points(10), Utc::now())
                        .unwrap()
                })
            })
            .collect();
        let credited = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|o| matches!(o, ClaimOutcome::Credited { .. }))
            .count();
        assert_eq!(credited, 1);
        let total: u64 = ids.iter().map(|&id| balance(&store, id).0).sum();
        assert_eq!(total, 50 * 50 + 10);
    }

    #[test]
    fn claiming_for_an_unknown_member_is_an_error() {
        let (_d, store) = open();
        let err = store.claim_order(MemberId(999), &order("1001"), Points(1), Utc::now());
        assert!(matches!(err, Err(StoreError::UnknownMember(MemberId(999)))));
        assert!(store
            .order_claim(&OrderNumber::parse("1001").unwrap())
            .unwrap()
            .is_none());
    }

    #[test]
    fn redeeming_with_too_few_points_leaves_the_balance_unchanged() {
        let (_d, store) = open();
        let id = join(&store, "100", "ana@example.com");
        let out = redeem(&store, id, 51);
        assert_eq!(
            out,
            RedeemOutcome::InsufficientPoints {
                balance: Points(50),
                needed: Points(51)
            }
        );
        assert_eq!(store.ledger(id).unwrap().len(), 1);
        assert!(store.coupons_of(id).unwrap().is_empty());
    }

    #[test]
    fn redeeming_deducts_points_and_records_a_pending_coupon() {
        let (_d, store) = open();
        let id = join(&store, "100", "ana@example.com");
        let coupon = reserved(redeem(&store, id, 30));
        assert_eq!(coupon.status, CouponStatus::Pending);
        assert_eq!(balance(&store, id), Points(20));
        assert_eq!(store.pending_coupons().unwrap(), vec![coupon.clone()]);
        assert_eq!(store.coupons_of(id).unwrap(), vec![coupon.clone()]);
        let issued = store.confirm_coupon(&coupon.code).unwrap();
        assert_eq!(issued.status, CouponStatus::Issued);
        assert!(store.pending_coupons().unwrap().is_empty());
    }

    #[test]
    fn cancelling_gives_the_points_back_once() {
        let (_d, store) = open();
        let id = join(&store, "100", "ana@example.com");
        let coupon = reserved(redeem(&store, id, 30));
        assert_eq!(
            store.cancel_coupon(&coupon.code, Utc::now()).unwrap(),
            Points(50)
        );
        assert_eq!(
            store.cancel_coupon(&coupon.code, Utc::now()).unwrap(),
            Points(50)
        );
        assert_eq!(store.ledger(id).unwrap().len(), 3);
        // Points given back are not handed out a second time by a late confirmation.
        let late = store.confirm_coupon(&coupon.code).unwrap();
        assert_eq!(late.status, CouponStatus::Cancelled);
    }

    #[test]
    fn cancelling_an_issued_coupon_changes_nothing() {
        let (_d, store) = open();
        let id = join(&store, "100", "ana@example.com");
        let coupon = reserved(redeem(&store, id, 30));
        store.confirm_coupon(&coupon.code).unwrap();
        assert_eq!(
            store.cancel_coupon(&coupon.code, Utc::now()).unwrap(),
            Points(20)
        );
        assert_eq!(
            store.coupon(&coupon.code).unwrap().unwrap().status,
            CouponStatus::Issued
        );
    }

    #[test]
    fn an_unknown_coupon_code_is_an_error() {
        let (_d, store) = open();
        let code = CouponCode::from_stored("NOPE".into());
        assert!(matches!(
            store.confirm_coupon(&code),
            Err(StoreError::UnknownCoupon(_))
        ));
        assert!(matches!(
            store.cancel_coupon(&code, Utc::now()),
            Err(StoreError::UnknownCoupon(_))
        ));
    }

    #[test]
    fn conversation_state_is_saved_and_cleared() {
        let (_d, store) = open();
        let who = ChatIdentity::new(Channel::Manychat, "42").unwrap();
        let state = ConversationState {
            data: serde_json::json!({"flow": "join", "step": 2}),
        };
        store.save_conversation(&who, &state).unwrap();
        assert_eq!(store.conversation(&who).unwrap(), Some(state));
        store.clear_conversation(&who).unwrap();
        assert_eq!(store.conversation(&who).unwrap(), None);
    }
}

#[cfg(test)]
mod queue_tests {
    use super::*;
    use chrono::Duration;

    fn open() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), 8 << 20).unwrap();
        (dir, store)
    }

    fn event(key: &str, sender: &str, ts: i64) -> InboundEvent {
        InboundEvent {
            key: key.into(),
            sender: sender.into(),
            timestamp_ms: ts,
            payload: serde_json::json!({"text": key}),
        }
    }

    fn reply(to: &str, n: u32) -> OutboundMessage {
        OutboundMessage {
            recipient: "p1".into(),
            body: serde_json::json!({ "n": n }),
            in_reply_to: to.into(),
            attempts: 0,
        }
    }

    fn keys_of(events: &[InboundEvent]) -> Vec<&str> {
        events.iter().map(|e| e.key.as_str()).collect()
    }

    #[test]
    fn recording_skips_keys_seen_before_even_within_one_batch() {
        let (_d, store) = open();
        let new = store
            .record_inbound(vec![event("m1", "a", 1), event("m1", "a", 1)])
            .unwrap();
        assert_eq!(keys_of(&new), ["m1"]);
        let new = store
            .record_inbound(vec![event("m1", "a", 1), event("m2", "a", 2)])
            .unwrap();
        assert_eq!(keys_of(&new), ["m2"]);
    }

    #[test]
    fn pending_events_come_by_sender_then_time() {
        let (_d, store) = open();
        let batch = vec![
            event("x", "b", 5),
            event("y", "a", 9),
            event("z", "a", 3),
            event("w", "b", 1),
        ];
        store.record_inbound(batch).unwrap();
        assert_eq!(
            keys_of(&store.pending_inbound().unwrap()),
            ["z", "y", "w", "x"]
        );
    }

    #[test]
    fn finishing_an_event_queues_its_replies_in_order_once() {
        let (_d, store) = open();
        store.record_inbound(vec![event("m1", "a", 1)]).unwrap();
        let ids = store
            .finish_inbound("m1", vec![reply("m1", 0), reply("m1", 1)])
            .unwrap();
        assert!(ids[0] < ids[1]);
        assert!(store.pending_inbound().unwrap().is_empty());
        // A replayed processing step must not send the replies twice.
        assert!(store
            .finish_inbound("m1", vec![reply("m1", 2)])
            .unwrap()
            .is_empty());
        let queued = store.pending_outbound().unwrap();
        let order: Vec<_> = queued
            .iter()
            .map(|(id, m)| (*id, m.body["n"].as_u64()))
            .collect();
        assert_eq!(order, [(ids[0], Some(0)), (ids[1], Some(1))]);
        // A done event is still a duplicate for redeliveries.
        assert!(store
            .record_inbound(vec![event("m1", "a", 1)])
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_delivered_reply_leaves_the_outbox() {
        let (_d, store) = open();
        let ids = store
            .finish_inbound("m1", vec![reply("m1", 0), reply("m1", 1)])
            .unwrap();
        store.finish_outbound(ids[0]).unwrap();
        let left: Vec<_> = store
            .pending_outbound()
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(left, [ids[1]]);
    }

    #[test]
    fn pruning_forgets_only_done_events_older_than_the_cutoff() {
        let (_d, store) = open();
        store
            .record_inbound(vec![event("done", "a", 1), event("waiting", "a", 2)])
            .unwrap();
        store.finish_inbound("done", Vec::new()).unwrap();
        assert_eq!(
            store
                .prune_inbound(Utc::now() - Duration::hours(1))
                .unwrap(),
            0
        );
        assert_eq!(
            store
                .prune_inbound(Utc::now() + Duration::seconds(1))
                .unwrap(),
            1
        );
        assert_eq!(keys_of(&store.pending_inbound().unwrap()), ["waiting"]);
        // Once pruned, the key counts as new again (Meta has stopped redelivering by then).
        assert_eq!(
            store
                .record_inbound(vec![event("done", "a", 1)])
                .unwrap()
                .len(),
            1
        );
    }
}
