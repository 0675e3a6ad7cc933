//! Crash safety of the real binary under load (see `docs/crash-safety.md`). Messenger customers
//! and ManyChat subscribers join, claim and redeem concurrently while the process is killed
//! with `kill -9` at random moments and restarted on the same data dir; at the end it is
//! stopped with SIGTERM and the store is opened and checked against everything the customers
//! were acknowledged and told. A second test sends SIGTERM in the middle of the load.
//!
//! `CRASH_KILLS` (default 5) and `CRASH_SEED` (default: random, printed) tune the first test:
//! `CRASH_KILLS=40 CRASH_SEED=7 cargo test --test crash_under_load -- --nocapture`.

mod common;

#[path = "crash/checks.rs"]
mod checks;
#[path = "crash/load.rs"]
mod load;

use common::{test_overrides, BinaryApp, FakeGraphApi, FakeShop};
use load::Load;
use loyalty_bot::store::{EventQueue, SledStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

const MESSENGER_CUSTOMERS: usize = 12;
const MANYCHAT_SUBSCRIBERS: usize = 6;

/// The fakes and the data dir outlive every process of a test; the port stays the same, as a
/// webhook URL does.
struct Upstreams {
    graph: FakeGraphApi,
    shop: FakeShop,
    env: Vec<(String, String)>,
    address: String,
    data_dir: tempfile::TempDir,
}

impl Upstreams {
    async fn start(extra: &[(&str, &str)]) -> Upstreams {
        let (graph, shop) = (FakeGraphApi::start().await, FakeShop::start().await);
        let data_dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut env = test_overrides(data_dir.path(), &shop, &graph);
        let overrides = [("SERVER__BIND", format!("127.0.0.1:{port}"))]
            .into_iter()
            .chain(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        for (key, value) in overrides {
            let key = format!("LOYALTY__{key}");
            env.retain(|(k, _)| *k != key);
            env.push((key, value));
        }
        Upstreams {
            graph,
            shop,
            env,
            address: format!("http://127.0.0.1:{port}"),
            data_dir,
        }
    }

    fn store_path(&self) -> PathBuf {
        self.data_dir.path().join("db")
    }

    fn load(&self, seed: u64) -> Arc<Load> {
        Arc::new(Load::new(
            self.address.clone(),
            self.graph.clone(),
            self.shop.clone(),
            MANYCHAT_SUBSCRIBERS,
            seed,
        ))
    }

    /// Acknowledged events missing from the store of the stopped service, checked on a copy
    /// (so the next process finds the store as the last one left it); and how many events and
    /// replies it left queued.
    fn unrecorded_on_a_copy(&self, load: &Load) -> (Vec<String>, usize, usize) {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(&self.store_path(), copy.path());
        let store = SledStore::open(copy.path(), 8 << 20).expect("open the copy");
        let events = store.pending_inbound().expect("inbox readable").len();
        let replies = store.pending_outbound().expect("outbox readable").len();
        let acked = load.journal().acked.clone();
        (checks::unrecorded(&store, &acked), events, replies)
    }

    /// Opens the store of the stopped service and checks it against what the customers saw.
    fn check(&self, load: &Load, kills: &[usize]) -> checks::Findings {
        let store = SledStore::open(&self.store_path(), 8 << 20).expect("open the store");
        let graph = self.graph.requests();
        let coupons = self.shop.coupons();
        let journal = load.journal();
        let evidence = checks::Evidence {
            journal: &journal,
            graph: &graph,
            kills,
            shop_coupons: &coupons,
        };
        checks::check(&evidence, &store)
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn spawn_load(load: &Arc<Load>) -> JoinSet<()> {
    let mut actors = JoinSet::new();
    for i in 0..MESSENGER_CUSTOMERS {
        actors.spawn(load::messenger_customer(Arc::clone(load), i));
    }
    for k in 0..MANYCHAT_SUBSCRIBERS {
        actors.spawn(load::manychat_subscriber(Arc::clone(load), k));
    }
    actors
}

/// Stops the load and waits for every actor to have its last answer.
async fn finish(load: &Load, mut actors: JoinSet<()>) {
    load.stop();
    let all = async {
        while let Some(done) = actors.join_next().await {
            done.expect("an actor panicked");
        }
    };
    tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("the customers got their answers within a minute");
}

/// Meta redelivers every event once more (as after a webhook outage): each must be answered
/// 200 and none answered again. Returns what went wrong.
async fn redeliver_everything(load: &Load, graph: &FakeGraphApi) -> Vec<String> {
    let before = graph.received();
    let acked = load.journal().acked.clone();
    let mut problems = Vec::new();
    for a in &acked {
        let body = serde_json::json!({"object": "page",
            "entry": [{"id": load::PAGE, "time": a.timestamp_ms, "messaging": [a.event]}]});
        if !load.post_webhook(&serde_json::to_vec(&body).unwrap()).await {
            problems.push(format!("{}: redelivery refused", a.key));
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for r in &graph.requests()[before..] {
        problems.push(format!(
            "{}: answered again when redelivered (its first delivery was lost or not recognised)",
            r.body["message"]["metadata"]
        ));
    }
    problems
}

/// Returns as soon as the fake Graph API has received one more request (or after `limit`).
async fn sent_one_more(graph: &FakeGraphApi, limit: Duration) {
    let (before, deadline) = (graph.received(), Instant::now() + limit);
    while graph.received() == before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// SIGTERM; the process must exit 0 within `limit`.
async fn stop_gracefully(mut server: BinaryApp, limit: Duration) -> Duration {
    let asked = Instant::now();
    server.send_sigterm();
    let status = server.wait_exit(limit).await;
    let took = asked.elapsed();
    match status {
        Some(s) if s.success() => took,
        other => panic!(
            "after SIGTERM: {other:?} within {limit:?}\n{}",
            server.logs()
        ),
    }
}

fn setting(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value}: not a number")),
    )
}

/// Fails listing every problem: the customers' complaints first, then the checks' findings.
fn assert_no_problems(load: &Load, mut more: Vec<String>, findings: &checks::Findings, seed: u64) {
    let mut problems = load.journal().problems.clone();
    problems.append(&mut more);
    problems.extend(findings.problems.iter().cloned());
    assert!(
        problems.is_empty(),
        "{} problems (CRASH_SEED={seed}):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_and_doubles_nothing() {
    let started = Instant::now();
    let kills = setting("CRASH_KILLS").unwrap_or(5);
    let seed = setting("CRASH_SEED").unwrap_or_else(rand::random);
    eprintln!("crash test: CRASH_SEED={seed} CRASH_KILLS={kills}");
    let mut rng = StdRng::seed_from_u64(seed);
    let up = Upstreams::start(&[]).await;
    let load = up.load(seed);
    let mut server = BinaryApp::start(&up.env).await;
    let actors = spawn_load(&load);

    let mut boundaries = Vec::new();
    for _ in 0..kills {
        let pause = Duration::from_millis(rng.gen_range(200..=1500));
        tokio::time::sleep(pause).await;
        // Random moments hit the narrow windows rarely, so two kinds of kill aim at them.
        match rng.gen_range(0..3) {
            0 => {}                                                      // now, whatever is in flight
            1 => load.next_ack(Duration::from_secs(2)).await, // just after a webhook's 200
            _ => sent_one_more(&up.graph, Duration::from_secs(2)).await, // just after a send
        }
        server.kill9();
        // Whatever the dead process sent has reached the fake by now; later requests come from
        // the next process.
        tokio::time::sleep(Duration::from_millis(50)).await;
        boundaries.push(up.graph.requests().len());
        server = BinaryApp::start(&up.env).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    finish(&load, actors).await;
    let redelivery = redeliver_everything(&load, &up.graph).await;
    let stop_took = stop_gracefully(server, Duration::from_secs(15)).await;

    let findings = up.check(&load, &boundaries);
    {
        let j = load.journal();
        eprintln!(
            "crash test: {kills} kills, {} events acknowledged ({} unacknowledged posts, {} \
             redeliveries), {} ManyChat answers ({} unanswered requests), {} messages sent ({} \
             re-sent after a crash; {} events run again after a crash), {} members, {} credits, {} coupons issued, {} cancelled; \
             SIGTERM exit {stop_took:?}; {:?} in all",
            j.acked.len(),
            j.unacknowledged_posts,
            j.redeliveries,
            j.answers.len(),
            j.unanswered_requests,
            findings.messages,
            findings.resends,
            findings.reruns,
            findings.members,
            findings.credits,
            findings.coupons_issued,
            findings.coupons_cancelled,
            started.elapsed()
        );
    }
    assert_no_problems(&load, redelivery, &findings, seed);
    // Each restart can re-send at most the one reply each customer had in flight.
    assert!(findings.resends <= kills as usize * MESSENGER_CUSTOMERS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_zero_promptly_and_loses_nothing() {
    let seed = setting("CRASH_SEED").unwrap_or_else(rand::random);
    eprintln!("sigterm test: CRASH_SEED={seed}");
    let budget = Duration::from_secs(6);
    let up = Upstreams::start(&[
        ("SHOP__TIMEOUT_SECS", "4"),
        ("SERVER__SHUTDOWN_TIMEOUT_SECS", "6"),
    ])
    .await;
    let load = up.load(seed);
    let mut server = BinaryApp::start(&up.env).await;
    let client = reqwest::Client::new();
    let manychat = |path: &str, body: serde_json::Value| {
        client
            .post(format!("{}{path}", up.address))
            .bearer_auth(common::MANYCHAT_TOKEN)
            .json(&body)
            .send()
    };
    let joined = manychat(
        "/manychat/join",
        serde_json::json!({"subscriber_id": "4242", "email": "probe@example.com"}),
    );
    assert_eq!(joined.await.unwrap().status(), 200);
    let actors = spawn_load(&load);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Every shop call now takes a while, so the load has claims in flight when SIGTERM comes;
    // one ManyChat claim is known to be waiting on the shop.
    up.shop
        .add_order("P-1", "probe@example.com", "12.00", "paid");
    up.shop.set_delay(Duration::from_millis(1500));
    let in_flight = tokio::spawn(manychat(
        "/manychat/claim",
        serde_json::json!({"subscriber_id": "4242", "order_number": "P-1"}),
    ));
    let at_shop = || {
        up.shop
            .requests()
            .iter()
            .any(|r| r.body["order_number"] == "P-1")
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !at_shop() {
        assert!(
            Instant::now() < deadline,
            "the probe claim reached the shop"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let asked = Instant::now();
    server.send_sigterm();

    // (a) New connections are refused while requests in flight are still being answered.
    while !server.logs().contains("draining") {
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut refused = false;
    while !refused && asked.elapsed() < Duration::from_secs(1) {
        let fresh = reqwest::Client::builder()
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        refused = fresh
            .get(format!("{}/healthz", up.address))
            .send()
            .await
            .is_err();
    }
    assert!(refused, "a new connection was still served after SIGTERM");
    assert!(!in_flight.is_finished(), "the probe was still in flight");
    // (c) The request in flight completes.
    let answer = in_flight
        .await
        .unwrap()
        .expect("the claim in flight is answered");
    assert_eq!(answer.status(), 200);
    let v2: serde_json::Value = answer.json().await.unwrap();
    assert!(v2.to_string().contains("You earned 12 points"), "{v2}");
    // (e) Exit 0 within the budget (plus a margin for the process to start exiting).
    let status = server.wait_exit(budget + Duration::from_secs(2)).await;
    let took = asked.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?} after {took:?}:\n{}",
        server.logs()
    );
    // (b, d) Whatever got a 200 is in the store, and the next process finishes it.
    let (mut lost, events, replies) = up.unrecorded_on_a_copy(&load);
    eprintln!(
        "sigterm test: exited 0 after {took:?} (budget {budget:?}), leaving {events} events \
         and {replies} replies queued"
    );
    up.shop.heal();
    let server = BinaryApp::start(&up.env).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    finish(&load, actors).await;
    let redelivery = redeliver_everything(&load, &up.graph).await;
    stop_gracefully(server, budget + Duration::from_secs(2)).await;
    let findings = up.check(&load, &[]);
    lost.extend(redelivery);
    assert_no_problems(&load, lost, &findings, seed);
}

/// Starts the service with `budget` seconds to shut down, has its worker wait on a Send API
/// that answers only after a minute, stops it (`signals` SIGTERMs, 200 ms apart) and checks
/// that it exits 0 within `limit` of the last and that the next process sends the reply.
/// Returns the time from the first signal to the exit.
async fn stop_with_a_hung_send_api(budget: &str, signals: usize, limit: Duration) -> Duration {
    let up = Upstreams::start(&[("SERVER__SHUTDOWN_TIMEOUT_SECS", budget)]).await;
    let load = up.load(0);
    let server = BinaryApp::start(&up.env).await;
    up.graph.set_delay(Duration::from_secs(60));
    let psid = load::messenger_psid(1);
    let event = serde_json::json!({"sender": {"id": psid}, "recipient": {"id": load::PAGE},
        "timestamp": 1_763_846_400_000i64, "message": {"mid": "m_hung", "text": "hello"}});
    let body = serde_json::json!({"object": "page",
        "entry": [{"id": load::PAGE, "time": 1, "messaging": [event]}]});
    assert!(load.post_webhook(&serde_json::to_vec(&body).unwrap()).await);
    // The worker is now waiting on the Send API (wherever it is, the outcome must not change).
    tokio::time::sleep(Duration::from_millis(500)).await;

    let asked = Instant::now();
    for _ in 1..signals {
        server.send_sigterm();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_gracefully(server, limit).await;
    let took = asked.elapsed();
    // The reply stayed queued and goes out from the next process.
    up.graph.set_delay(Duration::ZERO);
    let server = BinaryApp::start(&up.env).await;
    let key = format!("{}:m_hung", load::PAGE);
    let deadline = Instant::now() + Duration::from_secs(10);
    while up.graph.sent_for(&key).is_empty() {
        assert!(Instant::now() < deadline, "{}", server.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_gracefully(server, Duration::from_secs(4)).await;
    took
}

#[tokio::test]
async fn sigterm_with_a_hung_send_api_still_exits_in_time() {
    let took = stop_with_a_hung_send_api("2", 1, Duration::from_secs(4)).await;
    eprintln!("hung Send API: exited 0 {took:?} after SIGTERM (budget 2 s)");
}

#[tokio::test]
async fn a_second_sigterm_stops_without_waiting_for_the_budget() {
    let took = stop_with_a_hung_send_api("60", 2, Duration::from_secs(3)).await;
    eprintln!("hung Send API, two signals: exited 0 {took:?} after the first (budget 60 s)");
}
