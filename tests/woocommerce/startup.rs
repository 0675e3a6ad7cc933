//! The real binary's start: what stops it, and the plain-http warning.

use super::harness::{calls, woo_rewards};
use crate::common::fake_woo::{basic_auth, FakeWoo, WOO_KEY, WOO_SECRET};
use crate::common::try_spawn_app_with;
use loyalty_bot::config::Secret;
use std::time::Duration;

/// `loyalty-bot serve` with `env` over the built-in defaults, from an empty folder.
fn serve(env: &[(&str, &str)]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_loyalty-bot"));
    cmd.arg("serve").current_dir(dir.path()).env_clear();
    cmd.env("LOYALTY__STORE__PATH", dir.path().join("db"));
    cmd.env("LOYALTY__SERVER__BIND", "127.0.0.1:0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

const WOO_ENV: [(&str, &str); 4] = [
    ("LOYALTY__SHOP__KIND", "woocommerce"),
    ("LOYALTY__SHOP__WOOCOMMERCE__CONSUMER_KEY", WOO_KEY),
    ("LOYALTY__SHOP__WOOCOMMERCE__CONSUMER_SECRET", WOO_SECRET),
    ("LOYALTY__SHOP__WOOCOMMERCE__WEBHOOK_SECRET", "whsec"),
];

#[test]
fn plain_http_to_another_host_stops_the_start_naming_the_key() {
    let mut env = WOO_ENV.to_vec();
    env.push(("LOYALTY__SHOP__WOOCOMMERCE__URL", "http://shop.example.com"));
    let out = serve(&env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("shop.woocommerce.url"), "{stderr}");
    assert!(stderr.contains("https"), "{stderr}");
}

#[test]
fn reward_products_that_are_not_woocommerce_ids_stop_the_start() {
    let mut env = WOO_ENV.to_vec();
    env.push((
        "LOYALTY__SHOP__WOOCOMMERCE__URL",
        "https://shop.example.com",
    ));
    // The built-in rewards name products by slug (`mug-classic`).
    let out = serve(&env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("rewards[0].product_ids"), "{stderr}");
}

#[test]
fn plain_http_on_loopback_starts_with_a_warning() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[shop.woocommerce]\nurl = \"http://127.0.0.1:9\"\n\n[[rewards]]\nid = \"mug\"\n\
         title = \"Mug\"\npoints = 200\nproduct_ids = [\"93\"]\n\
         checkout_url = \"https://shop.example/mug\"\n",
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_loyalty-bot"))
        .args(["serve", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .env_clear()
        .env("RUST_LOG", "warn")
        .env("LOYALTY__STORE__PATH", dir.path().join("db"))
        .env("LOYALTY__SERVER__BIND", "127.0.0.1:0")
        .envs(WOO_ENV)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // A bound on a hang, not a timing assertion: the line comes before the server listens.
    let warned = std::iter::from_fn(|| rx.recv_timeout(Duration::from_secs(30)).ok())
        .find(|l| l.contains("shop.woocommerce.url is plain http"));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(warned.is_some(), "no start-up warning for plain http");
}

#[tokio::test]
async fn the_start_reads_one_order_with_the_keys() {
    let woo = FakeWoo::start().await;
    let app = try_spawn_app_with(|s| woo_rewards(&woo, s)).await;
    assert!(app.is_ok(), "started");
    let requests = woo.requests();
    assert_eq!(calls(&requests), ["GET /wp-json/wc/v3/orders per_page=1"]);
    let auth = requests[0].header("authorization");
    assert_eq!(auth, Some(basic_auth(WOO_KEY, WOO_SECRET).as_str()));
}

#[tokio::test]
async fn wrong_keys_or_no_rest_api_stop_the_start_naming_the_setting() {
    let woo = FakeWoo::start().await;
    for (case, status, key) in [
        ("wrong keys", None, "shop.woocommerce.consumer_key"),
        ("no REST API", Some(404), "shop.woocommerce.url"),
    ] {
        woo.heal();
        if let Some(status) = status {
            woo.fail_with(status);
        }
        let started = try_spawn_app_with(|s| {
            woo_rewards(&woo, s);
            if status.is_none() {
                s.shop.woocommerce.consumer_secret = Secret::new("cs_wrong");
            }
        })
        .await;
        let Err(e) = started else {
            panic!("{case}: started");
        };
        assert!(e.to_string().contains(key), "{case}: {e}");
    }
    // A shop that is down is no reason not to start: customers hear it is unavailable.
    woo.fail_with(503);
    let started = try_spawn_app_with(|s| woo_rewards(&woo, s)).await;
    assert!(started.is_ok(), "a 503 at start");
}
