//! The load of the crash tests: Messenger customers and ManyChat subscribers who join, claim
//! orders (their own, and orders that customers on both channels race for) and redeem, against
//! a server that may vanish at any moment. They behave like the platforms do: Meta redelivers a
//! webhook until it gets a 200, sometimes twice at once and sometimes again after a 200;
//! a ManyChat customer taps again when nothing came back (with the same one-time request id,
//! as our quick replies carry it). What they were acknowledged and told is journaled.

use super::common::{meta_signature, FakeGraphApi, FakeShop, MANYCHAT_TOKEN};
use loyalty_bot::flows::payloads;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

pub const PAGE: &str = "104857600000001";
/// A customer who waits longer than this for an answer gives up (the checks then fail).
const PATIENCE: Duration = Duration::from_secs(20);

/// A Messenger event that got its 200.
#[derive(Debug, Clone)]
pub struct Acked {
    /// `<page>:<mid>`: the service's de-duplication key, and the metadata of its reply.
    pub key: String,
    pub psid: String,
    pub timestamp_ms: i64,
    /// The `messaging[]` item.
    pub event: Value,
}

/// A ManyChat answer as the customer saw it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub subscriber: String,
    pub path: &'static str,
    /// Every message text of the response, joined by newlines.
    pub text: String,
}

#[derive(Debug, Default)]
pub struct Journal {
    pub acked: Vec<Acked>,
    /// Posts of an event that had its 200 already (Meta's at-least-once delivery).
    pub redeliveries: usize,
    /// Webhook posts without a 200 (refused connection, reset, 5xx), each delivered again.
    pub unacknowledged_posts: usize,
    /// ManyChat requests without an answer, each sent again.
    pub unanswered_requests: usize,
    pub answers: Vec<Answer>,
    /// What went wrong on the client side (a reply that never came, a bad status).
    pub problems: Vec<String>,
}

/// What every actor shares.
pub struct Load {
    pub address: String,
    pub graph: FakeGraphApi,
    pub shop: FakeShop,
    /// How many ManyChat subscribers there are: shared orders are spread over them.
    pub subscribers: usize,
    seed: u64,
    client: reqwest::Client,
    journal: Mutex<Journal>,
    stop: AtomicBool,
    /// Woken whenever a webhook gets its 200.
    acked: Notify,
}

impl Load {
    pub fn new(
        address: String,
        graph: FakeGraphApi,
        shop: FakeShop,
        subscribers: usize,
        seed: u64,
    ) -> Load {
        Load {
            address,
            graph,
            shop,
            subscribers,
            seed,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap(),
            journal: Mutex::default(),
            stop: AtomicBool::new(false),
            acked: Notify::new(),
        }
    }

    /// Actors finish what they are doing (until it is answered) and stop.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    pub fn journal(&self) -> MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn rng(&self, actor: u64) -> StdRng {
        StdRng::seed_from_u64(self.seed ^ actor.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// Posts a signed webhook once; `true` on 200.
    pub async fn post_webhook(&self, body: &[u8]) -> bool {
        let res = self
            .client
            .post(format!("{}/webhooks/messenger", self.address))
            .header("Content-Type", "application/json")
            .header("X-Hub-Signature-256", meta_signature(body))
            .body(body.to_vec())
            .send()
            .await;
        let ok = matches!(res, Ok(r) if r.status() == 200);
        if ok {
            self.acked.notify_waiters();
        }
        ok
    }

    /// Returns right after the next webhook gets its 200 (or after `limit`).
    pub async fn next_ack(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.acked.notified()).await;
    }

