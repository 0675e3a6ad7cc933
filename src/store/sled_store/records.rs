//! What the sled store keeps in its trees, how values are encoded, and the helpers that
//! atomic operations' closures share. These helpers only read, stage writes and describe
//! failures ([`Abort`], from `atomic.rs`); they never log or act.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::atomic::{abort, tx, Abort, Tx, TxTree};
use crate::domain::{LedgerEntry, Member, MemberId, OrderId, OrderNumber, Points, Reversal};
use crate::store::{keys, MemberAccount, OutboundMessage};

/// A member as stored: the cached balance and the next ledger sequence travel with the member,
/// so every ledger append rewrites this record and conflicting writers serialise on it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Account {
    pub member: Member,
    pub balance: Points,
    pub next_seq: u64,
}

impl Account {
    pub fn view(self) -> MemberAccount {
        MemberAccount {
            member: self.member,
            balance: self.balance,
        }
    }
}

/// Who claimed an order, when, and for how many points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Claim {
    pub member: MemberId,
    pub at: DateTime<Utc>,
    pub points: Points,
}

/// Everything the store knows about one order number, under one key of the `orders` tree: its
/// claim and its reversal. Keeping both in one record makes a claim and a reversal of the same
/// order write the same key, so sled serialises them: neither can miss the other.
///
/// Stored flat (`{"member":…,"at":…,"points":…,"reversal":{…}}`). A record with a reversal
/// and no member is a refund that arrived before any claim. (Claims stored before reversals
/// existed lacked `points`; the migration to layout 1 filled them in, `migrate.rs`.)
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct OrderRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    member: Option<MemberId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    points: Option<Points>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reversal: Option<Reversal>,
    /// The number customers see, where the key is the shop's own id and not the number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<OrderNumber>,
    /// That id as the shop writes it (the key is upper-cased).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<OrderId>,
    /// The order's net total when it was claimed (the generic contract's partial refunds
    /// count down from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<rust_decimal::Decimal>,
    /// What the order stands at now, where a change moved it from `points`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earned: Option<Points>,
}

impl OrderRecord {
    /// The record of a fresh claim.
    pub fn claimed(member: MemberId, at: DateTime<Utc>, points: Points) -> Self {
        OrderRecord {
            member: Some(member),
            at: Some(at),
            points: Some(points),
            ..OrderRecord::default()
        }
    }

    /// The record of a claim and/or reversal as a backup holds it.
    pub fn restored(claim: Option<Claim>, reversal: Option<Reversal>) -> Self {
        OrderRecord {
            member: claim.map(|c| c.member),
            at: claim.map(|c| c.at),
            points: claim.map(|c| c.points),
            reversal,
            ..OrderRecord::default()
        }
    }

    /// Keeps the order's total, and its number and id when the key is not the number.
    pub fn with_order(
        mut self,
        id: &OrderId,
        number: &OrderNumber,
        total: rust_decimal::Decimal,
    ) -> Self {
        self.name_order(id, number);
        self.total = Some(total);
        self
    }

    /// Keeps the order's number and id when the key (the id) is not the number.
    pub fn name_order(&mut self, id: &OrderId, number: &OrderNumber) {
        if !id.as_str().eq_ignore_ascii_case(number.as_str()) {
            self.number = Some(number.clone());
            self.id = Some(id.clone());
        }
    }

    /// What the order stands at now: its claim's points, moved by any change since; nothing
    /// after a reversal or without a claim.
    pub fn earned(&self) -> Points {
        match (&self.reversal, self.earned, self.points) {
            (Some(_), _, _) => Points::ZERO,
            (None, Some(e), _) => e,
            (None, None, Some(p)) => p,
            (None, None, None) => Points::ZERO,
        }
    }

    /// The claim, if the order was claimed; an error if the record is half a claim.
    pub fn claim(&self) -> Result<Option<Claim>, Abort> {
        match (self.member, self.at, self.points) {
            (Some(member), Some(at), Some(points)) => Ok(Some(Claim { member, at, points })),
            (None, None, None) => Ok(None),
            _ => Err(Abort::Corrupt(
                "order record with half a claim".into(),
                None,
            )),
        }
    }
}

