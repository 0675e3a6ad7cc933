//! A Messenger channel on its own loopback server, with a scripted conversation, an in-memory
//! event queue (kept across a "restart") and a fake Graph API.

use super::common::FakeGraphApi;
use actix_web::{dev::ServerHandle, App, HttpServer};
use futures_util::future::BoxFuture;
use loyalty_bot::channels::messenger::{Conversation, Messenger, RetryPolicy};
use loyalty_bot::config::{MessengerSettings, Secret};
use loyalty_bot::domain::{MemberId, Points};
use loyalty_bot::flows::{payloads, Choice, Input, InputEvent, Reply, Turn};
use loyalty_bot::program::ProgramError;
use loyalty_bot::store::durability::{Durable, Mark};
use loyalty_bot::store::{
    AwaitDurable, EventQueue, InboundEvent, OutboundMessage, ReplyId, StoreError,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const APP_SECRET: &str = "fixture-meta-app-secret";
pub const VERIFY_TOKEN: &str = "verify-me-123";
pub const PAGE_TOKEN: &str = "EAAG-test-page-token";
pub const MAX_ATTEMPTS: u32 = 4;
const PAGE: &str = "104857600000001";

/// A webhook body with one event for the test Page.
pub fn envelope(event: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"object":"page","entry":[{"id":PAGE,"time":1,"messaging":[event]}]}))
        .unwrap()
}

pub fn text_event(mid: &str, psid: &str, timestamp: i64, text: &str) -> Vec<u8> {
    envelope(
        json!({"sender":{"id":psid},"recipient":{"id":PAGE},"timestamp":timestamp,
        "message":{"mid":mid,"text":text}}),
    )
}

/// Waits up to 5 s for `cond`; panics naming `what` otherwise.
pub async fn eventually(cond: impl Fn() -> bool, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Answers "you said: <text>" (with one quick reply), fails on "boom", waits on "hold" until
/// the test lets it go (like a shop that does not answer), and notes every input.
pub struct Script {
    inputs: Mutex<Vec<(String, InputEvent)>>,
    held: Arc<tokio::sync::Semaphore>,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            inputs: Mutex::default(),
            held: Arc::new(tokio::sync::Semaphore::new(0)),
        }
    }
}

impl Script {
    pub fn inputs(&self) -> Vec<(String, InputEvent)> {
        self.inputs.lock().unwrap().clone()
    }

    /// Lets every "hold" conversation, waiting or to come, go on.
    pub fn let_go(&self) {
        self.held
            .add_permits(tokio::sync::Semaphore::MAX_PERMITS / 2);
    }
}

impl Conversation for Script {
    fn converse(&self, input: Input) -> BoxFuture<'_, Result<Turn, ProgramError>> {
        self.inputs
            .lock()
            .unwrap()
            .push((input.who.id.clone(), input.event.clone()));
        let said = match &input.event {
            InputEvent::Text(t) if t == "boom" => {
                return Box::pin(async {
                    Err(ProgramError::Store(StoreError::UnknownMember(MemberId(1))))
                })
            }
            InputEvent::Text(t) if t == "panic" => {
                return Box::pin(async { panic!("a bug in the engine") })
            }
            InputEvent::Text(t) if t == "hold" => {
                let held = Arc::clone(&self.held);
                return Box::pin(async move {
                    let _go = held.acquire().await;
                    Ok(said_turn("held"))
                });
            }
            InputEvent::Text(t) | InputEvent::Payload(t) | InputEvent::Referral(t) => t.clone(),
            InputEvent::GetStarted { referral } => format!("get started {referral:?}"),
        };
        let turn = said_turn(&said);
        Box::pin(async move { Ok(turn) })
    }
}

