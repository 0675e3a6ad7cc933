//! ManyChat Dynamic Block endpoints answering in the v2 response format.
//!
//! TEMPORARY stub (wiring branch only) with the agreed signatures; the manychat engineer's
//! module replaces this file at merge.

use crate::config::Secret;
use crate::flows::Engine;
use actix_web::web;
use std::sync::Arc;

pub struct Manychat {
    _token: Secret,
    _public_url: String,
    _engine: Arc<Engine>,
}

impl Manychat {
    pub fn new(token: Secret, public_url: String, engine: Arc<Engine>) -> Arc<Self> {
        Arc::new(Manychat {
            _token: token,
            _public_url: public_url,
            _engine: engine,
        })
    }

    /// Registers the Dynamic Block routes.
    pub fn configure(self: &Arc<Self>, _cfg: &mut web::ServiceConfig) {}
}
