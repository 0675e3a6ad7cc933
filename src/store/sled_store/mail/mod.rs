//! Email to members on sled: the due-date index the scheduler reads instead of walking
//! members, each member's mail state, and the outbox of sends.
//!
//! Trees (values serde_json unless noted):
//! - `mail_due`: (due time, member, kind, coupon) → empty; the key is the whole entry
//!   (`due.rs`), ordered by time so the due set is a range from the start;
//! - `mail_due_by`: (member, kind, coupon) → the `mail_due` key, so that scheduling a mail
//!   again replaces its entry instead of adding one;
//! - `mail_state`: member id → [`MailState`], for members whose state is not all defaults
//!   (none is a default state); its `next_statement_at` is not stored but read from the
//!   index, the one place a statement's due time is kept;
//! - `mail_outbox`: outbox id → [`crate::domain::mail::OutboxMail`], every send recorded
//!   before it is handed to SMTP; `mail_unsent`: outbox id → empty, the ones without a final
//!   answer (`outbox.rs`), so a restart reads those and not the sent history;
//! - `meta`: the key that signs unsubscribe links and the mark of the one-time statement
//!   backfill (`state.rs`).
//!
//! (`outbox` is not a name to use here: a tree of that name is an old layout's reply queue,
//! which the migration moves and drops, `migrate.rs`.)
//!
//! Every multi-key change runs as one atomic operation (`atomic.rs`) and returns once flushed.

mod backfill;
mod backup;
pub(super) mod due;
mod outbox;
mod state;
#[cfg(test)]
mod tests;

use std::sync::RwLock;

use sled::Tree;

use chrono::{DateTime, Utc};

use crate::domain::mail::{MailKind, MailPolicy, MailState};
use crate::domain::MemberId;
use crate::store::{keys, StoreError};

use super::atomic::{tx, Tx, TxTree};
use super::records::{decode, encode};

use backfill::BACKFILLED;
pub(super) use state::{read_link_key, LINK_KEY};

/// The mail trees of one store, and the policy joins schedule the first statement by.
pub(in crate::store::sled_store) struct MailTrees {
    pub pending_joins: Tree,
    pub due: Tree,
    pub due_by: Tree,
    pub state: Tree,
    pub outbox: Tree,
    pub unsent: Tree,
    pub meta: Tree,
    policy: RwLock<MailPolicy>,
}

impl MailTrees {
    pub fn open(db: &sled::Db) -> Result<MailTrees, StoreError> {
        Ok(MailTrees {
            pending_joins: db.open_tree("pending_joins")?,
            due: db.open_tree("mail_due")?,
            due_by: db.open_tree("mail_due_by")?,
            state: db.open_tree("mail_state")?,
            outbox: db.open_tree("mail_outbox")?,
            unsent: db.open_tree("mail_unsent")?,
            meta: db.open_tree("meta")?,
            policy: RwLock::new(MailPolicy::default()),
        })
    }

    pub fn policy(&self) -> MailPolicy {
        *self
            .policy
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn set_policy(&self, policy: MailPolicy) {
        *self
            .policy
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = policy;
    }
}

/// The member's stored mail state inside an operation (the default if none is stored),
/// without `next_statement_at`: [`tx_next_statement`] reads that.
pub(super) fn tx_state(state: &TxTree<'_>, member: MemberId) -> Tx<MailState> {
    let mut s = match state.get(keys::member(member))? {
        Some(raw) => tx(decode("mail state", &raw))?,
        None => MailState::default(),
    };
    // A store written before the index was the only place kept it there too; the index wins.
    s.next_statement_at = None;
    Ok(s)
}

/// When the member's next statement is due, from the index.
pub(super) fn tx_next_statement(by: &TxTree<'_>, member: MemberId) -> Tx<Option<DateTime<Utc>>> {
    match by.get(due::slot_key(member, MailKind::Statement, None))? {
        Some(key) => Ok(Some(tx(due::read_due_key(&key))?.at)),
        None => Ok(None),
    }
}

/// Stores the member's mail state, less `next_statement_at` (the index keeps it); a state
/// that is all defaults is no record at all.
pub(super) fn tx_put_state(state: &TxTree<'_>, member: MemberId, s: &MailState) -> Tx<()> {
    match stored_form(s) {
        None => state.remove(keys::member(member)),
        Some(s) => state.insert(keys::member(member), tx(encode("mail state", &s))?),
    }
}

/// What of `s` goes in `mail_state`: `None` for nothing.
pub(super) fn stored_form(s: &MailState) -> Option<MailState> {
    let stored = MailState {
        next_statement_at: None,
        ..s.clone()
    };
    (stored != MailState::default()).then_some(stored)
}

impl super::SledStore {
    /// Sets the rules joins schedule the first statement by (the owner's `email` settings).
    pub fn set_mail_policy(&self, policy: MailPolicy) {
        self.mail.set_policy(policy);
    }
}
