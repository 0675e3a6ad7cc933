//! `GET /metrics`: every metric in the Prometheus text format, behind `Authorization: Bearer
//! <metrics.token>` (member counts and points are business data). While the token is empty
//! the route does not exist and the path answers 404 like any unknown one.

use super::ApiError;
use crate::config::Secret;
use crate::signature::bearer_matches;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, HttpRequest, HttpResponse};
use prometheus_client::registry::Registry;
use std::sync::Arc;

struct Exposition {
    registry: Arc<Registry>,
    token: Secret,
}

/// Registers the route when `token` is set.
pub fn configure(cfg: &mut web::ServiceConfig, registry: Arc<Registry>, token: &Secret) {
    if !token.is_set() {
        return;
    }
    let exposition = web::Data::new(Exposition {
        registry,
        token: token.clone(),
    });
    cfg.service(
        web::resource("/metrics")
            .app_data(exposition)
            .route(web::get().to(metrics)),
    );
}

async fn metrics(
    req: HttpRequest,
    exposition: web::Data<Exposition>,
) -> Result<HttpResponse, ApiError> {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !bearer_matches(header, exposition.token.expose()) {
        return Err(ApiError::Unauthorized);
    }
    let text = crate::metrics::encode(&exposition.registry).map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type(crate::metrics::CONTENT_TYPE)
        .body(text))
}
