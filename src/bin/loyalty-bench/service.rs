//! The service under test: the committed `config.toml` with `LOYALTY__…` overrides pointing at
//! a fresh store under the system temp dir and at the loopback fakes, built by the same
//! `Application::build` as `main`, with both chat channels enabled and the generic shop.
//!
//! The service runs on a tokio runtime of its own, as in `main` (one worker per CPU), so its
//! threads are told apart from the load generator's and the fakes' (`machine::harness_cpu`).

use crate::fakes::Fakes;
use anyhow::Context;
use loyalty_bot::config::Settings;
use loyalty_bot::program::Program;
use loyalty_bot::startup::{Application, ShutdownHandle, StartupError};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::task::JoinHandle;

pub const APP_SECRET: &str = "bench-meta-app-secret";
pub const MANYCHAT_TOKEN: &str = "bench-manychat-token";
pub const ADMIN_TOKEN: &str = "bench-admin-token";
const REPO: &str = env!("CARGO_MANIFEST_DIR");
/// A rate-limit budget no bench run can spend.
const UNREACHABLE: &str = "4000000000";

/// The service runtime's thread name.
pub const RUNTIME_THREADS: &str = "service-rt";

pub struct Service {
    pub addr: SocketAddr,
    shutdown: ShutdownHandle,
    task: JoinHandle<Result<(), StartupError>>,
    program: Option<Arc<Program>>,
    dir: PathBuf,
    runtime: Option<tokio::runtime::Runtime>,
}

