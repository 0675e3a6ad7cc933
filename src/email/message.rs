//! Composing: a rendered [`MailContent`] becomes the MIME message a member receives, with the
//! sender from `[email]`, a Message-ID on the sender's domain, text and HTML alternatives, the
//! RFC 8058 one-click unsubscribe headers on marketing mail, and a DKIM signature when
//! configured. Settings are checked once, in [`Composer::new`], so a bad `from` or key file
//! stops the start instead of failing every send.

use super::{EmailSettings, MailContent};
use crate::domain::Email;
use lettre::message::dkim::DkimConfig;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::{Address, Message};
use std::path::PathBuf;

/// A setting of `[email]` that cannot work; each message names its config key.
#[derive(Debug, thiserror::Error)]
pub enum MailSetupError {
    #[error(
        "email.from: `{value}` is not a mailbox like `Shop <rewards@shop.example>` ({reason})"
    )]
    From { value: String, reason: String },
    #[error("email.reply_to: `{value}` is not a mailbox ({reason})")]
    ReplyTo { value: String, reason: String },
    #[error("email.dkim_selector: empty")]
    DkimSelector,
    #[error("email.dkim_domain: `{0}` is not a domain")]
    DkimDomain(String),
    #[error("email.dkim_key_file: {}: {reason}", path.display())]
    DkimKey { path: PathBuf, reason: String },
    /// Never carries the URL itself: it may hold the SMTP password.
    #[error("email.smtp_url: {0}")]
    SmtpUrl(String),
}

/// Why one message could not be built (the recipient, not the settings).
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("the address {0} cannot be written into a mail header ({1})")]
    Recipient(String, String),
    #[error("cannot build the message: {0}")]
    Build(#[from] lettre::error::Error),
}

/// Builds every message from the same sender settings; cheap to share (`Arc`) between tasks.
pub struct Composer {
    from: Mailbox,
    reply_to: Option<Mailbox>,
    /// The right-hand side of Message-IDs: the domain of `from`.
    id_domain: String,
    dkim: Option<DkimConfig>,
}

impl std::fmt::Debug for Composer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Composer")
            .field("from", &self.from.to_string())
            .field("dkim", &self.dkim.is_some())
            .finish_non_exhaustive()
    }
}

