//! `FakeShopify`: a loopback server speaking Shopify's GraphQL Admin API
//! (`POST /admin/api/<version>/graphql.json`) and its client-credentials token endpoint
//! (`POST /admin/oauth/access_token`). Orders are built from `fixtures/shopify/`. It records
//! every request (path, headers, JSON body with its variables) and can be told to throttle,
//! fail, be slow, expire or revoke tokens, and refuse coupons with `userErrors`.

use actix_web::dev::ServerHandle;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const API_VERSION: &str = "2026-10";
pub const GRAPHQL_PATH: &str = "/admin/api/2026-10/graphql.json";
pub const TOKEN_PATH: &str = "/admin/oauth/access_token";
/// An admin-created custom app's permanent token.
pub const STATIC_TOKEN: &str = "shpat_fixture_static_token";
pub const CLIENT_ID: &str = "fixture-shopify-client-id";
/// Also the webhook key of `signature-vectors.json`.
pub const CLIENT_SECRET: &str = "fixture-shopify-client-secret";

const ORDER_EXCERPT: &str = include_str!("../../fixtures/shopify/shopify-order-excerpt.json");

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct ShopifyRequest {
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    /// The JSON body; for the token endpoint, its form fields as a JSON object.
    pub body: Value,
    /// The status the fake answered.
    pub status: u16,
}

impl ShopifyRequest {
    pub fn query(&self) -> &str {
        self.body["query"].as_str().unwrap_or_default()
    }
    pub fn variables(&self) -> &Value {
        &self.body["variables"]
    }
    pub fn token(&self) -> Option<&str> {
        self.headers
            .get("x-shopify-access-token")
            .map(String::as_str)
    }
}

/// What the next GraphQL call meets instead of an answer.
#[derive(Debug, Clone)]
enum Trouble {
    /// 200 with `THROTTLED`; the bucket holds `available` and refills at `rate` per second.
    Throttled {
        available: f64,
        rate: f64,
    },
    TooMany {
        retry_after: String,
    },
    Status(u16),
}

struct Token {
    issued: Instant,
    life: Option<Duration>,
}

#[derive(Default)]
struct State {
    orders: Vec<Value>,
    tokens: HashMap<String, Token>,
    issued: usize,
    expires_in: Option<u64>,
    next: VecDeque<Trouble>,
    always: Option<Trouble>,
    delay: Duration,
    coupon_errors: VecDeque<Value>,
    discounts: Vec<Value>,
    requests: Vec<ShopifyRequest>,
}

#[derive(Clone)]
pub struct FakeShopify {
    url: String,
    state: Arc<Mutex<State>>,
    handle: ServerHandle,
}

