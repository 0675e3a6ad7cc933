//! Probes. `GET /healthz` (liveness): 200 while the process serves requests; it touches
//! nothing else, so it stays cheap. `GET /readyz` (readiness): 200 once the store is open and
//! the channel workers run, 503 while the service starts or stops, so a load balancer sends
//! no new work to an instance that is draining.

use actix_web::{web, HttpResponse};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Whether the service takes work; shared by start-up (which turns it on when everything
/// runs), the graceful stop (which turns it off first) and `/readyz`.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz));
}

/// Registers `GET /readyz`, answering from `readiness`.
pub fn configure_readiness(cfg: &mut web::ServiceConfig, readiness: Readiness) {
    cfg.route(
        "/readyz",
        web::get().to(move || {
            let ready = readiness.is_ready();
            async move { readyz(ready) }
        }),
    );
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().finish()
}

fn readyz(ready: bool) -> HttpResponse {
    if ready {
        HttpResponse::Ok().body("ready")
    } else {
        HttpResponse::ServiceUnavailable().body("not ready: starting or stopping")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::{call_service, init_service, TestRequest};
    use actix_web::App;

    #[actix_web::test]
    async fn readyz_follows_the_flag_and_healthz_does_not() {
        let readiness = Readiness::default();
        let r = readiness.clone();
        let app = init_service(
            App::new()
                .configure(configure)
                .configure(|cfg| configure_readiness(cfg, r)),
        )
        .await;
        let status = |path: &'static str| {
            let app = &app;
            async move {
                let req = TestRequest::get().uri(path).to_request();
                call_service(app, req).await.status().as_u16()
            }
        };
        assert_eq!(
            status("/readyz").await,
            503,
            "not ready before start-up says so"
        );
        assert_eq!(status("/healthz").await, 200);
        readiness.set(true);
        assert_eq!(status("/readyz").await, 200);
        readiness.set(false);
        assert_eq!(status("/readyz").await, 503);
        assert_eq!(status("/healthz").await, 200);
    }
}
