//! The loopback servers around the service: a generic shop that verifies nothing expensive
//! (every order exists, is paid and belongs to the asking email), a Send API that counts and
//! timestamps replies and hands each to the request waiting for it, and the bare actix-web
//! handler that is the framework's ceiling on this machine.
//!
//! The shop and the Send API stand in for servers on other machines, so they are kept as cheap
//! as they can be: plain hyper HTTP/1.1 connections served as tasks of the bench's own runtime,
//! not actix workers, whose threads had to be woken for each of an event's two calls.

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

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
    bare: ServerHandle,
    accept_loops: Vec<JoinHandle<()>>,
    /// Cancelled by [`Fakes::stop`]: closes the connections the fakes still have open.
    closing: CancellationToken,
}

type Answer = Response<Full<Bytes>>;

impl Fakes {
    pub async fn start() -> anyhow::Result<Fakes> {
        let closing = CancellationToken::new();
        let (shop, shop_task) = serve_hyper(closing.clone(), |request| async move {
            match (request.method(), request.uri().path()) {
                (&Method::POST, "/verify") if !is_json(&request) => {
                    status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
                }
                (&Method::POST, "/verify") => verify(&body_of(request).await),
                (&Method::POST, "/coupons") => {
                    // Read, so that the connection stays open for the next call.
                    body_of(request).await;
                    answer(StatusCode::CREATED, &json!({}))
                }
                (_, "/verify" | "/coupons") => not_allowed("POST"),
                _ => status(StatusCode::NOT_FOUND),
            }
        })
        .await?;
        let replies = Arc::new(Replies::default());
        let to = Arc::clone(&replies);
        let (send_api, send_task) = serve_hyper(closing.clone(), move |request| {
            let replies = Arc::clone(&to);
            async move {
                let path = request.uri().path().to_owned();
                match (request.method(), path.strip_prefix("/v25.0/")) {
                    (&Method::POST, Some("me/messages")) => send(&replies, &body_of(request).await),
                    // The User Profile API: every customer has a name (asked once per customer).
                    (&Method::GET, Some(psid)) if !psid.contains('/') => answer(
                        StatusCode::OK,
                        &json!({"id": psid, "first_name": "Bench", "locale": "en_US"}),
                    ),
                    (_, Some("me/messages")) => not_allowed("POST"),
                    (_, Some(psid)) if !psid.contains('/') => not_allowed("GET"),
                    _ => status(StatusCode::NOT_FOUND),
                }
            }
        })
        .await?;
        let (bare_addr, bare) = serve_bare()?;
        Ok(Fakes {
            shop_url: format!("http://{shop}"),
            send_api_url: format!("http://{send_api}/v25.0"),
            bare_addr,
            replies,
            bare,
            accept_loops: vec![shop_task, send_task],
            closing,
        })
    }

    pub async fn stop(self) {
        self.bare.stop(false).await;
        for task in self.accept_loops {
            task.abort();
        }
        // The accept loops' connections are tasks of their own: a kept-alive one would
        // otherwise stay open (and served) for as long as the runtime lives.
        self.closing.cancel();
    }
}

/// Binds 127.0.0.1:0 and serves each connection with `handle` as a task of this runtime,
/// keep-alive without an idle limit (the service's pooled connections then never race a
/// server's close between two workloads; `docs/benchmark.md`, Decisions: idle shop connections
/// dropped after 4 s).
async fn serve_hyper<H, F>(
    closing: CancellationToken,
    handle: H,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Answer> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("bind a loopback port")?;
    let addr = listener.local_addr().context("read the bound address")?;
    let task = tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was taken: go on.
                    eprintln!("a loopback fake could not accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let handle = handle.clone();
            let closing = closing.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let answer = handle(request);
                    async move { Ok::<_, std::convert::Infallible>(answer.await) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                // Dropping the connection closes its socket.
                tokio::select! {
                    _ = connection => {}
                    _ = closing.cancelled() => {}
                }
            });
        }
    });
    Ok((addr, task))
}

/// The bare ceiling: actix-web with its default worker count, as the service has.
fn serve_bare() -> anyhow::Result<(SocketAddr, ServerHandle)> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind a loopback port")?;
    let addr = listener.local_addr().context("read the bound address")?;
    let server = HttpServer::new(|| App::new().route("/bare", web::post().to(bare)))
        .disable_signals()
        .keep_alive(Duration::from_secs(75))
        .backlog(4096)
        .listen(listener)
        .context("listen")?
        .run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok((addr, handle))
}

