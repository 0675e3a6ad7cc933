//! Graceful shutdown: a signal or a [`ShutdownHandle`] stops the HTTP server (which drains),
//! then the application stops its workers and closes the store last.

use crate::store::SledStore;
use actix_web::dev::ServerHandle;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Asks a running [`Application`] to stop gracefully, as SIGTERM does.
#[derive(Debug, Clone)]
pub struct ShutdownHandle(CancellationToken);

impl ShutdownHandle {
    pub(super) fn new(token: CancellationToken) -> Self {
        ShutdownHandle(token)
    }

    pub fn shutdown(&self) {
        self.0.cancel();
    }
}

pub(super) async fn stop_on_request(stop: CancellationToken, server: ServerHandle) {
    tokio::select! {
        () = stop.cancelled() => tracing::info!("shutdown requested; draining"),
        () = terminate_signal() => tracing::info!("signal received; draining"),
    }
    server.stop(true).await;
}

async fn terminate_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Flushes and closes the store once nobody else holds it.
pub(super) async fn close_store(store: Arc<SledStore>) {
    // actix workers drop their handlers (and store clones) just after the server future
    // resolves, on their own threads. Waiting (bounded) lets the final flush cover every write
    // and frees sled's file lock for a restart in the same process.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while Arc::strong_count(&store) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    if Arc::strong_count(&store) > 1 {
        tracing::warn!(
            "the store is still in use at shutdown; it closes when the last user drops it"
        );
    }
    if let Err(e) = store.flush_now() {
        tracing::error!(error = %e, "final store flush failed");
    }
}
