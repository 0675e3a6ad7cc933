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
    /// `email.statement_every_days`: a statement lists the order changes of that period.
    pub statement_every: chrono::Duration,
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
            statement_every: chrono::Duration::days(i64::from(settings.email.statement_every_days)),
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
        // The period's changes: a statement goes out every `statement_every`, so this is "since
        // the last one" without depending on when its send was recorded.
        let since = (now - self.head.statement_every).max(subject.account.member.joined_at);
        let model = model.with_order_changes(&subject.ledger, since);
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
        let Some(content) = self.render(mail.kind, mail.coupon.as_ref(), subject, now)? else {
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
