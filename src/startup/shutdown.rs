//! Graceful shutdown. A signal (SIGTERM, SIGINT) or a [`ShutdownHandle`] stops the HTTP server:
//! it stops accepting connections at once and lets requests in flight finish. Then the
//! application stops its background workers at a safe point, flushes and closes the store, and
//! writes sled's snapshot of it, which spares the next start recovering the whole log. All of it
//! shares one budget, `server.shutdown_timeout_secs`, counted from the request to
//! stop: a worker still busy when it runs out (say, waiting on a slow Send API) is stopped
//! where it is. That loses nothing, because everything a worker has not finished is in the
//! store (an event not marked done runs again, a reply not marked delivered is sent again; see
//! `docs/crash-safety.md`). A second signal spends what is left of the budget at once.

use crate::http::health::Readiness;
use crate::store::{SledStore, StoreError};
use actix_web::dev::ServerHandle;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// However late it is, holders of the store get this long to let go of it before the final
/// flush, so that an in-process restart (the tests) can open it again.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// Asks a running [`Application`](super::Application) to stop gracefully, as SIGTERM does.
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

/// When the stop was requested, as [`stop_on_request`] noted it; now if the server stopped
/// by itself (it failed).
pub(super) fn requested_at(mut requested: oneshot::Receiver<Instant>) -> Instant {
    requested.try_recv().unwrap_or_else(|_| Instant::now())
}

/// Waits for a stop request, notes its time in `requested`, turns `readiness` off, then stops
/// the server gracefully (it stops accepting at once and drains for up to its own shutdown
/// timeout). A second signal cancels `hurry`: the server, the workers and the store stop
/// without waiting any longer.
pub(super) async fn stop_on_request(
    stop: CancellationToken,
    server: ServerHandle,
    requested: oneshot::Sender<Instant>,
    hurry: CancellationToken,
    mut signals: Signals,
    readiness: Readiness,
) {
    tokio::select! {
        () = stop.cancelled() => tracing::info!("shutdown requested; draining"),
        () = signals.next() => tracing::info!("signal received; draining"),
    }
    // First: a request on a connection still open during the drain hears that we stop.
    readiness.set(false);
    let _ = requested.send(Instant::now());
    tokio::select! {
        () = server.stop(true) => {}
        () = signals.next() => {
            tracing::warn!("second signal: stopping without waiting for work in flight");
            hurry.cancel();
            server.stop(false).await;
        }
    }
    // The workers and the store may still be stopping: a second signal still hurries them.
    signals.next().await;
    tracing::warn!("second signal: stopping without waiting for work in flight");
    hurry.cancel();
}

