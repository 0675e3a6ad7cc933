//! One request: authenticate (before looking at the body), parse, check the per-address budget
//! of claims and redemptions, run the endpoint's flow and render the turn. Every answer to an
//! authenticated, well-formed request is a 200 with a v2 message, because ManyChat shows the
//! contact nothing of any other status: engine failures answer with an apology, and a rate
//! limit (the address's or the contact's own) with a message in the contact's language saying
//! what is paused and for how long, having changed nothing.

use super::endpoint::Endpoint;
use super::error::ManychatError;
use super::limited::{self, Paused};
use super::request::ContactRequest;
use super::response::{apology, render, Callbacks};
use super::Manychat;
use crate::domain::{Channel, ChatIdentity};
use crate::limits::{client_ip, Limited, Limiter};
use crate::signature::bearer_matches;
use crate::store::collecting;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{HttpRequest, HttpResponse};
use std::net::IpAddr;
use std::sync::Arc;
use tracing::Instrument;

pub(super) async fn handle(
    mc: &Manychat,
    endpoint: Endpoint,
    req: &HttpRequest,
    body: &[u8],
) -> Result<HttpResponse, ManychatError> {
    let span = tracing::info_span!(
        "manychat",
        channel = "manychat",
        endpoint = endpoint.path(),
        subscriber.id = tracing::field::Empty,
    );
    async {
        let result = answer(mc, endpoint, req, body).await;
        if let Err(e) = &result {
            tracing::warn!(error.code = e.code(), error = %e, "request refused");
        }
        result
    }
    .instrument(span)
    .await
}

async fn answer(
    mc: &Manychat,
    endpoint: Endpoint,
    req: &HttpRequest,
    body: &[u8],
) -> Result<HttpResponse, ManychatError> {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !bearer_matches(header, mc.token.expose()) {
        return Err(ManychatError::Unauthorized);
    }
    let metrics = mc.engine.program().metrics();
    metrics.webhook_events(Channel::Manychat).inc();
    let contact = ContactRequest::parse(body)?;
    let who = ChatIdentity::new(Channel::Manychat, &contact.subscriber_id)
        .map_err(ManychatError::InvalidSubscriberId)?;
    tracing::Span::current().record("subscriber.id", who.id.as_str());
    mc.window.saw(&who.id);
    if let Err((paused, refused)) = within_address_budget(mc, endpoint, req) {
        let secs = refused.retry_after_secs();
        tracing::warn!(
            limit = paused.limit(),
            retry_after_secs = secs,
            "rate limited; the contact was told to wait"
        );
        let locale = mc.engine.locale_for(&contact.profile);
        return Ok(HttpResponse::Ok().json(limited::answer(paused, secs, &locale)));
    }

    let vars = contact.vars_for(endpoint);
    let engine = Arc::clone(&mc.engine);
    let (flow, whom, profile) = (endpoint.flow(), who.clone(), contact.profile.clone());
    let turn = async move {
        // One flush wait for the whole turn, before the answer announces anything it did.
        let (turn, mark) = collecting(engine.run(flow, &whom, &profile, vars)).await;
        match mark {
            Some(mark) => match engine.program().await_durable(mark).await {
                Ok(()) => turn,
                Err(e) => Err(e),
            },
            None => turn,
        }
    }
    .instrument(tracing::Span::current());
    // On the service's own runtime (see `Manychat::runtime`).
    let turn = mc
        .runtime
        .spawn(turn)
        .await
        .unwrap_or_else(|e| Err(e.into()));
    let v2 = match turn {
        Ok(turn) => {
            if let Some(wait) = turn.limited {
                // The engine's polite message, in the contact's language, is the answer.
                let secs = Limited { retry_after: wait }.retry_after_secs();
                tracing::info!(
                    retry_after_secs = secs,
                    flow = endpoint.flow(),
                    "the contact's own limit was reached; they were told to wait"
                );
            }
            let route = |payload: &str| mc.engine.route_payload(payload);
            render(
                &turn,
                &Callbacks {
                    public_url: &mc.public_url,
                    bearer: mc.token.expose(),
                    subscriber_id: &who.id,
                    profile: &contact.profile,
                    route: &route,
                },
            )
        }
        Err(e) => {
            tracing::error!(error = %e, error.details = ?e, flow = endpoint.flow(), "engine failed; sent an apology");
            apology(&mc.engine.apology(&contact.profile))
        }
    };
    Ok(HttpResponse::Ok().json(v2))
}

/// Claims and redemptions per client address. ManyChat calls from a few servers on behalf of
/// every contact, so this budget is shared by all of them: generous, a backstop against a
/// leaked token or a guessing campaign spread over many contacts. Checked after the token, so
/// strangers cannot spend ManyChat's budget. A refusal takes nothing.
fn within_address_budget(
    mc: &Manychat,
    endpoint: Endpoint,
    req: &HttpRequest,
) -> Result<(), (Paused, Limited)> {
    let Some(paused) = Paused::of(endpoint) else {
        return Ok(());
    };
    let limits = mc.engine.program().limits();
    let limiter: &Limiter<IpAddr> = match paused {
        Paused::Claims => &limits.claims_per_ip,
        Paused::Redemptions => &limits.redemptions_per_ip,
    };
    let Some(ip) = client_ip(req, limits) else {
        return Ok(());
    };
    limiter.acquire(&ip).map_err(|refused| (paused, refused))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_is_accepted() {
        let cases: &[(Option<&str>, bool)] = &[
            (Some("Bearer tok-123"), true),
            (Some("Bearer tok-1234"), false),
            (Some("Bearer tok-12"), false),
            (Some("bearer tok-123"), false),
            (Some("tok-123"), false),
            (Some("Basic dG9rLTEyMw=="), false),
            (None, false),
        ];
        for (header, ok) in cases {
            assert_eq!(bearer_matches(*header, "tok-123"), *ok, "{header:?}");
        }
        // An unset token (channel disabled) admits nobody, not even an empty bearer.
        assert!(!bearer_matches(Some("Bearer "), ""));
    }
}