impl FakeShopify {
    /// Accepts [`STATIC_TOKEN`] and issues tokens to [`CLIENT_ID`] / [`CLIENT_SECRET`] that
    /// last a day (`expires_in` 86399, as Shopify's do).
    pub async fn start() -> FakeShopify {
        let mut state = State {
            expires_in: Some(86_399),
            ..State::default()
        };
        state.tokens.insert(
            STATIC_TOKEN.into(),
            Token {
                issued: Instant::now(),
                life: None,
            },
        );
        let state = Arc::new(Mutex::new(state));
        let shared = web::Data::new(Arc::clone(&state));
        let (url, handle) = super::serve_on_loopback("fake Shopify", move |cfg| {
            cfg.app_data(shared.clone())
                .route("/admin/api/{version}/graphql.json", web::post().to(graphql))
                .route(TOKEN_PATH, web::post().to(token));
        });
        FakeShopify { url, state, handle }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// A paid-as-`financial` order (`PAID`, `PENDING`, `REFUNDED`, ...) built from the fixture
    /// order, with its name, email (`None`: withheld) and current total in EUR. Its GID.
    pub fn add_order(
        &self,
        name: &str,
        email: Option<&str>,
        total: &str,
        financial: &str,
    ) -> String {
        let fixture: Value = serde_json::from_str(ORDER_EXCERPT).expect("fixture is JSON");
        let rest = &fixture["orders"][0];
        let mut s = self.lock();
        let id = rest["id"].as_u64().unwrap() + s.orders.len() as u64;
        let gid = format!("gid://shopify/Order/{id}");
        let money = |amount: &str| {
            json!({"shopMoney": {"amount": amount,
                "currencyCode": rest["current_total_price_set"]["shop_money"]["currency_code"]}})
        };
        s.orders.push(json!({
            "id": gid,
            "name": name,
            "email": email,
            "test": rest["test"],
            "cancelledAt": rest["cancelled_at"],
            "displayFinancialStatus": financial,
            // What was first charged; points come from the current total (after refunds).
            "totalPriceSet": money(rest["total_price"].as_str().unwrap()),
            "currentTotalPriceSet": money(total),
        }));
        gid
    }

    /// Changes an order in place (`test`, `cancelledAt`, ...).
    pub fn edit_order(&self, gid: &str, edit: impl FnOnce(&mut Value)) {
        let mut s = self.lock();
        let order = s
            .orders
            .iter_mut()
            .find(|o| o["id"] == gid)
            .expect("known order");
        edit(order);
    }

    /// A refund or an edit: the order's current total and financial status become these.
    pub fn set_total(&self, gid: &str, total: &str, financial: &str) {
        self.edit_order(gid, |o| {
            o["currentTotalPriceSet"]["shopMoney"]["amount"] = json!(total);
            o["displayFinancialStatus"] = json!(financial);
        });
    }

    /// A webhook body for `topic` about order `gid`, shaped as Shopify sends it (the REST
    /// resource: the fixture's `orders/paid` body, or a refund naming its `order_id`), and its
    /// `X-Shopify-Hmac-Sha256` under [`CLIENT_SECRET`].
    pub fn webhook(&self, topic: &str, gid: &str) -> (Vec<u8>, String) {
        let id: u64 = gid
            .rsplit('/')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("an order GID");
        let body = if topic == "refunds/create" {
            json!({"id": 890088186047892319u64, "order_id": id, "transactions": []})
        } else {
            let mut order: Value = serde_json::from_str(include_str!(
                "../../fixtures/shopify/shopify-webhook-orders-paid.json"
            ))
            .unwrap();
            order["id"] = json!(id);
            order["admin_graphql_api_id"] = json!(gid);
            order
        };
        let body = serde_json::to_vec(&body).unwrap();
        let signature = webhook_signature(&body);
        (body, signature)
    }

    /// The next GraphQL call is answered `THROTTLED`, with a bucket that holds the query again
    /// a tenth of a second later.
    pub fn throttle_once(&self) {
        let t = Trouble::Throttled {
            available: 0.0,
            rate: 100.0,
        };
        self.lock().next.push_back(t);
    }
    /// Every GraphQL call is `THROTTLED`, with a bucket that refills far too slowly to wait for.
    pub fn throttle_always(&self) {
        self.lock().always = Some(Trouble::Throttled {
            available: 0.0,
            rate: 1.0,
        });
    }
    /// The next GraphQL call gets HTTP 429 with this `Retry-After`.
    pub fn too_many_once(&self, retry_after: &str) {
        let t = Trouble::TooMany {
            retry_after: retry_after.into(),
        };
        self.lock().next.push_back(t);
    }
    /// Every GraphQL call gets this status until [`Self::heal`].
    pub fn fail_with(&self, status: u16) {
        self.lock().always = Some(Trouble::Status(status));
    }
    /// Every GraphQL answer waits this long first.
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }
    pub fn heal(&self) {
        let mut s = self.lock();
        s.next.clear();
        s.always = None;
        s.delay = Duration::ZERO;
    }

    /// Tokens issued from now on say (and last) `expires_in` seconds.
    pub fn set_token_life(&self, secs: u64) {
        self.lock().expires_in = Some(secs);
    }
    /// Every client-credentials token issued so far stops working (401).
    pub fn revoke_tokens(&self) {
        self.lock().tokens.retain(|t, _| t == STATIC_TOKEN);
    }

    /// The next `discountCodeBasicCreate` is refused: the code is taken.
    pub fn refuse_next_coupon_as_taken(&self) {
        let e = json!([{"field": ["basicCodeDiscount", "code"], "code": "TAKEN",
            "message": "Code must be unique. Please try a different code."}]);
        self.lock().coupon_errors.push_back(e);
    }
    /// The next `discountCodeBasicCreate` is refused with this message.
    pub fn refuse_next_coupon(&self, message: &str) {
        let e = json!([{"field": ["basicCodeDiscount", "endsAt"], "code": "INVALID",
            "message": message}]);
        self.lock().coupon_errors.push_back(e);
    }

    pub fn requests(&self) -> Vec<ShopifyRequest> {
        self.lock().requests.clone()
    }
    /// GraphQL requests whose query text contains `needle` (`"orders("`, `"discountCode"`).
    pub fn graphql_with(&self, needle: &str) -> Vec<ShopifyRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path != TOKEN_PATH && r.query().contains(needle))
            .collect()
    }
    pub fn token_requests(&self) -> Vec<ShopifyRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == TOKEN_PATH)
            .collect()
    }
    /// The `basicCodeDiscount` inputs of discounts created, oldest first.
    pub fn discounts(&self) -> Vec<Value> {
        self.lock().discounts.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

/// `X-Shopify-Hmac-Sha256` for `body`: base64 HMAC-SHA256 under [`CLIENT_SECRET`].
pub fn webhook_signature(body: &[u8]) -> String {
    use base64::Engine;
    let mac = loyalty_bot::signature::hmac_sha256(CLIENT_SECRET.as_bytes(), body);
    base64::engine::general_purpose::STANDARD.encode(mac)
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

fn record(state: &Mutex<State>, req: &HttpRequest, body: Value, status: u16) {
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            let v = v.to_str().unwrap_or_default().to_owned();
            (k.as_str().to_ascii_lowercase(), v)
        })
        .collect();
    lock(state).requests.push(ShopifyRequest {
        path: req.path().to_owned(),
        headers,
        body,
        status,
    });
}

