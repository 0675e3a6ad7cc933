//! The GraphQL transport: every call is one `POST {base}/admin/api/{version}/graphql.json` with
//! `X-Shopify-Access-Token`, its inputs in `variables`. Owns the waits Shopify asks for
//! (`THROTTLED` in a 200 body, HTTP 429 + `Retry-After`), the token's renewal on a 401, and the
//! one deadline (`shop.timeout_secs`) that bounds the whole call, waits included.

use super::token::Auth;
use crate::shop::ShopError;
use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;

pub const TOKEN_HEADER: &str = "X-Shopify-Access-Token";

/// How long to wait when Shopify says "slow down" without saying for how long.
const DEFAULT_WAIT: Duration = Duration::from_secs(1);

pub(super) struct Client {
    http: reqwest::Client,
    graphql: reqwest::Url,
    pub(super) auth: Auth,
    timeout: Duration,
}

#[derive(Serialize)]
struct Request<'a, V> {
    query: &'a str,
    variables: &'a V,
}

/// One HTTP answer, read whole before the deadline.
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    body: Vec<u8>,
}

impl Client {
    pub(super) fn new(
        http: reqwest::Client,
        graphql: reqwest::Url,
        auth: Auth,
        timeout: Duration,
    ) -> Self {
        Client {
            http,
            graphql,
            auth,
            timeout,
        }
    }

    /// When a call that starts now must be answered: one deadline for everything a customer's
    /// request needs from Shopify (two searches, a token, waits).
    pub(super) fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    /// Runs `query` with `variables` and returns its `data`. Waits where Shopify asks us to, but
    /// gives up with [`ShopError::Throttled`] rather than wait past `deadline`.
    pub(super) async fn graphql(
        &self,
        query: &str,
        variables: &impl Serialize,
        deadline: Instant,
    ) -> Result<Value, ShopError> {
        let body = serde_json::to_vec(&Request { query, variables })
            .map_err(|e| ShopError::BadAnswer(format!("variables: {e}")))?;
        let mut renewed = false;
        loop {
            let token = self.auth.token(&self.http, deadline, self.timeout).await?;
            let answer = self.post(&body, &token, deadline).await?;
            match answer.status {
                200 => {
                    let reply: Value = serde_json::from_slice(&answer.body)
                        .map_err(|e| ShopError::BadAnswer(format!("not JSON: {e}")))?;
                    if let Some(wait) = throttled(&reply) {
                        tracing::debug!(wait_ms = wait.as_millis() as u64, "Shopify: THROTTLED");
                        wait_within(wait, deadline).await?;
                        continue;
                    }
                    return data_of(reply);
                }
                // A client-credentials token can expire early (or be revoked): one fresh token.
                401 if !renewed && self.auth.renewable() => {
                    tracing::warn!("Shopify refused our access token (401): fetching a new one");
                    renewed = true;
                    self.auth
                        .renew(&self.http, &token, deadline, self.timeout)
                        .await?;
                }
                401 | 403 => return Err(ShopError::Unauthorized(answer.status)),
                429 => {
                    let wait = answer.retry_after.unwrap_or(DEFAULT_WAIT);
                    tracing::debug!(wait_ms = wait.as_millis() as u64, "Shopify: HTTP 429");
                    wait_within(wait, deadline).await?;
                }
                status => return Err(ShopError::Status(status)),
            }
        }
    }

    async fn post(&self, body: &[u8], token: &str, deadline: Instant) -> Result<Answer, ShopError> {
        let mut token = HeaderValue::try_from(token)
            .map_err(|_| ShopError::BadAnswer("the access token is not a header value".into()))?;
        token.set_sensitive(true);
        let call = async {
            let res = self
                .http
                .post(self.graphql.clone())
                .header(CONTENT_TYPE, "application/json")
                .header(TOKEN_HEADER, token)
                .body(body.to_vec())
                .send()
                .await?;
            let status = res.status().as_u16();
            let retry_after = res
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(seconds);
            let body = res.bytes().await?.to_vec();
            Ok::<_, reqwest::Error>(Answer {
                status,
                retry_after,
                body,
            })
        };
        match tokio::time::timeout_at(deadline, call).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(transport_error(e, self.timeout)),
            Err(_) => Err(ShopError::Timeout(self.timeout.as_secs())),
        }
    }
}