fn said_turn(said: &str) -> Turn {
    let reply = Reply {
        text: format!("you said: {said}"),
        choices: vec![Choice {
            title: "My points".into(),
            payload: payloads::BALANCE.into(),
        }],
        buttons: vec![],
    };
    Turn {
        replies: vec![reply],
        member: Some(MemberId(7)),
        balance: Some(Points(50)),
        ..Turn::default()
    }
}

/// The [`EventQueue`] contract, in memory.
#[derive(Default)]
pub struct MemQueue {
    state: Mutex<MemState>,
    /// The next `record_inbound` writes its events and then fails, like a flush that failed
    /// after the write landed.
    fail_after_recording: std::sync::atomic::AtomicBool,
    /// Keys whose `finish_inbound` always fails.
    unfinishable: Mutex<HashSet<String>>,
    /// `mid`s whose event's next `inbound_finished` panics, like a bug in a store backend.
    panic_once: Mutex<HashSet<String>>,
}

#[derive(Default)]
struct MemState {
    seen: HashSet<String>,
    finished: HashSet<String>,
    pending: Vec<InboundEvent>,
    outbox: BTreeMap<u64, (ReplyId, OutboundMessage)>,
    next_id: u64,
}

impl MemQueue {
    pub fn never_finish(&self, key: &str) {
        self.unfinishable.lock().unwrap().insert(key.to_owned());
    }

    /// The next check of whether the event `mid` is processed panics; the lane asks it outside
    /// the engine's `catch_unwind`, so the panic takes the lane down.
    pub fn panic_once_when_checking(&self, mid: &str) {
        self.panic_once.lock().unwrap().insert(mid.to_owned());
    }

    pub fn fail_next_recording_after_writing(&self) {
        self.fail_after_recording
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
    /// Events ever recorded.
    pub fn recorded(&self) -> usize {
        self.state.lock().unwrap().seen.len()
    }
    pub fn pending_keys(&self) -> Vec<String> {
        let s = self.state.lock().unwrap();
        s.pending.iter().map(|e| e.key.clone()).collect()
    }
    pub fn pending_len(&self) -> usize {
        self.state.lock().unwrap().pending.len()
    }
    pub fn outbox_len(&self) -> usize {
        self.state.lock().unwrap().outbox.len()
    }
}

/// In memory, every write is as durable as it will ever be.
impl AwaitDurable for MemQueue {
    fn durable(&self, _mark: Mark) -> Durable {
        Box::pin(std::future::ready(Ok(())))
    }
}

impl EventQueue for MemQueue {
    fn record_inbound(&self, events: Vec<InboundEvent>) -> Result<Vec<InboundEvent>, StoreError> {
        let mut s = self.state.lock().unwrap();
        let new: Vec<InboundEvent> = events
            .into_iter()
            .filter(|e| s.seen.insert(e.key.clone()))
            .collect();
        s.pending.extend(new.iter().cloned());
        if self
            .fail_after_recording
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(StoreError::Backend("the flush failed".into()));
        }
        Ok(new)
    }
    fn pending_inbound(&self) -> Result<Vec<InboundEvent>, StoreError> {
        let mut pending = self.state.lock().unwrap().pending.clone();
        pending.sort_by(|a, b| (&a.sender, a.timestamp_ms).cmp(&(&b.sender, b.timestamp_ms)));
        Ok(pending)
    }
    fn inbound_finished(&self, key: &str) -> Result<bool, StoreError> {
        // Event keys are `<page id>:<mid>`.
        let mid = key.rsplit(':').next().unwrap_or(key);
        if self.panic_once.lock().unwrap().remove(mid) {
            panic!("a bug in the store backend");
        }
        Ok(self.state.lock().unwrap().finished.contains(key))
    }
    fn finish_inbound(
        &self,
        key: &str,
        replies: Vec<OutboundMessage>,
    ) -> Result<Vec<ReplyId>, StoreError> {
        if self.unfinishable.lock().unwrap().contains(key) {
            return Err(StoreError::Backend("the disk is full".into()));
        }
        let mut s = self.state.lock().unwrap();
        // Like the sled queue: an event already finished queues nothing the second time.
        if !s.finished.insert(key.to_owned()) {
            return Ok(Vec::new());
        }
        s.pending.retain(|e| e.key != key);
        let mut ids = Vec::new();
        for (index, reply) in (0..).zip(replies) {
            s.next_id += 1;
            let (seq, id) = (
                s.next_id,
                ReplyId::Event {
                    key: key.into(),
                    index,
                },
            );
            s.outbox.insert(seq, (id.clone(), reply));
            ids.push(id);
        }
        Ok(ids)
    }
    fn pending_outbound(&self) -> Result<Vec<(ReplyId, OutboundMessage)>, StoreError> {
        Ok(self
            .state
            .lock()
            .unwrap()
            .outbox
            .values()
            .cloned()
            .collect())
    }
    /// Like the sled queue: finishing a reply also finishes the ones before it of its event.
    fn finish_outbound(&self, id: &ReplyId) -> Result<(), StoreError> {
        let ReplyId::Event { key, index } = id;
        let done = |queued: &ReplyId| {
            let ReplyId::Event { key: k, index: i } = queued;
            k == key && i <= index
        };
        self.state
            .lock()
            .unwrap()
            .outbox
            .retain(|_, (queued, _)| !done(queued));
        Ok(())
    }
    fn prune_inbound(&self, _before: chrono::DateTime<chrono::Utc>) -> Result<usize, StoreError> {
        Ok(0)
    }
}

