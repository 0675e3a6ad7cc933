//! One request: authenticate (before looking at the body), parse, run the endpoint's flow and
//! render the turn. Engine failures still answer 200 with an apology, because ManyChat shows
//! our reply to the customer and an error status would leave them with silence.

use super::endpoint::Endpoint;
use super::error::ManychatError;
use super::request::ContactRequest;
use super::response::{apology, render, Callbacks};
use super::Manychat;
use crate::domain::{Channel, ChatIdentity};
use crate::signature::bearer_matches;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{HttpRequest, HttpResponse};
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
    let contact = ContactRequest::parse(body)?;
    let who = ChatIdentity::new(Channel::Manychat, &contact.subscriber_id)
        .map_err(ManychatError::InvalidSubscriberId)?;
    tracing::Span::current().record("subscriber.id", who.id.as_str());

    let vars = contact.vars_for(endpoint);
    let v2 = match mc
        .engine
        .run(endpoint.flow(), &who, &contact.profile, vars)
        .await
    {
        Ok(turn) => {
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
