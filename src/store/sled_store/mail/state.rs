//! What the mail rules know of a member between sends: their mail state (opt-out, bounces,
//! the last and next mails), the language they chat in (on the member record), and the key
//! that signs unsubscribe links.

use chrono::{DateTime, Utc};
use rand::RngCore;

use super::super::atomic::tx;
use super::super::records::{decode, encode, tx_account};
use super::super::SledStore;
use super::{tx_put_state, tx_state};
use crate::domain::mail::{MailKind, MailState};
use crate::domain::MemberId;
use crate::store::{keys, StoreError};

/// `meta` key of the unsubscribe links' signing key: 32 bytes, as they are.
pub(in crate::store::sled_store) const LINK_KEY: &[u8] = b"mail_link_key";

impl SledStore {
    pub(in crate::store::sled_store) fn read_mail_state(
        &self,
        member: MemberId,
    ) -> Result<MailState, StoreError> {
        let mut out = match self.mail.state.get(keys::member(member))? {
            Some(raw) => decode("mail state", &raw)?,
            None => MailState::default(),
        };
        out.next_statement_at = self.next_statement(member)?;
        self.commit.settle_read()?;
        Ok(out)
    }

    /// When the member's next statement is due, from the index (see [`super::tx_next_statement`]).
    pub(in crate::store::sled_store) fn next_statement(
        &self,
        member: MemberId,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let slot = super::due::slot_key(member, MailKind::Statement, None);
        Ok(match self.mail.due_by.get(slot)? {
            Some(key) => Some(super::due::read_due_key(&key)?.at),
            None => None,
        })
    }

    pub(in crate::store::sled_store) fn write_unsubscribed(
        &self,
        member: MemberId,
        unsubscribed: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let trees = [&self.members, &self.mail.state];
        let writing = self.commit.writing();
        let changed = self.atomic.run(trees, |[members, state]| {
            tx_account(&members, member)?;
            let mut s = tx_state(&state, member)?;
            if s.unsubscribed == unsubscribed {
                return Ok(false);
            }
            s.unsubscribed = unsubscribed;
            s.unsubscribed_at = unsubscribed.then_some(now);
            tx_put_state(&state, member, &s)?;
            Ok(true)
        })?;
        writing.wait()?;
        if changed {
            tracing::info!(member.id = %member, unsubscribed, "marketing mail opt-out changed");
        }
        Ok(changed)
    }

    pub(in crate::store::sled_store) fn write_member_locale(
        &self,
        member: MemberId,
        locale: &str,
    ) -> Result<(), StoreError> {
        let writing = self.commit.writing();
        self.atomic.run([&self.members], |[members]| {
            let mut acct = tx_account(&members, member)?;
            if acct.member.locale.as_deref() == Some(locale) {
                return Ok(());
            }
            acct.member.locale = Some(locale.to_owned());
            members.insert(keys::member(member), tx(encode("member record", &acct))?)
        })?;
        writing.wait()
    }

    /// The link key, made from the OS CSPRNG at the first call. Under the writer lock, so two
    /// first calls cannot make two keys.
    pub(in crate::store::sled_store) fn link_key(&self) -> Result<[u8; 32], StoreError> {
        if let Some(raw) = self.mail.meta.get(LINK_KEY)? {
            let out = read_link_key(&raw)?;
            self.commit.settle_read()?;
            return Ok(out);
        }
        let writing = self.commit.writing();
        let key = self.atomic.run([&self.mail.meta], |[meta]| {
            if let Some(raw) = meta.get(LINK_KEY)? {
                return tx(read_link_key(&raw));
            }
            let mut key = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut key);
            meta.insert(LINK_KEY, &key[..])?;
            Ok(key)
        })?;
        writing.wait()?;
        Ok(key)
    }
}

pub(in crate::store::sled_store) fn read_link_key(
    raw: &[u8],
) -> Result<[u8; 32], super::super::atomic::Abort> {
    <[u8; 32]>::try_from(raw)
        .map_err(|_| super::super::atomic::Abort::Corrupt("mail link key".into(), None))
}
