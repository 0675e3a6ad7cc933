//! The access token: a custom app's permanent `shpat_` token, or one fetched with the
//! client-credentials grant (`POST {base}/admin/oauth/access_token`), kept until shortly
//! before its `expires_in` runs out and fetched again then, or at once after a 401.

use super::client::transport_error;
use crate::config::Secret;
use crate::shop::ShopError;
use serde::Deserialize;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

pub(super) enum Auth {
    Static(Secret),
    Grant(Grant),
}

pub(super) struct Grant {
    url: reqwest::Url,
    client_id: String,
    client_secret: Secret,
    /// Held across a fetch, so that callers arriving meanwhile wait for that token instead of
    /// each asking for one.
    current: Mutex<Option<Token>>,
}

struct Token {
    value: Secret,
    /// `None`: Shopify gave no lifetime; kept until a 401.
    renew_at: Option<Instant>,
}

#[derive(Deserialize)]
struct Granted {
    access_token: String,
    expires_in: Option<u64>,
}

impl Auth {
    pub(super) fn grant(url: reqwest::Url, client_id: String, client_secret: Secret) -> Auth {
        Auth::Grant(Grant {
            url,
            client_id,
            client_secret,
            current: Mutex::new(None),
        })
    }

    pub(super) fn renewable(&self) -> bool {
        matches!(self, Auth::Grant(_))
    }

    /// The token to send now: the static one, or a granted one that is not about to expire.
    pub(super) async fn token(
        &self,
        http: &reqwest::Client,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<String, ShopError> {
        let grant = match self {
            Auth::Static(token) => return Ok(token.expose().to_owned()),
            Auth::Grant(grant) => grant,
        };
        let mut current = grant.lock(deadline, timeout).await?;
        if let Some(token) = current.as_ref() {
            if token.renew_at.is_none_or(|at| Instant::now() < at) {
                return Ok(token.value.expose().to_owned());
            }
        }
        let token = grant.fetch(http, deadline, timeout).await?;
        let value = token.value.expose().to_owned();
        *current = Some(token);
        Ok(value)
    }

    /// Drops `rejected` (unless another call replaced it already) so the next
    /// [`Auth::token`] fetches a fresh one.
    pub(super) async fn renew(
        &self,
        http: &reqwest::Client,
        rejected: &str,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), ShopError> {
        let Auth::Grant(grant) = self else {
            return Ok(());
        };
        let mut current = grant.lock(deadline, timeout).await?;
        if current
            .as_ref()
            .is_none_or(|t| t.value.expose() == rejected)
        {
            *current = Some(grant.fetch(http, deadline, timeout).await?);
        }
        Ok(())
    }
}

impl Grant {
    /// The current token, waited for no longer than the caller's deadline (another call may be
    /// fetching one).
    async fn lock(
        &self,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<Token>>, ShopError> {
        tokio::time::timeout_at(deadline, self.current.lock())
            .await
            .map_err(|_| ShopError::Timeout(timeout.as_secs()))
    }

    async fn fetch(
        &self,
        http: &reqwest::Client,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Token, ShopError> {
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &self.client_id)
            .append_pair("client_secret", self.client_secret.expose())
            .finish();
        let call = async {
            let res = http
                .post(self.url.clone())
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .header(reqwest::header::ACCEPT, "application/json")
                .body(form)
                .send()
                .await?;
            let status = res.status().as_u16();
            Ok::<_, reqwest::Error>((status, res.bytes().await?))
        };
        let (status, body) = match tokio::time::timeout_at(deadline, call).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => return Err(transport_error(e, timeout)),
            Err(_) => return Err(ShopError::Timeout(timeout.as_secs())),
        };
        match status {
            200 => {}
            // Shopify answers a wrong client id or secret with 400 `invalid_client`, or 401.
            400 | 401 | 403 => return Err(ShopError::Unauthorized(status)),
            other => return Err(ShopError::Status(other)),
        }
        let granted: Granted = serde_json::from_slice(&body)
            .map_err(|e| ShopError::BadAnswer(format!("token answer: {e}")))?;
        if granted.access_token.trim().is_empty() {
            return Err(ShopError::BadAnswer(
                "token answer: empty access_token".into(),
            ));
        }
        let issued = Instant::now();
        let renew_at = granted.expires_in.map(|secs| issued + renew_after(secs));
        tracing::info!(
            expires_in_secs = granted.expires_in,
            "fetched a Shopify access token (client credentials)"
        );
        Ok(Token {
            value: Secret::new(granted.access_token),
            renew_at,
        })
    }
}

/// Renew at nine tenths of a token's life (2 h 24 min early for Shopify's 24 h), so that a
/// call in flight never carries a token that expires on the way.
fn renew_after(expires_in_secs: u64) -> Duration {
    // Capped at a year: an absurd `expires_in` must not overflow the time arithmetic.
    Duration::from_secs(expires_in_secs.min(365 * 24 * 3600)) * 9 / 10
}

#[cfg(test)]
mod tests {
    use super::renew_after;
    use std::time::Duration;

    #[test]
    fn tokens_are_renewed_before_they_expire() {
        assert_eq!(renew_after(86_400), Duration::from_secs(77_760));
        assert_eq!(renew_after(10), Duration::from_secs(9));
        assert_eq!(renew_after(0), Duration::ZERO);
        // An absurd lifetime is capped at a year instead of overflowing.
        assert_eq!(renew_after(u64::MAX), renew_after(365 * 24 * 3600));
    }
}
