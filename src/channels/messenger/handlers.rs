//! `GET /webhooks/messenger` (the subscription handshake) and `POST /webhooks/messenger` (event
//! delivery): check the signature on the raw bytes, parse, record durably, acknowledge at once.
//! Processing happens later in the worker; Meta wants its answer within 5 seconds.

use super::{webhook, Messenger};
use crate::config::Secret;
use crate::signature::{secrets_match, verify_sha256_header};
use crate::store::{InboundEvent, StoreError};
use actix_web::http::header::ContentType;
use actix_web::{web, HttpRequest, HttpResponse};

const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";

/// Echoes `hub.challenge` when `hub.mode=subscribe` and `hub.verify_token` matches.
pub async fn verify(messenger: web::Data<Messenger>, req: HttpRequest) -> HttpResponse {
    let (mut mode, mut token, mut challenge) = (None, None, None);
    // Parsed by hand: the names contain literal dots, and any malformed query is simply a 403.
    for (name, value) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
        match name.as_ref() {
            "hub.mode" => mode = Some(value),
            "hub.verify_token" => token = Some(value),
            "hub.challenge" => challenge = Some(value),
            _ => {}
        }
    }
    let token_ok =
        token.is_some_and(|t| secrets_match(&t, messenger.settings.verify_token.expose()));
    match (mode.as_deref(), challenge) {
        (Some("subscribe"), Some(challenge)) if token_ok => {
            tracing::info!(channel = "messenger", "webhook subscription verified");
            HttpResponse::Ok()
                .content_type(ContentType::plaintext())
                .body(challenge.into_owned())
        }
        _ => {
            tracing::warn!(channel = "messenger", "webhook verification refused");
            HttpResponse::Forbidden().finish()
        }
    }
}

/// Receives a notification. 401 without a valid signature and 400 for a body that is not a
/// Page notification — in both cases nothing is recorded. 500 if recording fails, so Meta
/// delivers again. Otherwise 200 `EVENT_RECEIVED` as soon as the events are on disk.
#[tracing::instrument(
    name = "messenger_webhook",
    skip_all,
    fields(channel = "messenger", events)
)]
pub async fn receive(
    messenger: web::Data<Messenger>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let header = req
        .headers()
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok());
    let events = match accept_notification(&messenger.settings.app_secret, header, &body) {
        Ok(events) => events,
        Err(Refused::Signature) => {
            tracing::warn!(
                signed = header.is_some(),
                "webhook refused: bad or missing signature"
            );
            return HttpResponse::Unauthorized().finish();
        }
        Err(Refused::Body(e)) => {
            tracing::warn!(error = %e, "webhook refused: not a Page notification");
            // Same body shape as the rest of the API: a stable code and a precise message.
            return HttpResponse::BadRequest().json(serde_json::json!({
                "code": "bad_request",
                "message": format!("not a Messenger Page notification: {e}"),
            }));
        }
    };
    tracing::Span::current().record("events", events.len());
    messenger.events_received.inc_by(events.len() as u64);
    if !events.is_empty() {
        match record(&messenger, events).await {
            Ok(new) if !new.is_empty() => messenger.hand_over(new),
            Ok(_) => tracing::debug!("redelivered events skipped"),
            Err(e) => {
                tracing::error!(error = %crate::telemetry::chain(&e), "cannot record webhook events");
                messenger.recording_failed();
                // Not acknowledged, so Meta delivers it again; the cause stays in our log.
                return HttpResponse::InternalServerError().json(serde_json::json!({
                    "code": "internal",
                    "message": "the events could not be recorded; nothing was acknowledged, deliver them again",
                }));
            }
        }
    }
    HttpResponse::Ok()
        .content_type(ContentType::plaintext())
        .body("EVENT_RECEIVED")
}

/// Why a delivery is refused before anything is recorded.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("bad or missing signature")]
    Signature,
    #[error(transparent)]
    Body(#[from] webhook::WebhookError),
}

/// Everything [`receive`] decides before touching the store: the signature over the raw bytes
/// first, then the parse. Public so the fuzz target drives exactly this path.
pub fn accept_notification(
    app_secret: &Secret,
    signature: Option<&str>,
    body: &[u8],
) -> Result<Vec<InboundEvent>, Refused> {
    // An empty app secret would make every attacker's empty-key HMAC valid.
    if !app_secret.is_set()
        || !verify_sha256_header(app_secret.expose().as_bytes(), body, signature)
    {
        return Err(Refused::Signature);
    }
    Ok(webhook::parse_notification(body)?)
}

/// Inline on this worker thread (each event added to the open intake record); only the flush is
/// awaited.
async fn record(
    messenger: &Messenger,
    events: Vec<InboundEvent>,
) -> Result<Vec<InboundEvent>, StoreError> {
    crate::store::run_durably(messenger.worker.queue.as_ref(), |q| {
        q.record_inbound(events)
    })
    .await
}
