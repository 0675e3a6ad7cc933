//! Joining with a verified address: the join waits in the store until the customer types the
//! code sent to the address, so nobody can take over another person's email and claim their
//! orders. The code is recorded before it is sent, so a restart does not lose it.

use super::{JoinResult, Program, ProgramError};
use crate::domain::verification::{PendingJoin, VerificationCode};
use crate::domain::{ChatIdentity, Email, Profile};
use crate::email::SendError;
use crate::store::{BeginVerification, Reissue, VerifyOutcome};
use futures_util::future::BoxFuture;

/// How long a customer waits for the code's email to be handed to SMTP before hearing it failed.
const SEND_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Sends a verification code (the email side lives in `crate::email`).
pub trait CodeMail: Send + Sync {
    fn send_code<'a>(
        &'a self,
        to: &'a Email,
        code: &'a VerificationCode,
        locale: &'a str,
        first_name: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), SendError>>;
}

/// A typed code or a request for a new one, answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeResult {
    Joined(crate::domain::MemberAccount),
    Wrong {
        tries_left: u8,
    },
    Expired,
    Locked,
    /// No join waits here (it expired long ago, or never began).
    NoPending,
    EmailTaken,
    AlreadyMember(crate::domain::MemberAccount),
    /// A new code went out to this address.
    Resent(Email),
    /// The last code is younger than the cool-down: a new one in `wait_secs`.
    CoolingDown {
        wait_secs: u64,
    },
    /// The code is recorded but its email could not be sent.
    NotSent,
}

impl Program {
    /// Whether joins wait for a typed code.
    pub fn verifies_email(&self) -> bool {
        self.codes.is_some()
    }

    /// Begins a verified join: records the waiting join and sends its code.
    pub(super) async fn begin_verified_join(
        &self,
        codes: &dyn CodeMail,
        who: &ChatIdentity,
        email: Email,
        profile: Profile,
    ) -> Result<JoinResult, ProgramError> {
        let code = VerificationCode::generate();
        let now = self.clock.now();
        let pending = PendingJoin::new(who.clone(), email.clone(), profile.clone(), &code, now);
        let begun = self
            .durably_now(move |s| s.begin_verification(pending, now))
            .await?;
        Ok(match begun {
            BeginVerification::AlreadyMember(a) => JoinResult::AlreadyMember(a),
            BeginVerification::EmailTaken => JoinResult::EmailTaken,
            BeginVerification::CoolingDown { wait } => JoinResult::CodeCoolingDown {
                wait_secs: wait_secs(wait),
            },
            BeginVerification::Started => {
                if self.send_code(codes, &email, &code, &profile).await {
                    JoinResult::CodeSent(email)
                } else {
                    JoinResult::CodeNotSent
                }
            }
        })
    }

    /// Checks a code typed in the conversation; the right one makes the member.
    pub async fn verify_code(
        &self,
        who: &ChatIdentity,
        code: &VerificationCode,
    ) -> Result<CodeResult, ProgramError> {
        let (who2, code, bonus) = (who.clone(), code.clone(), self.rules.signup_bonus);
        let out = self
            .durably(move |s| s.verify_code(&who2, &code, bonus, self.clock.now()))
            .await?;
        Ok(match out {
            VerifyOutcome::Joined(a) => {
                self.metrics.joined(self.rules.signup_bonus.0);
                tracing::info!(member.id = %a.member.id, "member joined with a verified address");
                self.remind_if_affordable(a.member.id, crate::domain::Points::ZERO, a.balance)
                    .await;
                CodeResult::Joined(a)
            }
            VerifyOutcome::Wrong { tries_left } => CodeResult::Wrong { tries_left },
            VerifyOutcome::Expired => CodeResult::Expired,
            VerifyOutcome::Locked => CodeResult::Locked,
            VerifyOutcome::NoPending => CodeResult::NoPending,
            VerifyOutcome::AlreadyMember(a) => CodeResult::AlreadyMember(a),
            VerifyOutcome::EmailTaken => CodeResult::EmailTaken,
        })
    }

    /// A new code for the join waiting in this conversation, after the cool-down.
    pub async fn resend_code(&self, who: &ChatIdentity) -> Result<CodeResult, ProgramError> {
        let Some(codes) = self.codes.clone() else {
            return Ok(CodeResult::NoPending);
        };
        let code = VerificationCode::generate();
        let (who2, hash) = (who.clone(), code.hash_for(who));
        let out = self
            .durably_now(move |s| s.reissue_code(&who2, hash, self.clock.now()))
            .await?;
        Ok(match out {
            Reissue::NoPending => CodeResult::NoPending,
            Reissue::CoolingDown { wait } => CodeResult::CoolingDown {
                wait_secs: wait_secs(wait),
            },
            Reissue::Reissued(p) => {
                if self
                    .send_code(codes.as_ref(), &p.email, &code, &p.profile)
                    .await
                {
                    CodeResult::Resent(p.email)
                } else {
                    CodeResult::NotSent
                }
            }
        })
    }

    async fn send_code(
        &self,
        codes: &dyn CodeMail,
        to: &Email,
        code: &VerificationCode,
        profile: &Profile,
    ) -> bool {
        let locale = profile.locale.as_deref().unwrap_or("en");
        let sent = tokio::time::timeout(
            SEND_WAIT,
            codes.send_code(to, code, locale, profile.first_name.as_deref()),
        )
        .await;
        let result = match sent {
            Ok(r) => r,
            Err(_) => Err(SendError::Transient("no answer from SMTP in time".into())),
        };
        self.metrics.email_result("verification", result.is_ok());
        match result {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(to = %to.masked(), error = %e, "verification code not sent");
                false
            }
        }
    }
}

/// Whole seconds, rounded up: "in 1 s" rather than "in 0 s".
fn wait_secs(d: chrono::Duration) -> u64 {
    let ms = d.num_milliseconds().max(0) as u64;
    ms.div_ceil(1000)
}
