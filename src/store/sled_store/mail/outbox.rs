//! A send's life: taken off the due index and recorded in the outbox (`Sending`) in one
//! atomic step before it is handed to SMTP, then marked with how the attempt ended. Records
//! without a final answer are also keyed in `mail_unsent`, which is what a restart reads.
//!
//! Sent and failed records stay in `mail_outbox` (nothing reads them in normal operation).
//! Pruning them later is a range removal over old ids: ids grow with time, so every record
//! below the first id still in `mail_unsent` and older than a retention period can go.

use chrono::{DateTime, Utc};

use super::super::atomic::{abort, tx, Abort};
use super::super::records::{decode, encode};
use super::super::SledStore;
use super::due::{tx_schedule, tx_unschedule};
use super::{tx_next_statement, tx_put_state, tx_state};
use crate::domain::mail::{
    decide, Decision, DueMail, MailKind, MailPolicy, MailResult, OutboxMail, SendState, MAX_BOUNCES,
};
use crate::store::{keys, MailStart, StoreError};

impl SledStore {
    pub(in crate::store::sled_store) fn start_mail(
        &self,
        due: &DueMail,
        policy: &MailPolicy,
        message_id: String,
        now: DateTime<Utc>,
    ) -> Result<MailStart, StoreError> {
        let m = &self.mail;
        let trees = [&m.due, &m.due_by, &m.state, &m.outbox, &m.unsent];
        let writing = self.commit.writing();
        let start = self
            .atomic
            .run(trees, |[index, by, state, outbox, unsent]| {
                if !tx_unschedule(&index, &by, due)? {
                    return Ok(MailStart::Gone);
                }
                let mut s = tx_state(&state, due.member)?;
                s.next_statement_at = tx_next_statement(&by, due.member)?;
                let decision = decide(due, &s, policy, now);
                let statement = due.kind == MailKind::Statement;
                let start = match decision {
                    Decision::Postpone(at) => {
                        let later = DueMail { at, ..due.clone() };
                        tx_schedule(&index, &by, &later)?;
                        MailStart::Postponed(at)
                    }
                    Decision::Drop(reason) => MailStart::Dropped(reason),
                    Decision::Send => {
                        // sled's persistent counter, shared with member ids; never reused.
                        let id = self.db.generate_id()? + 1;
                        s.last_marketing_at = Some(now);
                        if statement {
                            s.previous_statement_at = s.last_statement_at;
                            s.last_statement_at = Some(now);
                            s.statements_sent += 1;
                        }
                        let mail = OutboxMail {
                            id,
                            member: due.member,
                            kind: due.kind,
                            coupon: due.coupon.clone(),
                            message_id: message_id.clone(),
                            created_at: now,
                            state: SendState::Sending,
                            attempts: 1,
                        };
                        outbox.insert(keys::mail_id(id), tx(encode("outbox mail", &mail))?)?;
                        unsent.insert(keys::mail_id(id), &[][..])?;
                        MailStart::Send(mail)
                    }
                };
                // A statement sent or dropped makes way for the next one.
                if statement && !matches!(start, MailStart::Postponed(_)) {
                    let next = DueMail {
                        at: now + policy.statement_every,
                        member: due.member,
                        kind: MailKind::Statement,
                        coupon: None,
                    };
                    tx_schedule(&index, &by, &next)?;
                }
                tx_put_state(&state, due.member, &s)?;
                Ok(start)
            })?;
        writing.wait()?;
        Ok(start)
    }

    pub(in crate::store::sled_store) fn end_mail(
        &self,
        id: u64,
        result: MailResult,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let m = &self.mail;
        let trees = [&m.outbox, &m.unsent, &m.state];
        let writing = self.commit.writing();
        let undeliverable = self.atomic.run(trees, |[outbox, unsent, state]| {
            let key = keys::mail_id(id);
            let Some(raw) = outbox.get(key)? else {
                return abort(Abort::Corrupt(format!("no outbox mail {id}"), None));
            };
            let mut mail: OutboxMail = tx(decode("outbox mail", &raw))?;
            if matches!(
                mail.state,
                SendState::Sent { .. } | SendState::Failed { .. }
            ) {
                // Answered before: a repeat changes nothing (and counts no second bounce).
                return Ok(None);
            }
            let mut s = tx_state(&state, mail.member)?;
            let mut newly_undeliverable = false;
            match result {
                MailResult::Sent => {
                    mail.state = SendState::Sent { at: now };
                    s.bounces = 0;
                    unsent.remove(key)?;
                }
                MailResult::Retry { at } => {
                    mail.state = SendState::Retry { at };
                    mail.attempts += 1;
                }
                // Not the address's fault: no bounce.
                MailResult::Skipped { reason } => {
                    mail.state = SendState::Failed { at: now, reason };
                    unsent.remove(key)?;
                }
                MailResult::Permanent { reason } => {
                    mail.state = SendState::Failed { at: now, reason };
                    s.bounces = s.bounces.saturating_add(1);
                    if s.bounces >= MAX_BOUNCES && !s.undeliverable {
                        s.undeliverable = true;
                        newly_undeliverable = true;
                    }
                    unsent.remove(key)?;
                }
            }
            outbox.insert(key, tx(encode("outbox mail", &mail))?)?;
            tx_put_state(&state, mail.member, &s)?;
            Ok(newly_undeliverable.then_some(mail.member))
        })?;
        writing.wait()?;
        if let Some(member) = undeliverable {
            tracing::warn!(member.id = %member, "address bounced {MAX_BOUNCES} times: marked undeliverable");
        }
        Ok(())
    }

    /// The outbox records without a final answer, oldest first.
    pub(in crate::store::sled_store) fn read_unsent_mails(
        &self,
    ) -> Result<Vec<OutboxMail>, StoreError> {
        let mut out = Vec::new();
        for kv in self.mail.unsent.iter() {
            let (k, _) = kv?;
            // One answered between the two reads is simply no longer unsent.
            let Some(raw) = self.mail.outbox.get(&k)? else {
                continue;
            };
            let mail: OutboxMail = decode("outbox mail", &raw)?;
            if matches!(mail.state, SendState::Sending | SendState::Retry { .. }) {
                out.push(mail);
            }
        }
        out.sort_by_key(|m| (m.created_at, m.id));
        self.commit.settle_read()?;
        Ok(out)
    }
}
