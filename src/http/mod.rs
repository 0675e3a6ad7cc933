//! The HTTP surface shared by all routes: health, admin, extractor limits and the one error
//! mapping ([`ApiError`]). Chat channels register their own routes next to these.

pub mod admin;
pub mod error;
pub mod health;
mod server;
pub mod shop_webhook;

pub use error::ApiError;
pub use server::{server, Routes};

use crate::config::Secret;
use crate::program::Program;
use actix_web::error::JsonPayloadError;
use actix_web::web;
use std::sync::Arc;

/// Largest request body we read. Chat payloads are a few KiB; this stops abuse early.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Registers health and (when its token is set) admin, plus the extractor configs.
pub fn configure(cfg: &mut web::ServiceConfig, program: Arc<Program>, admin_token: &Secret) {
    limits(cfg);
    health::configure(cfg);
    if admin_token.is_set() {
        admin::configure(cfg, program, admin_token.clone());
    }
}

/// Body limits and extractor error handlers, for every route of the app.
fn limits(cfg: &mut web::ServiceConfig) {
    cfg.app_data(json_config())
        .app_data(web::QueryConfig::default().error_handler(|e, _| bad_request(&e).into()))
        .app_data(web::PayloadConfig::new(BODY_LIMIT));
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
