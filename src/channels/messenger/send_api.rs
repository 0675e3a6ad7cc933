//! The Send API client and its error classification. The page token travels in the URL query,
//! so URLs are never logged and `reqwest` errors are stripped of their URL before they leave.

use crate::config::Secret;
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

/// The longest a connection may take, whatever the whole request may (`messenger.send_timeout_ms`).
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a send failed; [`SendError::is_transient`] says whether a retry can help.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No answer: connection refused, reset or timed out. The URL (with the token) is removed.
    #[error("Send API unreachable")]
    Transport(#[source] reqwest::Error),
    #[error("Send API answered HTTP {status}, error code {code:?}/{subcode:?}: {message}")]
    Graph {
        status: u16,
        code: Option<i64>,
        subcode: Option<i64>,
        message: String,
    },
}

impl SendError {
    /// Transient: temporary errors (2, 1200), rate limits (4, 613), a temporarily restricted
    /// Page (subcode 1893063), HTTP 429 and 5xx, and transport failures. Everything else —
    /// outside the window (10), user unavailable (551, 200/1545041), bad token (190), invalid
    /// parameter (100), other 4xx — will fail again the same way, so it is dropped.
    pub fn is_transient(&self) -> bool {
        match self {
            SendError::Transport(_) => true,
            SendError::Graph {
                status,
                code,
                subcode,
                ..
            } => classify(*status, *code, *subcode),
        }
    }

    /// Meta refused it because the person's 24-hour window has closed: 10/2018278, and the
    /// variants seen in the community (protocols.md §b.4), 10/2534022 and 10/2018065.
    pub fn is_outside_window(&self) -> bool {
        matches!(
            self,
            SendError::Graph {
                code: Some(10),
                subcode: Some(2_018_278 | 2_534_022 | 2_018_065),
                ..
            }
        )
    }
}

