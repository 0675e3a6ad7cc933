//! The loopback servers around the service: a generic shop that verifies nothing expensive
//! (every order exists, is paid and belongs to the asking email), a Send API that counts and
//! timestamps replies and hands each to the request waiting for it, and the bare actix-web
//! handler that is the framework's ceiling on this machine.

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Orders whose number starts with this are worth a fortune: they top up redeeming members.
pub const TOP_UP_PREFIX: &str = "9";
/// What a reply to a credited claim says (flows/claim.toml, `order_credited`).
pub const CREDITED_MARKER: &str = "earned";

/// A reply as the fake Send API received it.
#[derive(Debug, Clone, Copy)]
pub struct Reply {
    pub at: Instant,
    /// The reply says the order was credited.
    pub credited: bool,
}

/// Replies the Send API received; a request waiting for one registers by PSID and order.
#[derive(Default)]
pub struct Replies {
    waiting: Mutex<HashMap<String, oneshot::Sender<Reply>>>,
    count: AtomicU64,
}

impl Replies {
    pub fn expect(&self, psid: &str, order: &str) -> oneshot::Receiver<Reply> {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(format!("{psid}#{order}"), tx);
        rx
    }

    /// Messages accepted so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn received(&self, psid: &str, text: &str) {
        let at = Instant::now();
        self.count.fetch_add(1, Ordering::Relaxed);
        // Replies about an order name it as "#1001"; others (join prompts) wait for nobody.
        let Some((_, rest)) = text.split_once('#') else {
            return;
        };
        let order: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let waiter = self.lock().remove(&format!("{psid}#{order}"));
        if let Some(tx) = waiter {
            let credited = text.contains(CREDITED_MARKER);
            let _ = tx.send(Reply { at, credited });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Reply>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct Fakes {
    pub shop_url: String,
    pub send_api_url: String,
    pub bare_addr: SocketAddr,
    pub replies: Arc<Replies>,
    handles: Vec<ServerHandle>,
}

/// The User Profile API: every customer has a name (the service asks once per customer).
async fn profile(psid: web::Path<String>) -> HttpResponse {
    HttpResponse::Ok().json(
        serde_json::json!({"id": psid.into_inner(), "first_name": "Bench", "locale": "en_US"}),
    )
}

impl Fakes {
    pub fn start() -> anyhow::Result<Fakes> {
        let (shop, shop_handle) = serve(Some(1), |cfg| {
            cfg.route("/verify", web::post().to(verify))
                .route("/coupons", web::post().to(coupon));
        })?;
        let replies = Arc::new(Replies::default());
        let data = web::Data::from(Arc::clone(&replies));
        let (send_api, send_handle) = serve(Some(1), move |cfg| {
            cfg.app_data(data.clone())
                .route("/v25.0/me/messages", web::post().to(send))
                .route("/v25.0/{psid}", web::get().to(profile));
        })?;
        // The bare handler gets actix's default worker count, as the service does.
        let (bare_addr, bare_handle) = serve(None, |cfg| {
            cfg.route("/bare", web::post().to(bare));
        })?;
        Ok(Fakes {
            shop_url: format!("http://{shop}"),
            send_api_url: format!("http://{send_api}/v25.0"),
            bare_addr,
            replies,
            handles: vec![shop_handle, send_handle, bare_handle],
        })
    }

    pub async fn stop(self) {
        for handle in self.handles {
            handle.stop(false).await;
        }
    }
}

/// Binds 127.0.0.1:0 and serves `routes` in the background.
fn serve<F>(workers: Option<usize>, routes: F) -> anyhow::Result<(SocketAddr, ServerHandle)>
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").context("bind a loopback port")?;
    let addr = listener.local_addr().context("read the bound address")?;
    // nginx's default keep-alive (75 s), not actix's 5 s: with 5 s, the service's pooled shop
    // connections idle between two workloads race the server's close (see docs/benchmark.md).
    let mut server = HttpServer::new(move || App::new().configure(routes.clone()))
        .disable_signals()
        .keep_alive(Duration::from_secs(75))
        .backlog(4096);
    if let Some(n) = workers {
        server = server.workers(n);
    }
    let server = server.listen(listener).context("listen")?.run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok((addr, handle))
}

#[derive(Deserialize)]
struct VerifyRequest {
    order_number: String,
    email: String,
}

/// The generic shop's verify contract. The signature is not checked: that is the shop's cost.
async fn verify(request: web::Json<VerifyRequest>) -> HttpResponse {
    let total = if request.order_number.starts_with(TOP_UP_PREFIX) {
        "1000000.00"
    } else {
        "59.90"
    };
    HttpResponse::Ok().json(json!({
        "order_number": request.order_number, "email": request.email,
        "total": total, "currency": "EUR", "status": "paid",
    }))
}

async fn coupon(_body: web::Bytes) -> HttpResponse {
    HttpResponse::Created().json(json!({}))
}

async fn send(replies: web::Data<Replies>, body: web::Bytes) -> HttpResponse {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return HttpResponse::BadRequest().finish();
    };
    let Some(psid) = body["recipient"]["id"].as_str() else {
        return HttpResponse::BadRequest().finish();
    };
    let message = &body["message"];
    let text = message["text"]
        .as_str()
        .or_else(|| message["attachment"]["payload"]["text"].as_str())
        .unwrap_or_default();
    replies.received(psid, text);
    HttpResponse::Ok()
        .json(json!({ "recipient_id": psid, "message_id": format!("m_bench{}", replies.count()) }))
}

async fn bare(_body: web::Bytes) -> HttpResponse {
    HttpResponse::Ok().finish()
}
