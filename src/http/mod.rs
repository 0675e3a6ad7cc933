//! The HTTP surface shared by all routes: health, admin, extractor limits and the one error
//! mapping ([`ApiError`]). Chat channels register their own routes next to these.

pub mod admin;
pub mod error;
pub mod health;

pub use error::ApiError;

use crate::config::Secret;
use crate::program::Program;
use actix_web::body::BoxBody;
use actix_web::dev::ServiceResponse;
use actix_web::error::JsonPayloadError;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use std::sync::Arc;

/// Largest request body we read. Chat payloads are a few KiB; this stops abuse early.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Registers health and (when its token is set) admin, plus the extractor configs.
pub fn configure(cfg: &mut web::ServiceConfig, program: Arc<Program>, admin_token: &Secret) {
    cfg.app_data(json_config())
        .app_data(web::QueryConfig::default().error_handler(|e, _| bad_request(&e).into()))
        .app_data(web::PayloadConfig::new(BODY_LIMIT));
    health::configure(cfg);
    if admin_token.is_set() {
        admin::configure(cfg, program, admin_token.clone());
    }
}

fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(BODY_LIMIT)
        .error_handler(|e, _| {
            let api = match e {
                JsonPayloadError::Overflow { .. }
                | JsonPayloadError::OverflowKnownLength { .. } => {
                    ApiError::PayloadTooLarge { limit: BODY_LIMIT }
                }
                other => bad_request(&other),
            };
            api.into()
        })
}

fn bad_request(e: &dyn std::fmt::Display) -> ApiError {
    ApiError::BadRequest(e.to_string())
}

/// The answer for any route nobody registered, including a disabled channel's.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    tracing::debug!(path = req.path(), "no such route");
    Err(ApiError::NotFound("no such route".into()))
}

/// `web::Bytes` bodies (signed webhooks) have no error handler of their own in actix; this
/// rewrites their plain-text 413 into the [`ApiError`] shape. JSON answers pass untouched.
pub fn oversized_bodies_as_api_errors() -> ErrorHandlers<BoxBody> {
    ErrorHandlers::new().handler(
        actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
        |res: ServiceResponse| {
            let is_json = res
                .headers()
                .get(CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
            if is_json {
                return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
            }
            let (req, _) = res.into_parts();
            let body: HttpResponse =
                ApiError::PayloadTooLarge { limit: BODY_LIMIT }.error_response();
            Ok(ErrorHandlerResponse::Response(
                ServiceResponse::new(req, body).map_into_right_body(),
            ))
        },
    )
}
