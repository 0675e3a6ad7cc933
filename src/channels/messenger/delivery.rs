//! Delivers queued replies through the Send API: transient failures are retried with
//! exponential backoff, permanent ones are logged and dropped, and a reply counts as delivered
//! in the store only once it is delivered or dropped.

use super::send_api::{SendApi, SendError};
use crate::store::{run_durably, EventQueue, OutboundMessage, ReplyId};
use crate::telemetry::chain;
use crate::turns::waiting;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Transient Send API failures are retried with exponential backoff (plus up to 25% jitter):
/// by default 0.5 s, 1 s, 2 s … capped at 60 s, 12 attempts in all — about five minutes. After
/// that the reply is dropped and logged; the attempt count is not stored, so a restart starts
/// counting again. Retrying blocks only that customer's lane, which keeps their order.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 12,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    fn delay(&self, attempt: u32) -> Duration {
        let doubling = 2u32.saturating_pow(attempt.saturating_sub(1));
        let base = self
            .first_delay
            .saturating_mul(doubling)
            .min(self.max_delay);
        // Jitter spreads retries of many customers after an outage.
        let jitter_ms = rand::random::<u64>() % (base.as_millis() as u64 / 4 + 1);
        base + Duration::from_millis(jitter_ms)
    }
}

pub(super) struct Delivery {
    pub(super) send_api: SendApi,
    pub(super) queue: Arc<dyn EventQueue>,
    pub(super) retry: RetryPolicy,
}

impl Delivery {
    /// Sends one queued reply, retrying transient failures; forgets it once delivered or failed
    /// for good. On shutdown during a backoff it stays queued for the next start.
    pub(super) async fn deliver(
        &self,
        id: ReplyId,
        mut message: OutboundMessage,
        shutdown: &CancellationToken,
    ) {
        tag(&mut message);
        let span = tracing::info_span!("messenger_send", channel = "messenger",
            messenger.psid = %message.recipient, reply.id = %id);
        async {
            let mut attempt = message.attempts;
            loop {
                attempt += 1;
                match waiting(self.send_api.send(&message.body)).await {
                    Ok(_) => {
                        tracing::debug!(attempt, "reply delivered");
                        break;
                    }
                    Err(e) if e.is_transient() && attempt < self.retry.max_attempts => {
                        let wait = self.retry.delay(attempt);
                        let wait_ms = wait.as_millis() as u64;
                        tracing::warn!(error = %chain(&e), attempt, retry_in_ms = wait_ms, "Send API failed; will retry");
                        let backoff = async {
                            tokio::select! {
                                _ = shutdown.cancelled() => false,
                                _ = tokio::time::sleep(wait) => true,
                            }
                        };
                        if !waiting(backoff).await {
                            return;
                        }
                    }
                    Err(e) => {
                        log_dropped(&e, attempt);
                        break;
                    }
                }
            }
            // Flushed before the customer's next reply is sent: so a crash re-sends at most one
            // message per customer (docs/crash-safety.md).
            let done = waiting(run_durably(self.queue.as_ref(), move |q| q.finish_outbound(&id))).await;
            if let Err(e) = done {
                tracing::error!(error = %chain(&e), "cannot mark the reply done; it may be sent again after a restart");
            }
        }
        .instrument(span)
        .await
    }
}

/// Meta's `message.metadata` limit, in characters.
const METADATA_MAX_CHARS: usize = 1000;

/// Sets the Send API body's `message.metadata` to the key of the event it answers. Meta
/// echoes it back (in `message_echoes`), so a sent message can be traced to its event; the
/// crash tests use it to prove that each event was answered once. A re-send carries the same
/// key, so it is recognisable as a re-send. In place: the body is not copied for it.
fn tag(message: &mut OutboundMessage) {
    if message.in_reply_to.is_empty() {
        return;
    }
    if let Some(m) = message
        .body
        .get_mut("message")
        .and_then(|m| m.as_object_mut())
    {
        let key: String = message
            .in_reply_to
            .chars()
            .take(METADATA_MAX_CHARS)
            .collect();
        m.insert("metadata".into(), serde_json::Value::String(key));
    }
}

fn log_dropped(e: &SendError, attempts: u32) {
    let transient = e.is_transient();
    tracing::error!(error = %chain(e), attempts, transient, "Send API failed for good; reply dropped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sent_message_names_the_event_it_answers() {
        let mut message = OutboundMessage {
            recipient: "42".into(),
            body: serde_json::json!({"recipient": {"id": "42"}, "message": {"text": "hi"}}),
            in_reply_to: format!("page:{}", "m".repeat(2000)),
            attempts: 0,
        };
        tag(&mut message);
        let body = &message.body;
        assert_eq!(body["message"]["text"], "hi");
        let metadata = body["message"]["metadata"].as_str().unwrap();
        assert!(metadata.starts_with("page:mmm"));
        assert_eq!(metadata.chars().count(), METADATA_MAX_CHARS);
    }

    #[test]
    fn delays_double_from_the_first_and_stop_at_the_cap() {
        let policy = RetryPolicy::default();
        for (attempt, base_ms) in [
            (1, 500),
            (2, 1000),
            (3, 2000),
            (7, 32_000),
            (8, 60_000),
            (40, 60_000),
        ] {
            let d = policy.delay(attempt).as_millis() as u64;
            assert!(
                (base_ms..=base_ms + base_ms / 4).contains(&d),
                "attempt {attempt}: {d} ms"
            );
        }
    }
}