/// SIGTERM and SIGINT, listened for from the moment the application is built. A handler
/// installed only when the stop watcher first runs would leave a window, right after start,
/// in which SIGTERM kills the process the default way (exit by signal, nothing drained).
pub(super) struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Installs the handlers now; needs a tokio runtime.
    pub(super) fn listen() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Signals {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// The next SIGTERM or SIGINT (never, for one whose handler could not be installed).
    async fn next(&mut self) {
        #[cfg(unix)]
        {
            async fn one(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                () = one(&mut self.term) => {},
                () = one(&mut self.int) => {},
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Waits for the background workers (already told to stop) until `deadline` or a second
/// signal; any still running then are aborted where they are.
pub(super) async fn stop_workers(
    mut tasks: Vec<JoinHandle<()>>,
    deadline: Instant,
    hurry: &CancellationToken,
) {
    let all = futures_util::future::join_all(tasks.iter_mut());
    let finished = tokio::select! {
        done = tokio::time::timeout_at(deadline, all) => done.ok(),
        () = hurry.cancelled() => None,
    };
    match finished {
        Some(results) => {
            for e in results.into_iter().filter_map(Result::err) {
                tracing::error!(error = %e, "a background worker panicked");
            }
        }
        None => {
            // A second signal lands here too, often with nothing left running.
            let running = tasks.iter().filter(|t| !t.is_finished()).count();
            if running > 0 {
                tracing::warn!(
                    workers = running,
                    "workers still busy at the shutdown deadline; stopped where they were \
                     (their unfinished events and replies stay queued for the next start)"
                );
            }
            for task in &tasks {
                task.abort();
            }
        }
    }
}

/// Flushes and closes the store once nobody else holds it, or at `deadline` (or a second
/// signal) whichever comes first, then writes sled's snapshot of it until `deadline`
/// ([`crate::store::ClosedStore::write_snapshot`]: the next start reads it instead of recovering everything
/// this run wrote). An error means the last writes may not be on disk; the snapshot is only a
/// head start for the next start, so its failing or running out of time is a warning.
pub(super) async fn close_store(
    store: Arc<SledStore>,
    deadline: Instant,
    hurry: &CancellationToken,
) -> Result<(), StoreError> {
    // actix workers drop their handlers (and store clones) just after the server future
    // resolves, on their own threads, and aborted tasks drop theirs when next polled. Waiting
    // for them lets the final flush cover every write and frees sled's file lock for a restart
    // in the same process.
    let deadline = deadline.max(Instant::now() + CLOSE_GRACE);
    while Arc::strong_count(&store) > 1 && Instant::now() < deadline && !hurry.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let store = match Arc::try_unwrap(store) {
        Ok(store) => store,
        Err(shared) => {
            tracing::warn!(
                "the store is still in use at shutdown; it closes when the last user drops it \
                 (no snapshot: the next start recovers the log)"
            );
            // Every store write already waits for its own flush; this one is for anything else.
            let flushed = tokio::task::spawn_blocking(move || shared.flush_now()).await;
            return final_flush(flushed.unwrap_or_else(|e| Err(StoreError::Backend(Box::new(e)))));
        }
    };
    let closed = tokio::task::spawn_blocking(move || store.close()).await;
    let closed = final_flush(closed.unwrap_or_else(|e| Err(StoreError::Backend(Box::new(e)))))?;
    // A thread of its own, not `spawn_blocking`: a snapshot still being written at the
    // deadline is left behind, and the runtime would wait for a blocking task at exit.
    let (snapshot_tx, snapshot_rx) = oneshot::channel();
    let writing = std::thread::Builder::new()
        .name("store-snapshot".into())
        .spawn(move || {
            let _ = snapshot_tx.send(closed.write_snapshot());
        });
    if let Err(e) = writing {
        tracing::warn!(error = %e, "could not start writing the store's snapshot; the next start recovers the log instead");
        return Ok(());
    }
    let written = tokio::select! {
        written = tokio::time::timeout_at(deadline, snapshot_rx) => written.ok(),
        () = hurry.cancelled() => None,
    };
    match written {
        Some(Ok(Ok(took))) => tracing::info!(
            elapsed_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            "store snapshot written"
        ),
        Some(Ok(Err(e))) => tracing::warn!(
            error = %e,
            "could not write the store's snapshot; the next start recovers the log instead"
        ),
        Some(Err(_)) => tracing::warn!(
            "writing the store's snapshot panicked; the next start recovers the log instead"
        ),
        None => tracing::warn!(
            "the store's snapshot was not done by the shutdown deadline (or a second signal); \
             the next start recovers the log instead"
        ),
    }
    Ok(())
}

/// The final flush's result, logged when it failed.
fn final_flush<T>(result: Result<T, StoreError>) -> Result<T, StoreError> {
    if let Err(e) = &result {
        tracing::error!(error = %e, "final store flush failed");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{web, App, HttpResponse, HttpServer};
    use tokio::sync::Notify;

    #[tokio::test]
    async fn readiness_is_off_from_the_stop_request_while_requests_drain() {
        let readiness = Readiness::default();
        readiness.set(true);
        let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let (e, r) = (Arc::clone(&entered), Arc::clone(&release));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/slow", listener.local_addr().unwrap());
        let server = HttpServer::new(move || {
            let (e, r) = (Arc::clone(&e), Arc::clone(&r));
            App::new().route(
                "/slow",
                web::get().to(move || {
                    let (e, r) = (Arc::clone(&e), Arc::clone(&r));
                    async move {
                        e.notify_one();
                        r.notified().await;
                        HttpResponse::Ok().finish()
                    }
                }),
            )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let (stop, hurry) = (CancellationToken::new(), CancellationToken::new());
        let (requested, _when) = oneshot::channel();
        let no_signals = Signals {
            term: None,
            int: None,
        };
        let watcher = tokio::spawn(stop_on_request(
            stop.clone(),
            server.handle(),
            requested,
            hurry,
            no_signals,
            readiness.clone(),
        ));
        let served = tokio::spawn(server);
        let slow = tokio::spawn(reqwest::get(url));
        entered.notified().await;
        stop.cancel();
        let deadline = Instant::now() + Duration::from_secs(2);
        while readiness.is_ready() {
            assert!(
                Instant::now() < deadline,
                "readiness stayed on after the stop request"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert!(
            !slow.is_finished(),
            "the request in flight still holds the drain"
        );
        assert!(!served.is_finished());
        release.notify_one();
        assert_eq!(slow.await.unwrap().unwrap().status(), 200);
        served.await.unwrap().unwrap();
        watcher.abort();
    }
}
