//! Bad input at the HTTP level: oversized bodies get 413 before they are read, and slow clients
//! (headers or body trickled byte by byte) get 408 and lose their connection within the
//! configured time, without holding up anyone else. Raw TCP, because a polite HTTP client
//! cannot misbehave like this. Waits below are upper bounds for a failure message, never
//! assertions of speed.

mod common;

use common::{spawn_app, spawn_app_with, RawClient, MANYCHAT_TOKEN};
use std::time::Duration;

/// Long enough that only a hung server reaches it.
const PATIENCE: Duration = Duration::from_secs(15);

#[tokio::test]
async fn oversized_bodies_get_413_and_nothing_is_recorded() {
    let app = spawn_app().await;
    let huge = vec![b'x'; 2 << 20];
    for path in ["/manychat/join", "/manychat/claim", "/webhooks/messenger"] {
        let res = app
            .client()
            .post(app.url(path))
            .header("Content-Type", "application/json")
            .header("Authorization", format!("Bearer {MANYCHAT_TOKEN}"))
            .header("X-Hub-Signature-256", common::meta_signature(&huge))
            .body(huge.clone())
            .send()
            .await
            .expect("POST");
        assert_eq!(res.status(), 413, "{path}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["code"], "payload_too_large", "{path}");
        // Each route names its own limit.
        let limit = if path == "/webhooks/messenger" {
            "1048576"
        } else {
            "65536"
        };
        assert!(
            body["message"].as_str().unwrap().contains(limit),
            "{path}: {body}"
        );
    }
    assert!(app.graph_api.sent().is_empty());
    assert_eq!(app.shop.requests().len(), 0);
}

fn head(path: &str, extra: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: loyalty.test\r\nContent-Type: application/json\r\n\
         Authorization: Bearer {MANYCHAT_TOKEN}\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn a_huge_declared_body_gets_413_before_the_rest_is_sent() {
    let app = spawn_app().await;
    for path in ["/manychat/claim", "/webhooks/messenger", "/manychat/join"] {
        let mut client = RawClient::connect(app.address()).await;
        let request = head(path, "Content-Length: 10000000000\r\n");
        assert!(client.send(request.as_bytes()).await);
        // A first slice of the ten gigabytes; the rest is never sent.
        assert!(client.send(&[b'x'; 1024]).await);
        let answer = client.read_until_closed(PATIENCE).await;
        assert_eq!(answer.status(), Some(413), "{path}: {}", answer.text);
        assert!(answer.text.contains("payload_too_large"), "{}", answer.text);
        assert!(answer.closed, "{path}: the connection stays open");
    }
    assert_eq!(app.shop.requests().len(), 0);
    assert!(app.graph_api.sent().is_empty());
}

#[tokio::test]
async fn a_chunked_body_past_the_limit_gets_413_without_the_rest() {
    let app = spawn_app().await;
    let mut client = RawClient::connect(app.address()).await;
    let request = head("/manychat/claim", "Transfer-Encoding: chunked\r\n");
    assert!(client.send(request.as_bytes()).await);
    // 80 KiB in 8 KiB chunks: past the 64 KiB limit, with no final chunk ever sent.
    let chunk = format!("2000\r\n{}\r\n", "x".repeat(0x2000));
    for _ in 0..10 {
        if !client.send(chunk.as_bytes()).await {
            break;
        }
    }
    let answer = client.read_until_closed(PATIENCE).await;
    assert_eq!(answer.status(), Some(413), "{}", answer.text);
    // Not drained: a client streaming an endless body would otherwise keep the connection.
    assert!(answer.closed, "the connection stays open after the 413");
    assert_eq!(app.shop.requests().len(), 0);
}

#[tokio::test]
async fn headers_trickled_byte_by_byte_get_408_and_the_connection_is_closed() {
    let app = spawn_app_with(|s| s.server.header_timeout = Duration::from_millis(300)).await;
    let mut client = RawClient::connect(app.address()).await;
    // Slowloris: a header every so often, never the blank line that ends them.
    let headers = "GET /healthz HTTP/1.1\r\nHost: loyalty.test\r\nX-Slow: ".repeat(20);
    let answer = client
        .trickle_and_read(headers.as_bytes(), Duration::from_millis(20), PATIENCE)
        .await;
    assert_eq!(answer.status(), Some(408), "{}", answer.text);
    assert!(answer.closed, "the connection stays open");
}

#[tokio::test]
async fn a_body_trickled_byte_by_byte_gets_408_and_changes_nothing() {
    let app = spawn_app_with(|s| s.server.body_timeout = Duration::from_millis(300)).await;
    app.shop
        .add_order("1001", "jane@example.com", "42.50", "paid");
    let body = br#"{"id": "1515862162", "email": "jane@example.com", "order_number": "1001"}"#;
    for framing in ["content-length", "chunked"] {
        let mut client = RawClient::connect(app.address()).await;
        let (extra, payload) = match framing {
            "content-length" => (format!("Content-Length: {}\r\n", body.len()), body.to_vec()),
            _ => (
                "Transfer-Encoding: chunked\r\n".to_owned(),
                body.iter()
                    .flat_map(|b| [b"1\r\n".as_slice(), &[*b], b"\r\n"].concat())
                    .collect(),
            ),
        };
        assert!(
            client
                .send(head("/manychat/claim", &extra).as_bytes())
                .await
        );
        let answer = client
            .trickle_and_read(&payload, Duration::from_millis(50), PATIENCE)
            .await;
        assert_eq!(answer.status(), Some(408), "{framing}: {}", answer.text);
        assert!(answer.text.contains("request_timeout"), "{}", answer.text);
        assert!(answer.closed, "{framing}: the connection stays open");
    }
    assert_eq!(
        app.shop.requests().len(),
        0,
        "nobody was asked about order 1001"
    );
    let res = app.get_admin_member("jane@example.com").await;
    assert_eq!(res.status(), 404, "nobody joined");
}

#[tokio::test]
async fn slow_clients_do_not_hold_up_anyone_else() {
    let app = spawn_app_with(|s| {
        s.server.header_timeout = Duration::from_millis(60_000);
        s.server.body_timeout = Duration::from_millis(60_000);
    })
    .await;
    // Many more stalled connections than the server has worker threads.
    let mut stalled = Vec::new();
    for i in 0..64 {
        let mut client = RawClient::connect(app.address()).await;
        let partial = if i % 2 == 0 {
            "GET /healthz HTTP/1.1\r\nHost: x\r\n".to_owned()
        } else {
            head("/manychat/claim", "Content-Length: 100\r\n") + "{\"id\":"
        };
        assert!(client.send(partial.as_bytes()).await);
        stalled.push(client);
    }
    let res = tokio::time::timeout(PATIENCE, app.client().get(app.url("/healthz")).send())
        .await
        .expect("/healthz answered while slow clients wait")
        .expect("GET /healthz");
    assert_eq!(res.status(), 200);
    drop(stalled);
}