fn classify(status: u16, code: Option<i64>, subcode: Option<i64>) -> bool {
    // Subcodes first: they refine a code in both directions (10/1893063 is temporary,
    // 4/2018354 — marketing frequency — is not).
    match subcode {
        Some(1_893_063) => return true,
        Some(2_018_354 | 2_018_278 | 1_545_041) => return false,
        _ => {}
    }
    match code {
        Some(2 | 4 | 613 | 1200) => true,
        Some(10 | 100 | 190 | 200 | 551) => false,
        _ => status == 429 || status >= 500,
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: GraphError,
}

#[derive(Deserialize)]
struct GraphError {
    #[serde(default)]
    message: String,
    code: Option<i64>,
    error_subcode: Option<i64>,
}

/// Posts message bodies to `{graph_api_url}/me/messages`.
pub struct SendApi {
    http: reqwest::Client,
    /// `{graph_api_url}/me/messages?access_token=…`, parsed once (a URL parsed per message
    /// showed in the benchmark's profile). It holds the page token: never log or print it
    /// (errors are stripped of their URL, and this type has no `Debug`).
    endpoint: reqwest::Url,
}

impl SendApi {
    /// `graph_api_url` was validated with the settings; an unparsable one is a bug there. A
    /// send that takes longer than `timeout` fails as unreachable (transient: retried).
    pub fn new(graph_api_url: &str, token: Secret, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(MAX_CONNECT_TIMEOUT))
            .redirect(reqwest::redirect::Policy::none())
            // Retries are `delivery.rs`'s. reqwest's default policy covers HTTP/2 refusals only
            // (we speak HTTP/1) and copies every request in case.
            .retry(reqwest::retry::never().max_retries_per_request(0))
            .build()
            .expect("a client with timeouts only always builds");
        let base = format!("{}/me/messages", graph_api_url.trim_end_matches('/'));
        let endpoint = reqwest::Url::parse_with_params(&base, [("access_token", token.expose())])
            .expect("graph_api_url is validated at start-up");
        SendApi { http, endpoint }
    }

    /// Sends one message body; `Ok` carries the new message id when Meta returns one.
    pub async fn send(&self, body: &Value) -> Result<Option<String>, SendError> {
        let response = self
            .http
            .post(self.endpoint.clone())
            .json(body)
            .send()
            .await
            .map_err(|e| SendError::Transport(e.without_url()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| SendError::Transport(e.without_url()))?;
        if status.is_success() {
            let id = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v["message_id"].as_str().map(str::to_owned));
            return Ok(id);
        }
        let (code, subcode, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => (b.error.code, b.error.error_subcode, b.error.message),
            Err(_) => (None, None, String::from("(no Graph error body)")),
        };
        Err(SendError::Graph {
            status: status.as_u16(),
            code,
            subcode,
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(status: u16, code: Option<i64>, subcode: Option<i64>) -> SendError {
        SendError::Graph {
            status,
            code,
            subcode,
            message: String::new(),
        }
    }

    #[test]
    fn errors_are_classified_by_subcode_then_code_then_status() {
        let cases = [
            (500, Some(2), None, true, "temporary"),
            (400, Some(4), None, true, "app rate limit"),
            (400, Some(613), None, true, "call rate limit"),
            (400, Some(1200), None, true, "temporary send failure"),
            (
                400,
                Some(10),
                Some(1_893_063),
                true,
                "page temporarily restricted",
            ),
            (503, None, None, true, "5xx without body"),
            (429, None, None, true, "too many requests"),
            (400, Some(10), Some(2_018_278), false, "outside window"),
            (400, Some(4), Some(2_018_354), false, "marketing frequency"),
            (400, Some(551), Some(1_545_041), false, "user unavailable"),
            (
                400,
                Some(200),
                Some(1_545_041),
                false,
                "user unavailable (200)",
            ),
            (400, Some(190), None, false, "bad token"),
            (400, Some(100), None, false, "invalid parameter"),
            (403, None, None, false, "other 4xx"),
            (
                500,
                Some(190),
                None,
                false,
                "known permanent code wins over 5xx",
            ),
        ];
        for (status, code, subcode, transient, what) in cases {
            assert_eq!(
                graph(status, code, subcode).is_transient(),
                transient,
                "{what}"
            );
        }
    }

    #[test]
    fn outside_window_fixture_parses_as_permanent() {
        let body =
            include_str!("../../../fixtures/messenger/messenger-send-error-outside-window.json");
        let e: ErrorBody = serde_json::from_str(body).unwrap();
        assert_eq!(
            (e.error.code, e.error.error_subcode),
            (Some(10), Some(2_018_278))
        );
        assert!(!classify(400, e.error.code, e.error.error_subcode));
    }

    #[tokio::test]
    async fn transport_errors_never_show_the_token() {
        // Port 9 on loopback: nothing listens, the connection is refused at once.
        let api = SendApi::new(
            "http://127.0.0.1:9/v25.0",
            Secret::new("EAAG-secret-token"),
            Duration::from_secs(10),
        );
        let err = api.send(&serde_json::json!({})).await.unwrap_err();
        assert!(err.is_transient());
        let shown = format!("{err} {err:?} {:?}", std::error::Error::source(&err));
        assert!(!shown.contains("EAAG-secret-token"), "{shown}");
    }

    #[tokio::test]
    async fn a_send_api_that_never_answers_fails_after_the_configured_timeout() {
        // Accepts the connection and reads nothing: the request hangs until our timeout.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v25.0", listener.local_addr().unwrap());
        let api = SendApi::new(&url, Secret::new("t"), Duration::from_millis(300));
        let started = std::time::Instant::now();
        let err = api.send(&serde_json::json!({})).await.unwrap_err();
        let took = started.elapsed();
        assert!(matches!(err, SendError::Transport(_)), "{err}");
        assert!(err.is_transient(), "a timeout is retried");
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(5),
            "{took:?}"
        );
        drop(listener);
    }
}
