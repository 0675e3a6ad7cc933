//! The Messenger channel over real HTTP with a scripted conversation and an in-memory queue:
//! webhook handshake, signatures, intake, de-duplication, per-customer ordering, Send API
//! delivery with retries, and restarts. Independent of the engine's wording.

use super::common::FakeGraphApi;
use super::harness::{
    envelope, eventually, text_event, Channel, APP_SECRET, PAGE_TOKEN, VERIFY_TOKEN,
};
use loyalty_bot::flows::InputEvent;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/fixtures/messenger/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The operator's hold (`PUT /admin/messenger/processing`) wins over an event that arrives
/// before the worker has looked at it: both are then ready at the worker's next poll.
#[tokio::test]
async fn an_event_arriving_right_after_processing_is_held_waits_for_the_let_go() {
    let app = Channel::start().await;
    app.pass_the_start_up_read("5001").await;
    for round in 1..=10 {
        app.messenger.hold_processing(true);
        // Blocks the runtime's only thread, so the worker's loop cannot see the hold before
        // the event is handed over: `select!` would then take either, at random.
        let body = text_event(&format!("m_hold_{round}"), "5001", 1000 + round, "hi");
        assert_eq!(app.post_webhook_blocking(&body), "HTTP/1.1 200 OK");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            app.graph.sent().len(),
            round as usize,
            "round {round}: held, so the new event is not answered yet"
        );
        app.messenger.hold_processing(false);
        app.graph.wait_for_sent(round as usize + 1, WAIT).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(app.graph.sent().len(), 11, "each event answered once");
}

#[tokio::test]
async fn verify_handshake_echoes_the_challenge_for_the_right_token() {
    let app = Channel::start().await;
    let res = app
        .verify(&format!(
            "hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444"
        ))
        .await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(res.text().await.unwrap(), "1158201444");
}

#[tokio::test]
async fn verify_handshake_is_forbidden_for_a_wrong_token_or_mode() {
    let app = Channel::start().await;
    let cases = [
        (
            "hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
            "wrong token",
        ),
        ("hub.mode=subscribe&hub.challenge=1", "no token"),
        (
            &*format!("hub.mode=unsubscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1"),
            "wrong mode",
        ),
        (
            &*format!("hub_mode=subscribe&hub_verify_token={VERIFY_TOKEN}&hub_challenge=1"),
            "PHP-style names",
        ),
        (
            &*format!("hub.mode=subscribe&hub.verify_token={APP_SECRET}&hub.challenge=1"),
            "app secret as token",
        ),
        ("", "no query"),
    ];
    for (query, what) in cases {
        assert_eq!(app.verify(query).await.status(), 403, "{what}");
    }
}