/// The worker's settings a test may change; the defaults are `config.toml`'s.
struct Tuning {
    max_events_in_memory: usize,
    max_turns_at_once: usize,
    turn_grace_ms: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            max_events_in_memory: 20_000,
            max_turns_at_once: 64,
            turn_grace_ms: 5,
        }
    }
}

pub struct Channel {
    pub address: String,
    pub graph: FakeGraphApi,
    pub queue: Arc<MemQueue>,
    pub conversation: Arc<Script>,
    pub messenger: Arc<Messenger>,
    client: reqwest::Client,
    shutdown: CancellationToken,
    worker: Option<JoinHandle<()>>,
    server: ServerHandle,
}

impl Channel {
    pub async fn start() -> Channel {
        Self::build(Arc::default(), FakeGraphApi::start().await, true, 20_000).await
    }

    /// With `messenger.max_turns_at_once = at_once` and `turn_grace_ms = grace_ms`.
    pub async fn start_with_turns(at_once: usize, grace_ms: u64) -> Channel {
        let tuning = Tuning {
            max_turns_at_once: at_once,
            turn_grace_ms: grace_ms,
            ..Tuning::default()
        };
        Self::build_tuned(Arc::default(), FakeGraphApi::start().await, true, tuning).await
    }

    /// With `messenger.max_events_in_memory = limit`, on `queue` (a fresh one: `Arc::default()`).
    pub async fn start_with_memory_limit(
        queue: Arc<MemQueue>,
        graph: FakeGraphApi,
        limit: usize,
    ) -> Channel {
        Self::build(queue, graph, true, limit).await
    }

    /// Records events but never processes them, like a process killed right after the ACK.
    pub async fn start_without_worker() -> Channel {
        Self::build(Arc::default(), FakeGraphApi::start().await, false, 20_000).await
    }

    /// A new process on the same queue and the same Graph API.
    pub async fn restart(queue: Arc<MemQueue>, graph: FakeGraphApi) -> Channel {
        Self::build(queue, graph, true, 20_000).await
    }

    async fn build(
        queue: Arc<MemQueue>,
        graph: FakeGraphApi,
        run_worker: bool,
        max_events_in_memory: usize,
    ) -> Channel {
        let tuning = Tuning {
            max_events_in_memory,
            ..Tuning::default()
        };
        Self::build_tuned(queue, graph, run_worker, tuning).await
    }

