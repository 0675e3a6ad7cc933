//! Email to members: verification codes, the periodic statement and reminders, rendered from
//! owner-editable templates (`flows/email/`), composed as multipart messages with one-click
//! unsubscribe (RFC 8058) and optional DKIM, and sent over a pooled SMTP connection by a
//! scheduler that records each send before handing it to SMTP.

pub mod content;
mod dkim;
pub mod mailroom;
pub mod message;
pub mod scheduler;
pub mod settings;
pub mod token;
pub mod transport;

pub use message::{ComposeError, Composer, MailSetupError};
pub use settings::{DkimSettings, EmailSettings};
pub use transport::{MailTransport, SmtpMailer};

/// A rendered mail, before it becomes a MIME message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailContent {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Why SMTP did not take a message. The scheduler retries `Transient` with backoff and records
/// `Permanent` as a bounce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// A 4xx reply, a refused or dropped connection, a timeout.
    #[error("temporary SMTP failure: {0}")]
    Transient(String),
    /// A 5xx reply: this message to this address will not go through.
    #[error("permanent SMTP failure: {0}")]
    Permanent(String),
}
