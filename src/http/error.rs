//! `ApiError`: the one mapping from failures to an HTTP status and a JSON body
//! `{"code": "<stable_code>", "message": "<human text>"}`. Extractor failures (bad JSON, bad
//! query, oversized bodies) are routed here too, so every error a client sees has one shape.

use crate::program::ProgramError;
use actix_web::http::header::RETRY_AFTER;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use std::error::Error as StdError;
use std::fmt;

#[derive(thiserror::Error)]
pub enum ApiError {
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// A signed webhook whose signature header is missing or does not match the body.
    #[error("missing or wrong signature")]
    BadSignature,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    /// Well-formed, but an event this endpoint does not act on (a typo must not pass as 200).
    #[error("{0}")]
    UnsupportedEvent(String),
    /// A debit larger than the balance; nothing changed.
    #[error("{0}")]
    InsufficientPoints(String),
    /// An `Idempotency-Key` sent before with a different request; nothing changed.
    #[error("this Idempotency-Key was used for a different request; use a new key")]
    IdempotencyKeyReused,
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The client took longer than `server.body_timeout_ms` to send its body.
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    /// The shop could not be asked (down, slow, refusing our credentials): try again later.
    #[error("{0}")]
    ShopUnavailable(String),
    #[error("too many requests; retry after {retry_after_secs} s")]
    TooManyRequests { retry_after_secs: u64 },
    /// Anything the client cannot fix. The body stays generic; the log gets the source chain.
    #[error("internal error")]
    Internal(#[source] Box<dyn StdError + Send + Sync>),
}

impl ApiError {
    pub fn internal(e: impl StdError + Send + Sync + 'static) -> Self {
        ApiError::Internal(Box::new(e))
    }

    /// The stable, machine-readable code clients can match on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::BadSignature => "bad_signature",
            ApiError::NotFound(_) => "not_found",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::UnsupportedEvent(_) => "unsupported_event",
            ApiError::InsufficientPoints(_) => "insufficient_points",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::TooManyRequests { .. } => "rate_limited",
            ApiError::ShopUnavailable(_) => "shop_unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<ProgramError> for ApiError {
    fn from(e: ProgramError) -> Self {
        ApiError::internal(e)
    }
}

/// `Debug` prints the whole source chain, for logs.
impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        let mut source = self.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: String,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized | ApiError::BadSignature => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedEvent(_) | ApiError::IdempotencyKeyReused => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::InsufficientPoints(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::ShopUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(_) = self {
            // Logged here, where it is turned into a response, and nowhere else.
            tracing::error!(error = ?self, "request failed");
        }
        let mut res = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unauthorized => {
                res.insert_header(("WWW-Authenticate", "Bearer"));
            }
            ApiError::TooManyRequests { retry_after_secs } => {
                res.insert_header((RETRY_AFTER, *retry_after_secs));
            }
            // The rest of that body may still be on its way; the connection is not reusable.
            ApiError::RequestTimeout => {
                res.force_close();
            }
            _ => {}
        }
        res.json(Body {
            code: self.code(),
            message: self.to_string(),
        })
    }
}

impl From<crate::limits::Limited> for ApiError {
    fn from(l: crate::limits::Limited) -> Self {
        ApiError::TooManyRequests {
            retry_after_secs: l.retry_after_secs(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    #[tokio::test]
    async fn internal_errors_hide_their_cause_from_the_client() {
        let e = ApiError::internal(std::io::Error::other("disk on fire at /var/secret"));
        assert!(format!("{e:?}").contains("disk on fire"));
        let res = e.error_response();
        assert_eq!(res.status(), 500);
        let body = to_bytes(res.into_body()).await.unwrap();
        assert_eq!(
            &body[..],
            br#"{"code":"internal","message":"internal error"}"#
        );
    }

    #[test]
    fn every_kind_has_its_status() {
        let cases = [
            (ApiError::Unauthorized, 401, "unauthorized"),
            (ApiError::BadSignature, 401, "bad_signature"),
            (
                ApiError::UnsupportedEvent("x".into()),
                422,
                "unsupported_event",
            ),
            (ApiError::NotFound("x".into()), 404, "not_found"),
            (
                ApiError::InsufficientPoints("x".into()),
                409,
                "insufficient_points",
            ),
            (
                ApiError::IdempotencyKeyReused,
                422,
                "idempotency_key_reused",
            ),
            (ApiError::BadRequest("x".into()), 400, "bad_request"),
            (
                ApiError::PayloadTooLarge { limit: 1 },
                413,
                "payload_too_large",
            ),
            (ApiError::RequestTimeout, 408, "request_timeout"),
            (
                ApiError::TooManyRequests {
                    retry_after_secs: 7,
                },
                429,
                "rate_limited",
            ),
        ];
        for (e, status, code) in cases {
            assert_eq!(e.status_code().as_u16(), status, "{code}");
            assert_eq!(e.code(), code);
        }
    }

    #[test]
    fn too_many_requests_says_when_to_retry() {
        let res = ApiError::TooManyRequests {
            retry_after_secs: 42,
        }
        .error_response();
        assert_eq!(res.headers().get(RETRY_AFTER).unwrap(), "42");
    }
}
