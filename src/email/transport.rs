//! The sending seam: [`MailTransport`] is what the scheduler sends through, and [`SmtpMailer`]
//! its SMTP implementation over lettre's pooled async transport. Every failure is sorted into
//! [`SendError::Transient`] (retry later) or [`SendError::Permanent`] (a bounce for this
//! address), keeping the server's reply text.

use super::message::MailSetupError;
use super::SendError;
use futures_util::future::BoxFuture;
use lettre::transport::smtp::{AsyncSmtpTransportBuilder, PoolConfig};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Semaphore;

pub trait MailTransport: Send + Sync + 'static {
    /// Hands `msg` to the mail server: `Ok` once the server has accepted it for delivery.
    fn send<'a>(&'a self, msg: Message) -> BoxFuture<'a, Result<(), SendError>>;
}

/// SMTP through a pool of at most `pool_size` connections, reused between messages.
pub struct SmtpMailer {
    builder: AsyncSmtpTransportBuilder,
    /// The transport and its generation; replaced after a timeout (see [`SmtpMailer::send`]).
    transport: Mutex<(u64, AsyncSmtpTransport<Tokio1Executor>)>,
    /// lettre's pool caps only the connections it keeps idle and opens a new one whenever none
    /// is free, so the cap on concurrent connections (and sends) is this semaphore.
    permits: Semaphore,
    timeout: Duration,
}

impl SmtpMailer {
    /// `url`: `smtp://host:587?tls=required`, `smtps://user:pass@host:465`, `smtp://host:2525`
    /// (no TLS: loopback only). `timeout` bounds one whole exchange, from connecting to the
    /// server's last reply.
    pub fn new(url: &str, pool_size: u32, timeout: Duration) -> Result<SmtpMailer, MailSetupError> {
        let parsed = url::Url::parse(url)
            .map_err(|e| MailSetupError::SmtpUrl(format!("not a URL ({e})")))?;
        // lettre's plain `smtp://host` means port 25, which most hosts block; its docs say 587.
        if parsed.port().is_none() {
            return Err(MailSetupError::SmtpUrl(
                "give the port, as in smtp://host:587?tls=required or smtps://host:465".into(),
            ));
        }
        // lettre's errors here name the scheme or the `tls` parameter, never the credentials.
        let pool_size = pool_size.max(1);
        let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| MailSetupError::SmtpUrl(e.to_string()))?
            .timeout(Some(timeout))
            .pool_config(PoolConfig::new().max_size(pool_size));
        Ok(SmtpMailer {
            transport: Mutex::new((0, builder.clone().build())),
            builder,
            permits: Semaphore::new(pool_size as usize),
            timeout,
        })
    }

    /// Closes the pooled connections (QUIT); sends after this fail as transient.
    pub async fn shutdown(&self) {
        self.permits.close();
        let transport = self.current().1;
        transport.shutdown().await;
    }

    fn current(&self) -> (u64, AsyncSmtpTransport<Tokio1Executor>) {
        self.transport
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A new pool in place of generation `stale`, unless another send replaced it already.
    fn replace(&self, stale: u64) {
        let mut current = self
            .transport
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if current.0 == stale {
            *current = (stale + 1, self.builder.clone().build());
        }
    }
}

impl MailTransport for SmtpMailer {
    fn send<'a>(&'a self, msg: Message) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let _permit = self
                .permits
                .acquire()
                .await
                .map_err(|_| SendError::Transient("the mailer is shut down".into()))?;
            let (generation, transport) = self.current();
            // lettre's async transport times out connecting only: a server that accepts and
            // then says nothing would hang the send for ever.
            let result = match tokio::time::timeout(self.timeout, transport.send(msg)).await {
                Ok(result) => result.map(drop).map_err(|e| classify(&e)),
                Err(_) => {
                    // The abandoned connection goes back to its pool with a reply possibly
                    // still to come, which the next message would read as its own; so that
                    // whole pool goes (its connections close once their sends end).
                    self.replace(generation);
                    Err(SendError::Transient(format!(
                        "no answer from the SMTP server within {:?}",
                        self.timeout
                    )))
                }
            };
            // Lets lettre park the connection (a task it spawns) before the next send takes
            // the permit and, finding the pool empty, opens another.
            tokio::task::yield_now().await;
            result
        })
    }
}

/// 5xx replies are permanent, except those about our own login: a wrong SMTP password must not
/// count as a bounce against every member it meets. Everything else (4xx, refused or dropped
/// connections, timeouts, TLS trouble) may pass.
fn classify(e: &lettre::transport::smtp::Error) -> SendError {
    let text = e.to_string();
    let about_our_login = e
        .status()
        .is_some_and(|code| matches!(u16::from(code), 530 | 534 | 535 | 538));
    if e.is_permanent() && !about_our_login {
        SendError::Permanent(text)
    } else if e.is_client() && text.contains("SMTPUTF8") {
        // An address in Unicode and a server that cannot take one: no retry will change that.
        SendError::Permanent(text)
    } else {
        SendError::Transient(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unusable_urls_name_the_key_and_never_the_password() {
        for url in [
            "smtp://user:s3cret@mail.example",
            "ftp://user:s3cret@mail.example:21",
            "smtp://user:s3cret@mail.example:587?tls=sometimes",
            "user:s3cret@mail.example:587",
        ] {
            let err = SmtpMailer::new(url, 2, Duration::from_secs(1))
                .err()
                .unwrap_or_else(|| panic!("{url} was accepted"))
                .to_string();
            assert!(err.starts_with("email.smtp_url: "), "{err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
    }

    #[tokio::test]
    async fn usable_urls_build_without_connecting() {
        for url in [
            "smtp://127.0.0.1:2525",
            "smtp://user:pass@mail.example:587?tls=required",
            "smtps://user:pass@mail.example:465",
        ] {
            assert!(
                SmtpMailer::new(url, 2, Duration::from_secs(1)).is_ok(),
                "{url}"
            );
        }
    }
}