    /// Delivers like Meta: again and again until a 200. `false` if the service never answered.
    async fn deliver(&self, body: &[u8]) -> bool {
        let deadline = Instant::now() + PATIENCE;
        while !self.post_webhook(body).await {
            self.journal().unacknowledged_posts += 1;
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        true
    }

    /// Waits for the accepted Send API message answering `key`; its visible text.
    async fn reply_to(&self, key: &str) -> Option<String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(body) = self.graph.sent_for(key).first() {
                return Some(FakeGraphApi::text_of(body));
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Posts to a ManyChat endpoint until a 200 comes back; journals and returns its text.
    async fn manychat(&self, subscriber: &str, path: &'static str, body: &Value) -> Option<String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let res = self
                .client
                .post(format!("{}{path}", self.address))
                .bearer_auth(MANYCHAT_TOKEN)
                .json(body)
                .send()
                .await;
            match res {
                Ok(r) if r.status() == 200 => {
                    if let Ok(v2) = r.json::<Value>().await {
                        let text = manychat_text(&v2);
                        self.journal().answers.push(Answer {
                            subscriber: subscriber.to_owned(),
                            path,
                            text: text.clone(),
                        });
                        return Some(text);
                    }
                    // The body was cut off by a crash: the customer saw nothing.
                }
                Ok(r) => self
                    .journal()
                    .problems
                    .push(format!("POST {path} for {subscriber}: HTTP {}", r.status())),
                Err(_) => {}
            }
            self.journal().unanswered_requests += 1;
            if Instant::now() > deadline {
                self.journal()
                    .problems
                    .push(format!("POST {path} for {subscriber}: never answered"));
                return None;
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }
}

fn manychat_text(v2: &Value) -> String {
    v2["content"]["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|m| m["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// A paid order of `email` worth 20.00 to 159.99 EUR.
fn add_own_order(load: &Load, rng: &mut StdRng, number: &str, email: &str) {
    let total = format!("{}.{:02}", rng.gen_range(20..160), rng.gen_range(0..100));
    load.shop.add_order(number, email, &total, "paid");
}

/// The order customers on both channels race for in `round`: subscriber `k`'s, and every
/// Messenger customer's whose number maps to `k`.
fn shared_order(load: &Load, round: u32, k: usize) -> String {
    let number = format!("S{round}-{k}");
    load.shop.add_order_for_anyone(&number, "33.30");
    number
}

/// One Messenger user (PSID) typing and tapping in order, each time waiting for the answer.
struct Customer<'a> {
    load: &'a Load,
    rng: StdRng,
    psid: String,
    email: String,
    next: u64,
    clock: i64,
}

impl Customer<'_> {
    /// Joins, then claims an order of their own each round, every other round a shared order,
    /// every third round a mug (tapped, or typed after asking for the rewards); until the load
    /// stops. `None`: gave up (journaled).
    async fn run(&mut self, i: usize) -> Option<()> {
        self.text("join").await?;
        for round in 1.. {
            if self.load.stopping() {
                break;
            }
            let own = format!("M{i}-{round}");
            add_own_order(self.load, &mut self.rng, &own, &self.email);
            self.text(&format!("#{own}")).await?;
            if round % 2 == 1 {
                let shared = shared_order(self.load, round, i % self.load.subscribers);
                self.text(&shared).await?;
            }
            if round % 6 == 3 {
                self.tap(&format!("{}free-mug", payloads::REDEEM_PREFIX))
                    .await?;
            } else if round % 6 == 0 {
                // Typed: the list opens a question, the reward's name answers it. A crash
                // between the two writes of that answer replays it against a closed question.
                self.text("rewards").await?;
                self.text("Free mug").await?;
            }
        }
        Some(())
    }

    async fn text(&mut self, text: &str) -> Option<()> {
        let reply = self.say(json!({ "text": text })).await?;
        self.answer_prompts(reply).await
    }

    async fn tap(&mut self, payload: &str) -> Option<()> {
        let reply = self
            .say(json!({ "text": payload, "quick_reply": { "payload": payload } }))
            .await?;
        self.answer_prompts(reply).await
    }

    /// Answers the join questions the way a customer would, whatever brought them up (a
    /// claim by a non-member, a question asked again after a crash).
    async fn answer_prompts(&mut self, mut reply: String) -> Option<()> {
        for _ in 0..6 {
            let message = if reply.contains("Would you like to join") {
                let yes = payloads::JOIN_YES;
                json!({ "text": "Yes, join", "quick_reply": { "payload": yes } })
            } else if reply.contains("Which email address") || reply.contains("look like an email")
            {
                json!({ "text": self.email })
            } else {
                break;
            };
            reply = self.say(message).await?;
        }
        Some(())
    }

    /// Sends one event like Meta does and returns the text of its answer.
    async fn say(&mut self, mut message: Value) -> Option<String> {
        self.next += 1;
        self.clock += 1000;
        let mid = format!("m_{}_{}", self.psid, self.next);
        message["mid"] = json!(mid);
        let key = format!("{PAGE}:{mid}");
        let event = json!({"sender": {"id": self.psid}, "recipient": {"id": PAGE},
            "timestamp": self.clock, "message": message});
        let body = serde_json::to_vec(&json!({"object": "page",
            "entry": [{"id": PAGE, "time": self.clock, "messaging": [event]}]}))
        .unwrap();
        let load = self.load;
        // Meta's edges sometimes deliver one event twice at the same time.
        let acked = if self.rng.gen_bool(0.15) {
            let (a, b) = tokio::join!(load.deliver(&body), load.deliver(&body));
            a && b
        } else {
            load.deliver(&body).await
        };
        if !acked {
            load.journal()
                .problems
                .push(format!("{key}: never acknowledged"));
            return None;
        }
        load.journal().acked.push(Acked {
            key: key.clone(),
            psid: self.psid.clone(),
            timestamp_ms: self.clock,
            event,
        });
        let Some(reply) = load.reply_to(&key).await else {
            load.journal()
                .problems
                .push(format!("{key}: acknowledged, never answered"));
            return None;
        };
        // …and sometimes again after a 200 (at-least-once): it must change nothing.
        if self.rng.gen_bool(0.2) && load.deliver(&body).await {
            load.journal().redeliveries += 1;
        }
        Some(reply)
    }
}

/// Messenger customer `i` (see [`Customer::run`]).
pub async fn messenger_customer(load: Arc<Load>, i: usize) {
    let mut customer = Customer {
        load: &load,
        rng: load.rng(2 * i as u64 + 1),
        psid: messenger_psid(i),
        email: format!("m{i}@example.com"),
        next: 0,
        clock: 1_763_846_400_000,
    };
    let _ = customer.run(i).await;
}

/// ManyChat subscriber `k`: joins, then claims an order of their own each round (sometimes
/// tapping twice at once), every other round the shared order, every third round a mug.
pub async fn manychat_subscriber(load: Arc<Load>, k: usize) {
    let mut rng = load.rng(2 * k as u64 + 2);
    let id = manychat_id(k);
    let email = format!("c{k}@example.com");
    let load = load.as_ref();
    let join = json!({"subscriber_id": id, "email": email});
    if load.manychat(&id, "/manychat/join", &join).await.is_none() {
        return;
    }
    for round in 1.. {
        if load.stopping() {
            return;
        }
        let own = format!("C{k}-{round}");
        add_own_order(load, &mut rng, &own, &email);
        let claim = json!({"subscriber_id": id, "order_number": own});
        if rng.gen_bool(0.3) {
            let (a, b) = tokio::join!(
                load.manychat(&id, "/manychat/claim", &claim),
                load.manychat(&id, "/manychat/claim", &claim)
            );
            if a.is_none() || b.is_none() {
                return;
            }
        } else if load
            .manychat(&id, "/manychat/claim", &claim)
            .await
            .is_none()
        {
            return;
        }
        if round % 2 == 1 {
            let shared = shared_order(load, round, k);
            let claim = json!({"subscriber_id": id, "order_number": shared});
            if load
                .manychat(&id, "/manychat/claim", &claim)
                .await
                .is_none()
            {
                return;
            }
        }
        if round % 3 == 0 {
            let redeem = json!({"subscriber_id": id, "reward_id": "free-mug",
                "request_id": format!("req-{id}-{round}")});
            let answered = if rng.gen_bool(0.5) {
                let (a, b) = tokio::join!(
                    load.manychat(&id, "/manychat/redeem", &redeem),
                    load.manychat(&id, "/manychat/redeem", &redeem)
                );
                a.is_some() && b.is_some()
            } else {
                load.manychat(&id, "/manychat/redeem", &redeem)
                    .await
                    .is_some()
            };
            if !answered {
                return;
            }
        }
    }
}

pub fn messenger_psid(i: usize) -> String {
    format!("{}", 6_915_800_000_100_000u64 + i as u64)
}

pub fn manychat_id(k: usize) -> String {
    format!("{}", 1_515_862_000u64 + k as u64)
}
