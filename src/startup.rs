//! Builds the application from settings; used by `main` and by the integration tests, so both
//! run the same wiring. [`Services`] is everything but the HTTP server (the terminal chat uses
//! it alone); [`Application`] adds the server, the channels and their background workers.

use crate::channels::{manychat::Manychat, messenger::Messenger};
use crate::config::{Settings, ShopKind};
use crate::flows::Engine;
use crate::program::{Program, ProgramError, Rules};
use crate::shop::{FixtureShop, GenericShop, Shop, ShopError};
use crate::store::{EventQueue, LoyaltyStore, SledStore, StoreError};
use crate::{domain::Points, http};
use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open the store at {path} (is another loyalty-bot using it?)")]
    Store {
        path: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("the shop is not usable (config section [shop])")]
    Shop(#[source] ShopError),
    #[error("the conversation flows in {path} are not usable")]
    Flows {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
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
}

/// The store, the program and the engine, opened and checked: what every front end needs.
pub struct Services {
    pub store: Arc<SledStore>,
    pub program: Arc<Program>,
    pub engine: Arc<Engine>,
}

impl Services {
    pub async fn open(settings: &Settings) -> Result<Services, StartupError> {
        let cache_bytes = settings.store.cache_capacity_mb * 1024 * 1024;
        let store = SledStore::open(&settings.store.path, cache_bytes).map_err(|source| {
            StartupError::Store {
                path: settings.store.path.clone(),
                source,
            }
        })?;
        let store = Arc::new(store);
        let dyn_store: Arc<dyn LoyaltyStore> = store.clone();
        let program = Arc::new(Program::new(
            dyn_store,
            build_shop(settings)?,
            settings.catalogue(),
            rules(settings),
        ));
        let engine = Arc::new(build_engine(Arc::clone(&program), settings)?);
        let recovered = program
            .recover_pending_coupons()
            .await
            .map_err(StartupError::Recovery)?;
        if recovered > 0 {
            tracing::warn!(
                coupons = recovered,
                "restored points of interrupted redemptions"
            );
        }
        Ok(Services {
            store,
            program,
            engine,
        })
    }
}

fn build_engine(program: Arc<Program>, settings: &Settings) -> Result<Engine, StartupError> {
    // When flows load from files: `Engine::load(program, &settings.flows_dir,
    // &settings.program.locale).map_err(|e| flows_error(settings, e))`.
    let _ = settings;
    Ok(Engine::new(program))
}

#[allow(dead_code, reason = "used once the engine loads flow files")]
fn flows_error(
    settings: &Settings,
    e: impl std::error::Error + Send + Sync + 'static,
) -> StartupError {
    StartupError::Flows {
        path: settings.flows_dir.clone(),
        source: Box::new(e),
    }
}

fn rules(settings: &Settings) -> Rules {
    let p = &settings.program;
    Rules {
        signup_bonus: Points(p.signup_bonus),
        points_per_currency_unit: p.points_per_currency_unit,
        coupon_valid_days: p.coupon_valid_days,
        currency: p.currency.clone(),
    }
}

fn build_shop(settings: &Settings) -> Result<Arc<dyn Shop>, StartupError> {
    let s = &settings.shop;
    Ok(match s.kind {
        ShopKind::Fixture => {
            let shop = FixtureShop::new(s.orders_file.clone());
            // Read it once now: a broken file stops the start, not a customer's claim.
            let orders = shop.load_all().map_err(StartupError::Shop)?;
            tracing::info!(orders = orders.len(), "fixture shop loaded");
            Arc::new(shop)
        }
        ShopKind::Generic => Arc::new(GenericShop::new(
            s.verify_url.clone(),
            s.coupon_url.clone(),
            s.secret.clone(),
            s.timeout_secs,
        )),
    })
}

/// A running (not yet served) application: the socket is bound, so [`Application::port`] is
/// valid before [`Application::run_until_stopped`] is awaited.
pub struct Application {
    port: u16,
    server: Server,
    stop: CancellationToken,
    workers: CancellationToken,
    background: Vec<JoinHandle<()>>,
    store: Arc<SledStore>,
    program: Arc<Program>,
    engine: Arc<Engine>,
}

/// Asks a running [`Application`] to stop gracefully, as SIGTERM does.
#[derive(Debug, Clone)]
pub struct ShutdownHandle(CancellationToken);

impl ShutdownHandle {
    pub fn shutdown(&self) {
        self.0.cancel();
    }
}

impl Application {
    /// Opens everything, binds `server.bind` (port 0 picks a free one) and starts the channel
    /// workers. Serving starts with [`Application::run_until_stopped`].
    pub async fn build(settings: Settings) -> Result<Application, StartupError> {
        let Services {
            store,
            program,
            engine,
        } = Services::open(&settings).await?;
        let bind_error = |source| StartupError::Bind {
            addr: settings.server.bind.clone(),
            source,
        };
        let listener = TcpListener::bind(&settings.server.bind).map_err(bind_error)?;
        let address = listener.local_addr().map_err(bind_error)?;
        let workers = CancellationToken::new();
        let channels = Channels::start(&settings, &engine, &store, &workers);
        let server = serve(listener, &settings, &program, &channels)?;
        tracing::info!(%address, "listening");
        Ok(Application {
            port: address.port(),
            server,
            stop: CancellationToken::new(),
            workers,
            background: channels.background,
            store,
            program,
            engine,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.stop.clone())
    }

    /// For tests and tools; drop the clone before the application stops, or the store stays
    /// open until it is dropped.
    pub fn program(&self) -> Arc<Program> {
        Arc::clone(&self.program)
    }

    pub fn engine(&self) -> Arc<Engine> {
        Arc::clone(&self.engine)
    }

    /// Serves until SIGTERM, SIGINT or the [`ShutdownHandle`]; then drains requests, stops the
    /// background workers, and flushes and closes the store, in that order.
    pub async fn run_until_stopped(self) -> Result<(), StartupError> {
        let Application {
            server,
            stop,
            workers,
            background,
            store,
            program,
            engine,
            ..
        } = self;
        drop((program, engine));
        let watcher = tokio::spawn(stop_on_request(stop, server.handle()));
        let served = server.await;
        watcher.abort();
        workers.cancel();
        for task in background {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "a background worker panicked");
            }
        }
        close_store(store).await;
        tracing::info!("stopped");
        served.map_err(StartupError::Server)
    }
}

