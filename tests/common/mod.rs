//! The integration-test harness: `spawn_app()` starts the application through the same
//! `Application::build` as `main`, on a random loopback port, with a fresh data dir and with
//! loopback fakes for every upstream (a generic shop, the Graph API). `BinaryApp` runs the real
//! binary instead, for crash tests.
#![allow(
    dead_code,
    unused_imports,
    reason = "each test binary uses a different part of the harness"
)]

mod app;
mod binary;
mod chat_process;
pub mod fake_shopify;
pub mod fake_woo;
pub mod graph_api;
pub mod manychat_api;
pub mod psid;
mod raw;
mod shop;
pub mod shopify_app;
pub mod smtp;

pub use app::{spawn_app, spawn_app_with, spawn_app_with_clock, try_spawn_app_with, TestApp};
pub use binary::BinaryApp;
pub use chat_process::ChatProcess;
pub use graph_api::FakeGraphApi;
pub use raw::{RawAnswer, RawClient};
pub use shop::{FakeShop, ShopRequest, SHOP_SECRET};
pub use smtp::SmtpServer;

use serde_json::Value;
use std::path::{Path, PathBuf};

pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const MANYCHAT_TOKEN: &str = "test-manychat-token";
pub const META_APP_SECRET: &str = "fixture-meta-app-secret";
pub const META_VERIFY_TOKEN: &str = "test-verify-token";
pub const META_PAGE_TOKEN: &str = "test-page-access-token";

/// The repository root (flows, fixtures, config.toml).
pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// `LOYALTY__…` overrides that point the committed `config.toml` at the test's data dir and
/// fakes, with every channel and the admin API enabled. Used in-process and for the binary.
pub fn test_overrides(
    data_dir: &Path,
    shop: &FakeShop,
    graph_api: &FakeGraphApi,
) -> Vec<(String, String)> {
    let path = |p: PathBuf| p.to_string_lossy().into_owned();
    [
        ("SERVER__BIND", "127.0.0.1:0".to_owned()),
        // Never reached in tests (callbacks are posted by the tests); https as ManyChat requires.
        ("SERVER__PUBLIC_URL", "https://loyalty-bot.test".to_owned()),
        ("STORE__PATH", path(data_dir.join("db"))),
        ("STORE__CACHE_CAPACITY_MB", "8".to_owned()),
        ("FLOWS_DIR", path(repo_path("flows"))),
        ("MESSENGER__APP_SECRET", META_APP_SECRET.to_owned()),
        ("MESSENGER__VERIFY_TOKEN", META_VERIFY_TOKEN.to_owned()),
        ("MESSENGER__PAGE_ACCESS_TOKEN", META_PAGE_TOKEN.to_owned()),
        ("MESSENGER__GRAPH_API_URL", graph_api.url()),
        ("MANYCHAT__TOKEN", MANYCHAT_TOKEN.to_owned()),
        ("ADMIN__TOKEN", ADMIN_TOKEN.to_owned()),
        ("SHOP__KIND", "generic".to_owned()),
        (
            "SHOP__ORDERS_FILE",
            path(repo_path("fixtures/shop/orders.json")),
        ),
        ("SHOP__VERIFY_URL", shop.verify_url()),
        ("SHOP__COUPON_URL", shop.coupon_url()),
        ("SHOP__SECRET", shop.secret().to_owned()),
        // Short, so timeout tests stay fast; the fakes answer in microseconds otherwise.
        ("SHOP__TIMEOUT_SECS", "1".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("LOYALTY__{k}"), v))
    .collect()
}

/// `sha256=<hex>` over `body` with the test app secret.
pub fn meta_signature(body: &[u8]) -> String {
    format!(
        "sha256={}",
        loyalty_bot::signature::hmac_sha256_hex(META_APP_SECRET.as_bytes(), body)
    )
}

pub async fn get_admin_member(
    client: &reqwest::Client,
    address: &str,
    email: &str,
    token: Option<&str>,
) -> reqwest::Response {
    let mut req = client
        .get(format!("{address}/admin/members"))
        .query(&[("email", email)]);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.expect("GET /admin/members")
}

pub async fn member_points(res: reqwest::Response) -> u64 {
    assert_eq!(res.status(), 200, "admin member lookup");
    let body: Value = res.json().await.expect("JSON body");
    body["points"].as_u64().expect("points")
}

/// Opens the sled database at `path` directly, to plant or inspect records in their stored
/// shape, waiting out the file lock that a store just dropped in this process holds until
/// sled's last jobs finish (as `SledStore::open` does).
pub fn raw_sled(path: &Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match sled::open(path) {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            opened => return opened.expect("open the sled database"),
        }
    }
}

/// Serves the routes `configure` registers on a random loopback port, in the background, with
/// one worker: the fake upstreams' server. Returns `http://127.0.0.1:<port>` and the handle
/// that stops it. `name` says which fake failed to bind.
pub fn serve_on_loopback(
    name: &str,
    configure: impl Fn(&mut actix_web::web::ServiceConfig) + Clone + Send + 'static,
) -> (String, actix_web::dev::ServerHandle) {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind {name}: {e}"));
    let port = listener.local_addr().unwrap().port();
    let server =
        actix_web::HttpServer::new(move || actix_web::App::new().configure(configure.clone()))
            .workers(1)
            .disable_signals()
            .listen(listener)
            .unwrap_or_else(|e| panic!("listen {name}: {e}"))
            .run();
    let handle = server.handle();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}"), handle)
}
