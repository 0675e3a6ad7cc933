//! The whole store as records, for backups and moves: what [`super::LoyaltyStore::backup`]
//! reads and [`super::LoyaltyStore::restore`] writes. `crate::backup` frames them as the lines
//! of the export format, so the serde shapes here are that format's (version 1): a record is
//! one JSON object whose `type` names its kind, and a change to any shape here is a change of
//! the format.
//!
//! Only what cannot be derived is here: the member indexes (identity, email), a member's
//! coupon index and the pending-coupon set are rebuilt from these records by the backend.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::domain::mail::{DueMail, MailState, OutboxMail};
use crate::domain::{
    Coupon, EntryKind, LedgerEntry, Member, MemberId, OrderId, OrderNumber, Points, Reversal,
};
use crate::store::{Adjusted, InboundEvent, OutboundMessage};

/// One record of a backup. A member comes with their ledger, followed by the orders they
/// claimed and their coupons, all as at one instant.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BackupRecord {
    Member(MemberRecord),
    Order(OrderRecord),
    Coupon(CouponRecord),
    /// A member's mail state and their mails to come (the due index's entries): after a move
    /// statements neither repeat nor stop.
    MemberMail(MemberMailRecord),
    /// An operator's `Idempotency-Key` and the adjustment it applied: a repeat of the request
    /// is answered with it after a move as before.
    AdjustmentKey(AdjustmentKeyRecord),
    /// A balance imported from another program, waiting for (or given to) a member with its
    /// email.
    ImportedBalance(ImportedBalanceRecord),
    /// A conversation in progress.
    Conversation(ConversationRecord),
    /// An inbound chat event recorded but not processed yet.
    PendingEvent(InboundEvent),
    /// An event already processed (its key still refuses redeliveries), with the replies it
    /// queued that are not delivered yet, in order.
    ProcessedEvent(ProcessedEventRecord),
    /// The key that signs unsubscribe links: links in mail sent before a move keep working.
    MailLinkKey(MailLinkKeyRecord),
    /// A mail recorded and not confirmed sent (sending or waiting for a retry): it is tried
    /// again after the move, under the same `Message-ID`.
    OutboxMail(OutboxMail),
}

/// A member, their balance and their whole ledger, oldest entry first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemberRecord {
    #[serde(flatten)]
    pub member: Member,
    pub balance: Points,
    pub ledger: Vec<LedgerEntry>,
}

/// An order the store knows: claimed (by whom, when, for how many points), reversed, or both.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OrderRecord {
    /// As the store keys it (upper-cased) when `id` is absent; else the number customers see.
    pub number: OrderNumber,
    /// The shop's own id of the order, which the store keys it by (Shopify, WooCommerce).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<OrderId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<OrderClaim>,
    /// The order's net total when it was claimed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<rust_decimal::Decimal>,
    /// What the order stands at, where changes moved it from the claim's points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earned: Option<Points>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reversal: Option<Reversal>,
}

impl OrderRecord {
    /// The id the store keys the order by.
    pub fn key(&self) -> OrderId {
        self.id
            .clone()
            .unwrap_or_else(|| OrderId::from(&self.number))
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct OrderClaim {
    pub member: MemberId,
    pub at: DateTime<Utc>,
    pub points: Points,
}

/// A coupon, whatever its status, and the keys of the customer requests that redeemed it
/// (a replay of one returns this coupon).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CouponRecord {
    #[serde(flatten)]
    pub coupon: Coupon,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<String>,
}

/// A member's mail state and their entries in the due index, earliest first. It follows the
/// member's other records.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemberMailRecord {
    pub member: MemberId,
    pub state: MailState,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub due: Vec<DueMail>,
}

/// The unsubscribe links' signing key, 32 bytes in hex.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MailLinkKeyRecord {
    pub key: String,
}

/// An adjustment's request key and the result its first request got, as the store keeps it.
/// Its member, and the adjustment in their ledger, come before it in a backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AdjustmentKeyRecord {
    pub key: String,
    pub adjusted: Adjusted,
}

/// The adjustments in members' ledgers, to match adjustment keys against: a backup holds a key
/// only with its adjustment, or a repeat would be answered with an adjustment that is not
/// there. Held in memory, as many as the ledgers seen hold; a key is matched at once.
#[derive(Debug, Default)]
pub struct LedgerAdjustments {
    by_time: HashMap<(MemberId, DateTime<Utc>), Vec<LedgerEntry>>,
}

impl LedgerAdjustments {
    /// Adds the adjustments of a member's ledger.
    pub fn add(&mut self, record: &MemberRecord) {
        let id = record.member.id;
        for entry in record.ledger.iter() {
            if entry.kind == EntryKind::Adjustment {
                let same_time = self.by_time.entry((id, entry.at)).or_default();
                same_time.push(entry.clone());
            }
        }
    }

