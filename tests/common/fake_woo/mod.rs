//! `FakeWoo`: a loopback server speaking WooCommerce's REST API v3 (`/wp-json/wc/v3/orders`,
//! `/orders/<id>`, `/coupons`) in its JSON, built from `fixtures/woocommerce/`. It checks HTTP
//! Basic auth as WooCommerce does, records every request (method, path, query, headers, body),
//! and can be scripted: orders whose number is not their id, refunds, any status, a slow or
//! failing shop, a coupon code that is taken.

use actix_web::dev::ServerHandle;
use actix_web::web;
use base64::Engine as _;
use loyalty_bot::config::{Secret, Settings, ShopKind};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub const WOO_KEY: &str = "ck_0123456789abcdef0123456789abcdef01234567";
pub const WOO_SECRET: &str = "cs_0123456789abcdef0123456789abcdef01234567";
/// The secret of `fixtures/woocommerce/signature-vectors.json`.
pub const WOO_WEBHOOK_SECRET: &str = "fixture-woo-webhook-secret";

mod routes;

use routes::{create_coupon, get_order, list_coupons, list_orders, lock, no_route};

const ORDER: &str = include_str!("../../../fixtures/woocommerce/order-excerpt.json");

/// One request the shop received.
#[derive(Debug, Clone)]
pub struct WooRequest {
    pub method: String,
    /// The path as sent (still percent-encoded).
    pub path: String,
    /// The raw query string ("" when none).
    pub query: String,
    /// Header names lower-case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`Value::Null` if it was not JSON).
    pub body: Value,
}

impl WooRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The query's pairs, decoded.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }
}

/// `Basic base64(key:secret)`, as a client must send it.
pub fn basic_auth(key: &str, secret: &str) -> String {
    let pair = format!("{key}:{secret}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

#[derive(Default)]
struct State {
    /// By id, as WooCommerce keys them.
    orders: BTreeMap<u64, Value>,
    delay: Duration,
    /// Every call answers this status (with a WordPress error body) until healed.
    failure: Option<u16>,
    /// `POST /coupons` answers this status and body until healed.
    coupon_failure: Option<(u16, Value)>,
    /// The next this many coupon POSTs find their code taken (by another member's coupon).
    collisions: usize,
    /// Coupons created through the API, as posted.
    coupons: Vec<Value>,
    /// Coupons that were there before (what a collision collides with).
    others: Vec<Value>,
    requests: Vec<WooRequest>,
}

#[derive(Clone)]
pub struct FakeWoo {
    url: String,
    state: Arc<Mutex<State>>,
    handle: ServerHandle,
}

impl FakeWoo {
    pub async fn start() -> FakeWoo {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = web::Data::new(Arc::clone(&state));
        let (url, handle) = super::serve_on_loopback("fake woo", move |cfg| {
            cfg.app_data(shared.clone())
                .route("/wp-json/wc/v3/orders", web::get().to(list_orders))
                .route("/wp-json/wc/v3/orders/{id}", web::get().to(get_order))
                .route("/wp-json/wc/v3/coupons", web::post().to(create_coupon))
                .route("/wp-json/wc/v3/coupons", web::get().to(list_coupons))
                .default_service(web::to(no_route));
        });
        FakeWoo { url, state, handle }
    }

    /// The shop's address, as `shop.woocommerce.url` takes it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Points `settings` at this shop with its keys.
    pub fn configure(&self, s: &mut Settings) {
        s.shop.kind = ShopKind::Woocommerce;
        s.shop.woocommerce.url = self.url.clone();
        s.shop.woocommerce.consumer_key = Secret::new(WOO_KEY);
        s.shop.woocommerce.consumer_secret = Secret::new(WOO_SECRET);
        s.shop.woocommerce.webhook_secret = Secret::new(WOO_WEBHOOK_SECRET);
    }

    /// The fixture order as order `id` (its number is the id), billed to `email`, in EUR.
    pub fn add_order(&self, id: u64, email: &str, total: &str, status: &str) {
        self.add_numbered_order(id, &id.to_string(), email, total, status);
    }

    /// An order whose displayed number is not its id (a sequential-number plugin).
    pub fn add_numbered_order(
        &self,
        id: u64,
        number: &str,
        email: &str,
        total: &str,
        status: &str,
    ) {
        let mut o: Value = serde_json::from_str(ORDER).expect("fixture order");
        o["id"] = json!(id);
        o["number"] = json!(number);
        o["billing"]["email"] = json!(email);
        o["total"] = json!(total);
        o["status"] = json!(status);
        o["_links"]["self"][0]["href"] = json!(format!("{}/wp-json/wc/v3/orders/{id}", self.url));
        self.lock().orders.insert(id, o);
    }

    /// Adds a refund of `amount` (`"5.00"`), written as WooCommerce does: a negative string.
    pub fn refund(&self, id: u64, amount: &str) {
        let mut s = self.lock();
        let refunds = s.orders.get_mut(&id).expect("order exists")["refunds"]
            .as_array_mut()
            .expect("refunds list");
        let refund_id = 1000 + refunds.len();
        refunds.push(json!({"id": refund_id, "reason": "", "total": format!("-{amount}")}));
    }

    /// The order is deleted for good (not trashed): reading it answers 404.
    pub fn delete_order(&self, id: u64) {
        self.lock().orders.remove(&id);
    }

    pub fn set_status(&self, id: u64, status: &str) {
        self.lock().orders.get_mut(&id).expect("order exists")["status"] = json!(status);
    }

    /// Every answer waits this long first.
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }
    /// Every call answers `status` (with a WordPress error body) until [`Self::heal`].
    pub fn fail_with(&self, status: u16) {
        self.lock().failure = Some(status);
    }
    /// `POST /coupons` answers `status` with `body` until [`Self::heal`].
    pub fn fail_coupons_with(&self, status: u16, body: Value) {
        self.lock().coupon_failure = Some((status, body));
    }
    /// The next `n` coupon POSTs find their code taken (a collision with an existing coupon).
    pub fn collide_next_codes(&self, n: usize) {
        self.lock().collisions = n;
    }
    pub fn heal(&self) {
        let mut s = self.lock();
        s.delay = Duration::ZERO;
        s.failure = None;
        s.coupon_failure = None;
        s.collisions = 0;
    }

    pub fn requests(&self) -> Vec<WooRequest> {
        self.lock().requests.clone()
    }
    /// Forgets the requests so far (the app's start-up check, before a test's own).
    pub fn forget_requests(&self) {
        self.lock().requests.clear();
    }
    /// Coupons created (bodies of accepted `POST /coupons`), oldest first.
    pub fn coupons(&self) -> Vec<Value> {
        self.lock().coupons.clone()
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}
