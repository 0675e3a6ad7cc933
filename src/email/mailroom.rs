//! The mailroom: turns a member and a kind of mail into a rendered, addressed message
//! (templates, the model, the unsubscribe link) and hands it to the transport. The scheduler,
//! verified joins, the admin preview and `loyalty-bot statements` all go through it, so what an
//! owner previews is what members get.

use super::content::{EmailTemplates, MailModel, MailProgram, ModelError, TemplateError};
use super::message::{Composer, MailSetupError};
use super::transport::{MailTransport, SmtpMailer};
use super::{token, EmailSettings, MailContent, SendError};
use crate::domain::mail::{MailKind, OutboxMail};
use crate::domain::verification::{VerificationCode, CODE_TTL};
use crate::domain::{Catalogue, CouponCode, Email, MemberId};
use crate::program::{CodeMail, MailSubject};
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

/// Connections kept to the SMTP server (and sends at once). Each message waits on the server's
/// delayed ACK (lettre leaves Nagle's algorithm on), so throughput grows with connections;
/// lettre opens them only as sends wait, so a paced scheduler uses one or two.
pub const POOL_SIZE: u32 = 32;
/// Connecting and each SMTP command give up after this.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// The program facts every mail shows, owned.
#[derive(Debug, Clone)]
pub struct Letterhead {
    pub catalogue: Catalogue,
    pub currency: String,
    pub page_username: Option<String>,
    pub shop_url: Option<String>,
    /// `server.public_url` without a trailing slash: unsubscribe links start with it.
    pub public_base: String,
}

/// Since when a statement lists order changes: the member's last statement, or their joining.
/// For a recorded send (`this_send`, recorded before it is rendered) the last statement is
/// itself, so the one before it counts.
fn changes_since(subject: &MailSubject, this_send: Option<DateTime<Utc>>) -> DateTime<Utc> {
    let s = &subject.state;
    let last = match s.last_statement_at {
        Some(at) if Some(at) == this_send => s.previous_statement_at,
        other => other,
    };
    last.unwrap_or(subject.account.member.joined_at)
}

impl Letterhead {
    pub fn from_settings(settings: &crate::config::Settings) -> Letterhead {
        Letterhead {
            catalogue: settings.catalogue(),
            currency: settings.program.currency.to_string(),
            page_username: Some(settings.messenger.page_username.trim().to_owned())
                .filter(|u| !u.is_empty()),
            shop_url: settings.program.shop_url.as_ref().map(|u| u.to_string()),
            public_base: settings.public_base(),
        }
    }
}

/// A message ready to go.
#[derive(Debug, Clone)]
pub struct Letter {
    pub to: Email,
    pub content: MailContent,
    pub message_id: String,
    pub unsubscribe: Option<url::Url>,
}