impl Composer {
    pub fn new(settings: &EmailSettings) -> Result<Composer, MailSetupError> {
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e: lettre::address::AddressError| MailSetupError::From {
                value: settings.from.clone(),
                reason: e.to_string(),
            })?;
        let reply_to = match settings.reply_to.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(raw) => Some(
                raw.parse::<Mailbox>()
                    .map_err(|e| MailSetupError::ReplyTo {
                        value: raw.to_owned(),
                        reason: e.to_string(),
                    })?,
            ),
        };
        let dkim = settings
            .dkim
            .as_ref()
            .map(super::dkim::config)
            .transpose()?;
        Ok(Composer {
            id_domain: from.email.domain().to_owned(),
            from,
            reply_to,
            dkim,
        })
    }

    /// A fresh `<uuid@domain-of-from>`. The caller records it with the send before composing,
    /// so a retry of the same send keeps its Message-ID.
    pub fn message_id(&self) -> String {
        format!("<{}@{}>", uuid::Uuid::new_v4(), self.id_domain)
    }

    /// The message for `to`. `unsubscribe` (marketing mail only) adds the one-click headers;
    /// the visible link in the body is the template's job.
    pub fn compose(
        &self,
        to: &Email,
        content: &MailContent,
        message_id: &str,
        unsubscribe: Option<&url::Url>,
    ) -> Result<Message, ComposeError> {
        let address: Address =
            to.as_str()
                .parse()
                .map_err(|e: lettre::address::AddressError| {
                    ComposeError::Recipient(to.as_str().to_owned(), e.to_string())
                })?;
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, address))
            .subject(content.subject.as_str())
            .date_now()
            .message_id(Some(message_id.to_owned()));
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        if let Some(url) = unsubscribe {
            builder = builder
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe"),
                    format!("<{url}>"),
                ))
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                    "List-Unsubscribe=One-Click".to_owned(),
                ));
        }
        let mut message = builder.multipart(MultiPart::alternative_plain_html(
            content.text.clone(),
            content.html.clone(),
        ))?;
        if let Some(dkim) = &self.dkim {
            message.sign(dkim);
        }
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::email::DkimSettings;

    fn fixture(rel: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
    }

    fn settings_with_dkim(key_file: &str) -> EmailSettings {
        EmailSettings {
            dkim: Some(DkimSettings {
                selector: "mail".into(),
                domain: "shop.example".into(),
                key_file: fixture(key_file),
            }),
            ..EmailSettings::default()
        }
    }

    fn content() -> MailContent {
        MailContent {
            subject: "Ihre Punkte: Größe zählt".into(),
            text: "Hallo".into(),
            html: "<p>Hallo</p>".into(),
        }
    }

    fn formatted(composer: &Composer, unsubscribe: Option<&url::Url>) -> String {
        let to = Email::parse("ana@example.com").unwrap();
        let message = composer
            .compose(&to, &content(), &composer.message_id(), unsubscribe)
            .unwrap();
        String::from_utf8(message.formatted()).unwrap()
    }

    #[test]
    fn setup_errors_name_their_config_key() {
        let bad_from = EmailSettings {
            from: "not a mailbox".into(),
            ..EmailSettings::default()
        };
        let bad_reply = EmailSettings {
            reply_to: Some("nope@".into()),
            ..EmailSettings::default()
        };
        let no_key = settings_with_dkim("fixtures/smtp/no-such-key.pem");
        let not_a_key = settings_with_dkim("fixtures/smtp/dkim-test.txt");
        let mut no_domain = settings_with_dkim("fixtures/smtp/dkim-test.pkcs1.pem");
        no_domain.dkim.as_mut().unwrap().domain = " ".into();
        for (settings, key) in [
            (bad_from, "email.from:"),
            (bad_reply, "email.reply_to:"),
            (no_key, "email.dkim_key_file:"),
            (not_a_key, "email.dkim_key_file:"),
            (no_domain, "email.dkim_domain:"),
        ] {
            let err = Composer::new(&settings).unwrap_err().to_string();
            assert!(err.starts_with(key), "{err}");
        }
    }

    #[test]
    fn message_ids_are_unique_and_on_the_from_domain() {
        let composer = Composer::new(&EmailSettings::default()).unwrap();
        let (a, b) = (composer.message_id(), composer.message_id());
        assert_ne!(a, b);
        assert!(a.starts_with('<') && a.ends_with("@shop.example>"), "{a}");
    }

    #[test]
    fn one_click_headers_only_when_an_unsubscribe_url_is_given() {
        let composer = Composer::new(&EmailSettings::default()).unwrap();
        let url = url::Url::parse("https://bot.example/email/unsubscribe?t=abc").unwrap();
        let marketing = formatted(&composer, Some(&url));
        assert!(marketing
            .contains("\r\nList-Unsubscribe: <https://bot.example/email/unsubscribe?t=abc>\r\n"));
        assert!(marketing.contains("\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"));
        let transactional = formatted(&composer, None);
        assert!(!transactional.contains("List-Unsubscribe"));
    }

    #[test]
    fn pkcs1_and_pkcs8_keys_both_sign_over_the_list_headers() {
        for key in [
            "fixtures/smtp/dkim-test.pkcs1.pem",
            "fixtures/smtp/dkim-test.pkcs8.pem",
        ] {
            let composer = Composer::new(&settings_with_dkim(key)).unwrap();
            let text = formatted(&composer, None);
            let signature = text
                .split("\r\n")
                .find(|l| l.starts_with("DKIM-Signature:"))
                .unwrap_or_else(|| panic!("no signature with {key}"));
            assert!(signature.contains("d=shop.example; s=mail;"), "{signature}");
        }
    }
}
