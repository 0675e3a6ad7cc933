//! `FakeWoo`: a loopback server speaking WooCommerce's REST API v3 (`/wp-json/wc/v3/orders`,
//! `/orders/<id>`, `/coupons`) in its JSON, built from `fixtures/woocommerce/`. It checks HTTP
//! Basic auth as WooCommerce does, records every request (method, path, query, headers, body),
//! and can be scripted: orders whose number is not their id, refunds, any status, a slow or
//! failing shop, a coupon code that is taken.

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
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

const ORDER: &str = include_str!("../../fixtures/woocommerce/order-excerpt.json");

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
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind fake woo");
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .route("/wp-json/wc/v3/orders", web::get().to(list_orders))
                .route("/wp-json/wc/v3/orders/{id}", web::get().to(get_order))
                .route("/wp-json/wc/v3/coupons", web::post().to(create_coupon))
                .route("/wp-json/wc/v3/coupons", web::get().to(list_coupons))
                .default_service(web::to(no_route))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen fake woo")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        FakeWoo {
            url: format!("http://127.0.0.1:{port}"),
            state,
            handle,
        }
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

type Shared = web::Data<Arc<Mutex<State>>>;

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panicking test thread must not hide every later request from the others.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// WordPress's error shape.
fn rest_error(status: u16, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).expect("valid status"))
        .json(json!({"code": code, "message": message, "data": {"status": status}}))
}

/// Records the request, waits the scripted delay, checks Basic auth and the scripted failure.
/// `Err` is the answer to give instead of the endpoint's.
async fn receive(req: &HttpRequest, body: &[u8], state: &Shared) -> Result<(), HttpResponse> {
    let (delay, failure) = {
        let mut s = lock(state);
        s.requests.push(WooRequest {
            method: req.method().to_string(),
            path: req.uri().path().to_owned(),
            query: req.query_string().to_owned(),
            headers: req
                .headers()
                .iter()
                .map(|(k, v)| {
                    let v = v.to_str().unwrap_or("<not ascii>").to_owned();
                    (k.as_str().to_ascii_lowercase(), v)
                })
                .collect(),
            body: serde_json::from_slice(body).unwrap_or(Value::Null),
        });
        (s.delay, s.failure)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let auth = req
        .headers()
        .get("Authorization")
        .and_then(|h| h.to_str().ok());
    if auth != Some(basic_auth(WOO_KEY, WOO_SECRET).as_str()) {
        return Err(rest_error(
            401,
            "woocommerce_rest_cannot_view",
            "Sorry, you cannot list resources.",
        ));
    }
    if let Some(code) = failure {
        return Err(rest_error(
            code,
            "fake_failure",
            "The fake shop was told to fail.",
        ));
    }
    Ok(())
}

async fn get_order(req: HttpRequest, state: Shared) -> HttpResponse {
    if let Err(res) = receive(&req, b"", &state).await {
        return res;
    }
    // WordPress routes `orders/(?P<id>[\d]+)`: anything else is no route at all.
    let id = req.match_info().get("id").unwrap_or_default();
    let Ok(id) = id.parse::<u64>() else {
        return rest_error(
            404,
            "rest_no_route",
            "No route was found matching the URL and request method.",
        );
    };
    match lock(&state).orders.get(&id) {
        Some(o) => HttpResponse::Ok().json(o),
        None => rest_error(404, "woocommerce_rest_shop_order_invalid_id", "Invalid ID."),
    }
}

/// The list: newest first, `per_page` (default 10). `search` matches a numeric term as the id,
/// and any term inside the number (as sequential-number plugins hook it), the billing email or
/// the postcode, as the shop's `LIKE` search does.
async fn list_orders(req: HttpRequest, state: Shared) -> HttpResponse {
    if let Err(res) = receive(&req, b"", &state).await {
        return res;
    }
    let query: BTreeMap<String, String> =
        url::form_urlencoded::parse(req.query_string().as_bytes())
            .into_owned()
            .collect();
    let per_page = query
        .get("per_page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(10);
    if !(1..=100).contains(&per_page) {
        return rest_error(400, "rest_invalid_param", "Invalid parameter(s): per_page");
    }
    let term = query.get("search").map(|t| t.to_lowercase());
    let s = lock(&state);
    let found: Vec<&Value> = s
        .orders
        .iter()
        .rev()
        .filter(|(id, o)| match &term {
            None => true,
            Some(t) => {
                let has = |v: &Value| v.as_str().is_some_and(|x| x.to_lowercase().contains(t));
                id.to_string() == *t
                    || has(&o["number"])
                    || has(&o["billing"]["email"])
                    || has(&o["billing"]["postcode"])
            }
        })
        .map(|(_, o)| o)
        .take(per_page)
        .collect();
    HttpResponse::Ok().json(found)
}

async fn create_coupon(req: HttpRequest, body: web::Bytes, state: Shared) -> HttpResponse {
    if let Err(res) = receive(&req, &body, &state).await {
        return res;
    }
    let mut s = lock(&state);
    if let Some((status, body)) = &s.coupon_failure {
        let status = StatusCode::from_u16(*status).expect("valid status");
        return HttpResponse::build(status).json(body.clone());
    }
    let Ok(coupon) = serde_json::from_slice::<Value>(&body) else {
        return rest_error(400, "rest_invalid_json", "The JSON body passed is invalid.");
    };
    // WooCommerce stores codes lower-case and refuses one that exists in any case.
    let code = coupon["code"].as_str().unwrap_or_default().to_lowercase();
    if code.is_empty() {
        return rest_error(
            400,
            "woocommerce_rest_empty_coupon_code",
            "The coupon code cannot be empty.",
        );
    }
    if s.collisions > 0 {
        s.collisions -= 1;
        let other = json!({"code": code, "product_ids": [1], "email_restrictions": ["someone@example.com"]});
        s.others.push(other);
    }
    if s.coupons.iter().chain(&s.others).any(|c| {
        c["code"]
            .as_str()
            .is_some_and(|c| c.eq_ignore_ascii_case(&code))
    }) {
        return rest_error(
            400,
            "woocommerce_rest_coupon_code_already_exists",
            "The coupon code already exists",
        );
    }
    s.coupons.push(coupon.clone());
    HttpResponse::Created().json(stored(&coupon, 700 + s.coupons.len()))
}

/// A coupon as the shop answers with it: its id, its code lower-case.
fn stored(coupon: &Value, id: usize) -> Value {
    let mut c = coupon.clone();
    c["id"] = json!(id);
    c["code"] = json!(c["code"].as_str().unwrap_or_default().to_lowercase());
    c
}

/// `GET /coupons?code=…`: the coupons with that code, any case.
async fn list_coupons(req: HttpRequest, state: Shared) -> HttpResponse {
    if let Err(res) = receive(&req, b"", &state).await {
        return res;
    }
    let code = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.to_lowercase());
    let s = lock(&state);
    let found: Vec<Value> = s
        .coupons
        .iter()
        .chain(&s.others)
        .enumerate()
        .filter(|(_, c)| {
            code.as_ref().is_none_or(|want| {
                c["code"]
                    .as_str()
                    .is_some_and(|c| c.eq_ignore_ascii_case(want))
            })
        })
        .map(|(i, c)| stored(c, 700 + i + 1))
        .collect();
    HttpResponse::Ok().json(found)
}

async fn no_route(req: HttpRequest, state: Shared) -> HttpResponse {
    let _ = receive(&req, b"", &state).await;
    rest_error(
        404,
        "rest_no_route",
        "No route was found matching the URL and request method.",
    )
}
