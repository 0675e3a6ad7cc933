//! The HTTP surface shared by all routes: health, admin, body size and time limits, and the one
//! error mapping ([`ApiError`]). Chat channels register their own routes next to these.

pub mod admin;
mod body;
pub mod error;
pub mod health;
mod metrics;
pub mod order_webhooks;
mod server;
pub mod shop_webhook;
pub mod unsubscribe;

pub use error::ApiError;
pub use server::{server, Routes};

use crate::config::Secret;
use crate::limits::BodyLimit;
use crate::program::Program;
use actix_web::error::JsonPayloadError;
use actix_web::web;
use std::sync::Arc;

/// Registers health and (when its token is set) admin, plus the extractor configs.
/// `max_body`: `server.max_body_bytes`, the largest body any of these routes reads.
pub fn configure(
    cfg: &mut web::ServiceConfig,
    program: Arc<Program>,
    admin_token: &Secret,
    max_body: usize,
    messenger: Option<Arc<crate::channels::messenger::Messenger>>,
    mailroom: Arc<crate::email::mailroom::Mailroom>,
) {
    extractor_limits(cfg, max_body);
    health::configure(cfg);
    if admin_token.is_set() {
        admin::configure(cfg, program, admin_token.clone(), messenger, mailroom);
    }
}

/// Body limits and extractor error handlers, for every route of the app. A body whose
/// `Content-Length` is above the limit is refused before any of it is read; a chunked one as
/// soon as it passes the limit.
fn extractor_limits(cfg: &mut web::ServiceConfig, max_body: usize) {
    cfg.app_data(json_config(max_body))
        .app_data(web::QueryConfig::default().error_handler(|e, _| bad_request(&e).into()))
        .app_data(web::PayloadConfig::new(max_body))
        .app_data(BodyLimit(max_body));
}

fn json_config(max_body: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(max_body)
        .error_handler(move |e, _| {
            let api = match e {
                JsonPayloadError::Overflow { .. }
                | JsonPayloadError::OverflowKnownLength { .. } => {
                    ApiError::PayloadTooLarge { limit: max_body }
                }
                other => bad_request(&other),
            };
            api.into()
        })
}

fn bad_request(e: &dyn std::fmt::Display) -> ApiError {
    ApiError::BadRequest(e.to_string())
}
