//! Oversized bodies are refused with 413 and change nothing, on every route that takes a body.

mod common;

use common::{spawn_app, MANYCHAT_TOKEN};

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
    }
    assert!(app.graph_api.sent().is_empty());
    assert_eq!(app.shop.requests().len(), 0);
}
