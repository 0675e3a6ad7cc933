//! Messenger Platform: webhook intake, durable per-customer processing, Send API delivery.
//!
//! TEMPORARY stub (wiring branch only) with the agreed signatures; the messenger engineer's
//! module replaces this file at merge.

use crate::config::MessengerSettings;
use crate::flows::Engine;
use crate::store::EventQueue;
use actix_web::web;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub struct Messenger {
    _settings: MessengerSettings,
    _engine: Arc<Engine>,
    _queue: Arc<dyn EventQueue>,
}

impl Messenger {
    pub fn new(
        settings: MessengerSettings,
        engine: Arc<Engine>,
        queue: Arc<dyn EventQueue>,
    ) -> Arc<Self> {
        Arc::new(Messenger {
            _settings: settings,
            _engine: engine,
            _queue: queue,
        })
    }

    /// Registers the webhook routes.
    pub fn configure(self: &Arc<Self>, _cfg: &mut web::ServiceConfig) {}

    /// Starts the background workers; they stop when `shutdown` is cancelled.
    pub fn spawn(self: &Arc<Self>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move { shutdown.cancelled().await })
    }
}
