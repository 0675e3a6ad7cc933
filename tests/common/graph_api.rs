//! `FakeGraphApi`: a loopback HTTP server that speaks the Send API (`POST /me/messages` and
//! `POST /<version>/me/messages`). It records every request, answers like Meta, and can be told
//! to fail (with a Graph error body), to stay down, or to answer slowly. It also answers the
//! User Profile API (`GET /<version>/<PSID>?fields=…`) for profiles a test sets.

// Every test binary that includes `common` compiles this file, and each uses only a part of it.
#![allow(dead_code)]

use actix_web::{dev::ServerHandle, web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as received, whatever the fake answered.
#[derive(Debug, Clone)]
pub struct GraphRequest {
    pub path: String,
    pub query: HashMap<String, String>,
    pub body: Value,
    /// The HTTP status the fake answered with.
    pub status: u16,
}

#[derive(Default)]
struct State {
    requests: Vec<GraphRequest>,
    fail_next: VecDeque<(u16, Value)>,
    down: Option<(u16, Value)>,
    delay: Duration,
    /// Send API calls being answered now, and the most there were at once.
    sends_in_flight: usize,
    most_sends_in_flight: usize,
    next_id: u64,
    /// PSID → (first_name, locale).
    profiles: HashMap<String, (String, Option<String>)>,
    profile_lookups: usize,
    /// `message.metadata` → indexes into `requests` of the accepted messages carrying it.
    by_metadata: HashMap<String, Vec<usize>>,
}

/// Clones share the server and its records.
#[derive(Clone)]
pub struct FakeGraphApi {
    base: String,
    state: Arc<Mutex<State>>,
    handle: ServerHandle,
}

impl FakeGraphApi {
    /// Binds 127.0.0.1:0 first, then serves in the background.
    pub async fn start() -> FakeGraphApi {
        let state = Arc::new(Mutex::new(State::default()));
        let data = web::Data::from(Arc::clone(&state));
        let (origin, handle) = super::serve_on_loopback("fake Graph API", move |cfg| {
            cfg.app_data(data.clone())
                .route("/me/messages", web::post().to(messages))
                .route("/{version}/me/messages", web::post().to(messages))
                .route("/{version}/{psid}", web::get().to(profile));
        });
        FakeGraphApi {
            base: format!("{origin}/v25.0"),
            state,
            handle,
        }
    }

    /// Makes `GET /<PSID>` answer this profile; `locale: None` answers a request for the
    /// `locale` field the way Meta does when the Page lacks that permission.
    pub fn set_profile(&self, psid: &str, first_name: &str, locale: Option<&str>) {
        self.state.lock().unwrap().profiles.insert(
            psid.to_owned(),
            (first_name.to_owned(), locale.map(str::to_owned)),
        );
    }

    /// How many profile look-ups reached the fake.
    pub fn profile_lookups(&self) -> usize {
        self.state.lock().unwrap().profile_lookups
    }

    /// The value for `messenger.graph_api_url` (versioned, like the real one).
    pub fn url(&self) -> String {
        self.base.clone()
    }

    /// Bodies of the messages accepted (2xx), in arrival order.
    pub fn sent(&self) -> Vec<Value> {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.status == 200)
            .map(|r| r.body.clone())
            .collect()
    }

    /// How many Send API requests arrived so far (cheap, for polling).
    pub fn received(&self) -> usize {
        self.lock().requests.len()
    }

    /// Every request, including the ones the fake failed.
    pub fn requests(&self) -> Vec<GraphRequest> {
        self.lock().requests.clone()
    }

    /// The text of each accepted message to `psid` (a button template's text counts).
    pub fn texts_to(&self, psid: &str) -> Vec<String> {
        self.sent()
            .iter()
            .filter(|b| b["recipient"]["id"] == psid)
            .map(Self::text_of)
            .collect()
    }

    /// A message body's visible text: plain text or a button template's text.
    pub fn text_of(body: &Value) -> String {
        let m = &body["message"];
        m["text"]
            .as_str()
            .or_else(|| m["attachment"]["payload"]["text"].as_str())
            .unwrap_or_default()
            .to_owned()
    }

    /// Fails the next `n` calls with `status` and the Graph error `body`.
    pub fn fail_next(&self, n: usize, status: u16, body: Value) {
        let mut state = self.lock();
        state
            .fail_next
            .extend(std::iter::repeat_n((status, body), n));
    }

    /// Fails the next `n` calls with code 2, "temporary" (HTTP 500).
    pub fn fail_next_transient(&self, n: usize) {
        self.fail_next(
            n,
            500,
            graph_error(2, None, "An unexpected error has occurred."),
        );
    }

    /// Fails the next `n` calls with code 10 / 2018278, outside the messaging window.
    pub fn fail_next_permanent(&self, n: usize) {
        let body = graph_error(
            10,
            Some(2_018_278),
            "(#10) This message is sent outside of allowed window.",
        );
        self.fail_next(n, 400, body);
    }

    /// Answers every call with a transient 503 until [`FakeGraphApi::come_back`].
    pub fn go_down(&self) {
        self.lock().down = Some((503, graph_error(2, None, "Service temporarily unavailable")));
    }

    pub fn come_back(&self) {
        self.lock().down = None;
    }

    /// Waits this long before answering each call.
    /// The most Send API calls that were being answered at once.
    pub fn most_sends_at_once(&self) -> usize {
        self.lock().most_sends_in_flight
    }

    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// The accepted messages whose `message.metadata` is `metadata` (the key of the event they
    /// answer), oldest first. Cheap: an index, for tests that poll it under load.
    pub fn sent_for(&self, metadata: &str) -> Vec<Value> {
        let s = self.lock();
        s.by_metadata.get(metadata).map_or_else(Vec::new, |at| {
            at.iter().map(|&i| s.requests[i].body.clone()).collect()
        })
    }

    /// Waits until at least `n` messages were accepted and returns them; panics on timeout.
    pub async fn wait_for_sent(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let sent = self.sent();
            if sent.len() >= n {
                return sent;
            }
            if Instant::now() > deadline {
                panic!(
                    "expected {n} Send API messages within {timeout:?}, got {}: {sent:#?}",
                    sent.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server; later calls find nothing listening (connection refused).
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fake Graph API state poisoned")
    }
}

/// A Graph API error body.
pub fn graph_error(code: i64, subcode: Option<i64>, message: &str) -> Value {
    let mut error = json!({ "message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AFakeTrace" });
    if let Some(s) = subcode {
        error["error_subcode"] = json!(s);
    }
    json!({ "error": error })
}

async fn profile(
    state: web::Data<Mutex<State>>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (_, psid) = path.into_inner();
    let query = url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect::<HashMap<_, _>>();
    let fields = query.get("fields").cloned().unwrap_or_default();
    let mut s = state.lock().unwrap();
    s.profile_lookups += 1;
    let Some((first_name, locale)) = s.profiles.get(&psid).cloned() else {
        return HttpResponse::NotFound().json(graph_error(100, Some(33), "Object does not exist"));
    };
    let mut answer = json!({ "id": psid, "first_name": first_name });
    if fields.split(',').any(|f| f == "locale") {
        match locale {
            Some(l) => answer["locale"] = json!(l),
            None => {
                return HttpResponse::BadRequest().json(graph_error(
                    100,
                    None,
                    "(#100) Tried accessing nonexisting field (locale)",
                ))
            }
        }
    }
    HttpResponse::Ok().json(answer)
}

async fn messages(
    state: web::Data<Mutex<State>>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let query = url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect::<HashMap<_, _>>();
    let delay = {
        let mut s = state.lock().unwrap();
        s.sends_in_flight += 1;
        s.most_sends_in_flight = s.most_sends_in_flight.max(s.sends_in_flight);
        s.delay
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut s = state.lock().unwrap();
    s.sends_in_flight -= 1;
    let (status, answer) = match s.down.clone().or_else(|| s.fail_next.pop_front()) {
        Some(failure) => failure,
        None if body["recipient"]["id"].is_string() && body["message"].is_object() => {
            s.next_id += 1;
            let answer = json!({ "recipient_id": body["recipient"]["id"], "message_id": format!("m_fake{}", s.next_id) });
            (200, answer)
        }
        None => (400, graph_error(100, None, "(#100) Invalid parameter")),
    };
    if status == 200 {
        if let Some(m) = body["message"]["metadata"].as_str() {
            let at = s.requests.len();
            s.by_metadata.entry(m.to_owned()).or_default().push(at);
        }
    }
    s.requests.push(GraphRequest {
        path: req.path().to_owned(),
        query,
        body,
        status,
    });
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).json(answer)
}