/// Whether the request says its body is JSON, as the generic shop contract requires.
fn is_json(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// The request's body; empty when it could not be read (the handler then answers 400).
async fn body_of(request: Request<Incoming>) -> Bytes {
    match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => Bytes::new(),
    }
}

fn answer(code: StatusCode, body: &Value) -> Answer {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// 405 for a path the fake serves, asked with another method.
fn not_allowed(allow: &'static str) -> Answer {
    let mut response = status(StatusCode::METHOD_NOT_ALLOWED);
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

fn status(code: StatusCode) -> Answer {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = code;
    response
}

#[derive(Deserialize)]
struct VerifyRequest {
    order_number: String,
    email: String,
}

/// The generic shop's verify contract. The signature is not checked: that is the shop's cost.
fn verify(body: &[u8]) -> Answer {
    let Ok(request) = serde_json::from_slice::<VerifyRequest>(body) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let total = if request.order_number.starts_with(TOP_UP_PREFIX) {
        "1000000.00"
    } else {
        "59.90"
    };
    answer(
        StatusCode::OK,
        &json!({
            "order_number": request.order_number, "email": request.email,
            "total": total, "currency": "EUR", "status": "paid",
        }),
    )
}

fn send(replies: &Replies, body: &[u8]) -> Answer {
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let Some(psid) = body["recipient"]["id"].as_str() else {
        return status(StatusCode::BAD_REQUEST);
    };
    let message = &body["message"];
    let text = message["text"]
        .as_str()
        .or_else(|| message["attachment"]["payload"]["text"].as_str())
        .unwrap_or_default();
    replies.received(psid, text);
    answer(
        StatusCode::OK,
        &json!({ "recipient_id": psid, "message_id": format!("m_bench{}", replies.count()) }),
    )
}

async fn bare(_body: web::Bytes) -> HttpResponse {
    HttpResponse::Ok().finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Sends one HTTP/1.1 request on `stream` (kept alive) and returns the response's head.
    async fn ask(stream: &mut TcpStream, method: &str, path: &str) -> String {
        let request =
            format!("{method} {path} HTTP/1.1\r\nhost: fake\r\ncontent-length: 0\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(
                stream.read(&mut byte).await.unwrap(),
                1,
                "closed mid-answer"
            );
            head.push(byte[0]);
        }
        String::from_utf8(head).unwrap().to_ascii_lowercase()
    }

    fn addr_of(url: &str) -> String {
        let rest = url.strip_prefix("http://").unwrap();
        rest.split('/').next().unwrap().to_owned()
    }

    #[tokio::test]
    async fn a_served_path_asked_with_another_method_is_405_and_an_unknown_path_404() {
        let fakes = Fakes::start().await.unwrap();
        let mut shop = TcpStream::connect(addr_of(&fakes.shop_url)).await.unwrap();
        let head = ask(&mut shop, "GET", "/verify").await;
        assert!(head.starts_with("http/1.1 405"), "{head}");
        assert!(head.contains("allow: post"), "{head}");
        let head = ask(&mut shop, "POST", "/orders").await;
        assert!(head.starts_with("http/1.1 404"), "{head}");
        let mut graph = TcpStream::connect(addr_of(&fakes.send_api_url))
            .await
            .unwrap();
        let head = ask(&mut graph, "GET", "/v25.0/me/messages").await;
        assert!(head.starts_with("http/1.1 405"), "{head}");
        let head = ask(&mut graph, "DELETE", "/v25.0/12345").await;
        assert!(
            head.starts_with("http/1.1 405") && head.contains("allow: get"),
            "{head}"
        );
        fakes.stop().await;
    }

    #[tokio::test]
    async fn stopping_closes_the_connections_kept_alive() {
        let fakes = Fakes::start().await.unwrap();
        let mut shop = TcpStream::connect(addr_of(&fakes.shop_url)).await.unwrap();
        ask(&mut shop, "GET", "/").await;
        fakes.stop().await;
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), shop.read_to_end(&mut rest)).await;
        assert!(matches!(read, Ok(Ok(0))), "still open: {read:?}");
    }
}
