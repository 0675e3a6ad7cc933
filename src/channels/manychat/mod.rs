//! ManyChat Dynamic Block endpoints answering in the v2 response format.
//!
//! ManyChat signs nothing, so every request must carry `Authorization: Bearer <manychat.token>`
//! (the flow author sets the header in the Dynamic Block). The body is ManyChat's
//! `Full Contact Data` or the flat payload of one of our own callbacks; see [`request`].
//! Each endpoint runs one engine flow statelessly: whatever a flow collected so far travels in
//! the callbacks we hand back to ManyChat, not in our store. See [`response`] for rendering.

mod endpoint;
mod error;
mod handlers;
mod limited;
pub mod request;
pub mod response;
mod sending;
pub mod v2;

pub use endpoint::Endpoint;
pub use error::ManychatError;
pub use sending::SendContent;

use super::window::InboundWindow;
use crate::config::Secret;
use crate::flows::Engine;
use actix_web::{web, HttpRequest};
use std::sync::Arc;

pub struct Manychat {
    token: Secret,
    /// `server.public_url` without a trailing slash; callbacks point here.
    public_url: String,
    engine: Arc<Engine>,
    /// The runtime the service was built on, which lives until the process ends. Turns run
    /// there rather than on the actix worker that took the request: the HTTP client's pooled
    /// connections (to the shop) are tasks of the runtime that opened them, and an actix
    /// worker's runtime ends at shutdown as soon as that worker is idle, taking its
    /// connections, and any other worker's request in flight on one of them, down with it.
    runtime: tokio::runtime::Handle,
    /// Who called in the last 24 hours: ManyChat sends them news without a tag only then.
    window: Arc<InboundWindow>,
}

impl Manychat {
    /// Call it on the runtime that serves the process (it keeps that runtime's handle).
    pub fn new(token: Secret, public_url: String, engine: Arc<Engine>) -> Arc<Self> {
        let public_url = public_url.trim_end_matches('/').to_owned();
        if !public_url.starts_with("https://") {
            // ManyChat only calls HTTPS URLs back, so quick replies and typed answers would fail.
            tracing::warn!(
                public_url,
                "server.public_url is not https; ManyChat callbacks will not work"
            );
        }
        let window = Arc::new(InboundWindow::new(Arc::clone(engine.program().clock())));
        Arc::new(Manychat {
            token,
            public_url,
            engine,
            runtime: tokio::runtime::Handle::current(),
            window,
        })
    }

    /// Who called in the last 24 hours. A Dynamic Block call is mostly the contact's doing (an
    /// automation may make one too); ManyChat's own check (error 3011) catches the rest.
    pub fn window(&self) -> Arc<InboundWindow> {
        Arc::clone(&self.window)
    }

    /// Registers `POST /manychat/{join,claim,balance,rewards,redeem,help}`.
    pub fn configure(self: &Arc<Self>, cfg: &mut web::ServiceConfig) {
        for endpoint in Endpoint::ALL {
            let this = Arc::clone(self);
            cfg.route(
                endpoint.path(),
                web::post().to(move |req: HttpRequest, body: web::Bytes| {
                    let this = Arc::clone(&this);
                    async move { handlers::handle(&this, endpoint, &req, &body).await }
                }),
            );
        }
    }
}
