//! `FakeShop`: a loopback HTTP server speaking the generic shop contract (see
//! `src/shop/generic.rs`), so tests drive the real adapter over a real socket. It checks the
//! `X-Loyalty-Signature` header, records every request, and can be told to be slow or broken.

use actix_web::dev::ServerHandle;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The stored email of an order that [`FakeShop::add_order_for_anyone`] added.
const ANYONE: &str = "*";

/// The shared secret both the fake and the app under test are configured with.
pub const SHOP_SECRET: &str = "test-shop-secret";

/// One request the shop received.
#[derive(Debug, Clone)]
pub struct ShopRequest {
    /// `/verify` or `/coupons`.
    pub path: String,
    pub signature_ok: bool,
    /// The body as JSON (`Value::Null` if it was not JSON).
    pub body: Value,
}

#[derive(Default)]
struct State {
    orders: HashMap<String, Value>,
    delay: Duration,
    /// Extra delay for the verification of one order number.
    order_delays: HashMap<String, Duration>,
    verify_failure: Option<u16>,
    verify_raw: Option<String>,
    coupon_failure: Option<u16>,
    requests: Vec<ShopRequest>,
    coupons: Vec<Value>,
}

#[derive(Clone)]
pub struct FakeShop {
    url: String,
    secret: String,
    state: Arc<Mutex<State>>,
    handle: ServerHandle,
}

impl FakeShop {
    pub async fn start() -> FakeShop {
        Self::start_with_secret(SHOP_SECRET).await
    }

    pub async fn start_with_secret(secret: &str) -> FakeShop {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = web::Data::new(Shared {
            secret: secret.to_owned(),
            state: Arc::clone(&state),
        });
        let (url, handle) = super::serve_on_loopback("fake shop", move |cfg| {
            cfg.app_data(shared.clone())
                .route("/verify", web::post().to(verify))
                .route("/coupons", web::post().to(coupon));
        });
        FakeShop {
            url,
            secret: secret.to_owned(),
            state,
            handle,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
    pub fn verify_url(&self) -> String {
        format!("{}/verify", self.url)
    }
    pub fn coupon_url(&self) -> String {
        format!("{}/coupons", self.url)
    }
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// An order in EUR. `status` as the shop says it: `paid`, `pending`, `refunded`, ...
    pub fn add_order(&self, number: &str, email: &str, total: &str, status: &str) {
        self.add_order_in(number, email, total, "EUR", status);
    }

    pub fn add_order_in(
        &self,
        number: &str,
        email: &str,
        total: &str,
        currency: &str,
        status: &str,
    ) {
        let order = json!({"order_number": number, "email": email, "total": total, "currency": currency, "status": status});
        self.lock().orders.insert(number.to_owned(), order);
    }

    /// A paid EUR order this shop confirms for whichever email asks, like a shop that does not
    /// check emails: lets two members race for one order (the store must credit it once).
    pub fn add_order_for_anyone(&self, number: &str, total: &str) {
        self.add_order_in(number, ANYONE, total, "EUR", "paid");
    }

    /// Every answer waits this long first.
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }
    /// `POST /verify` answers this status (with a JSON error body) until [`Self::heal`].
    /// Makes the verification of order `number` alone take `delay` (a shop slow for one order).
    pub fn delay_order(&self, number: &str, delay: Duration) {
        self.lock().order_delays.insert(number.to_owned(), delay);
    }

    pub fn fail_verify_with(&self, status: u16) {
        self.lock().verify_failure = Some(status);
    }
    /// `POST /verify` answers 200 with this body verbatim (for garbage answers).
    pub fn answer_verify_with_raw(&self, body: &str) {
        self.lock().verify_raw = Some(body.to_owned());
    }
    /// `POST /coupons` answers this status until [`Self::heal`].
    pub fn fail_coupons_with(&self, status: u16) {
        self.lock().coupon_failure = Some(status);
    }
    /// Back to prompt, correct answers.
    pub fn heal(&self) {
        let mut s = self.lock();
        s.delay = Duration::ZERO;
        s.order_delays.clear();
        s.verify_failure = None;
        s.verify_raw = None;
        s.coupon_failure = None;
    }

    pub fn requests(&self) -> Vec<ShopRequest> {
        self.lock().requests.clone()
    }
    /// Coupons the shop created (bodies of accepted `POST /coupons`), oldest first.
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

struct Shared {
    secret: String,
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panicking test thread must not hide every later request from the others.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records the request; `Err` is the answer to give right away (bad signature).
async fn receive(req: &HttpRequest, body: &[u8], shared: &Shared) -> Result<Value, HttpResponse> {
    let header = req
        .headers()
        .get("X-Loyalty-Signature")
        .and_then(|h| h.to_str().ok());
    let signature_ok =
        loyalty_bot::signature::verify_sha256_header(shared.secret.as_bytes(), body, header);
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let delay = {
        let mut s = lock(&shared.state);
        s.requests.push(ShopRequest {
            path: req.path().to_owned(),
            signature_ok,
            body: json.clone(),
        });
        let number = json["order_number"].as_str().unwrap_or_default();
        s.delay + s.order_delays.get(number).copied().unwrap_or_default()
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if !signature_ok {
        return Err(HttpResponse::Unauthorized().json(json!({"error": "bad signature"})));
    }
    Ok(json)
}

fn status(code: u16) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(code).expect("valid status");
    let mut res = HttpResponse::build(status);
    if status.is_redirection() {
        // Somewhere a client that follows redirects would go (and answer differently).
        res.insert_header(("Location", "/moved"));
    }
    res.json(json!({"error": "fake shop told to fail"}))
}

async fn verify(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let json = match receive(&req, &body, &shared).await {
        Ok(json) => json,
        Err(res) => return res,
    };
    let s = lock(&shared.state);
    if let Some(code) = s.verify_failure {
        return status(code);
    }
    if let Some(raw) = &s.verify_raw {
        return HttpResponse::Ok()
            .content_type("application/json")
            .body(raw.clone());
    }
    let number = json["order_number"].as_str().unwrap_or_default();
    let email = json["email"].as_str().unwrap_or_default();
    match s.orders.get(number) {
        Some(o) if o["email"] == ANYONE => {
            let mut o = o.clone();
            o["email"] = json!(email);
            HttpResponse::Ok().json(o)
        }
        Some(o)
            if o["email"]
                .as_str()
                .is_some_and(|e| e.eq_ignore_ascii_case(email)) =>
        {
            HttpResponse::Ok().json(o)
        }
        _ => HttpResponse::NotFound().json(json!({"error": "no such order"})),
    }
}

async fn coupon(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let json = match receive(&req, &body, &shared).await {
        Ok(json) => json,
        Err(res) => return res,
    };
    let mut s = lock(&shared.state);
    if let Some(code) = s.coupon_failure {
        return status(code);
    }
    s.coupons.push(json.clone());
    HttpResponse::Created().json(json)
}
