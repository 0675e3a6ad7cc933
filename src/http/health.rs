//! `GET /healthz`: 200 while the process serves requests. Load balancers and the test harness
//! poll it; it touches nothing else, so it stays cheap.

use actix_web::{web, HttpResponse};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().finish()
}