/// A fresh directory under the system temp dir for one run's store; the service deletes it
/// when it stops.
pub fn temp_dir() -> anyhow::Result<PathBuf> {
    let stamp = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("loyalty-bench-{}-{stamp:x}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("create the temp store dir {}", dir.display()))?;
    Ok(dir)
}

/// Where the service keeps its sled store inside a run's temp dir.
pub fn db_path(dir: &Path) -> PathBuf {
    dir.join("db")
}

fn committed_settings(overrides: Vec<(String, String)>) -> anyhow::Result<Settings> {
    let config = Path::new(REPO).join("config.toml");
    let text =
        std::fs::read_to_string(&config).with_context(|| format!("read {}", config.display()))?;
    Settings::from_toml(&text, &config, overrides).context("the bench settings are invalid")
}

/// The committed settings on the store at `db`, with the chat channels off (no secrets): what
/// the open probe starts.
pub fn settings_for_probe(db: &Path) -> anyhow::Result<Settings> {
    let path = |p: PathBuf| p.to_string_lossy().into_owned();
    committed_settings(
        [
            ("SERVER__BIND", "127.0.0.1:0".to_owned()),
            ("STORE__PATH", path(db.to_path_buf())),
            ("FLOWS_DIR", path(Path::new(REPO).join("flows"))),
            (
                "SHOP__ORDERS_FILE",
                path(Path::new(REPO).join("fixtures/shop/orders.json")),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (format!("LOYALTY__{k}"), v))
        .collect(),
    )
}

/// The committed settings for the mail row's child process: the store at `db`, the chat
/// channels off, email on towards the SMTP sink at `smtp` with the sending pace lifted (the
/// highest `email.max_per_minute` allowed), no address verification (nobody joins), and the
/// links a statement carries. The bench's own `LOYALTY__…` environment comes last and wins.
pub fn settings_for_mail(db: &Path, smtp: SocketAddr) -> anyhow::Result<Settings> {
    let path = |p: PathBuf| p.to_string_lossy().into_owned();
    committed_settings(
        [
            ("SERVER__BIND", "127.0.0.1:0".to_owned()),
            (
                "SERVER__PUBLIC_URL",
                "https://loyalty-bench.invalid".to_owned(),
            ),
            ("STORE__PATH", path(db.to_path_buf())),
            ("FLOWS_DIR", path(Path::new(REPO).join("flows"))),
            ("EMAIL__SMTP_URL", format!("smtp://{smtp}")),
            ("EMAIL__MAX_PER_MINUTE", "1000000".to_owned()),
            ("EMAIL__VERIFY", "false".to_owned()),
            ("MESSENGER__PAGE_USERNAME", "loyaltybench".to_owned()),
            ("PROGRAM__SHOP_URL", "https://shop.example".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (format!("LOYALTY__{k}"), v))
        .chain(std::env::vars().filter(|(k, _)| k.starts_with("LOYALTY__")))
        .collect(),
    )
}

/// The store settings every run uses (committed, with the bench's `LOYALTY__STORE__…`
/// environment), for the header: they change what a figure means.
pub fn store_setup() -> anyhow::Result<String> {
    let env = std::env::vars().filter(|(k, _)| k.starts_with("LOYALTY__STORE__"));
    let store = committed_settings(env.collect())?.store;
    Ok(format!(
        "store:   sled, durability {}, group-commit gap {} µs or {} writes",
        store.durability.as_str(),
        store.flush_gap.as_micros(),
        store.flush_batch
    ))
}

impl Service {
    /// Starts the service on the store in `dir` (fresh, or filled by `--members`).
    pub async fn start(fakes: &Fakes, dir: PathBuf) -> anyhow::Result<Service> {
        let settings = committed_settings(overrides(&dir, fakes))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name(RUNTIME_THREADS)
            .enable_all()
            .build()
            .context("build the service's runtime")?;
        let built = match runtime.spawn(Application::build(settings)).await {
            Ok(built) => built.map_err(|e| anyhow::Error::new(e).context("start the service")),
            Err(panic) => Err(anyhow::Error::new(panic).context("the service's start-up panicked")),
        };
        let app = match built {
            Ok(app) => app,
            Err(e) => {
                // Not dropped here: dropping a runtime blocks, which an async caller must not do.
                runtime.shutdown_background();
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], app.port()));
        let (shutdown, program) = (app.shutdown_handle(), app.program());
        let task = runtime.spawn(app.run_until_stopped());
        Ok(Service {
            addr,
            shutdown,
            task,
            program: Some(program),
            dir,
            runtime: Some(runtime),
        })
    }

    /// The running program, for setting up members without going through a channel.
    pub fn program(&self) -> Arc<Program> {
        Arc::clone(
            self.program
                .as_ref()
                .expect("the program is held until stop"),
        )
    }

    /// Stops gracefully (drains, stops the workers, flushes) and deletes the store.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        drop(self.program.take());
        self.shutdown.shutdown();
        let served = (&mut self.task).await;
        if let Some(runtime) = self.runtime.take() {
            // Not dropped here: dropping a runtime blocks, which an async caller must not do.
            runtime.shutdown_background();
        }
        let removed = std::fs::remove_dir_all(&self.dir)
            .with_context(|| format!("remove the temp store {}", self.dir.display()));
        served
            .context("the service task panicked")?
            .context("the service stopped with an error")?;
        removed
    }
}

impl Drop for Service {
    /// A service dropped without [`Service::stop`] (a failed run): its runtime must not be
    /// dropped the blocking way from inside the bench's.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn overrides(dir: &Path, fakes: &Fakes) -> Vec<(String, String)> {
    let path = |p: PathBuf| p.to_string_lossy().into_owned();
    [
        ("SERVER__BIND", "127.0.0.1:0".to_owned()),
        (
            "SERVER__PUBLIC_URL",
            "https://loyalty-bench.invalid".to_owned(),
        ),
        ("STORE__PATH", path(db_path(dir))),
        ("FLOWS_DIR", path(Path::new(REPO).join("flows"))),
        ("MESSENGER__APP_SECRET", APP_SECRET.to_owned()),
        ("MESSENGER__VERIFY_TOKEN", "bench-verify-token".to_owned()),
        (
            "MESSENGER__PAGE_ACCESS_TOKEN",
            "bench-page-token".to_owned(),
        ),
        ("MESSENGER__GRAPH_API_URL", fakes.send_api_url.clone()),
        ("MANYCHAT__TOKEN", MANYCHAT_TOKEN.to_owned()),
        ("ADMIN__TOKEN", ADMIN_TOKEN.to_owned()),
        ("SHOP__KIND", "generic".to_owned()),
        ("SHOP__VERIFY_URL", format!("{}/verify", fakes.shop_url)),
        ("SHOP__COUPON_URL", format!("{}/coupons", fakes.shop_url)),
        ("SHOP__SECRET", "bench-shop-secret".to_owned()),
        // Thousands of requests a second from one address and a few members: every limit is
        // set far above that, so they are still checked (their cost is measured) but never hit.
        ("LIMITS__CLAIMS_PER_MEMBER__MAX", UNREACHABLE.to_owned()),
        (
            "LIMITS__FAILED_CLAIMS_PER_MEMBER__MAX",
            UNREACHABLE.to_owned(),
        ),
        (
            "LIMITS__REDEMPTIONS_PER_MEMBER__MAX",
            UNREACHABLE.to_owned(),
        ),
        ("LIMITS__CLAIMS_PER_IP__MAX", UNREACHABLE.to_owned()),
        ("LIMITS__REDEMPTIONS_PER_IP__MAX", UNREACHABLE.to_owned()),
        ("LIMITS__ADMIN_PER_IP__MAX", UNREACHABLE.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("LOYALTY__{k}"), v))
    // The bench's own `LOYALTY__…` environment comes last and wins: a tuning knob such as
    // `LOYALTY__STORE__FLUSH_GAP_US=2000` or `LOYALTY__STORE__DURABILITY=process_crash` can be
    // tried without editing anything.
    .chain(std::env::vars().filter(|(k, _)| k.starts_with("LOYALTY__")))
    .collect()
}
