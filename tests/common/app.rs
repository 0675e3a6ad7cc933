//! `TestApp`: the application built by the same `Application::build` as `main`, on a random
//! loopback port, with its own data dir and fakes; stoppable and restartable in place.

use super::{
    get_admin_member, member_points, meta_signature, test_overrides, FakeGraphApi, FakeShop,
    ADMIN_TOKEN, MANYCHAT_TOKEN,
};
use loyalty_bot::config::Settings;
use loyalty_bot::flows::Engine;
use loyalty_bot::program::Program;
use loyalty_bot::startup::{Application, ShutdownHandle, StartupError};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use tempfile::TempDir;
use tokio::task::JoinHandle;

pub struct TestApp {
    /// `http://127.0.0.1:<port>`; changes on restart.
    pub address: String,
    pub port: u16,
    pub settings: Settings,
    pub shop: FakeShop,
    pub graph_api: FakeGraphApi,
    /// Kept alive for the app's life; `restart` reuses it.
    pub data_dir: TempDir,
    client: reqwest::Client,
    running: Option<Running>,
    /// The clock verification and mail go by (the wall clock when `None`); kept on restart.
    clock: Option<Arc<dyn loyalty_bot::clock::Clock>>,
}

struct Running {
    shutdown: ShutdownHandle,
    task: JoinHandle<Result<(), StartupError>>,
    program: Arc<Program>,
    engine: Arc<Engine>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`], with a chance to change the settings before the build.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    try_spawn_app_with(configure)
        .await
        .expect("the application should start")
}

/// For tests of start-up failures.
pub async fn try_spawn_app_with(
    configure: impl FnOnce(&mut Settings),
) -> Result<TestApp, StartupError> {
    try_spawn_app_with_clock(configure, None).await
}

/// Like [`spawn_app_with`], with verification codes and mail going by `clock`.
pub async fn spawn_app_with_clock(
    configure: impl FnOnce(&mut Settings),
    clock: Arc<dyn loyalty_bot::clock::Clock>,
) -> TestApp {
    try_spawn_app_with_clock(configure, Some(clock))
        .await
        .expect("the application should start")
}

async fn try_spawn_app_with_clock(
    configure: impl FnOnce(&mut Settings),
    clock: Option<Arc<dyn loyalty_bot::clock::Clock>>,
) -> Result<TestApp, StartupError> {
    init_test_logs();
    let (shop, graph_api) = (FakeShop::start().await, FakeGraphApi::start().await);
    let data_dir = tempfile::tempdir().expect("temp dir");
    let overrides = test_overrides(data_dir.path(), &shop, &graph_api);
    let mut settings = Settings::from_toml(
        include_str!("../../config.toml"),
        Path::new("config.toml"),
        overrides,
    )
    .expect("test settings should be valid");
    configure(&mut settings);
    let mut app = TestApp {
        address: String::new(),
        port: 0,
        settings,
        shop,
        graph_api,
        data_dir,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        running: None,
        clock,
    };
    app.start().await?;
    Ok(app)
}

/// `TEST_LOG=1 cargo test` shows the app's logs (filtered by `RUST_LOG`, default info).
fn init_test_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        loyalty_bot::telemetry::init();
    }
}

impl TestApp {
    async fn start(&mut self) -> Result<(), StartupError> {
        let app = match &self.clock {
            Some(clock) => {
                Application::build_with_clock(self.settings.clone(), Arc::clone(clock)).await?
            }
            None => Application::build(self.settings.clone()).await?,
        };
        self.port = app.port();
        self.address = format!("http://127.0.0.1:{}", self.port);
        let (shutdown, program, engine) = (app.shutdown_handle(), app.program(), app.engine());
        let task = tokio::spawn(app.run_until_stopped());
        self.running = Some(Running {
            shutdown,
            task,
            program,
            engine,
        });
        Ok(())
    }

    /// Graceful stop, as on SIGTERM: drains, stops workers, flushes and closes the store.
    pub async fn stop(&mut self) {
        let Some(Running {
            shutdown,
            task,
            program,
            engine,
        }) = self.running.take()
        else {
            return;
        };
        drop((program, engine));
        shutdown.shutdown();
        task.await
            .expect("the app task panicked")
            .expect("the app stopped with an error");
    }

    /// Stops and starts again on the same data dir and fakes (on a new port).
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start().await.expect("the application should restart");
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The running app's program (store + shop). Do not hold it across `stop`/`restart`: a
    /// live clone keeps the store open.
    pub fn program(&self) -> Arc<Program> {
        Arc::clone(&self.running.as_ref().expect("app is running").program)
    }

    pub fn engine(&self) -> Arc<Engine> {
        Arc::clone(&self.running.as_ref().expect("app is running").engine)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn post_json(
        &self,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self.client.post(self.url(path)).json(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("POST")
    }

    /// `GET /admin/members?email=…` with the admin token.
    pub async fn get_admin_member(&self, email: &str) -> reqwest::Response {
        get_admin_member(&self.client, &self.address, email, Some(ADMIN_TOKEN)).await
    }

    /// The member's balance per the admin API; panics if the member is unknown.
    pub async fn balance_of(&self, email: &str) -> u64 {
        member_points(self.get_admin_member(email).await).await
    }

    /// A ManyChat Dynamic Block call with the ManyChat bearer token.
    pub async fn post_manychat(&self, path: &str, body: &Value) -> reqwest::Response {
        let auth = format!("Bearer {MANYCHAT_TOKEN}");
        self.post_json(path, body, &[("Authorization", auth.as_str())])
            .await
    }

    /// A Messenger webhook delivery of `body` (raw bytes), signed as Meta signs it.
    pub async fn post_messenger_webhook(&self, path: &str, body: &[u8]) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("Content-Type", "application/json")
            .header("X-Hub-Signature-256", meta_signature(body))
            .body(body.to_vec())
            .send()
            .await
            .expect("POST webhook")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(r) = &self.running {
            r.shutdown.shutdown();
        }
    }
}
