//! The crash tests' harness: the upstream fakes and data dir that outlive every process, the
//! load's start and end, Meta's redelivery sweep, a graceful stop, and the verdict.

use super::checks;
use super::common::{test_overrides, BinaryApp, FakeGraphApi, FakeShop};
use super::load::{self, Load};
use loyalty_bot::store::{EventQueue, SledStore};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

pub const MESSENGER_CUSTOMERS: usize = 12;
pub const MANYCHAT_SUBSCRIBERS: usize = 6;

/// The fakes and the data dir outlive every process of a test; the port stays the same, as a
/// webhook URL does.
pub struct Upstreams {
    pub graph: FakeGraphApi,
    pub shop: FakeShop,
    pub env: Vec<(String, String)>,
    pub address: String,
    data_dir: tempfile::TempDir,
}

impl Upstreams {
    pub async fn start(extra: &[(&str, &str)]) -> Upstreams {
        let (graph, shop) = (FakeGraphApi::start().await, FakeShop::start().await);
        let data_dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut env = test_overrides(data_dir.path(), &shop, &graph);
        // Limits are tested elsewhere (tests/rate_limits.rs); this load must never meet them.
        let limits = [
            "CLAIMS_PER_MEMBER",
            "FAILED_CLAIMS_PER_MEMBER",
            "REDEMPTIONS_PER_MEMBER",
            "CLAIMS_PER_IP",
            "REDEMPTIONS_PER_IP",
            "ADMIN_PER_IP",
        ]
        .map(|budget| (format!("LIMITS__{budget}__MAX"), "1000000".to_owned()));
        let overrides = [("SERVER__BIND".to_owned(), format!("127.0.0.1:{port}"))]
            .into_iter()
            .chain(limits)
            .chain(
                extra
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            );
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

    pub fn store_path(&self) -> PathBuf {
        self.data_dir.path().join("db")
    }

    pub fn load(&self, seed: u64) -> Arc<Load> {
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
    pub fn unrecorded_on_a_copy(&self, load: &Load) -> (Vec<String>, usize, usize) {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(&self.store_path(), copy.path());
        let store = SledStore::open(copy.path(), 8 << 20).expect("open the copy");
        let events = store.pending_inbound().expect("inbox readable").len();
        let replies = store.pending_outbound().expect("outbox readable").len();
        let acked = load.journal().acked.clone();
        (checks::unrecorded(&store, &acked), events, replies)
    }

    /// Opens the store of the stopped service and checks it against what the customers saw.
    pub fn check(&self, load: &Load, kills: &[usize]) -> checks::Findings {
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

pub fn spawn_load(load: &Arc<Load>) -> JoinSet<()> {
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
pub async fn finish(load: &Load, mut actors: JoinSet<()>) {
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
pub async fn redeliver_everything(load: &Load, graph: &FakeGraphApi) -> Vec<String> {
    let before = graph.received();
    let acked = load.journal().acked.clone();
    let mut problems = Vec::new();
    // Sixteen at a time, as Meta's delivery does in parallel.
    for batch in acked.chunks(16) {
        let posts = batch.iter().map(|a| async move {
            let body = serde_json::json!({"object": "page",
                "entry": [{"id": load::PAGE, "time": a.timestamp_ms, "messaging": [a.event]}]});
            let ok = load.post_webhook(&serde_json::to_vec(&body).unwrap()).await;
            (!ok).then(|| format!("{}: redelivery refused", a.key))
        });
        problems.extend(
            futures_util::future::join_all(posts)
                .await
                .into_iter()
                .flatten(),
        );
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
pub async fn sent_one_more(graph: &FakeGraphApi, limit: Duration) {
    let (before, deadline) = (graph.received(), Instant::now() + limit);
    while graph.received() == before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// SIGTERM; the process must exit 0 within `limit`.
pub async fn stop_gracefully(mut server: BinaryApp, limit: Duration) -> Duration {
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

pub fn setting(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value}: not a number")),
    )
}

/// Fails listing every problem: the customers' complaints first, then the checks' findings.
pub fn assert_no_problems(
    load: &Load,
    mut more: Vec<String>,
    findings: &checks::Findings,
    seed: u64,
) {
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

/// One line of what happened, for the test's output.
pub fn summary(load: &Load, f: &checks::Findings) -> String {
    let j = load.journal();
    format!(
        "{} events acknowledged ({} posts without a 200, {} redeliveries after one), {} ManyChat \
         answers ({} requests without one), {} messages sent ({} re-sent after a crash, {} \
         events run again after a crash), {} members, {} ledger entries, {} credits, {} coupons \
         issued, {} cancelled",
        j.acked.len(),
        j.unacknowledged_posts,
        j.redeliveries,
        j.answers.len(),
        j.unanswered_requests,
        f.messages,
        f.resends,
        f.reruns,
        f.members,
        f.ledger_entries,
        f.credits,
        f.coupons_issued,
        f.coupons_cancelled
    )
}
