//! `[email]`: where mail goes out, who it is from, and how often members get it.

use crate::config::Secret;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct EmailSettings {
    /// `smtp://host:587?tls=required`, `smtps://user:pass@host:465`; `None`: email is off.
    pub smtp_url: Option<Secret>,
    /// The sender mailbox, `Shop Name <rewards@shop.example>`; its domain names Message-IDs.
    pub from: String,
    pub reply_to: Option<String>,
    /// Codes before a join counts (on by default whenever `smtp_url` is set).
    pub verify: bool,
    pub statement_every_days: u32,
    pub coupon_reminder_days: u32,
    pub min_days_between: u32,
    pub max_per_minute: u32,
    pub scan_every: Duration,
    pub dkim: Option<DkimSettings>,
}

#[derive(Debug, Clone)]
pub struct DkimSettings {
    pub selector: String,
    pub domain: String,
    /// A PEM RSA private key (PKCS#1 or PKCS#8).
    pub key_file: PathBuf,
}

impl EmailSettings {
    /// Email is configured and on.
    pub fn enabled(&self) -> bool {
        self.smtp_url.is_some()
    }

    pub fn policy(&self) -> crate::domain::mail::MailPolicy {
        crate::domain::mail::MailPolicy {
            statement_every: chrono::Duration::days(i64::from(self.statement_every_days)),
            min_between: chrono::Duration::days(i64::from(self.min_days_between)),
            coupon_reminder_before: chrono::Duration::days(i64::from(self.coupon_reminder_days)),
        }
    }
}

impl Default for EmailSettings {
    fn default() -> Self {
        EmailSettings {
            smtp_url: None,
            from: "Rewards <rewards@shop.example>".into(),
            reply_to: None,
            verify: false,
            statement_every_days: 28,
            coupon_reminder_days: 5,
            min_days_between: 3,
            max_per_minute: 120,
            scan_every: Duration::from_secs(60),
            dkim: None,
        }
    }
}
