//! `[email]`: where mail goes out, who it is from, and how often members get it. Read from the
//! flat keys of the config files and checked at start; each mistake names its key.

use crate::config::Secret;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "EmailKeys")]
pub struct EmailSettings {
    /// `smtp://host:587?tls=required`, `smtps://user:pass@host:465`; `None`: email is off.
    pub smtp_url: Option<Secret>,
    /// The sender mailbox, `Shop Name <rewards@shop.example>`; its domain names Message-IDs.
    pub from: String,
    pub reply_to: Option<String>,
    /// Codes before a join counts (on by default; only with `smtp_url`: see [`Self::verifies`]).
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
    /// A PEM RSA private key.
    pub key_file: PathBuf,
}

/// The keys as written in `[email]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailKeys {
    smtp_url: Secret,
    from: String,
    reply_to: String,
    verify: bool,
    statement_every_days: u32,
    coupon_reminder_days: u32,
    min_days_between: u32,
    max_per_minute: u32,
    scan_every_secs: u64,
    dkim_selector: String,
    dkim_domain: String,
    dkim_key_file: String,
}

impl TryFrom<EmailKeys> for EmailSettings {
    type Error = String;

    /// Errors start with the key, as the config layer reports them.
    fn try_from(k: EmailKeys) -> Result<Self, String> {
        let smtp_url = k.smtp_url.is_set().then_some(k.smtp_url);
        if let Some(url) = &smtp_url {
            check_smtp_url(url.expose()).map_err(|p| format!("`email.smtp_url`: {p}"))?;
        }
        if !k.from.contains('@') {
            return Err(
                "`email.from`: must be a mailbox such as `Shop <rewards@shop.example>`".into(),
            );
        }
        let range = |key: &str, v: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(format!("`email.{key}`: must be between {lo} and {hi}"))
            }
        };
        range(
            "statement_every_days",
            k.statement_every_days.into(),
            1,
            365,
        )?;
        range(
            "coupon_reminder_days",
            k.coupon_reminder_days.into(),
            0,
            365,
        )?;
        range("min_days_between", k.min_days_between.into(), 0, 365)?;
        range("max_per_minute", k.max_per_minute.into(), 1, 1_000_000)?;
        range("scan_every_secs", k.scan_every_secs, 1, 3600)?;
        let dkim = match (
            k.dkim_selector.trim(),
            k.dkim_domain.trim(),
            k.dkim_key_file.trim(),
        ) {
            ("", "", "") => None,
            (s, d, f) if !s.is_empty() && !d.is_empty() && !f.is_empty() => Some(DkimSettings {
                selector: s.to_owned(),
                domain: d.to_owned(),
                key_file: PathBuf::from(f),
            }),
            (s, d, _) => {
                let missing = if s.is_empty() {
                    "dkim_selector"
                } else if d.is_empty() {
                    "dkim_domain"
                } else {
                    "dkim_key_file"
                };
                return Err(format!(
                    "`email.{missing}`: DKIM needs dkim_selector, dkim_domain and dkim_key_file together"
                ));
            }
        };
        Ok(EmailSettings {
            smtp_url,
            from: k.from.trim().to_owned(),
            reply_to: Some(k.reply_to.trim().to_owned()).filter(|r| !r.is_empty()),
            verify: k.verify,
            statement_every_days: k.statement_every_days,
            coupon_reminder_days: k.coupon_reminder_days,
            min_days_between: k.min_days_between,
            max_per_minute: k.max_per_minute,
            scan_every: Duration::from_secs(k.scan_every_secs),
            dkim,
        })
    }
}

/// `smtp://` or `smtps://`, a host, and a port given explicitly: lettre's plain `smtp://`
/// would otherwise use 25, which most hosts block. The problem never quotes the URL (it may
/// hold a password).
fn check_smtp_url(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text.trim()).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(url.scheme(), "smtp" | "smtps") {
        return Err("must start with smtp:// or smtps://".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    if url.port().is_none() {
        return Err(
            "give the port (smtp://host:587?tls=required, smtps://host:465): without one, plain smtp:// means 25".into(),
        );
    }
    if let Some(tls) = url.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v) {
        if !matches!(tls.as_ref(), "required" | "opportunistic") {
            return Err("`tls` must be `required` or `opportunistic`".into());
        }
    }
    Ok(())
}

impl EmailSettings {
    /// Email is configured and on.
    pub fn enabled(&self) -> bool {
        self.smtp_url.is_some()
    }

    /// Joins wait for a typed code: `verify` and email on.
    pub fn verifies(&self) -> bool {
        self.verify && self.enabled()
    }

    pub fn policy(&self) -> crate::domain::mail::MailPolicy {
        crate::domain::mail::MailPolicy {
            statement_every: chrono::Duration::days(i64::from(self.statement_every_days)),
            min_between: chrono::Duration::days(i64::from(self.min_days_between)),
            coupon_reminder_before: chrono::Duration::days(i64::from(self.coupon_reminder_days)),
        }
    }
}

/// The values of `defaults.toml` with email off, for code that builds settings by hand (tests);
/// the service reads its settings through the config layers.
impl Default for EmailSettings {
    fn default() -> Self {
        EmailSettings {
            smtp_url: None,
            from: "Rewards <rewards@shop.example>".into(),
            reply_to: None,
            verify: true,
            statement_every_days: 28,
            coupon_reminder_days: 5,
            min_days_between: 3,
            max_per_minute: 120,
            scan_every: Duration::from_secs(60),
            dkim: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_smtp_url;

    #[test]
    fn smtp_urls_need_a_scheme_a_host_and_a_port() {
        assert!(check_smtp_url("smtp://mail.example.com:587?tls=required").is_ok());
        assert!(check_smtp_url("smtps://u:p%40ss@mail.example.com:465").is_ok());
        assert!(check_smtp_url("smtp://127.0.0.1:2525").is_ok());
        let port = check_smtp_url("smtp://u:hunter2@mail.example.com").unwrap_err();
        assert!(port.contains("port") && !port.contains("hunter2"), "{port}");
        assert!(check_smtp_url("http://mail.example.com:25").is_err());
        assert!(check_smtp_url("smtp://mail.example.com:587?tls=maybe").is_err());
    }
}
