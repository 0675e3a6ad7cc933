//! The mail scheduler: a pass at start and every `email.scan_every_secs` reads the due-date
//! index's head (never every member), records each send before handing it to SMTP, sends at
//! most `email.max_per_minute` over the pooled transport, and records the answer. SMTP 4xx and
//! connection failures are retried with backoff; 5xx counts as a bounce.
//!
//! The one window where a crash can send twice: after SMTP accepted a message and before the
//! store recorded it as sent (one store write, about a millisecond). The restart finds the send
//! still recorded as in progress and sends it again, with the same `Message-ID`, which lets
//! most mail systems drop the second copy. Every other crash point either has not sent yet (the
//! restart sends) or has recorded the send (the restart does not).

use super::mailroom::Mailroom;
use super::SendError;
use crate::clock::Clock;
use crate::domain::mail::{DueMail, MailPolicy, MailResult, OutboxMail, SendState};
use crate::program::{Program, ProgramError};
use crate::store::MailStart;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Attempts of one message before temporary failures are given up on.
const MAX_ATTEMPTS: u32 = 8;
/// Due entries read from the index at a time.
const BATCH: usize = 512;

/// What one pass did, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    pub sent: u64,
    pub failed: u64,
    pub retrying: u64,
    pub postponed: u64,
    pub dropped: u64,
}

pub struct Scheduler {
    program: Arc<Program>,
    room: Arc<Mailroom>,
    policy: MailPolicy,
    clock: Arc<dyn Clock>,
    pace: Pace,
    scan_every: Duration,
    concurrency: usize,
}

impl Scheduler {
    pub fn new(
        program: Arc<Program>,
        room: Arc<Mailroom>,
        settings: &super::EmailSettings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Scheduler {
            program,
            room,
            policy: settings.policy(),
            clock,
            pace: Pace::per_minute(settings.max_per_minute),
            scan_every: settings.scan_every,
            concurrency: super::mailroom::POOL_SIZE as usize,
        }
    }

    /// Passes until `stop`: the first at once, then every `scan_every`. A pass in progress
    /// finishes its messages in flight and stops taking new ones.
    pub async fn run(self, stop: CancellationToken) {
        loop {
            match self.pass(&stop).await {
                Ok(r) if r != PassReport::default() => {
                    tracing::info!(
                        sent = r.sent,
                        failed = r.failed,
                        retrying = r.retrying,
                        postponed = r.postponed,
                        dropped = r.dropped,
                        "mail pass"
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %crate::telemetry::chain(&e), "mail pass failed; next pass as scheduled");
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.scan_every) => {}
            }
        }
    }

    /// One pass: sends left unconfirmed by a crash and retries now due, then the due index.
    pub async fn pass(&self, stop: &CancellationToken) -> Result<PassReport, ProgramError> {
        let now = self.clock.now();
        let mut report = PassReport::default();
        let ready: Vec<OutboxMail> = self
            .program
            .unsent_mails()
            .await?
            .into_iter()
            .filter(|m| match m.state {
                SendState::Sending => true,
                SendState::Retry { at } => at <= now,
                _ => false,
            })
            .collect();
        self.send_all(ready, &mut report, stop).await?;
        while !stop.is_cancelled() {
            let due = self.program.due_mails(now, BATCH).await?;
            let full = due.len() == BATCH;
            // Each due mail is recorded and sent in one go, several members at once: their
            // records share the store's group-commit flushes, and no send waits behind another's
            // record. One member's mails go in order, the statement first, so that it wins over
            // a reminder due at the same pass.
            let results: Vec<Result<Vec<Outcome>, ProgramError>> =
                futures_util::stream::iter(by_member(due))
                    .take_while(|_| std::future::ready(!stop.is_cancelled()))
                    .map(|mails| self.handle_member(mails, now))
                    .buffer_unordered(self.concurrency)
                    .collect()
                    .await;
            for r in results {
                tally(r?.into_iter().map(Ok).collect(), &mut report)?;
            }
            if !full {
                break;
            }
        }
        Ok(report)
    }

