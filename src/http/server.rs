//! The actix `HttpServer`: one `App` per worker with health, admin, the enabled channels, and
//! a JSON 404 for everything else (including a disabled channel's routes).

use super::{ApiError, BODY_LIMIT};
use crate::channels::{manychat::Manychat, messenger::Messenger};
use crate::config::Secret;
use crate::program::Program;
use actix_web::body::BoxBody;
use actix_web::dev::{Server, ServiceResponse};
use actix_web::http::{header::CONTENT_TYPE, StatusCode};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer, ResponseError};
use std::net::TcpListener;
use std::sync::Arc;

/// What the routes need. A channel that is `None` is disabled: its routes answer 404.
pub struct Routes {
    pub program: Arc<Program>,
    pub admin_token: Secret,
    pub messenger: Option<Arc<Messenger>>,
    pub manychat: Option<Arc<Manychat>>,
}

/// Serves on an already bound `listener`. Signals are left to the caller, which stops the
/// background workers and the store after the drain.
pub fn server(listener: TcpListener, routes: Routes) -> std::io::Result<Server> {
    let routes = Arc::new(routes);
    let server = HttpServer::new(move || {
        let r = Arc::clone(&routes);
        App::new()
            .wrap(oversized_bodies_as_api_errors())
            .configure(|cfg| super::configure(cfg, Arc::clone(&r.program), &r.admin_token))
            .configure(|cfg| {
                if let Some(m) = &r.messenger {
                    m.configure(cfg);
                }
                if let Some(m) = &r.manychat {
                    m.configure(cfg);
                }
            })
            .default_service(web::to(not_found))
    })
    .disable_signals()
    .shutdown_timeout(10)
    .listen(listener)?
    .run();
    Ok(server)
}

/// The answer for any route nobody registered.
async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    tracing::debug!(path = req.path(), "no such route");
    Err(ApiError::NotFound("no such route".into()))
}

/// `web::Bytes` bodies (signed webhooks) have no error handler of their own in actix; this
/// rewrites their plain-text 413 into the [`ApiError`] shape. JSON answers pass untouched.
fn oversized_bodies_as_api_errors() -> ErrorHandlers<BoxBody> {
    ErrorHandlers::new().handler(StatusCode::PAYLOAD_TOO_LARGE, |res: ServiceResponse| {
        let is_json = res
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        if is_json {
            return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
        }
        let (req, _) = res.into_parts();
        let body = ApiError::PayloadTooLarge { limit: BODY_LIMIT }.error_response();
        Ok(ErrorHandlerResponse::Response(
            ServiceResponse::new(req, body).map_into_right_body(),
        ))
    })
}
