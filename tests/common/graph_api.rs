//! Minimal `FakeGraphApi` (wiring branch placeholder): a loopback Send API that records what it
//! is sent and answers like Meta. The messenger engineer's file replaces this one.

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct GraphRequest {
    pub path: String,
    pub query: String,
    pub body: Value,
}

#[derive(Clone)]
pub struct FakeGraphApi {
    url: String,
    requests: Arc<Mutex<Vec<GraphRequest>>>,
}

impl FakeGraphApi {
    pub async fn start() -> FakeGraphApi {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let shared = web::Data::from(Arc::clone(&requests));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind fake graph api");
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .default_service(web::to(record))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen fake graph api")
        .run();
        tokio::spawn(server);
        FakeGraphApi {
            url: format!("http://127.0.0.1:{port}/v25.0"),
            requests,
        }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn requests(&self) -> Vec<GraphRequest> {
        self.requests.lock().unwrap().clone()
    }
}

async fn record(
    req: HttpRequest,
    body: web::Bytes,
    requests: web::Data<Mutex<Vec<GraphRequest>>>,
) -> HttpResponse {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let recipient = body["recipient"]["id"].clone();
    requests.lock().unwrap().push(GraphRequest {
        path: req.path().to_owned(),
        query: req.query_string().to_owned(),
        body,
    });
    HttpResponse::Ok().json(json!({"recipient_id": recipient, "message_id": "m_fake"}))
}
