//! The program's side of member email: the opt-out, the language mail is written in, and the
//! store operations the mail scheduler runs (each durable before it returns).

use super::{Program, ProgramError};
use crate::domain::mail::{DueMail, MailKind, MailPolicy, MailResult, MailState, OutboxMail};
use crate::domain::{Coupon, LedgerEntry, MemberAccount, MemberId, Points};
use crate::store::MailStart;
use chrono::{DateTime, Utc};

/// What a member's mail is made from, read together.
#[derive(Debug, Clone)]
pub struct MailSubject {
    pub account: MemberAccount,
    pub ledger: Vec<LedgerEntry>,
    pub coupons: Vec<Coupon>,
    pub state: MailState,
}

impl Program {
    /// A credit that lifted the balance from below the cheapest reward to at least it: the
    /// member can now afford a reward, which is worth an email. A failure here is logged, not
    /// passed on: the credit it follows is done and was told.
    pub(super) async fn remind_if_affordable(
        &self,
        member: MemberId,
        before: Points,
        after: Points,
    ) {
        let Some(cheapest) = self.catalogue.cheapest().map(|r| r.points) else {
            return;
        };
        if self.mail.is_none() || !(before < cheapest && cheapest <= after) {
            return;
        }
        let due = DueMail {
            at: self.clock.now(),
            member,
            kind: MailKind::RewardReminder,
            coupon: None,
        };
        if let Err(e) = self.schedule_mail(due).await {
            tracing::warn!(member.id = %member, error = %crate::telemetry::chain(&e), "reward reminder not scheduled");
        }
    }

    /// A new coupon: its reminder, `coupon_reminder_days` before it expires (none when that is
    /// already past).
    pub(super) async fn remind_of_coupon(&self, coupon: &Coupon) {
        let Some(policy) = self.mail else {
            return;
        };
        let at = coupon.expires_at - policy.coupon_reminder_before;
        if policy.coupon_reminder_before.is_zero() || at <= self.clock.now() {
            return;
        }
        let due = DueMail {
            at,
            member: coupon.member,
            kind: MailKind::CouponReminder,
            coupon: Some(coupon.code.clone()),
        };
        if let Err(e) = self.schedule_mail(due).await {
            tracing::warn!(member.id = %coupon.member, error = %crate::telemetry::chain(&e), "coupon reminder not scheduled");
        }
    }

    /// Opts a member out of marketing email (`true`) or back in; `Ok(false)`: no change.
    pub async fn set_marketing_opt_out(
        &self,
        member: MemberId,
        out: bool,
    ) -> Result<bool, ProgramError> {
        let changed = self
            .durably(move |s| s.set_unsubscribed(member, out, self.clock.now()))
            .await?;
        if changed && out {
            self.metrics.email_unsubscribed();
            tracing::info!(member.id = %member, "member opted out of marketing email");
        }
        Ok(changed)
    }

    /// Keeps the language a member chats in, for their mail.
    pub async fn set_member_locale(
        &self,
        member: MemberId,
        locale: &str,
    ) -> Result<(), ProgramError> {
        let locale = locale.to_owned();
        self.durably(move |s| s.set_member_locale(member, &locale))
            .await
    }

    /// The member with this id, if any.
    pub async fn member(&self, id: MemberId) -> Result<Option<MemberAccount>, ProgramError> {
        self.durably(move |s| s.member(id)).await
    }

    /// The key that signs unsubscribe links.
    pub async fn mail_link_key(&self) -> Result<[u8; 32], ProgramError> {
        self.durably(|s| s.mail_link_key()).await
    }

    /// A member and what their mail shows: ledger, coupons, mail state.
    pub async fn mail_subject(
        &self,
        member: MemberId,
    ) -> Result<Option<MailSubject>, ProgramError> {
        self.durably(move |s| {
            let Some(account) = s.member(member)? else {
                return Ok(None);
            };
            Ok(Some(MailSubject {
                ledger: s.ledger(member)?,
                coupons: s.coupons_of(member)?,
                state: s.mail_state(member)?,
                account,
            }))
        })
        .await
    }

    /// Mail due at `now`, earliest first.
    pub async fn due_mails(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DueMail>, ProgramError> {
        self.durably(move |s| s.due_mails(now, limit)).await
    }

    /// Puts a mail in the due index.
    pub async fn schedule_mail(&self, due: DueMail) -> Result<(), ProgramError> {
        self.durably(move |s| s.schedule_mail(due)).await
    }

    /// Records the send of `due` before it is handed to SMTP (or postpones or drops it).
    pub async fn begin_mail(
        &self,
        due: DueMail,
        policy: MailPolicy,
        message_id: String,
        now: DateTime<Utc>,
    ) -> Result<MailStart, ProgramError> {
        self.durably_now(move |s| s.begin_mail(&due, &policy, message_id, now))
            .await
    }

    /// Records how a send ended.
    pub async fn finish_mail(
        &self,
        id: u64,
        result: MailResult,
        now: DateTime<Utc>,
    ) -> Result<(), ProgramError> {
        self.durably_now(move |s| s.finish_mail(id, result, now))
            .await
    }

    /// Sends recorded and not confirmed (a crash in between), and those waiting for a retry.
    pub async fn unsent_mails(&self) -> Result<Vec<OutboxMail>, ProgramError> {
        self.durably(|s| s.unsent_mails()).await
    }
}
