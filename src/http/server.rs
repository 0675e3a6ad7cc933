//! The actix `HttpServer`: one `App` per worker with health, admin, the enabled channels, and
//! a JSON 404 for everything else (including a disabled channel's routes). It also sets the
//! connection timeouts that keep slow clients from holding connections (`[server]`).

use super::body::{limit_body_time, BodyTimeout};
use super::ApiError;
use crate::channels::{manychat::Manychat, messenger::Messenger};
use crate::config::{Secret, ServerSettings};
use crate::limits::BodyLimit;
use crate::program::Program;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::{header::CONTENT_TYPE, KeepAlive, StatusCode};
use actix_web::middleware::{from_fn, ErrorHandlerResponse, ErrorHandlers, Next};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer, ResponseError};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

/// What the routes need. A channel that is `None` is disabled: its routes answer 404.
pub struct Routes {
    pub program: Arc<Program>,
    pub admin_token: Secret,
    /// Renders member mail for the admin preview.
    pub mailroom: Arc<crate::email::mailroom::Mailroom>,
    /// `shop.secret`: signs the shop's order webhook; empty disables it.
    pub shop_secret: Secret,
    /// The secrets of Shopify's or WooCommerce's order webhooks.
    pub webhook_keys: super::order_webhooks::WebhookKeys,
    pub messenger: Option<Arc<Messenger>>,
    pub manychat: Option<Arc<Manychat>>,
    /// What `/metrics` shows; `metrics_token` empty disables the route.
    pub metrics: Arc<prometheus_client::registry::Registry>,
    pub metrics_token: Secret,
    /// What `/readyz` answers from.
    pub readiness: super::health::Readiness,
}

/// Serves on an already bound `listener`. Signals are left to the caller, which stops the
/// background workers and the store after the drain; a graceful stop waits at most
/// `server.shutdown_timeout_secs` for requests in flight.
pub fn server(
    listener: TcpListener,
    routes: Routes,
    limits: &ServerSettings,
) -> std::io::Result<Server> {
    let routes = Arc::new(routes);
    let max_body = limits.max_body_bytes;
    let body_timeout = BodyTimeout(limits.body_timeout);
    let keep_alive = if limits.keep_alive.is_zero() {
        KeepAlive::Disabled
    } else {
        KeepAlive::Timeout(limits.keep_alive)
    };
    let server = HttpServer::new(move || {
        let r = Arc::clone(&routes);
        // Middleware order, inside out: the 413 shape, the body deadline (which must see the
        // final response), then the log line.
        App::new()
            .app_data(body_timeout)
            .wrap(oversized_bodies_as_api_errors(max_body))
            .wrap(from_fn(limit_body_time))
            .wrap(from_fn(log_request))
            .configure(|cfg| {
                super::configure(
                    cfg,
                    Arc::clone(&r.program),
                    &r.admin_token,
                    max_body,
                    r.messenger.clone(),
                    Arc::clone(&r.mailroom),
                )
            })
            .configure(|cfg| {
                super::shop_webhook::configure(cfg, Arc::clone(&r.program), &r.shop_secret)
            })
            .configure(|cfg| {
                super::order_webhooks::configure(cfg, Arc::clone(&r.program), &r.webhook_keys)
            })
            .configure(|cfg| super::unsubscribe::configure(cfg, Arc::clone(&r.program)))
            .configure(|cfg| super::health::configure_readiness(cfg, r.readiness.clone()))
            .configure(|cfg| {
                super::metrics::configure(cfg, Arc::clone(&r.metrics), &r.metrics_token)
            })
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
    .shutdown_timeout(limits.shutdown_timeout.as_secs().max(1))
    // Slowloris: the request line and headers must arrive within this, else 408 and close.
    .client_request_timeout(limits.header_timeout)
    .client_disconnect_timeout(limits.disconnect_timeout)
    .keep_alive(keep_alive)
    .listen(listener)?
    .run();
    Ok(server)
}

/// One line per request: method, path (never the query: it may hold an email), status, time.
async fn log_request<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<B>, actix_web::Error> {
    let (method, path) = (req.method().clone(), req.path().to_owned());
    let started = Instant::now();
    let res = next.call(req).await?;
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let status = res.status().as_u16();
    // Probes and scrapes come every few seconds; at info they would drown the rest.
    if matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics") {
        tracing::debug!(http.method = %method, http.path = %path, http.status = status, elapsed_ms, "request");
    } else {
        tracing::info!(http.method = %method, http.path = %path, http.status = status, elapsed_ms, "request");
    }
    Ok(res)
}

/// The answer for any route nobody registered.
async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    tracing::debug!(path = req.path(), "no such route");
    Err(ApiError::NotFound("no such route".into()))
}

/// `web::Bytes` bodies (signed webhooks) have no error handler of their own in actix; this
/// rewrites their plain-text 413 into the [`ApiError`] shape, naming the route's limit (a
/// [`BodyLimit`] next to its `PayloadConfig`, else `max_body`). JSON answers pass untouched.
fn oversized_bodies_as_api_errors(max_body: usize) -> ErrorHandlers<BoxBody> {
    ErrorHandlers::new().handler(
        StatusCode::PAYLOAD_TOO_LARGE,
        move |res: ServiceResponse| {
            let is_json = res
                .headers()
                .get(CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
            if is_json {
                return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
            }
            let (req, _) = res.into_parts();
            let limit = req.app_data::<BodyLimit>().map_or(max_body, |l| l.0);
            let body = ApiError::PayloadTooLarge { limit }.error_response();
            Ok(ErrorHandlerResponse::Response(
                ServiceResponse::new(req, body).map_into_right_body(),
            ))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::{call_service, init_service, read_body_json, TestRequest};
    use serde_json::Value;

    const BODY_LIMIT: usize = 64 * 1024;

    async fn answer(req: TestRequest) -> (u16, Value) {
        let app = init_service(
            App::new()
                .wrap(oversized_bodies_as_api_errors(BODY_LIMIT))
                .configure(|cfg| super::super::extractor_limits(cfg, BODY_LIMIT))
                .route(
                    "/bytes",
                    web::post().to(|b: web::Bytes| async move { b.len().to_string() }),
                )
                .route(
                    "/json",
                    web::post().to(|j: web::Json<Value>| async move { j.to_string() }),
                )
                .route(
                    "/query",
                    web::get()
                        .to(|q: web::Query<Vec<(String, u8)>>| async move { q.len().to_string() }),
                )
                .default_service(web::to(not_found)),
        )
        .await;
        let res = call_service(&app, req.to_request()).await;
        let status = res.status().as_u16();
        (status, read_body_json(res).await)
    }

    #[actix_web::test]
    async fn every_extractor_failure_has_the_api_error_shape() {
        let big = vec![b' '; BODY_LIMIT + 1];
        let json = || TestRequest::post().insert_header((CONTENT_TYPE, "application/json"));
        let cases = [
            (
                TestRequest::post().uri("/bytes").set_payload(big.clone()),
                413,
                "payload_too_large",
            ),
            (
                json().uri("/json").set_payload(big),
                413,
                "payload_too_large",
            ),
            (json().uri("/json").set_payload("{nope"), 400, "bad_request"),
            (TestRequest::get().uri("/query?a=300"), 400, "bad_request"),
            (TestRequest::get().uri("/elsewhere"), 404, "not_found"),
        ];
        for (i, (req, status, code)) in cases.into_iter().enumerate() {
            let (got, body) = answer(req).await;
            assert_eq!(
                (got, body["code"].as_str()),
                (status, Some(code)),
                "case {i}: {body}"
            );
        }
    }
}