    async fn build_tuned(
        queue: Arc<MemQueue>,
        graph: FakeGraphApi,
        run_worker: bool,
        tuning: Tuning,
    ) -> Channel {
        let Tuning {
            max_events_in_memory,
            max_turns_at_once,
            turn_grace_ms,
        } = tuning;
        let settings = MessengerSettings {
            app_secret: Secret::new(APP_SECRET),
            verify_token: Secret::new(VERIFY_TOKEN),
            page_access_token: Secret::new(PAGE_TOKEN),
            graph_api_url: graph.url(),
            page_username: String::new(),
            max_body_bytes: 1 << 20,
            max_events_in_memory,
            max_turns_at_once,
            turn_grace: Duration::from_millis(turn_grace_ms),
            send_timeout: Duration::from_millis(10_000),
            profile_timeout: Duration::from_millis(2_000),
        };
        let retry = RetryPolicy {
            max_attempts: MAX_ATTEMPTS,
            first_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(200),
        };
        let conversation = Arc::new(Script::default());
        let messenger =
            Messenger::with_conversation(settings, conversation.clone(), queue.clone(), retry);
        let shutdown = CancellationToken::new();
        let worker = run_worker.then(|| messenger.spawn(shutdown.clone()));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let served = Arc::clone(&messenger);
        let server = HttpServer::new(move || {
            let messenger = Arc::clone(&served);
            App::new().configure(move |cfg| messenger.configure(cfg))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Channel {
            address,
            graph,
            queue,
            conversation,
            messenger,
            client: reqwest::Client::new(),
            shutdown,
            worker,
            server: handle,
        }
    }

    /// Stops the worker at a safe point and the server; keeps the queue and the fake.
    pub async fn stop(mut self) -> (Arc<MemQueue>, FakeGraphApi) {
        self.shutdown.cancel();
        if let Some(worker) = self.worker.take() {
            tokio::time::timeout(Duration::from_secs(5), worker)
                .await
                .expect("worker stops")
                .unwrap();
        }
        self.server.stop(true).await;
        (self.queue, self.graph)
    }

    pub fn signature(&self, body: &[u8]) -> String {
        format!(
            "sha256={}",
            loyalty_bot::signature::hmac_sha256_hex(APP_SECRET.as_bytes(), body)
        )
    }

    pub async fn verify(&self, query: &str) -> reqwest::Response {
        let url = format!("{}/webhooks/messenger?{query}", self.address);
        self.client.get(url).send().await.unwrap()
    }

    pub async fn post_webhook(&self, body: &[u8]) -> reqwest::Response {
        self.post_webhook_signed_with(body, Some(&self.signature(body)))
            .await
    }

    /// Posts a first event from `psid` and waits for its answer: the worker's start-up read of
    /// the store is then over, and new events are handed over in memory (before it, they would
    /// be read back from the store).
    pub async fn pass_the_start_up_read(&self, psid: &str) {
        self.post_webhook(&text_event(&format!("m_warm_{psid}"), psid, 900, "warm"))
            .await;
        self.graph.wait_for_sent(1, Duration::from_secs(10)).await;
    }

    /// Posts a signed webhook and returns its status line, blocking this thread until then: on
    /// a current-thread runtime, no task of the test's (the worker's loop) runs meanwhile.
    pub fn post_webhook_blocking(&self, body: &[u8]) -> String {
        use std::io::{Read, Write};
        let host = self.address.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(host).unwrap();
        let head = format!(
            "POST /webhooks/messenger HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             X-Hub-Signature-256: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.signature(body),
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer.lines().next().unwrap_or_default().to_owned()
    }

    pub async fn post_webhook_signed_with(
        &self,
        body: &[u8],
        signature: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("{}/webhooks/messenger", self.address))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(s) = signature {
            req = req.header("X-Hub-Signature-256", s);
        }
        req.send().await.unwrap()
    }
}