#[derive(Debug, thiserror::Error)]
pub enum MailroomError {
    #[error(transparent)]
    Setup(#[from] MailSetupError),
    #[error(transparent)]
    Template(#[from] TemplateError),
}

pub struct Mailroom {
    templates: EmailTemplates,
    composer: Composer,
    transport: Arc<dyn MailTransport>,
    head: Letterhead,
    link_key: [u8; 32],
}

impl Mailroom {
    /// Everything checked now: the templates, the sender and DKIM key, the SMTP URL.
    pub fn new(
        settings: &EmailSettings,
        templates: EmailTemplates,
        head: Letterhead,
        link_key: [u8; 32],
    ) -> Result<Mailroom, MailroomError> {
        let composer = Composer::new(settings)?;
        let url = settings
            .smtp_url
            .as_ref()
            .map(|u| u.expose().to_owned())
            .unwrap_or_default();
        let transport: Arc<dyn MailTransport> = if url.is_empty() {
            Arc::new(Disabled)
        } else {
            Arc::new(SmtpMailer::new(&url, POOL_SIZE, SMTP_TIMEOUT)?)
        };
        Ok(Mailroom {
            templates,
            composer,
            transport,
            head,
            link_key,
        })
    }

    pub fn message_id(&self) -> String {
        self.composer.message_id()
    }

    /// `…/email/unsubscribe?t=<signed token>` for a member.
    pub fn unsubscribe_url(&self, member: MemberId) -> url::Url {
        let mut u = url::Url::parse(&format!(
            "{}{}",
            self.head.public_base,
            crate::http::unsubscribe::PATH
        ))
        .expect("server.public_url is a checked URL");
        u.query_pairs_mut()
            .append_pair("t", &token::sign(&self.link_key, member));
        u
    }

    /// The rendered mail of `kind` for a member as at `now`; `Ok(None)` when it no longer
    /// applies (a reminder whose reward is out of reach again, a coupon no longer open).
    pub fn render(
        &self,
        kind: MailKind,
        about: Option<&CouponCode>,
        subject: &MailSubject,
        now: DateTime<Utc>,
    ) -> Result<Option<MailContent>, TemplateError> {
        self.render_send(kind, about, subject, now, None)
    }

    /// [`Mailroom::render`] for the send recorded at `this_send`, if it is one.
    fn render_send(
        &self,
        kind: MailKind,
        about: Option<&CouponCode>,
        subject: &MailSubject,
        now: DateTime<Utc>,
        this_send: Option<DateTime<Utc>>,
    ) -> Result<Option<MailContent>, TemplateError> {
        let program = self.program();
        let url = self.unsubscribe_url(subject.account.member.id);
        let model = match MailModel::build(
            kind,
            about,
            &subject.account,
            &subject.coupons,
            &program,
            Some(url.as_str()),
            now,
        ) {
            Ok(m) => m,
            Err(ModelError::NothingAffordable | ModelError::NoOpenCoupon(_)) => return Ok(None),
            Err(e) => unreachable!("a marketing model with a link: {e}"),
        };
        let model = model.with_order_changes(&subject.ledger, changes_since(subject, this_send));
        self.templates
            .render(kind, &model.locale.clone(), &model)
            .map(Some)
    }

    /// The letter for a recorded send.
    pub fn letter(
        &self,
        mail: &OutboxMail,
        subject: &MailSubject,
        now: DateTime<Utc>,
    ) -> Result<Option<Letter>, TemplateError> {
        let about = mail.coupon.as_ref();
        let sent = Some(mail.created_at);
        let Some(content) = self.render_send(mail.kind, about, subject, now, sent)? else {
            return Ok(None);
        };
        Ok(Some(Letter {
            to: subject.account.member.email.clone(),
            content,
            message_id: mail.message_id.clone(),
            unsubscribe: Some(self.unsubscribe_url(mail.member)),
        }))
    }

    pub async fn send(&self, letter: Letter) -> Result<(), SendError> {
        let msg = self
            .composer
            .compose(
                &letter.to,
                &letter.content,
                &letter.message_id,
                letter.unsubscribe.as_ref(),
            )
            .map_err(|e| SendError::Permanent(e.to_string()))?;
        self.transport.send(msg).await
    }

    fn program(&self) -> MailProgram<'_> {
        MailProgram {
            catalogue: &self.head.catalogue,
            currency: &self.head.currency,
            page_username: self.head.page_username.as_deref(),
            shop_url: self.head.shop_url.as_deref(),
        }
    }
}

impl Mailroom {
    /// The verification mail of `code`, for the name and platform locale (`de_DE`) given: what
    /// a joining customer gets, and the admin preview shows.
    pub fn verification_content(
        &self,
        code: &VerificationCode,
        first_name: Option<&str>,
        locale: Option<&str>,
    ) -> Result<MailContent, TemplateError> {
        let model = MailModel::verification(code, CODE_TTL, first_name, locale, &self.program());
        self.templates
            .render(MailKind::Verification, &model.locale.clone(), &model)
    }
}

impl CodeMail for Mailroom {
    fn send_code<'a>(
        &'a self,
        to: &'a Email,
        code: &'a VerificationCode,
        locale: &'a str,
        first_name: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let content = self
                .verification_content(code, first_name, Some(locale))
                .map_err(|e| SendError::Permanent(e.to_string()))?;
            let letter = Letter {
                to: to.clone(),
                content,
                message_id: self.message_id(),
                unsubscribe: None,
            };
            self.send(letter).await
        })
    }
}

/// The transport of a mailroom without `email.smtp_url`: previews render, nothing is sent.
struct Disabled;

impl MailTransport for Disabled {
    fn send<'a>(&'a self, _msg: lettre::Message) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async {
            Err(SendError::Transient(
                "email is off (email.smtp_url is empty)".into(),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::mail::MailState;
    use crate::email::content::sample;

    fn subject(last: Option<i64>, previous: Option<i64>) -> MailSubject {
        let day = |d: i64| sample::now() - chrono::Duration::days(d);
        MailSubject {
            account: sample::account(None, "en", 100),
            ledger: Vec::new(),
            coupons: Vec::new(),
            state: MailState {
                last_statement_at: last.map(day),
                previous_statement_at: previous.map(day),
                ..MailState::default()
            },
        }
    }

    #[test]
    fn a_statement_lists_changes_since_the_statement_before_it() {
        let day = |d: i64| sample::now() - chrono::Duration::days(d);
        // Being sent: its own record is the last statement, so the one before counts.
        assert_eq!(
            changes_since(&subject(Some(0), Some(28)), Some(day(0))),
            day(28)
        );
        // A preview: since the last statement sent.
        assert_eq!(changes_since(&subject(Some(3), Some(31)), None), day(3));
        // The first statement: since joining.
        let first = subject(Some(0), None);
        assert_eq!(
            changes_since(&first, Some(day(0))),
            first.account.member.joined_at
        );
    }
}