pub(super) fn transport_error(e: reqwest::Error, timeout: Duration) -> ShopError {
    if e.is_timeout() {
        ShopError::Timeout(timeout.as_secs())
    } else {
        ShopError::Unreachable(e)
    }
}

/// Sleeps `wait` unless that would end after `deadline`: then the customer hears now.
async fn wait_within(wait: Duration, deadline: Instant) -> Result<(), ShopError> {
    if Instant::now() + wait >= deadline {
        return Err(ShopError::Throttled);
    }
    tokio::time::sleep(wait).await;
    Ok(())
}

/// `Retry-After` in seconds (Shopify sends `2.0`); an HTTP date is not worth honouring here.
fn seconds(text: &str) -> Option<Duration> {
    let secs: f64 = text.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

/// The wait a `THROTTLED` reply asks for: enough for the bucket to refill to this query's cost,
/// `(requestedQueryCost - currentlyAvailable) / restoreRate` seconds.
fn throttled(reply: &Value) -> Option<Duration> {
    let errors = reply["errors"].as_array()?;
    if !errors
        .iter()
        .any(|e| e["extensions"]["code"] == "THROTTLED")
    {
        return None;
    }
    let cost = &reply["extensions"]["cost"];
    let status = &cost["throttleStatus"];
    let wait = match (
        cost["requestedQueryCost"].as_f64(),
        status["currentlyAvailable"].as_f64(),
        status["restoreRate"].as_f64(),
    ) {
        (Some(requested), Some(available), Some(rate)) if rate > 0.0 => {
            let secs = (requested - available).max(0.0) / rate;
            // At least a little: "available now" after a THROTTLED is a race, not a promise.
            Duration::from_secs_f64(secs.clamp(0.05, 3600.0))
        }
        _ => DEFAULT_WAIT,
    };
    Some(wait)
}

/// `data`, or the reasons Shopify gave. `ACCESS_DENIED` names the missing scope in its message.
fn data_of(mut reply: Value) -> Result<Value, ShopError> {
    if let Some(errors) = reply["errors"].as_array().filter(|e| !e.is_empty()) {
        let messages: Vec<String> = errors
            .iter()
            .map(|e| {
                let code = e["extensions"]["code"].as_str().unwrap_or("ERROR");
                let message = e["message"].as_str().unwrap_or("(no message)");
                format!("{code}: {message}")
            })
            .collect();
        let text = messages.join("; ");
        return Err(if text.contains("ACCESS_DENIED") {
            ShopError::Refused(text)
        } else {
            ShopError::BadAnswer(text)
        });
    }
    match reply.get_mut("data").map(Value::take) {
        Some(data) if data.is_object() => Ok(data),
        _ => Err(ShopError::BadAnswer("no `data` in the answer".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_throttled_reply_waits_until_the_bucket_holds_the_query() {
        let reply = json!({
            "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
            "extensions": {"cost": {"requestedQueryCost": 52, "actualQueryCost": null,
                "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 2,
                    "restoreRate": 100.0}}}
        });
        assert_eq!(throttled(&reply), Some(Duration::from_millis(500)));
        let no_cost =
            json!({"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}]});
        assert_eq!(throttled(&no_cost), Some(DEFAULT_WAIT));
        let other =
            json!({"errors": [{"message": "x", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]});
        assert_eq!(throttled(&other), None);
        assert_eq!(throttled(&json!({"data": {}})), None);
    }

    #[test]
    fn retry_after_is_read_as_seconds() {
        assert_eq!(seconds("2.0"), Some(Duration::from_secs(2)));
        assert_eq!(seconds(" 0.25 "), Some(Duration::from_millis(250)));
        for bad in ["-1", "soon", "Wed, 21 Oct 2015 07:28:00 GMT", "NaN"] {
            assert_eq!(seconds(bad), None, "{bad}");
        }
    }

    #[test]
    fn errors_in_a_200_are_errors_and_name_their_codes() {
        let denied = json!({"errors": [{"message": "Access denied for orders field.",
            "extensions": {"code": "ACCESS_DENIED"}}]});
        assert!(
            matches!(data_of(denied), Err(ShopError::Refused(m)) if m.contains("orders field"))
        );
        let missing = json!({"extensions": {}});
        assert!(matches!(data_of(missing), Err(ShopError::BadAnswer(_))));
        let ok = json!({"data": {"shop": {"name": "x"}}, "errors": []});
        assert_eq!(data_of(ok).unwrap()["shop"]["name"], "x");
    }
}
