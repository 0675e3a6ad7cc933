//! Builds the application from settings; used by `main` and by the integration tests, so both
//! run the same wiring. [`Services`] is everything but the HTTP server (the terminal chat uses
//! it alone); [`Application`] adds the server, the channels and their background workers.

mod channels;
mod services;
mod shutdown;

pub use services::{open_store, Services};
pub use shutdown::ShutdownHandle;

use crate::config::Settings;
use crate::email::scheduler::Scheduler;
use crate::flows::Engine;
use crate::http;
use crate::http::health::Readiness;
use crate::metrics::{Metrics, StoreGauges};
use crate::program::{Program, ProgramError};
use crate::shop::ShopError;
use crate::store::{EventQueue, LoyaltyStore, SledStore, StoreError};
use actix_web::dev::Server;
use channels::Channels;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open the store at {path}{}", lock_hint(source))]
    Store {
        path: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("the shop is not usable (config section [shop])")]
    Shop(#[source] ShopError),
    /// The shop refused the credentials at start (or a setting names something it lacks).
    #[error("the shop refused us at start: check {key}")]
    ShopSettings {
        key: String,
        #[source]
        source: ShopError,
    },
    #[error("the conversation flows in {path} are not usable")]
    Flows {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("member email is not usable (config section [email])")]
    Email(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("could not restore coupons left pending by an earlier crash")]
    Recovery(#[source] ProgramError),
    #[error("cannot listen on {addr} (config key `server.bind`)")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP server failed")]
    Server(#[source] std::io::Error),
    #[error("the final store flush at shutdown failed; the last writes may not be on disk")]
    FinalFlush(#[source] StoreError),
}

/// sled lets one process open a store: say what to do when another holds it.
/// The wall clock, moved by `LOYALTY_TEST_CLOCK_OFFSET_SECS` when that is set: tests that run
/// the real binary "a month later" use it. A warning says so, so it cannot go unnoticed.
fn clock_from_env() -> Arc<dyn crate::clock::Clock> {
    match std::env::var("LOYALTY_TEST_CLOCK_OFFSET_SECS")
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
    {
        Some(secs) => {
            tracing::warn!(
                secs,
                "LOYALTY_TEST_CLOCK_OFFSET_SECS is set: verification and mail run on a moved clock"
            );
            Arc::new(crate::clock::ShiftedClock(chrono::Duration::seconds(secs)))
        }
        None => Arc::new(crate::clock::SystemClock),
    }
}

fn lock_hint(e: &StoreError) -> &'static str {
    let mut cause: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cause {
        if c.to_string().contains("could not acquire lock") {
            return " (another process holds it: stop the running loyalty-bot first)";
        }
        cause = c.source();
    }
    ""
}

/// A running (not yet served) application: the socket is bound, so [`Application::port`] is
/// valid before [`Application::run_until_stopped`] is awaited.
pub struct Application {
    port: u16,
    server: Server,
    stop: CancellationToken,
    workers: CancellationToken,
    background: Vec<JoinHandle<()>>,
    /// The chat channels' 24-hour windows, kept at a graceful stop for the next start.
    windows: Vec<(
        crate::domain::Channel,
        Arc<crate::channels::window::InboundWindow>,
    )>,
    store: Arc<SledStore>,
    program: Arc<Program>,
    engine: Arc<Engine>,
    /// `server.shutdown_timeout_secs`.
    shutdown_timeout: Duration,
    signals: shutdown::Signals,
    /// `/readyz`: on once everything runs, off from the start of a stop.
    readiness: Readiness,
}

impl Application {
    /// Opens everything, binds `server.bind` (port 0 picks a free one) and starts the channel
    /// workers. Serving starts with [`Application::run_until_stopped`].
    pub async fn build(settings: Settings) -> Result<Application, StartupError> {
        Self::build_with_clock(settings, clock_from_env()).await
    }

    /// [`Application::build`] with the clock verification codes and mail go by (tests).
    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> Result<Application, StartupError> {
        // First, before the socket accepts anything: see `shutdown::Signals`.
        let signals = shutdown::Signals::listen();
        let readiness = Readiness::default();
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Metrics::register(&mut registry);
        let Services {
            store,
            program,
            engine,
            mailroom,
        } = Services::open_with_clock(&settings, &metrics, Arc::clone(&clock)).await?;
        let bind_error = |source| StartupError::Bind {
            addr: settings.server.bind.to_string(),
            source,
        };
        let listener = TcpListener::bind(settings.server.bind).map_err(bind_error)?;
        let address = listener.local_addr().map_err(bind_error)?;
        let workers = CancellationToken::new();
        let mut channels = Channels::start(&settings, &engine, &store, &workers);
        if settings.email.enabled() {
            let scheduler = Scheduler::new(
                Arc::clone(&program),
                Arc::clone(&mailroom),
                &settings.email,
                clock,
            );
            channels
                .background
                .push(tokio::spawn(scheduler.run(workers.child_token())));
            tracing::info!(
                verify = settings.email.verifies(),
                every_days = settings.email.statement_every_days,
                "member email on"
            );
        } else {
            tracing::info!(
                empty = "email.smtp_url",
                "member email off: no statements, reminders or address verification"
            );
        }
        let (totals, queue): (Arc<dyn LoyaltyStore>, Arc<dyn EventQueue>) =
            (store.clone(), store.clone());
        registry.register_collector(Box::new(StoreGauges::new(totals, Some(queue))));
        let routes = http::Routes {
            program: Arc::clone(&program),
            admin_token: settings.admin.token.clone(),
            mailroom,
            shop_secret: settings.shop.secret.clone(),
            webhook_keys: http::order_webhooks::WebhookKeys::from_settings(&settings),
            messenger: channels.messenger,
            manychat: channels.manychat,
            metrics: Arc::new(registry),
            metrics_token: settings.metrics.token.clone(),
            readiness: readiness.clone(),
        };
        let shutdown_timeout = settings.server.shutdown_timeout;
        if settings.shop.timeout >= shutdown_timeout {
            tracing::warn!(
                shop.timeout_secs = settings.shop.timeout.as_secs(),
                server.shutdown_timeout_secs = shutdown_timeout.as_secs(),
                "shop timeout not below the shutdown timeout: a request waiting on the shop at \
                 shutdown may be cut off"
            );
        }
        let server =
            http::server(listener, routes, &settings.server).map_err(StartupError::Server)?;
        // The store is open and the workers run.
        readiness.set(true);
        if settings.metrics.token.is_set() {
            tracing::info!("metrics enabled at /metrics");
        } else {
            tracing::info!(empty = "metrics.token", "metrics disabled: keys are empty");
        }
        tracing::info!(%address, "listening");
        Ok(Application {
            port: address.port(),
            server,
            stop: CancellationToken::new(),
            workers,
            background: channels.background,
            windows: channels.windows,
            store,
            program,
            engine,
            shutdown_timeout,
            signals,
            readiness,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle::new(self.stop.clone())
    }

    /// For tests and tools; drop the clone before the application stops, or the store stays
    /// open until it is dropped.
    pub fn program(&self) -> Arc<Program> {
        Arc::clone(&self.program)
    }

    pub fn engine(&self) -> Arc<Engine> {
        Arc::clone(&self.engine)
    }

    /// Serves until SIGTERM, SIGINT or the [`ShutdownHandle`]; then stops accepting, drains
    /// requests, stops the background workers at a safe point, and flushes and closes the
    /// store, in that order and within `server.shutdown_timeout_secs` in all (see
    /// [`shutdown`]). Returns `Ok` after a graceful stop, also when workers had to be stopped
    /// at the deadline: their unfinished work is in the store for the next start. The final
    /// flush failing is an error (the process then exits 1).
    pub async fn run_until_stopped(self) -> Result<(), StartupError> {
        let Application {
            server,
            stop,
            workers,
            background,
            windows,
            store,
            program,
            engine,
            shutdown_timeout,
            signals,
            readiness,
            ..
        } = self;
        drop((program, engine));
        let (requested, stopping) = tokio::sync::oneshot::channel();
        let hurry = CancellationToken::new();
        let watcher = tokio::spawn(shutdown::stop_on_request(
            stop,
            server.handle(),
            requested,
            hurry.clone(),
            signals,
            readiness.clone(),
        ));
        let served = server.await;
        readiness.set(false);
        let since = shutdown::requested_at(stopping);
        let deadline = since + shutdown_timeout;
        workers.cancel();
        shutdown::stop_workers(background, deadline, &hurry).await;
        channels::keep_windows(&store, &windows);
        let closed = shutdown::close_store(store, deadline, &hurry).await;
        watcher.abort();
        let elapsed_ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(elapsed_ms, "stopped");
        served.map_err(StartupError::Server)?;
        // A stop that could not put the last writes on disk is not a clean one: exit non-zero.
        closed.map_err(StartupError::FinalFlush)
    }
}