    /// Whether `adjusted`'s entry is one of them; if so it is taken out, as it answers one key.
    pub fn take(&mut self, adjusted: &Adjusted) -> bool {
        let at = (adjusted.member, adjusted.entry.at);
        let Some(same_time) = self.by_time.get_mut(&at) else {
            return false;
        };
        let Some(i) = same_time.iter().position(|e| *e == adjusted.entry) else {
            return false;
        };
        same_time.swap_remove(i);
        if same_time.is_empty() {
            self.by_time.remove(&at);
        }
        true
    }
}

/// An imported balance: the fields of the record the backend keeps (`email`, `points`, …),
/// passed through as they are.
#[derive(Debug, Serialize)]
pub struct ImportedBalanceRecord {
    #[serde(flatten)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl PartialEq for ImportedBalanceRecord {
    fn eq(&self, other: &Self) -> bool {
        self.fields == other.fields
    }
}

impl Eq for ImportedBalanceRecord {}

/// A conversation in progress: the chat identity's key (`messenger:6915…`) and the state the
/// engine saved, as it saved it.
#[derive(Debug, Serialize, Deserialize)]
pub struct ConversationRecord {
    pub identity: String,
    pub state: Box<RawValue>,
}

impl PartialEq for ConversationRecord {
    fn eq(&self, other: &Self) -> bool {
        self.identity == other.identity && self.state.get() == other.state.get()
    }
}

impl Eq for ConversationRecord {}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessedEventRecord {
    pub key: String,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replies: Vec<OutboundMessage>,
}

impl BackupRecord {
    /// The record's kind, as its `type` field names it.
    pub fn kind(&self) -> &'static str {
        match self {
            BackupRecord::Member(_) => "member",
            BackupRecord::Order(_) => "order",
            BackupRecord::Coupon(_) => "coupon",
            BackupRecord::MemberMail(_) => "member_mail",
            BackupRecord::AdjustmentKey(_) => "adjustment_key",
            BackupRecord::ImportedBalance(_) => "imported_balance",
            BackupRecord::Conversation(_) => "conversation",
            BackupRecord::PendingEvent(_) => "pending_event",
            BackupRecord::ProcessedEvent(_) => "processed_event",
            BackupRecord::MailLinkKey(_) => "mail_link_key",
            BackupRecord::OutboxMail(_) => "outbox_mail",
        }
    }

    /// Reads one record from its JSON. The kind is read first and the record then parsed as
    /// that kind directly: serde's tagged enums buffer a value first, and a buffered event's
    /// raw JSON payload cannot be read back. `None`: a `type` this version does not know.
    pub fn from_json(json: &str) -> Result<Option<BackupRecord>, serde_json::Error> {
        #[derive(Deserialize)]
        struct Kind<'a> {
            #[serde(rename = "type", borrow)]
            kind: std::borrow::Cow<'a, str>,
        }
        let kind: Kind<'_> = serde_json::from_str(json)?;
        use serde_json::from_str as parse;
        Ok(Some(match kind.kind.as_ref() {
            "member" => BackupRecord::Member(parse(json)?),
            "order" => BackupRecord::Order(parse(json)?),
            "coupon" => BackupRecord::Coupon(parse(json)?),
            "member_mail" => BackupRecord::MemberMail(parse(json)?),
            "adjustment_key" => BackupRecord::AdjustmentKey(parse(json)?),
            "imported_balance" => {
                let mut fields: serde_json::Map<_, _> = parse(json)?;
                fields.remove("type");
                BackupRecord::ImportedBalance(ImportedBalanceRecord { fields })
            }
            "conversation" => BackupRecord::Conversation(parse(json)?),
            "pending_event" => BackupRecord::PendingEvent(parse(json)?),
            "processed_event" => BackupRecord::ProcessedEvent(parse(json)?),
            "mail_link_key" => BackupRecord::MailLinkKey(parse(json)?),
            "outbox_mail" => BackupRecord::OutboxMail(parse(json)?),
            _ => return Ok(None),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_record_reads_back_with_its_payload_as_written() {
        let line = r#"{"type":"pending_event","key":"p:m1","sender":"7","timestamp_ms":3,"payload":{"z":1,"a":[ 2 ]}}"#;
        let record = BackupRecord::from_json(line).unwrap().unwrap();
        let BackupRecord::PendingEvent(event) = &record else {
            panic!("{record:?}");
        };
        assert_eq!(event.payload.get(), r#"{"z":1,"a":[ 2 ]}"#);
        assert_eq!(serde_json::to_string(&record).unwrap(), line);
        assert!(BackupRecord::from_json(r#"{"type":"unheard_of"}"#)
            .unwrap()
            .is_none());
        assert!(BackupRecord::from_json(r#"{"kind":"member"}"#).is_err());
    }
}