/// Inside an operation: the claim of an order kept under its number by a shop kind that had
/// no ids of its own (the generic contract), when `id` is not that number: a store that moved
/// from the generic contract to Shopify must not credit those orders a second time.
pub fn tx_claim_under_number(
    orders: &TxTree<'_>,
    id: &OrderId,
    number: &OrderNumber,
) -> Tx<Option<Claim>> {
    if id.as_str().eq_ignore_ascii_case(number.as_str()) {
        return Ok(None);
    }
    match orders.get(keys::order(&OrderId::from(number)))? {
        Some(raw) => {
            let record: OrderRecord = tx(decode("order record", &raw))?;
            // A record kept under a shop id that happens to read as this number (a WooCommerce
            // id that is another order's displayed number) names its own number: not this one.
            match record.number {
                Some(_) => Ok(None),
                None => tx(record.claim()),
            }
        }
        None => Ok(None),
    }
}

/// A processed event's inbox slot: its done-at time and the replies it queued until they are
/// all delivered (the key alone is what de-duplicates redeliveries). Keeping the replies in
/// the event's own slot makes "processed, with these replies" and each "delivered" one
/// single-key write, atomic in sled without the writer lock or the journal. Stored as
/// `{"state":"done","at":…}`, with `"replies":[…],"delivered":n,"seq":s` while some are
/// undelivered. `R` is a reply: [`OutboundMessage`], or its JSON text left unparsed so that
/// marking one delivered rewrites the slot without building every reply's Send API body.
/// (Pending events once had slots here too, `{"state":"pending",…}`; the migration to layout
/// 1 moved them to intake records, `migrate.rs`.)
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound(deserialize = "R: Deserialize<'de>"))]
pub(super) struct Done<R = OutboundMessage> {
    pub state: State,
    pub at: DateTime<Utc>,
    /// The replies in order; emptied once all are delivered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replies: Vec<R>,
    /// How many of `replies`, from the first, are delivered or dropped for good.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub delivered: u32,
    /// Queue order across events, for resuming after a restart (a sled-generated id).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seq: u64,
}

impl<R> Done<R> {
    pub fn new(at: DateTime<Utc>, replies: Vec<R>, seq: u64) -> Self {
        Done {
            state: State::Done,
            at,
            replies,
            delivered: 0,
            seq,
        }
    }
}

/// A done slot with its replies left as JSON text.
pub(super) type DoneRaw = Done<Box<serde_json::value::RawValue>>;

fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

/// An inbox slot's state: `done` is the only one a slot has now. A value without it (or with
/// another) is unreadable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum State {
    Done,
}

pub(super) fn encode<T: Serialize>(what: &str, v: &T) -> Result<Vec<u8>, Abort> {
    serde_json::to_vec(v).map_err(|e| Abort::Corrupt(format!("cannot encode {what}"), Some(e)))
}

pub(super) fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, Abort> {
    serde_json::from_slice(bytes).map_err(|e| Abort::Corrupt(what.to_owned(), Some(e)))
}

pub(super) fn decode_id(bytes: &[u8]) -> Result<MemberId, Abort> {
    keys::read_u64(bytes)
        .map(MemberId)
        .ok_or_else(|| Abort::Corrupt("member id in an index".into(), None))
}

pub(super) fn tx_account(members: &TxTree<'_>, id: MemberId) -> Tx<Account> {
    match members.get(keys::member(id))? {
        Some(raw) => tx(decode("member record", &raw)),
        None => abort(Abort::UnknownMember(id)),
    }
}

/// Appends `entry` to the member's ledger and moves the cached balance by exactly the entry's
/// signed points, so the balance equals the ledger sum by construction; the store's totals
/// (`totals.rs`) move with it.
pub(super) fn tx_append(
    members: &TxTree<'_>,
    ledger: &TxTree<'_>,
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
        keys::member_seq(id, acct.next_seq),
        tx(encode("ledger entry", entry))?,
    )?;
    acct.next_seq += 1;
    acct.balance = Points(balance);
    members.insert(keys::member(id), tx(encode("member record", &acct))?)?;
    super::totals::tx_add(&members.totals(), 0, entry.points)?;
    Ok(acct)
}