/// The chat channels that are configured, and their background workers.
struct Channels {
    messenger: Option<Arc<Messenger>>,
    manychat: Option<Arc<Manychat>>,
    background: Vec<JoinHandle<()>>,
}

impl Channels {
    fn start(
        settings: &Settings,
        engine: &Arc<Engine>,
        store: &Arc<SledStore>,
        workers: &CancellationToken,
    ) -> Self {
        let mut background = Vec::new();
        let messenger = if settings.messenger.enabled() {
            let queue: Arc<dyn EventQueue> = store.clone();
            let m = Messenger::new(settings.messenger.clone(), Arc::clone(engine), queue);
            background.push(m.spawn(workers.clone()));
            tracing::info!("messenger channel enabled");
            Some(Arc::new(m))
        } else {
            let m = &settings.messenger;
            let empty: Vec<&str> = [
                ("messenger.app_secret", &m.app_secret),
                ("messenger.verify_token", &m.verify_token),
                ("messenger.page_access_token", &m.page_access_token),
            ]
            .into_iter()
            .filter(|(_, v)| !v.is_set())
            .map(|(k, _)| k)
            .collect();
            tracing::info!(empty = %empty.join(", "), "messenger channel disabled: keys are empty");
            None
        };
        let manychat = if settings.manychat.token.is_set() {
            tracing::info!("manychat channel enabled");
            let public_url = settings.server.public_url.clone();
            Some(Arc::new(Manychat::new(
                settings.manychat.token.clone(),
                public_url,
                Arc::clone(engine),
            )))
        } else {
            tracing::info!(
                empty = "manychat.token",
                "manychat channel disabled: keys are empty"
            );
            None
        };
        if !settings.admin.token.is_set() {
            tracing::info!(empty = "admin.token", "admin API disabled: keys are empty");
        }
        Channels {
            messenger,
            manychat,
            background,
        }
    }
}

fn serve(
    listener: TcpListener,
    settings: &Settings,
    program: &Arc<Program>,
    channels: &Channels,
) -> Result<Server, StartupError> {
    let program = Arc::clone(program);
    let admin_token = settings.admin.token.clone();
    let (messenger, manychat) = (channels.messenger.clone(), channels.manychat.clone());
    let server = HttpServer::new(move || {
        let program = Arc::clone(&program);
        let (messenger, manychat) = (messenger.clone(), manychat.clone());
        App::new()
            .wrap(http::oversized_bodies_as_api_errors())
            .configure(|cfg| http::configure(cfg, program, &admin_token))
            .configure(|cfg| {
                if let Some(m) = &messenger {
                    m.configure(cfg);
                }
                if let Some(m) = &manychat {
                    m.configure(cfg);
                }
            })
            .default_service(web::to(http::not_found))
    })
    // We watch the signals ourselves, to stop the workers and the store after the drain.
    .disable_signals()
    .shutdown_timeout(10)
    .listen(listener)
    .map_err(StartupError::Server)?
    .run();
    Ok(server)
}

async fn stop_on_request(stop: CancellationToken, server: ServerHandle) {
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
async fn close_store(store: Arc<SledStore>) {
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
    if let Err(e) = store.flush() {
        tracing::error!(error = %e, "final store flush failed");
    }
}
