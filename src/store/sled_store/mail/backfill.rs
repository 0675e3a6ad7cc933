//! The one-time statement backfill: members who joined before joins scheduled a first
//! statement have none in the due index. They get one at the first statement date of their
//! cycle (`joined_at + k * statement_every`, k ≥ 1) that is not in the past, so a store
//! upgraded after years does not send everyone a statement on its first day, nor makes
//! anyone wait a full period more than their cycle says.
//!
//! A mark in `meta` records that it ran; later calls read that one key. It is written after
//! everything scheduled is flushed: a crash before it runs the backfill again, which skips
//! the members scheduled already (they have `next_statement_at`). A restore clears the mark,
//! since a backup written before mail existed brings members without statements.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::super::records::decode;
use super::super::SledStore;
use super::due::tx_schedule;
use super::tx_next_statement;
use crate::domain::mail::{DueMail, MailKind, MailPolicy};
use crate::domain::MemberId;
use crate::store::StoreError;

/// `meta` key of the mark.
pub(in crate::store::sled_store) const BACKFILLED: &[u8] = b"statements_backfilled";

/// Members per atomic operation: a few journal records per thousand members, while an
/// operation's staged writes (which its reads search) stay short.
const BATCH: usize = 64;

/// What the backfill reads of a member record; the rest is skipped unread.
#[derive(Deserialize)]
struct Joined {
    member: JoinedMember,
}

#[derive(Deserialize)]
struct JoinedMember {
    id: MemberId,
    joined_at: DateTime<Utc>,
}

/// The first `joined + k * every` (k ≥ 1) at or after `now`.
pub(super) fn first_due(
    joined: DateTime<Utc>,
    every: chrono::Duration,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    if every <= chrono::Duration::zero() {
        return now.max(joined);
    }
    let first = joined + every;
    if first >= now {
        return first;
    }
    let (behind, step) = (
        (now - first).num_milliseconds(),
        every.num_milliseconds().max(1),
    );
    let mut at = first + every * i32::try_from(behind / step).unwrap_or(i32::MAX);
    while at < now {
        at += every;
    }
    at
}

impl SledStore {
    pub(in crate::store::sled_store) fn backfill_statements(
        &self,
        policy: &MailPolicy,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        if self.mail.meta.contains_key(BACKFILLED)? {
            return Ok(0);
        }
        let writing = self.commit.writing();
        let mut scheduled = 0;
        let mut batch = Vec::with_capacity(BATCH);
        let mut members = self.members.iter();
        loop {
            batch.clear();
            for kv in members.by_ref().take(BATCH) {
                let joined: Joined = decode("member record", &kv?.1)?;
                batch.push(joined.member);
            }
            if batch.is_empty() {
                break;
            }
            scheduled += self.backfill_batch(&batch, policy, now)?;
        }
        self.mail.meta.insert(BACKFILLED, &[][..])?;
        writing.wait()?;
        if scheduled > 0 {
            tracing::info!(
                members = scheduled,
                "statements scheduled for members who had none"
            );
        }
        Ok(scheduled)
    }

    fn backfill_batch(
        &self,
        batch: &[JoinedMember],
        policy: &MailPolicy,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let m = &self.mail;
        self.atomic.run([&m.due, &m.due_by], |[index, by]| {
            let mut n = 0;
            for member in batch {
                if tx_next_statement(&by, member.id)?.is_some() {
                    continue;
                }
                let due = DueMail {
                    at: first_due(member.joined_at, policy.statement_every, now),
                    member: member.id,
                    kind: MailKind::Statement,
                    coupon: None,
                };
                tx_schedule(&index, &by, &due)?;
                n += 1;
            }
            Ok(n)
        })
    }
}

#[cfg(test)]
mod tests;
