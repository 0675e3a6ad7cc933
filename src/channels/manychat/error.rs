//! Why a ManyChat request was refused, and the one place that maps it to an HTTP status and a
//! JSON body. Engine failures and rate limits are not here: ManyChat shows the contact nothing
//! of an error status, so those answer 200 with a message instead (see `handlers`).

use crate::domain::DomainError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

#[derive(Debug, thiserror::Error)]
pub enum ManychatError {
    #[error("missing or wrong `Authorization: Bearer` token")]
    Unauthorized,
    #[error("body is not valid JSON: {0}")]
    MalformedJson(#[source] serde_json::Error),
    #[error("body must be a JSON object (ManyChat's Full Contact Data or our callback payload)")]
    NotAnObject,
    #[error("no subscriber id: send `id` (Full Contact Data) or `subscriber_id`")]
    MissingSubscriberId,
    #[error("`{field}` must be a string or a whole number")]
    BadSubscriberIdType { field: &'static str },
    #[error("invalid subscriber id")]
    InvalidSubscriberId(#[source] DomainError),
}

impl ManychatError {
    /// A stable code for the JSON body, so flow authors can tell failures apart.
    pub fn code(&self) -> &'static str {
        match self {
            ManychatError::Unauthorized => "unauthorized",
            ManychatError::MalformedJson(_) => "malformed_json",
            ManychatError::NotAnObject => "not_an_object",
            ManychatError::MissingSubscriberId => "missing_subscriber_id",
            ManychatError::BadSubscriberIdType { .. } | ManychatError::InvalidSubscriberId(_) => {
                "invalid_subscriber_id"
            }
        }
    }
}

impl ResponseError for ManychatError {
    fn status_code(&self) -> StatusCode {
        match self {
            ManychatError::Unauthorized => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            ManychatError::InvalidSubscriberId(e) => format!("{self}: {e}"),
            _ => self.to_string(),
        };
        let mut res = HttpResponse::build(self.status_code());
        if let ManychatError::Unauthorized = self {
            res.insert_header(("WWW-Authenticate", "Bearer"));
        }
        res.json(serde_json::json!({ "error": self.code(), "message": message }))
    }
}
