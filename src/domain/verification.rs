//! Address verification: a six-digit code sent to the email a customer joins with proves they
//! read that inbox before it becomes theirs here. Codes expire, are single-use, lock after a few
//! wrong tries, and a new one waits out a short cool-down. Only a hash of the code is kept.

use super::{ChatIdentity, Email, Profile};
use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// How long a code can be typed after it was sent.
pub const CODE_TTL: Duration = Duration::minutes(15);
/// Wrong tries after which the code is locked (a new one can be requested).
pub const MAX_TRIES: u8 = 5;
/// Least time between two codes for one conversation.
pub const RESEND_COOLDOWN: Duration = Duration::seconds(60);

/// A six-digit code as sent and as typed (`123456`, `123 456`, `123-456`).
#[derive(Clone, PartialEq, Eq)]
pub struct VerificationCode(String);

impl VerificationCode {
    /// A fresh code from the OS CSPRNG.
    pub fn generate() -> Self {
        let n: u32 = rand::rngs::OsRng.gen_range(0..1_000_000);
        VerificationCode(format!("{n:06}"))
    }

    /// Reads a typed code: exactly six digits once spaces and dashes are dropped.
    pub fn parse(typed: &str) -> Option<Self> {
        let digits: String = typed
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '\u{a0}'))
            .collect();
        (digits.len() == 6 && digits.chars().all(|c| c.is_ascii_digit()))
            .then_some(VerificationCode(digits))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hash kept in the store: bound to the conversation, so a code is useless elsewhere.
    pub fn hash_for(&self, who: &ChatIdentity) -> String {
        let mut h = Sha256::new();
        h.update(who.key().as_bytes());
        h.update([0]);
        h.update(self.0.as_bytes());
        hex::encode(h.finalize())
    }
}

impl fmt::Debug for VerificationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VerificationCode(******)")
    }
}

/// A join waiting for its code: who, with which email, and the code's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingJoin {
    pub identity: ChatIdentity,
    pub email: Email,
    #[serde(default)]
    pub profile: Profile,
    /// [`VerificationCode::hash_for`] of the code last sent.
    pub code_hash: String,
    pub issued_at: DateTime<Utc>,
    /// Wrong tries of the current code.
    #[serde(default)]
    pub tries: u8,
    /// Codes sent for this join so far.
    #[serde(default)]
    pub sends: u32,
}

/// What a typed code amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    Correct,
    Wrong { tries_left: u8 },
    Expired,
    Locked,
}

impl PendingJoin {
    pub fn new(
        identity: ChatIdentity,
        email: Email,
        profile: Profile,
        code: &VerificationCode,
        now: DateTime<Utc>,
    ) -> Self {
        PendingJoin {
            code_hash: code.hash_for(&identity),
            identity,
            email,
            profile,
            issued_at: now,
            tries: 0,
            sends: 1,
        }
    }

    pub fn expires_at(&self) -> DateTime<Utc> {
        self.issued_at + CODE_TTL
    }

    /// Checks a typed code and counts a wrong one. A locked or expired code stays so whatever
    /// is typed, the right code included.
    pub fn check(&mut self, code: &VerificationCode, now: DateTime<Utc>) -> CodeCheck {
        if self.tries >= MAX_TRIES {
            return CodeCheck::Locked;
        }
        if now >= self.expires_at() {
            return CodeCheck::Expired;
        }
        let typed = code.hash_for(&self.identity);
        if subtle::ConstantTimeEq::ct_eq(typed.as_bytes(), self.code_hash.as_bytes()).into() {
            return CodeCheck::Correct;
        }
        self.tries += 1;
        if self.tries >= MAX_TRIES {
            CodeCheck::Locked
        } else {
            CodeCheck::Wrong {
                tries_left: MAX_TRIES - self.tries,
            }
        }
    }

    /// `Err(wait)` while the last code is younger than the cool-down.
    pub fn can_resend(&self, now: DateTime<Utc>) -> Result<(), Duration> {
        let ready = self.issued_at + RESEND_COOLDOWN;
        if now < ready {
            Err(ready - now)
        } else {
            Ok(())
        }
    }

    /// Replaces the code with a fresh one (the caller checked the cool-down).
    pub fn reissue(&mut self, code: &VerificationCode, now: DateTime<Utc>) {
        self.code_hash = code.hash_for(&self.identity);
        self.issued_at = now;
        self.tries = 0;
        self.sends += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Channel;

    fn pending(now: DateTime<Utc>) -> (PendingJoin, VerificationCode) {
        let code = VerificationCode::parse("123 456").unwrap();
        let who = ChatIdentity::new(Channel::Messenger, "42").unwrap();
        let email = Email::parse("ana@example.com").unwrap();
        (
            PendingJoin::new(who, email, Profile::default(), &code, now),
            code,
        )
    }

    #[test]
    fn typed_codes_allow_spaces_and_dashes_only() {
        assert_eq!(
            VerificationCode::parse(" 123-456 ").unwrap().as_str(),
            "123456"
        );
        for bad in ["12345", "1234567", "12a456", "", "one"] {
            assert!(VerificationCode::parse(bad).is_none(), "{bad:?}");
        }
        let c = VerificationCode::generate();
        assert_eq!(VerificationCode::parse(c.as_str()), Some(c));
    }

    #[test]
    fn the_right_code_within_fifteen_minutes_is_correct() {
        let now = Utc::now();
        let (mut p, code) = pending(now);
        assert_eq!(
            p.check(&code, now + Duration::minutes(14)),
            CodeCheck::Correct
        );
        assert_eq!(p.check(&code, now + CODE_TTL), CodeCheck::Expired);
    }

    #[test]
    fn five_wrong_tries_lock_the_code_even_for_the_right_one() {
        let now = Utc::now();
        let (mut p, code) = pending(now);
        let wrong = VerificationCode::parse("000000").unwrap();
        for left in (1..MAX_TRIES).rev() {
            assert_eq!(p.check(&wrong, now), CodeCheck::Wrong { tries_left: left });
        }
        assert_eq!(p.check(&wrong, now), CodeCheck::Locked);
        assert_eq!(p.check(&code, now), CodeCheck::Locked);
        let fresh = VerificationCode::parse("654321").unwrap();
        p.reissue(&fresh, now + RESEND_COOLDOWN);
        assert_eq!(p.check(&fresh, now + RESEND_COOLDOWN), CodeCheck::Correct);
    }

    #[test]
    fn a_new_code_waits_out_the_cool_down() {
        let now = Utc::now();
        let (p, _) = pending(now);
        assert_eq!(
            p.can_resend(now + Duration::seconds(20)),
            Err(Duration::seconds(40))
        );
        assert_eq!(p.can_resend(now + RESEND_COOLDOWN), Ok(()));
    }

    #[test]
    fn a_code_hash_is_bound_to_the_conversation() {
        let code = VerificationCode::parse("123456").unwrap();
        let a = ChatIdentity::new(Channel::Messenger, "1").unwrap();
        let b = ChatIdentity::new(Channel::Manychat, "1").unwrap();
        assert_ne!(code.hash_for(&a), code.hash_for(&b));
    }
}
