//! What the WooCommerce tests share: the app on a `FakeWoo` with WooCommerce reward products,
//! Jane's ManyChat calls, and the request list in one comparable form.

use crate::common::fake_woo::{FakeWoo, WooRequest, WOO_KEY};
use crate::common::{spawn_app_with, TestApp};
use loyalty_bot::config::{DiscountKind, DiscountSettings, Secret, Settings, WoocommerceSettings};
use loyalty_bot::shop::WooShop;
use serde_json::{json, Value};
use std::time::Duration;

pub const CONTACT: &str = include_str!("../../fixtures/manychat/full-contact-data-request.json");
/// The subscriber of [`CONTACT`], jane@example.com.
pub const JANE: &str = "1515862162";

/// The app on `woo`, its rewards limited to WooCommerce product ids: the mug (200 points) is
/// free product 93; the bag (500 points) is 5.00 off products 93 and 94.
pub async fn app_on(woo: &FakeWoo) -> TestApp {
    let app = spawn_app_with(|s| woo_rewards(woo, s)).await;
    // The start-up check's request is pinned in `startup`; tests here see their own.
    woo.forget_requests();
    app
}

/// `s` on `woo`, with the rewards of [`app_on`].
pub fn woo_rewards(woo: &FakeWoo, s: &mut Settings) {
    woo.configure(s);
    for r in &mut s.rewards {
        match r.id.as_str() {
            "free-mug" => r.product_ids = vec!["93".into()],
            _ => {
                r.product_ids = vec!["93".into(), "94".into()];
                r.discount = Some(DiscountSettings {
                    kind: DiscountKind::Amount,
                    value: "5.00".parse().unwrap(),
                });
            }
        }
    }
}

/// A reply text of `flows/<file>` (English), so tests follow the wording there.
pub fn message_in(file: &str, key: &str) -> String {
    let text = std::fs::read_to_string(crate::common::repo_path(&format!("flows/{file}"))).unwrap();
    let all: toml::Value = toml::from_str(&text).unwrap();
    let m = &all["messages"]["en"][key];
    m.get("text").unwrap_or(m).as_str().unwrap().to_owned()
}

pub fn message(key: &str) -> String {
    message_in("messages.toml", key)
}

pub async fn call(app: &TestApp, path: &str, body: &Value) -> Value {
    let res = app.post_manychat(path, body).await;
    assert_eq!(res.status(), 200, "POST {path}");
    let v2: Value = res.json().await.expect("JSON body");
    v2["content"].clone()
}

pub fn text(content: &Value) -> String {
    let messages = content["messages"].as_array().expect("messages");
    let texts: Vec<&str> = messages.iter().filter_map(|m| m["text"].as_str()).collect();
    texts.join("\n")
}

pub fn jane() -> Value {
    let mut c: Value = serde_json::from_str(CONTACT).unwrap();
    c["custom_fields"] = json!({ "loyalty_points": 0 });
    c
}

pub async fn join_jane(app: &TestApp) {
    let mut body = jane();
    body["custom_fields"]["email_input"] = json!("jane@example.com");
    call(app, "/manychat/join", &body).await;
    assert_eq!(app.balance_of("jane@example.com").await, 50);
}

pub async fn claim(app: &TestApp, number: &str) -> String {
    let mut body = jane();
    body["order_number"] = json!(number);
    text(&call(app, "/manychat/claim", &body).await)
}

pub async fn redeem(app: &TestApp, reward: &str) -> String {
    let body = json!({ "subscriber_id": JANE, "reward_id": reward });
    text(&call(app, "/manychat/redeem", &body).await)
}

/// Method, path and decoded query of each request, for one exact comparison.
pub fn calls(requests: &[WooRequest]) -> Vec<String> {
    requests
        .iter()
        .map(|r| {
            let q: Vec<String> = r
                .query_pairs()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("{} {} {}", r.method, r.path, q.join("&"))
                .trim_end()
                .to_owned()
        })
        .collect()
}

pub fn adapter(woo: &FakeWoo, secret: &str) -> WooShop {
    let settings = WoocommerceSettings {
        url: woo.url().to_owned(),
        consumer_key: Secret::new(WOO_KEY),
        consumer_secret: Secret::new(secret),
        webhook_secret: Secret::new("w"),
    };
    WooShop::new(&settings, Duration::from_secs(1)).unwrap()
}
