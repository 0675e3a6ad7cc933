//! What the store's operations for balances changed by hand take and answer: operator
//! adjustments ([`super::LoyaltyStore::adjust`]) and imported balances
//! ([`super::LoyaltyStore::import_balances`]).

use crate::domain::{Email, LedgerEntry, MemberId, Points};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An adjustment as applied, and as remembered under its request key: a repeated request is
/// answered with exactly this, whatever happened to the balance since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adjusted {
    pub member: MemberId,
    pub entry: LedgerEntry,
    /// The balance right after the entry.
    pub balance: Points,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdjustOutcome {
    /// The entry is in the ledger and the key remembered, in one atomic step.
    Applied(Adjusted),
    /// The key was used before for this same request: its first result; nothing changed.
    Repeated(Adjusted),
    /// The key was used before for a different request (another member, points or reason);
    /// nothing changed.
    KeyReused,
    /// A debit larger than the balance; nothing changed (the key is not remembered).
    Insufficient { balance: Points },
    /// No member has this id; nothing changed.
    UnknownMember,
}

/// One balance to import: a row of the operator's file, already checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRow {
    pub email: Email,
    pub points: Points,
    pub joined_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportOutcome {
    /// No member has the email yet: the balance waits for them.
    Waiting,
    /// A member has the email: credited now (an `import` ledger entry).
    Credited { member: MemberId, balance: Points },
    /// The email was imported before (waiting or applied); nothing changed.
    AlreadyImported,
}
