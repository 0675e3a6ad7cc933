//! A member's mail as a backup record, and the mail records of a backup written back
//! (`restore.rs` writes the others, in the same way: plain inserts, made durable together at
//! the end). A member's mail follows the member; outbox mail and the link key come after
//! every member.
//!
//! The member's statement entry is not listed in their record: its time is the record's
//! `next_statement_at` (the store keeps it in the index only), and the restore puts it back
//! from there.

use super::super::records::decode;
use super::super::SledStore;
use super::due::{due_key, entries_of, slot_key};
use super::{BACKFILLED, LINK_KEY};
use crate::domain::mail::{DueMail, MailKind, OutboxMail, SendState};
use crate::domain::MemberId;
use crate::store::backup::{MailLinkKeyRecord, MemberMailRecord};
use crate::store::{keys, StoreError};

fn conflict(what: String) -> StoreError {
    StoreError::Conflict(what)
}

impl SledStore {
    /// The member's mail record; `None` for a member with neither a mail state nor a mail due.
    pub(in crate::store::sled_store) fn member_mail(
        &self,
        member: MemberId,
    ) -> Result<Option<MemberMailRecord>, StoreError> {
        let state = self.mail.state.get(keys::member(member))?;
        let mut due = entries_of(self, member)?;
        if state.is_none() && due.is_empty() {
            return Ok(None);
        }
        let mut state: crate::domain::mail::MailState = match state {
            Some(raw) => decode("mail state", &raw)?,
            None => Default::default(),
        };
        state.next_statement_at = due
            .iter()
            .find(|d| d.kind == MailKind::Statement)
            .map(|d| d.at);
        due.retain(|d| d.kind != MailKind::Statement);
        Ok(Some(MemberMailRecord { member, state, due }))
    }

    pub(in crate::store::sled_store) fn restore_member_mail(
        &self,
        m: MemberMailRecord,
    ) -> Result<(), StoreError> {
        let member = m.member;
        if !self.members.contains_key(keys::member(member))? {
            return Err(conflict(format!("mail of unknown member {member}")));
        }
        if let Some(stored) = super::stored_form(&m.state) {
            let state = super::super::records::encode("mail state", &stored)?;
            self.insert_new(&self.mail.state, keys::member(member), state, || {
                format!("the mail of member {member} twice")
            })?;
        }
        let listed = m.due.iter().any(|d| d.kind == MailKind::Statement);
        let statement = m
            .state
            .next_statement_at
            .filter(|_| !listed)
            .map(|at| DueMail {
                at,
                member,
                kind: MailKind::Statement,
                coupon: None,
            });
        for due in m.due.iter().chain(&statement) {
            if due.member != member {
                return Err(conflict(format!(
                    "mail of member {} among member {member}'s",
                    due.member
                )));
            }
            let (key, slot) = (
                due_key(due),
                slot_key(member, due.kind, due.coupon.as_ref()),
            );
            self.insert_new(&self.mail.due_by, slot, key.clone(), || {
                format!("member {member}'s {} mail due twice", due.kind.as_str())
            })?;
            self.mail.due.insert(key, &[][..])?;
        }
        Ok(())
    }

    pub(in crate::store::sled_store) fn restore_link_key(
        &self,
        k: MailLinkKeyRecord,
    ) -> Result<(), StoreError> {
        let key = hex::decode(&k.key)
            .ok()
            .filter(|k| k.len() == 32)
            .ok_or_else(|| conflict("the mail link key is not 32 bytes in hex".into()))?;
        // Replaces a key the empty store may have made: the links already sent carry this one.
        self.mail.meta.insert(LINK_KEY, key)?;
        Ok(())
    }

    pub(in crate::store::sled_store) fn restore_outbox_mail(
        &self,
        mail: OutboxMail,
    ) -> Result<(), StoreError> {
        let (id, member) = (mail.id, mail.member);
        if !self.members.contains_key(keys::member(member))? {
            return Err(conflict(format!(
                "outbox mail {id} of unknown member {member}"
            )));
        }
        let unsent = matches!(mail.state, SendState::Sending | SendState::Retry { .. });
        let value = super::super::records::encode("outbox mail", &mail)?;
        self.insert_new(&self.mail.outbox, keys::mail_id(id), value, || {
            format!("outbox mail {id} twice")
        })?;
        if unsent {
            self.mail.unsent.insert(keys::mail_id(id), &[][..])?;
        }
        Ok(())
    }

    /// At the end of a restore: outbox ids come from the same counter as member ids, so it
    /// must pass the restored ones; and the statement backfill runs again at the next start,
    /// for the members of a backup written before mail existed.
    pub(in crate::store::sled_store) fn restore_mail_finish(&self) -> Result<u64, StoreError> {
        self.mail.meta.remove(BACKFILLED)?;
        Ok(match self.mail.outbox.last()? {
            Some((k, _)) => keys::read_u64(&k).unwrap_or(0),
            None => 0,
        })
    }
}

#[cfg(test)]
mod tests;
