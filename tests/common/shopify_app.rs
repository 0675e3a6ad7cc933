//! Shopify test apps: settings pointing at a `FakeShopify`, and Jane, the ManyChat
//! fixture's subscriber, joining, claiming and redeeming over HTTP.

use super::fake_shopify::{FakeShopify, API_VERSION, CLIENT_ID, CLIENT_SECRET, STATIC_TOKEN};
use super::{spawn_app_with, TestApp};
use loyalty_bot::config::{Secret, Settings, ShopKind};
use loyalty_bot::domain::{Channel, ChatIdentity};
use serde_json::{json, Value};

pub const CONTACT: &str = include_str!("../../fixtures/manychat/full-contact-data-request.json");
/// The subscriber in [`CONTACT`].
pub const JANE: &str = "1515862162";
pub const MUG_PRODUCT: &str = "8123456789001";
pub const TOTE_PRODUCT: &str = "gid://shopify/Product/8123456789002";

pub enum Auth {
    Static,
    ClientCredentials,
}

pub fn configure(s: &mut Settings, fake: &FakeShopify, auth: &Auth) {
    s.shop.kind = ShopKind::Shopify;
    let shopify = &mut s.shop.shopify;
    shopify.store_domain = "example-shop.myshopify.com".into();
    shopify.api_version = API_VERSION.into();
    shopify.base_url = fake.url();
    shopify.webhook_secret = Secret::new(CLIENT_SECRET);
    match auth {
        Auth::Static => shopify.access_token = Secret::new(STATIC_TOKEN),
        Auth::ClientCredentials => {
            shopify.client_id = CLIENT_ID.into();
            shopify.client_secret = Secret::new(CLIENT_SECRET);
        }
    }
    s.rewards[0].product_ids = vec![MUG_PRODUCT.into()];
    s.rewards[1].product_ids = vec![TOTE_PRODUCT.into()];
}

pub async fn app_with(fake: &FakeShopify, auth: Auth) -> TestApp {
    spawn_app_with(|s| configure(s, fake, &auth)).await
}

/// ManyChat's contact data for Jane without any step fields.
pub fn jane() -> Value {
    let mut c: Value = serde_json::from_str(CONTACT).unwrap();
    c["custom_fields"] = json!({ "loyalty_points": 0 });
    c
}

/// Posts to a ManyChat endpoint as ManyChat does and returns the reply's text.
pub async fn say(app: &TestApp, path: &str, body: &Value) -> String {
    let res = app.post_manychat(path, body).await;
    assert_eq!(res.status(), 200, "POST {path}");
    let v2: Value = res.json().await.unwrap();
    v2["content"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

pub async fn join_jane(app: &TestApp) {
    let mut body = jane();
    body["custom_fields"]["email_input"] = json!("jane@example.com");
    say(app, "/manychat/join", &body).await;
    assert_eq!(balance(app).await, 50);
}

pub async fn claim(app: &TestApp, typed: &str) -> String {
    let mut body = jane();
    body["order_number"] = json!(typed);
    say(app, "/manychat/claim", &body).await
}

pub async fn redeem(app: &TestApp, reward: &str) -> String {
    let body = json!({ "subscriber_id": JANE, "reward_id": reward });
    say(app, "/manychat/redeem", &body).await
}

pub async fn balance(app: &TestApp) -> u64 {
    let who = ChatIdentity::new(Channel::Manychat, JANE).unwrap();
    let account = app.program().account(&who).await.unwrap();
    account.map_or(0, |a| a.balance.value())
}
