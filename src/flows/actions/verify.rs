//! The conversation side of a verified join: reading a typed code or a request for a new one,
//! and the `stop emails` / `start emails` switches.

use super::Ctx;
use crate::domain::verification::{VerificationCode, CODE_TTL};
use crate::domain::Email;
use crate::flows::engine::normalize;
use crate::flows::render::Vars;
use crate::program::{CodeResult, ProgramError};
use std::collections::BTreeMap;

/// The variable a typed code arrives in (ManyChat's callback names it too).
pub const CODE_VAR: &str = "code";

/// Typed requests for a new code, in every locale.
const RESEND: &[&str] = &[
    "resend",
    "resend code",
    "new code",
    "send again",
    "code",
    "neuer code",
    "neuen code",
    "code erneut senden",
    "nochmal senden",
];

/// Where a verify step goes after the customer's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// The customer is a member now: the flow goes on.
    Member,
    /// Still waiting for the (right) code.
    Again,
    /// Nothing to verify any more: the flow ends.
    End,
}

pub(super) fn email_vars(email: &Email) -> Vars {
    let mut v = Vars::new();
    v.insert("email", email.to_string());
    v.insert("code_minutes", CODE_TTL.num_minutes().to_string());
    v
}

pub(super) fn wait_vars(wait_secs: u64) -> Vars {
    let mut v = Vars::new();
    v.insert("wait_seconds", wait_secs.max(1).to_string());
    v
}

impl Ctx<'_> {
    /// Handles what was typed while a verified join waits for its code.
    pub async fn verify(
        &mut self,
        typed: &str,
        outcomes: &BTreeMap<String, String>,
    ) -> Result<Verified, ProgramError> {
        let (outcome, extra, next) = if RESEND.contains(&normalize(typed).as_str()) {
            match self.program.resend_code(self.who).await? {
                CodeResult::Resent(email) => ("resent", email_vars(&email), Verified::Again),
                CodeResult::CoolingDown { wait_secs } => {
                    ("code_wait", wait_vars(wait_secs), Verified::Again)
                }
                CodeResult::NotSent => ("code_not_sent", Vars::new(), Verified::Again),
                _ => ("no_code", Vars::new(), Verified::End),
            }
        } else if let Some(code) = VerificationCode::parse(typed) {
            self.check(&code).await?
        } else {
            ("invalid", Vars::new(), Verified::Again)
        };
        if let Some(key) = outcomes.get(outcome) {
            self.say_with(key, &extra);
        }
        Ok(next)
    }

    async fn check(
        &mut self,
        code: &VerificationCode,
    ) -> Result<(&'static str, Vars, Verified), ProgramError> {
        Ok(match self.program.verify_code(self.who, code).await? {
            CodeResult::Joined(a) => {
                self.account = Some(a);
                self.points_changed = true;
                ("joined", Vars::new(), Verified::Member)
            }
            CodeResult::AlreadyMember(a) => {
                self.account = Some(a);
                ("already_member", Vars::new(), Verified::Member)
            }
            CodeResult::Wrong { tries_left } => {
                let mut v = Vars::new();
                v.insert("tries_left", tries_left.to_string());
                ("wrong", v, Verified::Again)
            }
            CodeResult::Expired => ("expired", Vars::new(), Verified::Again),
            CodeResult::Locked => ("locked", Vars::new(), Verified::Again),
            CodeResult::EmailTaken => ("email_taken", Vars::new(), Verified::End),
            _ => ("no_code", Vars::new(), Verified::End),
        })
    }

    /// `stop emails` (`on = false`) and `start emails`.
    pub(super) async fn emails(
        &mut self,
        on: bool,
    ) -> Result<(&'static str, Vars, bool), ProgramError> {
        let Some(account) = self.account.clone() else {
            return Ok(("not_member", Vars::new(), false));
        };
        let changed = self
            .program
            .set_marketing_opt_out(account.member.id, !on)
            .await?;
        Ok((
            if changed { "changed" } else { "unchanged" },
            Vars::new(),
            true,
        ))
    }
}
