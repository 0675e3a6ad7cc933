//! `FakeManychatApi`: a loopback HTTP server that speaks ManyChat's public sending API
//! (`POST /fb/sending/sendContent`, protocols.md §e.2). It records every request with its
//! `Authorization` header, answers `{"status":"success"}`, and can be told to answer the next
//! calls with ManyChat's error 3011 (outside the 24-hour window) or with a 500.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

/// One request as received.
#[derive(Debug, Clone)]
pub struct ManychatRequest {
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct State {
    requests: Vec<ManychatRequest>,
    outside_window: usize,
    failing: usize,
}

/// Clones share the server and its records.
#[derive(Clone)]
pub struct FakeManychatApi {
    base: String,
    state: Arc<Mutex<State>>,
}

impl FakeManychatApi {
    pub async fn start() -> FakeManychatApi {
        let state = Arc::new(Mutex::new(State::default()));
        let data = web::Data::from(Arc::clone(&state));
        let (base, _) = super::serve_on_loopback("fake ManyChat API", move |cfg| {
            cfg.app_data(data.clone())
                .route("/fb/sending/sendContent", web::post().to(send_content));
        });
        FakeManychatApi { base, state }
    }

    /// The value for `manychat.api_url`.
    pub fn url(&self) -> String {
        self.base.clone()
    }

    pub fn requests(&self) -> Vec<ManychatRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Answers the next `n` calls with a 500 and ManyChat's error shape.
    pub fn fail_next(&self, n: usize) {
        self.state.lock().unwrap().failing += n;
    }

    /// Answers the next `n` calls as ManyChat does once the contact's window has closed.
    pub fn answer_outside_window(&self, n: usize) {
        self.state.lock().unwrap().outside_window += n;
    }
}

async fn send_content(
    state: web::Data<Mutex<State>>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut s = state.lock().unwrap();
    s.requests.push(ManychatRequest {
        path: req.path().to_owned(),
        authorization,
        body: body.clone(),
    });
    if s.failing > 0 {
        s.failing -= 1;
        return HttpResponse::InternalServerError()
            .json(json!({"status": "error", "message": "Internal server error"}));
    }
    if s.outside_window > 0 {
        s.outside_window -= 1;
        return HttpResponse::BadRequest().json(json!({
            "status": "error",
            "message": "Subscriber haven't interacted with your page in the last 24 hours",
            "code": 3011,
        }));
    }
    if !body["subscriber_id"].is_u64() || body["data"]["version"] != "v2" {
        return HttpResponse::BadRequest().json(json!({
            "status": "error",
            "message": "Validation error",
            "details": {"messages": [{"message": "subscriber_id must be an integer"}]},
        }));
    }
    HttpResponse::Ok().json(json!({"status": "success"}))
}