#[tokio::test]
async fn missing_or_bad_signature_is_401_and_nothing_is_recorded_or_sent() {
    let app = Channel::start().await;
    let body = fixture("messenger-text-message.json");
    let good = app.signature(&body);
    let mut flipped = body.clone();
    flipped[100] ^= 1;
    let cases: [(&[u8], Option<String>, &str); 5] = [
        (&body, None, "missing header"),
        (&body, Some("sha256=00".into()), "wrong signature"),
        (
            &body,
            Some(good.trim_start_matches("sha256=").into()),
            "no sha256= prefix",
        ),
        (&flipped, Some(good.clone()), "body changed after signing"),
        (&body, Some(good.to_uppercase()), "upper-case prefix"),
    ];
    for (body, signature, what) in cases {
        let res = app
            .post_webhook_signed_with(body, signature.as_deref())
            .await;
        assert_eq!(res.status(), 401, "{what}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.queue.recorded(), 0);
    assert!(app.graph.requests().is_empty());
}

#[tokio::test]
async fn fixture_signed_by_meta_is_accepted_byte_for_byte() {
    let app = Channel::start().await;
    // The header value from the shared signature vectors, over the file's exact bytes.
    let header = "sha256=642a10c437de715f81a28d1d32d749e40f348828406af24a78a3c30900d3fe9a";
    let res = app
        .post_webhook_signed_with(&fixture("messenger-text-message.json"), Some(header))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "EVENT_RECEIVED");
    app.graph.wait_for_sent(1, WAIT).await;
    let seen = app.conversation.inputs();
    assert_eq!(
        seen,
        [(
            "6915800000000001".to_owned(),
            InputEvent::Text("Hi! I'd like to join the caf\u{e9} rewards club \u{1F600}".into())
        )]
    );
}

#[tokio::test]
async fn malformed_body_with_a_valid_signature_is_400_and_nothing_is_recorded() {
    let app = Channel::start().await;
    for body in [
        &b"{\"object\":\"page\",\"entry\":[{"[..],
        b"[]",
        br#"{"object":"instagram","entry":[]}"#,
    ] {
        let res = app.post_webhook(body).await;
        assert_eq!(res.status(), 400, "{}", String::from_utf8_lossy(body));
        let err: serde_json::Value = res.json().await.unwrap();
        assert_eq!(err["code"], "bad_request");
        assert!(err["message"]
            .as_str()
            .unwrap()
            .starts_with("not a Messenger Page notification"));
    }
    assert_eq!(app.queue.recorded(), 0);
}

#[tokio::test]
async fn signed_text_message_gets_a_send_api_reply() {
    let app = Channel::start().await;
    let res = app
        .post_webhook(&text_event("m_1", "111", 1000, "hello"))
        .await;
    assert_eq!(res.status(), 200);

    let sent = app.graph.wait_for_sent(1, WAIT).await;
    assert_eq!(sent[0]["recipient"], json!({"id": "111"}));
    assert_eq!(sent[0]["messaging_type"], "RESPONSE");
    assert_eq!(sent[0]["message"]["text"], "you said: hello");
    assert_eq!(
        sent[0]["message"]["quick_replies"][0]["payload"],
        "LOYALTY_BALANCE"
    );
    let request = &app.graph.requests()[0];
    assert_eq!(request.path, "/v25.0/me/messages");
    assert_eq!(request.query["access_token"], PAGE_TOKEN);
}

#[tokio::test]
async fn redelivered_webhook_has_exactly_one_effect() {
    let app = Channel::start().await;
    let body = text_event("m_dup", "222", 1000, "once");
    for _ in 0..3 {
        assert_eq!(app.post_webhook(&body).await.status(), 200);
    }
    app.graph.wait_for_sent(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.graph.sent().len(), 1);
    assert_eq!(app.conversation.inputs().len(), 1);
}

#[tokio::test]
async fn batched_two_entry_webhook_answers_every_customer_and_skips_the_read() {
    let app = Channel::start().await;
    assert_eq!(
        app.post_webhook(&fixture("messenger-batched-two-entries.json"))
            .await
            .status(),
        200
    );
    app.graph.wait_for_sent(3, WAIT).await;
    let mut seen = app.conversation.inputs();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen,
        [
            (
                "6915800000000003".to_owned(),
                InputEvent::Text("jane@example.com #1001".into())
            ),
            (
                "6915800000000004".to_owned(),
                InputEvent::Payload("LOYALTY_REDEEM".into())
            ),
            (
                "7023100000000009".to_owned(),
                InputEvent::Text(String::new())
            ),
        ]
    );
    assert_eq!(app.queue.recorded(), 3, "the read event is not recorded");
}

