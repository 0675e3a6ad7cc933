//! Email to members: which mail is due when, the per-member state that decides whether it goes
//! (opt-out, bounces, the gap between two marketing mails), and a send's life from recorded to
//! delivered. Pure rules; the store keeps the records and the due-date index.

use super::{CouponCode, MemberId};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Permanent failures (SMTP 5xx) after which an address is marked undeliverable.
pub const MAX_BOUNCES: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailKind {
    /// The periodic statement: balance, rewards now, points to the next, won so far.
    Statement,
    /// The member can now afford a reward they could not before.
    RewardReminder,
    /// An unused coupon expires soon.
    CouponReminder,
    /// A join's verification code (transactional: sent even to members who opted out).
    Verification,
}

impl MailKind {
    /// The `kind` label of the email metrics and the name of its templates.
    pub fn as_str(self) -> &'static str {
        match self {
            MailKind::Statement => "statement",
            MailKind::RewardReminder => "reward_reminder",
            MailKind::CouponReminder => "coupon_reminder",
            MailKind::Verification => "verification",
        }
    }

    pub fn parse(s: &str) -> Option<MailKind> {
        [
            MailKind::Statement,
            MailKind::RewardReminder,
            MailKind::CouponReminder,
            MailKind::Verification,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    /// Marketing mail carries the unsubscribe link and headers and respects the opt-out.
    pub fn is_marketing(self) -> bool {
        !matches!(self, MailKind::Verification)
    }
}

/// One entry of the due-date index: this mail for this member is due at `at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DueMail {
    pub at: DateTime<Utc>,
    pub member: MemberId,
    pub kind: MailKind,
    /// The coupon a [`MailKind::CouponReminder`] is about.
    #[serde(default)]
    pub coupon: Option<CouponCode>,
}

/// What the mail rules need to know of a member between sends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailState {
    #[serde(default)]
    pub unsubscribed: bool,
    #[serde(default)]
    pub unsubscribed_at: Option<DateTime<Utc>>,
    /// Permanent failures in a row.
    #[serde(default)]
    pub bounces: u8,
    #[serde(default)]
    pub undeliverable: bool,
    #[serde(default)]
    pub last_marketing_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_statement_at: Option<DateTime<Utc>>,
    /// The statement before the last one: a statement being sent lists what changed since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_statement_at: Option<DateTime<Utc>>,
    /// When the next statement is due (mirrors the member's statement entry in the index).
    #[serde(default)]
    pub next_statement_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub statements_sent: u32,
}

/// The owner's mail settings that the rules use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailPolicy {
    pub statement_every: Duration,
    pub min_between: Duration,
    pub coupon_reminder_before: Duration,
}

impl Default for MailPolicy {
    fn default() -> Self {
        MailPolicy {
            statement_every: Duration::days(28),
            min_between: Duration::days(3),
            coupon_reminder_before: Duration::days(5),
        }
    }
}

/// What to do with a due mail now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Send,
    /// Due again at this time (too soon after the last marketing mail).
    Postpone(DateTime<Utc>),
    /// Not sent, ever (the reason is for logs).
    Drop(&'static str),
}

/// The rules, in order: an undeliverable address gets nothing; an opted-out member gets no
/// marketing mail; two marketing mails are at least `min_between` apart, and a reminder gives
/// way to a statement due within that gap (the statement wins).
pub fn decide(
    due: &DueMail,
    state: &MailState,
    policy: &MailPolicy,
    now: DateTime<Utc>,
) -> Decision {
    if !due.kind.is_marketing() {
        return Decision::Send;
    }
    if state.undeliverable {
        return Decision::Drop("undeliverable");
    }
    if state.unsubscribed {
        return Decision::Drop("unsubscribed");
    }
    let reminder = due.kind != MailKind::Statement;
    if reminder
        && state
            .next_statement_at
            .is_some_and(|s| s <= now + policy.min_between)
    {
        return Decision::Drop("a statement is due soon");
    }
    if let Some(last) = state.last_marketing_at {
        let free = last + policy.min_between;
        if now < free {
            return Decision::Postpone(free);
        }
    }
    Decision::Send
}

/// A recorded send. It is written before the message is handed to SMTP and marked afterwards,
/// so a restart resends what was not confirmed and nothing that was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMail {
    pub id: u64,
    pub member: MemberId,
    pub kind: MailKind,
    #[serde(default)]
    pub coupon: Option<CouponCode>,
    /// The `Message-ID` (with its angle brackets), the same on every attempt.
    pub message_id: String,
    pub created_at: DateTime<Utc>,
    pub state: SendState,
    #[serde(default)]
    pub attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum SendState {
    /// Handed (or about to be handed) to SMTP; no answer recorded.
    Sending,
    /// A transient failure; try again at `at`.
    Retry {
        at: DateTime<Utc>,
    },
    Sent {
        at: DateTime<Utc>,
    },
    /// A permanent failure (SMTP 5xx), or given up after too many transient ones.
    Failed {
        at: DateTime<Utc>,
        reason: String,
    },
}

/// How an attempt ended, as the scheduler reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailResult {
    Sent,
    Retry {
        at: DateTime<Utc>,
    },
    /// Counts as a bounce of the member's address.
    Permanent {
        reason: String,
    },
    /// Not sent, and not the address's fault (the reminder no longer applies, temporary
    /// failures given up on): recorded as failed without counting a bounce.
    Skipped {
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(kind: MailKind) -> DueMail {
        DueMail {
            at: Utc::now(),
            member: MemberId(1),
            kind,
            coupon: None,
        }
    }

    #[test]
    fn verification_codes_go_out_even_to_members_who_opted_out() {
        let state = MailState {
            unsubscribed: true,
            ..Default::default()
        };
        let p = MailPolicy::default();
        let now = Utc::now();
        assert_eq!(
            decide(&due(MailKind::Verification), &state, &p, now),
            Decision::Send
        );
        assert_eq!(
            decide(&due(MailKind::Statement), &state, &p, now),
            Decision::Drop("unsubscribed")
        );
    }

    #[test]
    fn a_second_marketing_mail_waits_for_the_gap() {
        let now = Utc::now();
        let p = MailPolicy::default();
        let state = MailState {
            last_marketing_at: Some(now - Duration::days(1)),
            ..Default::default()
        };
        assert_eq!(
            decide(&due(MailKind::Statement), &state, &p, now),
            Decision::Postpone(now + Duration::days(2))
        );
    }

    #[test]
    fn a_reminder_gives_way_to_a_statement_due_soon() {
        let now = Utc::now();
        let p = MailPolicy::default();
        let state = MailState {
            next_statement_at: Some(now + Duration::days(2)),
            ..Default::default()
        };
        assert_eq!(
            decide(&due(MailKind::RewardReminder), &state, &p, now),
            Decision::Drop("a statement is due soon")
        );
        assert_eq!(
            decide(&due(MailKind::Statement), &state, &p, now),
            Decision::Send
        );
    }

    #[test]
    fn an_undeliverable_address_gets_nothing_marketing() {
        let state = MailState {
            undeliverable: true,
            ..Default::default()
        };
        assert_eq!(
            decide(
                &due(MailKind::CouponReminder),
                &state,
                &MailPolicy::default(),
                Utc::now()
            ),
            Decision::Drop("undeliverable")
        );
    }
}