async fn token(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Arc<Mutex<State>>>,
) -> HttpResponse {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let ok = form.get("grant_type").map(String::as_str) == Some("client_credentials")
        && form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
        && form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET);
    let fields = serde_json::to_value(&form).unwrap();
    if !ok {
        record(&state, &req, fields, 400);
        return HttpResponse::BadRequest().json(json!({"error": "invalid_client",
            "error_description": "Client authentication failed"}));
    }
    let answer = {
        let mut s = lock(&state);
        s.issued += 1;
        let value = format!("shpat_granted_{}", s.issued);
        let life = s.expires_in;
        s.tokens.insert(
            value.clone(),
            Token {
                issued: Instant::now(),
                life: life.map(Duration::from_secs),
            },
        );
        json!({"access_token": value, "scope": "read_orders,read_all_orders,write_discounts",
            "expires_in": life})
    };
    record(&state, &req, fields, 200);
    HttpResponse::Ok().json(answer)
}

fn cost(requested: f64, available: f64, rate: f64, actual: Option<f64>) -> Value {
    json!({"cost": {"requestedQueryCost": requested, "actualQueryCost": actual,
        "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": available,
            "restoreRate": rate}}})
}

async fn graphql(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Arc<Mutex<State>>>,
) -> HttpResponse {
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (delay, trouble, token_ok) = {
        let mut s = lock(&state);
        let token_ok = req
            .headers()
            .get("X-Shopify-Access-Token")
            .and_then(|v| v.to_str().ok())
            .and_then(|t| s.tokens.get(t))
            .is_some_and(|t| t.life.is_none_or(|life| t.issued.elapsed() < life));
        let trouble = s.next.pop_front().or_else(|| s.always.clone());
        (s.delay, trouble, token_ok)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if !token_ok {
        record(&state, &req, json, 401);
        return HttpResponse::Unauthorized().json(json!({"errors":
            "[API] Invalid API key or access token (unrecognized login or wrong password)"}));
    }
    let status = match &trouble {
        Some(Trouble::TooMany { .. }) => 429,
        Some(Trouble::Status(code)) => *code,
        _ => 200,
    };
    record(&state, &req, json.clone(), status);
    match trouble {
        Some(Trouble::Throttled { available, rate }) => {
            return HttpResponse::Ok().json(json!({
                "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED",
                    "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
                "extensions": cost(10.0, available, rate, None)}));
        }
        Some(Trouble::TooMany { retry_after }) => {
            return HttpResponse::TooManyRequests()
                .insert_header(("Retry-After", retry_after))
                .json(json!({"errors": "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."}));
        }
        Some(Trouble::Status(code)) => {
            let status = actix_web::http::StatusCode::from_u16(code).unwrap();
            return HttpResponse::build(status).json(json!({"errors": "Internal Server Error"}));
        }
        None => {}
    }
    let data = answer(&state, &json);
    HttpResponse::Ok()
        .json(json!({"data": data, "extensions": cost(10.0, 1990.0, 100.0, Some(5.0))}))
}

/// The `data` for a query, by what it asks for.
fn answer(state: &Mutex<State>, body: &Value) -> Value {
    let query = body["query"].as_str().unwrap_or_default();
    let vars = &body["variables"];
    let mut s = lock(state);
    if query.contains("discountCodeBasicCreate") {
        if let Some(errors) = s.coupon_errors.pop_front() {
            return json!({"discountCodeBasicCreate": {"codeDiscountNode": null, "userErrors": errors}});
        }
        let n = s.discounts.len() + 1;
        s.discounts.push(vars["discount"].clone());
        return json!({"discountCodeBasicCreate": {
            "codeDiscountNode": {"id": format!("gid://shopify/DiscountCodeNode/{n}")},
            "userErrors": []}});
    }
    if query.contains("orders(") {
        // Loose, as a search is: `name:#1001` also finds `#10010`, and `name:1001` finds
        // `#1001` as well as `1001`.
        let q = vars["q"].as_str().unwrap_or_default().replace('\\', "");
        let wanted = q.strip_prefix("name:").unwrap_or(&q);
        let nodes: Vec<Value> = s
            .orders
            .iter()
            .filter(|o| {
                let name = o["name"].as_str().unwrap_or_default();
                let name = if wanted.starts_with('#') {
                    name
                } else {
                    name.trim_start_matches('#')
                };
                !wanted.is_empty() && name.starts_with(wanted)
            })
            .take(2)
            .cloned()
            .collect();
        return json!({"orders": {"nodes": nodes}});
    }
    if query.contains("order(id:") {
        let order = s.orders.iter().find(|o| o["id"] == vars["id"]).cloned();
        return json!({"order": order});
    }
    if query.contains("shop") {
        return json!({"shop": {"name": "Example Coffee"}});
    }
    Value::Null
}