    /// One member's due mails, one after the other.
    async fn handle_member(
        &self,
        mails: Vec<DueMail>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Outcome>, ProgramError> {
        let mut out = Vec::with_capacity(mails.len());
        for d in mails {
            out.push(self.handle(d, now).await?);
        }
        Ok(out)
    }

    /// Records a due mail's send (or postpones or drops it) and sends it.
    async fn handle(&self, due: DueMail, now: DateTime<Utc>) -> Result<Outcome, ProgramError> {
        match self.begin(due, now).await? {
            MailStart::Send(m) => self.attempt(m).await,
            MailStart::Postponed(_) => Ok(Outcome::Postponed),
            MailStart::Dropped(_) => Ok(Outcome::Skipped),
            MailStart::Gone => Ok(Outcome::Gone),
        }
    }

    async fn begin(&self, due: DueMail, now: DateTime<Utc>) -> Result<MailStart, ProgramError> {
        let id = self.room.message_id();
        self.program.begin_mail(due, self.policy, id, now).await
    }

    async fn send_all(
        &self,
        mails: Vec<OutboxMail>,
        report: &mut PassReport,
        stop: &CancellationToken,
    ) -> Result<(), ProgramError> {
        let results: Vec<Result<Outcome, ProgramError>> = futures_util::stream::iter(mails)
            .take_while(|_| std::future::ready(!stop.is_cancelled()))
            .map(|m| self.attempt(m))
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        tally(results, report)
    }

    /// Renders, sends and records one message.
    async fn attempt(&self, mail: OutboxMail) -> Result<Outcome, ProgramError> {
        let now = self.clock.now();
        let Some(subject) = self.program.mail_subject(mail.member).await? else {
            return self.finish(&mail, skipped("the member is gone"), now).await;
        };
        let letter = match self.room.letter(&mail, &subject, now) {
            Ok(Some(letter)) => letter,
            Ok(None) => return self.finish(&mail, skipped("no longer applies"), now).await,
            Err(e) => {
                tracing::error!(member.id = %mail.member, kind = mail.kind.as_str(), error = %e, "mail not rendered");
                return self.finish(&mail, skipped("not rendered"), now).await;
            }
        };
        self.pace.wait().await;
        let sent = self.room.send(letter).await;
        let result = match sent {
            Ok(()) => MailResult::Sent,
            Err(SendError::Permanent(reason)) => MailResult::Permanent { reason },
            Err(SendError::Transient(reason)) if mail.attempts + 1 >= MAX_ATTEMPTS => {
                skipped_owned(format!(
                    "gave up after {MAX_ATTEMPTS} temporary failures: {reason}"
                ))
            }
            Err(SendError::Transient(reason)) => {
                tracing::warn!(member.id = %mail.member, kind = mail.kind.as_str(), %reason, "mail will be retried");
                MailResult::Retry {
                    at: self.clock.now() + backoff(mail.attempts),
                }
            }
        };
        let kind = mail.kind.as_str();
        self.program
            .metrics()
            .email_result(kind, matches!(result, MailResult::Sent));
        self.finish(&mail, result, now).await
    }

    async fn finish(
        &self,
        mail: &OutboxMail,
        result: MailResult,
        now: DateTime<Utc>,
    ) -> Result<Outcome, ProgramError> {
        let outcome = match &result {
            MailResult::Sent => Outcome::Sent,
            MailResult::Retry { .. } => Outcome::Retrying,
            MailResult::Permanent { reason } => {
                tracing::warn!(member.id = %mail.member, kind = mail.kind.as_str(), %reason, "mail refused for good");
                Outcome::Failed
            }
            MailResult::Skipped { .. } => Outcome::Skipped,
        };
        self.program.finish_mail(mail.id, result, now).await?;
        Ok(outcome)
    }
}

enum Outcome {
    Sent,
    Failed,
    Retrying,
    Skipped,
    Postponed,
    /// Handled already (by an earlier pass).
    Gone,
}

/// Due mails grouped by member, each group statement first, the groups in the order their
/// first mail fell due.
fn by_member(due: Vec<DueMail>) -> Vec<Vec<DueMail>> {
    let mut groups: Vec<Vec<DueMail>> = Vec::new();
    let mut at: std::collections::HashMap<crate::domain::MemberId, usize> = Default::default();
    for d in due {
        match at.get(&d.member) {
            Some(&i) => groups[i].push(d),
            None => {
                at.insert(d.member, groups.len());
                groups.push(vec![d]);
            }
        }
    }
    for g in &mut groups {
        // Statement sorts first (MailKind's order); stable, so the rest keep their due order.
        g.sort_by_key(|d| d.kind);
    }
    groups
}

fn tally(
    results: Vec<Result<Outcome, ProgramError>>,
    report: &mut PassReport,
) -> Result<(), ProgramError> {
    for r in results {
        match r? {
            Outcome::Sent => report.sent += 1,
            Outcome::Failed => report.failed += 1,
            Outcome::Retrying => report.retrying += 1,
            Outcome::Skipped => report.dropped += 1,
            Outcome::Postponed => report.postponed += 1,
            Outcome::Gone => {}
        }
    }
    Ok(())
}

fn skipped(reason: &str) -> MailResult {
    skipped_owned(reason.to_owned())
}

fn skipped_owned(reason: String) -> MailResult {
    MailResult::Skipped { reason }
}

/// 1, 2, 4 … minutes after the n-th failure, at most an hour.
fn backoff(attempts: u32) -> chrono::Duration {
    chrono::Duration::minutes(1i64 << attempts.min(6)).min(chrono::Duration::hours(1))
}

/// At most `n` sends a minute: each send takes the next free slot.
struct Pace {
    gap: Duration,
    next: Mutex<Option<Instant>>,
}

impl Pace {
    fn per_minute(n: u32) -> Self {
        Pace {
            gap: Duration::from_secs(60) / n.max(1),
            next: Mutex::new(None),
        }
    }

    async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + self.gap);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_members_mails_go_together_statement_first() {
        use crate::domain::mail::MailKind;
        use crate::domain::MemberId;
        let due = |member: u64, kind| DueMail {
            at: chrono::Utc::now(),
            member: MemberId(member),
            kind,
            coupon: None,
        };
        let groups = by_member(vec![
            due(1, MailKind::RewardReminder),
            due(2, MailKind::Statement),
            due(1, MailKind::Statement),
        ]);
        let kinds: Vec<Vec<(u64, MailKind)>> = groups
            .iter()
            .map(|g| g.iter().map(|d| (d.member.0, d.kind)).collect())
            .collect();
        assert_eq!(
            kinds,
            [
                vec![(1, MailKind::Statement), (1, MailKind::RewardReminder)],
                vec![(2, MailKind::Statement)]
            ]
        );
    }

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff(0), chrono::Duration::minutes(1));
        assert_eq!(backoff(2), chrono::Duration::minutes(4));
        assert_eq!(backoff(30), chrono::Duration::hours(1));
    }

    #[tokio::test(start_paused = true)]
    async fn the_pace_spaces_sends_evenly() {
        let pace = Pace::per_minute(120);
        let start = Instant::now();
        for _ in 0..5 {
            pace.wait().await;
        }
        assert_eq!(start.elapsed(), Duration::from_millis(2000));
    }
}
