//! ManyChat's public sending API (protocols.md §e.2), for order news told to a contact between
//! their Dynamic Block calls: `POST {manychat.api_url}/fb/sending/sendContent` with
//! `Authorization: Bearer <manychat.api_token>` and a v2 text message. Without a message tag
//! ManyChat sends only within the contact's 24-hour window, and says so with error 3011.

use super::v2::{Content, Message, V2};
use crate::channels::order_news::{NewsError, NewsSender};
use crate::config::Secret;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// A call unanswered after this fails; the news then waits for the statement.
const TIMEOUT: Duration = Duration::from_secs(10);
/// ManyChat's code for "no message tag and the last interaction was more than 24 hours ago".
const OUTSIDE_WINDOW: i64 = 3011;
/// ManyChat takes 25 `sendContent` calls a second (protocols.md §e.2); a burst of refunds is
/// spread out to 20 a second, a margin for calls that bunch up on the way, rather than refused
/// there.
const SPACING: Duration = Duration::from_millis(1000 / 20);
/// News that would wait longer than this for its turn is not sent (its balance would be old
/// news by then): the statement lists it.
const MAX_WAIT: Duration = Duration::from_secs(30);

pub struct SendContent {
    http: reqwest::Client,
    endpoint: String,
    /// Never logged: this type has no `Debug`.
    token: Secret,
    /// When the next call may start.
    next_slot: Mutex<Instant>,
}

/// ManyChat's answer: `{"status":"success"}` or `{"status":"error","message":…,"code"?:…}`.
#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    message: String,
    code: Option<i64>,
}

impl SendContent {
    /// `api_url` was validated with the settings.
    pub fn new(api_url: &str, token: Secret) -> Self {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client with a timeout only always builds");
        let endpoint = format!("{}/fb/sending/sendContent", api_url.trim_end_matches('/'));
        SendContent {
            http,
            endpoint,
            token,
            next_slot: Mutex::new(Instant::now()),
        }
    }

    /// Books the next turn under ManyChat's rate limit: when it is, or `None` if that is more
    /// than [`MAX_WAIT`] after `now` (nothing is booked then).
    fn book(&self, now: Instant) -> Option<Instant> {
        let mut next = self.next_slot.lock().unwrap_or_else(|p| p.into_inner());
        let at = (*next).max(now);
        if at - now > MAX_WAIT {
            return None;
        }
        *next = at + SPACING;
        Some(at)
    }

    /// Waits for this call's turn; `false` if there is none within [`MAX_WAIT`].
    async fn take_slot(&self) -> bool {
        match self.book(Instant::now()) {
            Some(at) => {
                tokio::time::sleep_until(at).await;
                true
            }
            None => false,
        }
    }
}

/// The request body: ManyChat's `subscriber_id` is an integer; ours is kept as its text.
fn body(subscriber_id: u64, text: &str) -> serde_json::Value {
    let data = V2 {
        version: "v2",
        content: Content {
            messages: vec![Message::Text {
                text: text.to_owned(),
                buttons: Vec::new(),
            }],
            actions: Vec::new(),
            quick_replies: Vec::new(),
            external_message_callback: None,
        },
    };
    json!({ "subscriber_id": subscriber_id, "data": data })
}

impl NewsSender for SendContent {
    fn send<'a>(&'a self, who: &'a str, text: &'a str) -> BoxFuture<'a, Result<(), NewsError>> {
        Box::pin(async move {
            let id: u64 = who.parse().map_err(|_| {
                NewsError::NotAddressable(format!("ManyChat subscriber id {who:?} is not a number"))
            })?;
            if !self.take_slot().await {
                return Err(NewsError::Busy);
            }
            let unreachable = |e: reqwest::Error| NewsError::Unreachable(Box::new(e));
            let response = self
                .http
                .post(&self.endpoint)
                .bearer_auth(self.token.expose())
                .json(&body(id, text))
                .send()
                .await
                .map_err(unreachable)?;
            let status = response.status();
            let bytes = response.bytes().await.map_err(unreachable)?;
            match serde_json::from_slice::<Answer>(&bytes) {
                Ok(a) if status.is_success() && a.status == "success" => Ok(()),
                Ok(a) if a.code == Some(OUTSIDE_WINDOW) => Err(NewsError::WindowClosed),
                Ok(a) => Err(NewsError::Refused {
                    status: status.as_u16(),
                    message: a.message,
                }),
                Err(_) => Err(NewsError::Refused {
                    status: status.as_u16(),
                    message: "(not a ManyChat answer)".into(),
                }),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn calls_are_spaced_under_manychats_limit_and_none_waits_past_the_cap() {
        let send = SendContent::new("http://127.0.0.1:9", Secret::new("t"));
        let start = Instant::now();
        for _ in 0..21 {
            assert!(send.take_slot().await);
        }
        // The 21st call starts a full second after the first: 20 a second.
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        // A burst books turns up to MAX_WAIT ahead, then is turned away.
        let now = Instant::now();
        let booked: Vec<_> = (0..700).filter_map(|_| send.book(now)).collect();
        // The first free turn is one spacing away (the 21st call above took the last).
        assert_eq!(booked.len(), 600, "20 a second for 30 s");
        assert_eq!(*booked.last().unwrap() - now, MAX_WAIT);
    }

    #[test]
    fn the_body_is_a_v2_text_message_to_an_integer_subscriber_id() {
        let b = body(1_234_567_890, "Your order 1001 was refunded.");
        assert_eq!(b["subscriber_id"], json!(1_234_567_890u64));
        assert_eq!(b["data"]["version"], "v2");
        assert_eq!(
            b["data"]["content"]["messages"],
            json!([{"type": "text", "text": "Your order 1001 was refunded."}])
        );
    }
}
