//! The REST v3 endpoints of [`super::FakeWoo`]: each records the request, checks Basic auth
//! and the scripted failure, then answers as WooCommerce does (WordPress's error shape included).

use super::{basic_auth, State, WooRequest, WOO_KEY, WOO_SECRET};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

type Shared = web::Data<Arc<Mutex<State>>>;

pub(super) fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
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

pub(super) async fn get_order(req: HttpRequest, state: Shared) -> HttpResponse {
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
pub(super) async fn list_orders(req: HttpRequest, state: Shared) -> HttpResponse {
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

pub(super) async fn create_coupon(
    req: HttpRequest,
    body: web::Bytes,
    state: Shared,
) -> HttpResponse {
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
pub(super) async fn list_coupons(req: HttpRequest, state: Shared) -> HttpResponse {
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

pub(super) async fn no_route(req: HttpRequest, state: Shared) -> HttpResponse {
    let _ = receive(&req, b"", &state).await;
    rest_error(
        404,
        "rest_no_route",
        "No route was found matching the URL and request method.",
    )
}
