//! Backups and moves: the whole store as one NDJSON file, the export format. [`export`] writes
//! it from a store that serves (`GET /admin/export`) or a stopped one (`loyalty-bot export`);
//! [`import`] reads it into an empty store (`loyalty-bot import`).
//!
//! The format, version 1, one JSON object a line:
//! - first, the header: `{"format":"loyalty-bot-export","version":1,"exported_at":…,
//!   "store_version":…}` (`store_version`: the layout of the store it came from);
//! - then the records ([`BackupRecord`]; `type` names the kind): each member with their
//!   balance and ledger, followed by the orders they claimed, their coupons and their mail
//!   (mail state and the mails due to them), all as at one instant; then the adjustment keys (an operator's `Idempotency-Key` with the result its
//!   first request got) of the adjustments in those ledgers; then orders refunded before
//!   anyone claimed them, imported balances, conversations in progress, pending inbound
//!   events, processed events with the replies not delivered yet, the key that signs
//!   unsubscribe links, and the member mail recorded and not confirmed sent. Joins waiting
//!   for their email code are left out: they live for minutes, and the customer asks for a
//!   new code;
//! - last, the trailer: `{"type":"end","counts":{…}}`, how many records of each kind came
//!   before. An export cut short has no trailer, and an import refuses it.
//!
//! An import refuses the whole file, and leaves the store empty, at the first fault: a header
//! that is not this format or is of a newer version, a line that does not read, a member whose
//! balance is not their ledger's sum, a record that contradicts another (a member twice, a
//! coupon without its redemption, an adjustment key twice or without its member's
//! adjustment), counts that differ from the trailer's, a missing trailer.

mod export;
mod import;

pub use export::{export, ExportSummary};
pub use import::{import, ImportSummary};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::store::backup::BackupRecord;
use crate::store::StoreError;

/// The header's `format`.
pub const FORMAT: &str = "loyalty-bot-export";
/// The version of the format this binary writes, and the newest it reads.
pub const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the export")]
    Write(#[source] std::io::Error),
    #[error("cannot read the file")]
    Read(#[source] std::io::Error),
    #[error("the store is not empty: a backup is imported into a new, empty store only")]
    NotEmpty,
    #[error("not a loyalty-bot export: {0}")]
    NotAnExport(String),
    #[error(
        "the export is of format version {found}, newer than this loyalty-bot reads ({known})"
    )]
    NewerFormat { found: u32, known: u32 },
    #[error("line {line}: {message}")]
    Invalid { line: u64, message: String },
    #[error("the file ends before its last line (the trailer): it was cut short")]
    Truncated,
    #[error("the trailer counts {expected} {what}, the file holds {found}")]
    Counts {
        what: &'static str,
        expected: u64,
        found: u64,
    },
    #[error("member {member}'s balance is {balance} but their ledger adds up to {sum}")]
    Unbalanced {
        member: u64,
        balance: u64,
        sum: i128,
    },
}

/// How many records of each kind a file holds: its trailer, and what an export or an import
/// reports.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub members: u64,
    pub ledger_entries: u64,
    pub orders: u64,
    pub coupons: u64,
    /// Absent from the trailers of exports written before the kind existed.
    #[serde(default)]
    pub adjustment_keys: u64,
    pub imported_balances: u64,
    pub conversations: u64,
    pub pending_events: u64,
    pub processed_events: u64,
    pub pending_replies: u64,
    /// The mail counts are absent from the trailers of exports written before mail existed.
    #[serde(default)]
    pub member_mails: u64,
    /// Entries of the due index, in the member mail records.
    #[serde(default)]
    pub due_mails: u64,
    #[serde(default)]
    pub mail_link_keys: u64,
    #[serde(default)]
    pub outbox_mails: u64,
}

impl Counts {
    fn add(&mut self, record: &BackupRecord) {
        match record {
            BackupRecord::Member(m) => {
                self.members += 1;
                self.ledger_entries += m.ledger.len() as u64;
            }
            BackupRecord::Order(_) => self.orders += 1,
            BackupRecord::Coupon(_) => self.coupons += 1,
            BackupRecord::MemberMail(m) => {
                self.member_mails += 1;
                self.due_mails += m.due.len() as u64;
            }
            BackupRecord::AdjustmentKey(_) => self.adjustment_keys += 1,
            BackupRecord::ImportedBalance(_) => self.imported_balances += 1,
            BackupRecord::Conversation(_) => self.conversations += 1,
            BackupRecord::PendingEvent(_) => self.pending_events += 1,
            BackupRecord::ProcessedEvent(p) => {
                self.processed_events += 1;
                self.pending_replies += p.replies.len() as u64;
            }
            BackupRecord::MailLinkKey(_) => self.mail_link_keys += 1,
            BackupRecord::OutboxMail(_) => self.outbox_mails += 1,
        }
    }

    /// Every count, named as in the trailer.
    fn named(&self) -> [(&'static str, u64); 14] {
        [
            ("members", self.members),
            ("ledger_entries", self.ledger_entries),
            ("orders", self.orders),
            ("coupons", self.coupons),
            ("adjustment_keys", self.adjustment_keys),
            ("imported_balances", self.imported_balances),
            ("conversations", self.conversations),
            ("pending_events", self.pending_events),
            ("processed_events", self.processed_events),
            ("pending_replies", self.pending_replies),
            ("member_mails", self.member_mails),
            ("due_mails", self.due_mails),
            ("mail_link_keys", self.mail_link_keys),
            ("outbox_mails", self.outbox_mails),
        ]
    }

    /// All the records.
    pub fn records(&self) -> u64 {
        self.members
            + self.orders
            + self.coupons
            + self.adjustment_keys
            + self.imported_balances
            + self.conversations
            + self.pending_events
            + self.processed_events
            + self.member_mails
            + self.mail_link_keys
            + self.outbox_mails
    }
}

/// The first line.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    exported_at: DateTime<Utc>,
    store_version: u32,
}

/// The last line.
#[derive(Debug, Serialize, Deserialize)]
struct Trailer {
    #[serde(rename = "type")]
    kind: String,
    counts: Counts,
}

/// The trailer's `type`.
const END: &str = "end";

/// A member record's fault, if its balance is not its ledger's sum.
fn unbalanced(record: &BackupRecord) -> Option<BackupError> {
    let BackupRecord::Member(m) = record else {
        return None;
    };
    let sum: i128 = m.ledger.iter().map(|e| i128::from(e.points)).sum();
    (sum != i128::from(m.balance.0)).then(|| BackupError::Unbalanced {
        member: m.member.id.0,
        balance: m.balance.0,
        sum,
    })
}
