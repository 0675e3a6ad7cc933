//! Members and the chat identities they are reached through.

use super::DomainError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MemberId(pub u64);

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Messenger,
    Manychat,
    /// The owner's terminal (`loyalty-bot chat`).
    Terminal,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Messenger => "messenger",
            Channel::Manychat => "manychat",
            Channel::Terminal => "terminal",
        }
    }
}

/// Who is chatting: a channel plus that channel's id for the person (a PSID, a ManyChat
/// subscriber id). Ids are kept as strings: Meta's exceed 2^53.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChatIdentity {
    pub channel: Channel,
    pub id: String,
}

impl ChatIdentity {
    pub fn new(channel: Channel, id: &str) -> Result<Self, DomainError> {
        let id = id.trim();
        if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_graphic()) {
            return Err(DomainError::InvalidIdentity(
                "must be 1-128 visible ASCII characters",
            ));
        }
        Ok(ChatIdentity {
            channel,
            id: id.to_owned(),
        })
    }

    /// A stable key, e.g. `messenger:6915800000000001`.
    pub fn key(&self) -> String {
        format!("{}:{}", self.channel.as_str(), self.id)
    }
}

impl fmt::Display for ChatIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// An email address as the customer uses it at the shop, normalised (trimmed, lower-case) so
/// that `Ana@Example.com ` and `ana@example.com` are the same member.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let s = raw.trim().to_lowercase();
        if s.is_empty() {
            return Err(DomainError::InvalidEmail("empty"));
        }
        if s.len() > 254 {
            return Err(DomainError::InvalidEmail("longer than 254 characters"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(DomainError::InvalidEmail("contains spaces"));
        }
        let (local, domain) = s.split_once('@').ok_or(DomainError::InvalidEmail("no @"))?;
        if local.is_empty() || local.len() > 64 {
            return Err(DomainError::InvalidEmail("nothing before the @"));
        }
        if domain.contains('@') {
            return Err(DomainError::InvalidEmail("more than one @"));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2
            || labels.iter().any(|l| {
                l.is_empty()
                    || l.starts_with('-')
                    || l.ends_with('-')
                    || !l.chars().all(|c| c.is_alphanumeric() || c == '-')
            })
        {
            return Err(DomainError::InvalidEmail(
                "the part after the @ is not a domain",
            ));
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(DomainError::InvalidEmail("misplaced dot before the @"));
        }
        if local.chars().any(|c| {
            matches!(
                c,
                '<' | '>' | '(' | ')' | '[' | ']' | ',' | ';' | ':' | '\\' | '"'
            )
        }) {
            return Err(DomainError::InvalidEmail(
                "character not allowed before the @",
            ));
        }
        Ok(Email(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `a***@example.com`: enough for an operator to recognise, not enough to leak in logs.
    pub fn masked(&self) -> String {
        match self.0.split_once('@') {
            Some((l, d)) => format!("{}***@{}", l.chars().next().unwrap_or('*'), d),
            None => "***".into(),
        }
    }
}

impl TryFrom<String> for Email {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Email::parse(&s)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a channel tells us about the person, when it knows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    #[serde(default)]
    pub first_name: Option<String>,
    /// A platform locale such as `de_DE` or `en_US`.
    #[serde(default)]
    pub locale: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: MemberId,
    pub email: Email,
    pub identity: ChatIdentity,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub locale: Option<String>,
    pub joined_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ana@Example.COM ").unwrap().as_str(),
            "ana@example.com"
        );
        for bad in [
            "",
            "ana",
            "ana@",
            "@example.com",
            "ana@example",
            "ana@@example.com",
            "ana @example.com",
            "ana@exa mple.com",
            "ana@.example.com",
            "ana@example..com",
            ".ana@example.com",
            "ana..b@example.com",
            "ana@-example.com",
            "a<b>@example.com",
            "ana@example.com\n1",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        for good in [
            "a@b.co",
            "jane.doe+shop@example.com",
            "jürgen@bücher.de",
            "x_y@sub.example.org",
        ] {
            assert!(Email::parse(good).is_ok(), "{good:?} should be accepted");
        }
    }

    #[test]
    fn masked_email_hides_the_local_part() {
        assert_eq!(
            Email::parse("jane@example.com").unwrap().masked(),
            "j***@example.com"
        );
    }
}

/// A member plus their current balance (which always equals the ledger sum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberAccount {
    pub member: Member,
    pub balance: super::Points,
}