#[tokio::test]
async fn echo_and_read_events_are_acknowledged_but_not_answered() {
    let app = Channel::start().await;
    let read = envelope(
        json!({"sender":{"id":"333"},"recipient":{"id":"104857600000001"},
        "timestamp":5,"read":{"watermark":4}}),
    );
    for body in [fixture("messenger-echo.json"), read] {
        assert_eq!(app.post_webhook(&body).await.status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.queue.recorded(), 0);
    assert!(app.graph.requests().is_empty());
}

#[tokio::test]
async fn transient_send_failure_is_retried_then_delivered() {
    let app = Channel::start().await;
    app.graph.fail_next_transient(2);
    app.post_webhook(&text_event("m_t", "444", 1000, "retry me"))
        .await;
    let sent = app.graph.wait_for_sent(1, WAIT).await;
    assert_eq!(sent[0]["message"]["text"], "you said: retry me");
    assert_eq!(app.graph.requests().len(), 3, "two failures, then success");
    eventually(|| app.queue.outbox_len() == 0, "outbox drained").await;
}

#[tokio::test]
async fn permanent_send_failure_is_dropped_without_retrying() {
    let app = Channel::start().await;
    app.graph.fail_next_permanent(1);
    app.post_webhook(&text_event("m_p1", "555", 1000, "first"))
        .await;
    app.post_webhook(&text_event("m_p2", "555", 2000, "second"))
        .await;
    let sent = app.graph.wait_for_sent(1, WAIT).await;
    assert_eq!(sent[0]["message"]["text"], "you said: second");
    assert_eq!(
        app.graph.requests().len(),
        2,
        "the refused reply is not retried"
    );
    eventually(|| app.queue.outbox_len() == 0, "outbox drained").await;
}

#[tokio::test]
async fn engine_failure_is_answered_with_an_apology() {
    let app = Channel::start().await;
    app.post_webhook(&text_event("m_boom", "666", 1000, "boom"))
        .await;
    let sent = app.graph.wait_for_sent(1, WAIT).await;
    assert!(is_apology(&sent[0]), "{}", sent[0]);
}

#[tokio::test]
async fn a_panicking_engine_is_answered_with_an_apology_and_the_lane_goes_on() {
    let app = Channel::start().await;
    app.post_webhook(&text_event("m_panic", "667", 1000, "panic"))
        .await;
    let sent = app.graph.wait_for_sent(1, WAIT).await;
    assert!(is_apology(&sent[0]), "{}", sent[0]);
    app.post_webhook(&text_event("m_after", "667", 2000, "still there?"))
        .await;
    let sent = app.graph.wait_for_sent(2, WAIT).await;
    assert_eq!(sent[1]["message"]["text"], "you said: still there?");
}

#[tokio::test]
async fn one_customers_events_run_in_timestamp_order_and_customers_in_parallel() {
    let app = Channel::start().await;
    app.graph.set_delay(Duration::from_millis(150));
    // One POST, delivered out of order as Meta may do after failures.
    let events = [
        ("m_c", 3000, "third"),
        ("m_a", 1000, "first"),
        ("m_b", 2000, "second"),
    ];
    let messaging: Vec<_> = events
        .iter()
        .map(|(mid, ts, text)| {
            json!({"sender":{"id":"777"},"recipient":{"id":"104857600000001"},
            "timestamp":ts,"message":{"mid":mid,"text":text}})
        })
        .collect();
    let body = serde_json::to_vec(
        &json!({"object":"page","entry":[{"id":"104857600000001","time":1,"messaging":messaging}]}),
    )
    .unwrap();
    app.post_webhook(&body).await;
    app.post_webhook(&text_event("m_other", "888", 500, "other customer"))
        .await;
    app.graph.wait_for_sent(4, WAIT).await;
    let texts = app.graph.texts_to("777");
    assert_eq!(
        texts,
        ["you said: first", "you said: second", "you said: third"]
    );
    // The other customer did not wait behind the three slow sends.
    let order: Vec<String> = app
        .graph
        .sent()
        .iter()
        .map(|b| b["recipient"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_ne!(order.last().unwrap(), "888", "{order:?}");
}

#[tokio::test]
async fn events_recorded_before_a_crash_are_processed_after_restart() {
    // The first run records events but its worker never runs (as if killed right after the ACK).
    let app = Channel::start_without_worker().await;
    app.post_webhook(&text_event("m_r1", "999", 1000, "before crash"))
        .await;
    app.post_webhook(&fixture("messenger-quick-reply.json"))
        .await;
    let (queue, graph) = app.stop().await;
    assert!(graph.sent().is_empty());

    let app = Channel::restart(queue, graph).await;
    app.graph.wait_for_sent(2, WAIT).await;
    assert_eq!(app.graph.texts_to("999"), ["you said: before crash"]);
    // A redelivery of an event already recorded does not run it a second time.
    app.post_webhook(&text_event("m_r1", "999", 1000, "before crash"))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.graph.sent().len(), 2);
    assert_eq!(app.queue.pending_len(), 0);
}

#[tokio::test]
async fn replies_queued_while_graph_is_down_are_delivered_after_restart() {
    let app = Channel::start().await;
    app.graph.go_down();
    app.post_webhook(&text_event("m_d", "1010", 1000, "are you there"))
        .await;
    // Wait until the first delivery attempt failed, then stop during the backoff.
    eventually(
        || !app.graph.requests().is_empty(),
        "a first delivery attempt",
    )
    .await;
    let (queue, graph) = app.stop().await;
    assert_eq!(queue.outbox_len(), 1, "the reply stays queued");
    graph.come_back();

    let app = Channel::restart(queue, graph).await;
    let sent = app.graph.wait_for_sent(1, WAIT).await;
    assert_eq!(sent[0]["message"]["text"], "you said: are you there");
    assert_eq!(
        app.conversation.inputs().len(),
        0,
        "the event itself is not run again"
    );
}

#[tokio::test]
async fn reply_is_dropped_after_the_retry_budget_is_spent() {
    let app = Channel::start().await;
    app.graph.go_down();
    app.post_webhook(&text_event("m_x", "1111", 1000, "lost"))
        .await;
    let attempts = super::harness::MAX_ATTEMPTS as usize;
    eventually(
        || app.graph.requests().len() == attempts,
        "every attempt made",
    )
    .await;
    eventually(
        || app.queue.outbox_len() == 0,
        "reply dropped from the outbox",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.graph.requests().len(),
        attempts,
        "no attempt beyond the budget"
    );
}

#[tokio::test]
async fn the_webhook_is_acknowledged_before_slow_processing_finishes() {
    let app = Channel::start().await;
    app.graph.set_delay(Duration::from_secs(3));
    let started = std::time::Instant::now();
    for i in 0..5 {
        let res = app
            .post_webhook(&text_event(&format!("m_s{i}"), "1212", i, "slow"))
            .await;
        assert_eq!(res.status(), 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

/// The fixed apology a failed or panicking conversation is answered with.
fn is_apology(sent: &serde_json::Value) -> bool {
    sent["message"]["text"]
        .as_str()
        .is_some_and(|t| t.starts_with("Sorry"))
}

/// Twelve customers write three times each to a worker with two places and a Send API that
/// takes 40 ms; returns the most sends there were at once, once each customer has been
/// answered once, in order.
async fn twelve_customers_with_two_places(grace_ms: u64) -> usize {
    let app = Channel::start_with_turns(2, grace_ms).await;
    app.graph.set_delay(Duration::from_millis(40));
    const CUSTOMERS: i64 = 12;
    for round in 0..3i64 {
        for c in 0..CUSTOMERS {
            let res = app
                .post_webhook(&text_event(
                    &format!("m_{c}_{round}"),
                    &format!("{}", 3000 + c),
                    1000 + round,
                    &format!("r{round}"),
                ))
                .await;
            assert_eq!(res.status(), 200);
        }
    }
    app.graph.wait_for_sent(3 * CUSTOMERS as usize, WAIT).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        app.graph.sent().len(),
        3 * CUSTOMERS as usize,
        "each answered once"
    );
    for c in 0..CUSTOMERS {
        assert_eq!(
            app.graph.texts_to(&format!("{}", 3000 + c)),
            ["you said: r0", "you said: r1", "you said: r2"]
        );
    }
    assert_eq!(app.queue.pending_len(), 0);
    app.graph.most_sends_at_once()
}

#[tokio::test]
async fn with_two_places_and_a_send_api_slower_than_the_grace_other_customers_turns_go_on() {
    let most = twelve_customers_with_two_places(5).await;
    assert!(
        most > 2,
        "at most {most} sends at once: the waits kept their places"
    );
}

#[tokio::test]
async fn with_two_places_and_waits_shorter_than_the_grace_no_more_than_two_events_are_worked_on() {
    let most = twelve_customers_with_two_places(5_000).await;
    assert!(most <= 2, "{most} sends at once with two places");
}

#[tokio::test]
async fn events_still_waiting_for_a_place_at_shutdown_are_left_for_the_next_start() {
    let app = Channel::start_with_turns(1, 5).await;
    // The engine holds the only place (it is working, not waiting on the network).
    app.post_webhook(&text_event("m_hold", "4001", 1000, "hold"))
        .await;
    eventually(
        || app.conversation.inputs().len() == 1,
        "the held turn started",
    )
    .await;
    for (mid, psid) in [("m_b", "4002"), ("m_c", "4003")] {
        app.post_webhook(&text_event(mid, psid, 1000, "hi")).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let script = Arc::clone(&app.conversation);
    let stopping = tokio::spawn(app.stop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    script.let_go();
    let (queue, graph) = stopping.await.unwrap();
    assert_eq!(script.inputs().len(), 1, "only the started turn ran");
    assert_eq!(
        queue.pending_len(),
        2,
        "the waiting events stay in the store"
    );

    let app = Channel::restart(queue, graph).await;
    app.graph.wait_for_sent(2, WAIT).await;
    assert_eq!(app.graph.texts_to("4002"), ["you said: hi"]);
    assert_eq!(app.graph.texts_to("4003"), ["you said: hi"]);
    assert_eq!(app.queue.pending_len(), 0);
}

#[tokio::test]
async fn a_backlog_beyond_the_memory_limit_waits_in_the_store_and_runs_once_in_order() {
    const LIMIT: usize = 3;
    let app =
        Channel::start_with_memory_limit(Arc::default(), FakeGraphApi::start().await, LIMIT).await;
    // Slow replies keep the worker behind, so most events must wait in the store.
    app.graph.set_delay(Duration::from_millis(40));
    let sampling = CancellationToken::new();
    let (messenger, queue) = (Arc::clone(&app.messenger), Arc::clone(&app.queue));
    let stop = sampling.clone();
    let sampler = tokio::spawn(async move {
        let (mut most_in_memory, mut most_pending) = (0, 0);
        while !stop.is_cancelled() {
            most_in_memory = most_in_memory.max(messenger.events_in_memory());
            most_pending = most_pending.max(queue.pending_len());
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        (most_in_memory, most_pending)
    });
    // Two customers, their events interleaved.
    let (mut expected_a, mut expected_b) = (Vec::new(), Vec::new());
    for i in 0..12i64 {
        let res = app
            .post_webhook(&text_event(
                &format!("m_a{i}"),
                "2001",
                1000 + i,
                &format!("a{i}"),
            ))
            .await;
        assert_eq!(res.status(), 200);
        expected_a.push(format!("you said: a{i}"));
        if i % 2 == 0 {
            app.post_webhook(&text_event(
                &format!("m_b{i}"),
                "2002",
                1000 + i,
                &format!("b{i}"),
            ))
            .await;
            expected_b.push(format!("you said: b{i}"));
        }
    }
    app.graph.wait_for_sent(18, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    sampling.cancel();
    let (most_in_memory, most_pending) = sampler.await.unwrap();
    // The bound is the limit plus what arrives while the store is being read (backlog.rs);
    // this client sends one webhook at a time.
    assert!(
        most_in_memory <= LIMIT + 1,
        "{most_in_memory} events in memory"
    );
    assert!(
        most_pending > LIMIT,
        "the test must make events wait in the store (at most {most_pending} pending)"
    );
    // Each event answered once, each customer's in order, across the store's read-backs.
    assert_eq!(app.graph.sent().len(), 18);
    assert_eq!(app.graph.texts_to("2001"), expected_a);
    assert_eq!(app.graph.texts_to("2002"), expected_b);
    assert_eq!(app.queue.pending_len(), 0);
    assert_eq!(app.messenger.events_in_memory(), 0);
}

/// Records an event of customer `psid` that hangs until the test lets it go (a shop that does
/// not answer), `more` later events of theirs and one event each of `others` other customers
/// (newer), then restarts with room for 4 events in memory and waits until the others are
/// answered while the first still hangs. Returns the channel, the hang not yet let go.
async fn others_answered_behind_a_hang(psid: &str, more: i64, others: i64) -> Channel {
    let app = Channel::start_without_worker().await;
    app.post_webhook(&text_event("m_hold", psid, 1000, "hold"))
        .await;
    for i in 1..=more {
        app.post_webhook(&text_event(
            &format!("m_h{i}"),
            psid,
            1000 + i,
            &format!("h{i}"),
        ))
        .await;
    }
    for i in 1..=others {
        app.post_webhook(&text_event(
            &format!("m_o{i}"),
            &format!("{psid}{i:02}"),
            1100 + i,
            &format!("o{i}"),
        ))
        .await;
    }
    let (queue, graph) = app.stop().await;
    let app = Channel::start_with_memory_limit(queue, graph, 4).await;
    let sent = app.graph.wait_for_sent(others as usize, WAIT).await;
    assert!(
        sent.iter().all(|m| m["recipient"]["id"] != psid),
        "the hanging event is still hanging"
    );
    assert!(app.messenger.events_in_memory() <= 4);
    app
}

/// The hanging customer's events, all answered in order once the hang is let go.
async fn answered_in_order_once_let_go(app: &Channel, psid: &str, more: i64, total: usize) {
    app.conversation.let_go();
    app.graph.wait_for_sent(total, WAIT).await;
    let expected: Vec<String> = std::iter::once("you said: held".to_owned())
        .chain((1..=more).map(|i| format!("you said: h{i}")))
        .collect();
    assert_eq!(app.graph.texts_to(psid), expected, "still in order");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.graph.sent().len(), total, "each event once");
    assert_eq!(app.queue.pending_len(), 0);
}

#[tokio::test]
async fn a_customer_whose_event_hangs_does_not_hold_back_the_backlog_waiting_in_the_store() {
    // The hanging customer wrote again; 15 others wait behind them.
    let app = others_answered_behind_a_hang("6000", 1, 15).await;
    answered_in_order_once_let_go(&app, "6000", 1, 17).await;
}

#[tokio::test]
async fn a_lane_that_panics_outside_the_engine_leaves_the_events_it_never_ran_to_a_read_of_the_store(
) {
    let app = Channel::start_without_worker().await;
    for (i, text) in ["first", "second", "third"].into_iter().enumerate() {
        app.post_webhook(&text_event(
            &format!("m_p{i}"),
            "7001",
            1000 + i as i64,
            text,
        ))
        .await;
    }
    app.post_webhook(&text_event("m_other", "7002", 1000, "other"))
        .await;
    let (queue, graph) = app.stop().await;
    // The start-up read queues all three in one lane; the first takes the lane down, outside
    // the engine's catch_unwind (where a bug in the store's check would).
    queue.panic_once_when_checking("m_p0");
    let app = Channel::restart(queue, graph).await;
    app.graph.wait_for_sent(3, WAIT).await;
    assert_eq!(
        app.graph.texts_to("7001"),
        ["you said: second", "you said: third"],
        "the two it never ran are read back and run; the one that failed, read back and run \
         once already, waits for the next start (no loop on a poisoned event)"
    );
    assert_eq!(app.graph.texts_to("7002"), ["you said: other"]);
    // A later event of that customer gets a lane again.
    app.post_webhook(&text_event("m_p3", "7001", 1003, "fourth"))
        .await;
    app.graph.wait_for_sent(4, WAIT).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.graph.sent().len(), 4, "each event once");
    let pending = app.queue.pending_keys();
    assert!(
        pending.len() == 1 && pending[0].ends_with(":m_p0"),
        "{pending:?}"
    );
    assert_eq!(app.messenger.events_in_memory(), 0);
    let (queue, graph) = app.stop().await;
    let app = Channel::restart(queue, graph).await;
    app.graph.wait_for_sent(5, WAIT).await;
    assert_eq!(
        app.graph.texts_to("7001").last().map(String::as_str),
        Some("you said: first")
    );
    assert_eq!(app.queue.pending_len(), 0);
}

#[tokio::test]
async fn an_event_handed_over_whose_lane_panics_runs_again_from_the_store() {
    let app = Channel::start().await;
    // An event read back from the store whose lane panics is left for the next start.
    app.pass_the_start_up_read("7100").await;
    app.queue.panic_once_when_checking("m_q0");
    for (i, text) in ["first", "second", "third"].into_iter().enumerate() {
        app.post_webhook(&text_event(
            &format!("m_q{i}"),
            "7101",
            1000 + i as i64,
            text,
        ))
        .await;
    }
    app.graph.wait_for_sent(4, WAIT).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        app.graph.texts_to("7101"),
        ["you said: first", "you said: second", "you said: third"],
        "each once, in order"
    );
    assert_eq!(app.queue.pending_len(), 0);
    assert_eq!(app.messenger.events_in_memory(), 0);
}

#[tokio::test]
async fn a_customer_with_more_events_waiting_than_the_memory_limit_behind_a_hang_does_not_hold_back_the_others(
) {
    // Ten more of theirs wait: more than the limit, so their events alone would fill each read.
    let app = others_answered_behind_a_hang("6100", 10, 5).await;
    answered_in_order_once_let_go(&app, "6100", 10, 16).await;
}

#[tokio::test]
async fn a_backlog_larger_than_the_memory_limit_is_worked_through_after_a_restart() {
    let app = Channel::start_without_worker().await;
    for i in 0..10i64 {
        // Posted newest first: the order has to come from the timestamps.
        let ts = 2000 - i;
        app.post_webhook(&text_event(
            &format!("m_r{i}"),
            &format!("30{}", i % 2),
            ts,
            &format!("{ts}"),
        ))
        .await;
    }
    let (queue, graph) = app.stop().await;
    let app = Channel::start_with_memory_limit(queue, graph, 2).await;
    app.graph.wait_for_sent(10, WAIT).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.graph.sent().len(), 10, "each event once");
    let said = |psid| -> Vec<String> { app.graph.texts_to(psid) };
    assert_eq!(
        said("300"),
        ["1992", "1994", "1996", "1998", "2000"].map(|t| format!("you said: {t}"))
    );
    assert_eq!(
        said("301"),
        ["1991", "1993", "1995", "1997", "1999"].map(|t| format!("you said: {t}"))
    );
    assert_eq!(app.queue.pending_len(), 0);
}

#[tokio::test]
async fn an_event_whose_recording_failed_after_the_write_runs_when_meta_redelivers_it() {
    let app = Channel::start().await;
    let body = text_event("m_f", "4001", 1000, "are my points there");
    app.queue.fail_next_recording_after_writing();
    assert_eq!(app.post_webhook(&body).await.status(), 500);
    // Meta redelivers; the store knows the event already, so this delivery hands nothing over.
    assert_eq!(app.post_webhook(&body).await.status(), 200);
    let sent = app.graph.wait_for_sent(1, WAIT).await;
    assert_eq!(sent[0]["message"]["text"], "you said: are my points there");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.graph.sent().len(), 1, "answered once");
    assert_eq!(app.queue.pending_len(), 0);
}

#[tokio::test]
async fn an_event_read_back_that_cannot_finish_is_tried_once_and_does_not_block_the_others() {
    let app = Channel::start_without_worker().await;
    app.post_webhook(&text_event("m_stuck", "5001", 1000, "stuck"))
        .await;
    app.post_webhook(&text_event("m_next", "5002", 2000, "next"))
        .await;
    app.post_webhook(&text_event("m_last", "5001", 3000, "last"))
        .await;
    let (queue, graph) = app.stop().await;
    // The "key" the queue reports is "<page>:<mid>".
    let stuck_key = queue
        .pending_keys()
        .into_iter()
        .find(|k| k.ends_with("m_stuck"))
        .unwrap();
    queue.never_finish(&stuck_key);
    // Room for one event: each read-back takes the oldest, and the stuck one is oldest.
    let app = Channel::start_with_memory_limit(queue, graph, 1).await;
    app.graph.wait_for_sent(2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let texts: Vec<String> = ["5001", "5002"]
        .iter()
        .flat_map(|p| app.graph.texts_to(p))
        .collect();
    assert_eq!(texts, ["you said: last", "you said: next"]);
    let runs = app
        .conversation
        .inputs()
        .iter()
        .filter(|(_, e)| matches!(e, InputEvent::Text(t) if t == "stuck"))
        .count();
    assert_eq!(runs, 1, "run once, then left for the next start");
    assert_eq!(app.queue.pending_len(), 1);
}
