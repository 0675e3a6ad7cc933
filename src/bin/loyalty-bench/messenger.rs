//! The Messenger workloads. Intake: signed text-message webhooks with unique `mid`s from a few
//! thousand customers, answered 200 once recorded. End to end: members (joined beforehand
//! through the program, as the join flow does) type an order number; a request completes when
//! the fake Send API receives the reply about that order.

use crate::cli::Options;
use crate::fakes::{Fakes, Replies};
use crate::load::{owned_member, Call, Expect, Measured, Plan, Scenario};
use crate::report::Row;
use crate::service::{Service, APP_SECRET};
use anyhow::Context;
use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use loyalty_bot::domain::{Channel, ChatIdentity, Email, Profile};
use loyalty_bot::program::JoinResult;
use loyalty_bot::signature::hmac_sha256_hex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Rounds of the held-intake row, each after a round of the bare ceiling.
const HELD_ROUNDS: u32 = 5;

const PAGE_ID: &str = "104857600000001";
/// Distinct senders in the intake workload.
const INTAKE_CUSTOMERS: u64 = 3000;
/// Members of the end-to-end workload (a full run).
const CLAIM_MEMBERS: usize = 1000;
/// End-to-end order numbers; far from ManyChat's and the top-up range.
const FIRST_ORDER: u64 = 10_000_000;
const SIGNATURE: HeaderName = HeaderName::from_static("x-hub-signature-256");

/// What customers type, ~120 characters each: a webhook body of ~600 bytes.
const TEXTS: [&str; 4] = [
    "Hi! I ordered the canvas tote bag last week and wanted to ask how many points I have now, and when I get the free mug?",
    "Hello there, quick question: do the points from my birthday order count too, and how do I see my balance in this chat?",
    "Good morning! My friend told me about your rewards club. Can I still collect points for the order I placed yesterday?",
    "Hey, thanks for the fast delivery! Is there a way to use my points for the new autumn collection, or only for the mug?",
];

/// A realistic text-message notification (the shape of fixtures/messenger/messenger-text-message.json).
/// Written with `format!` rather than built as a `serde_json::Value`: the load generator shares
/// the CPUs with the service, and building a tree per request cost it about 5 % of them.
fn webhook_body(psid: &str, mid: &str, text: &str) -> Vec<u8> {
    let now = chrono::Utc::now().timestamp_millis();
    // Ids are digits and `[A-Za-z0-9_-]`; only the text needs JSON escaping.
    let text = serde_json::Value::from(text);
    format!(
        r#"{{"object":"page","entry":[{{"id":"{PAGE_ID}","time":{now},"messaging":[{{"sender":{{"id":"{psid}"}},"recipient":{{"id":"{PAGE_ID}"}},"timestamp":{now},"message":{{"mid":"{mid}","text":{text}}}}}]}}]}}"#
    )
    .into_bytes()
}

fn psid(pool: u64, n: u64) -> String {
    format!("69{pool:02}{n:012}")
}

/// Unique per `kind` and `n`, and as long as Meta's (~90 characters).
fn mid(kind: char, n: u64) -> String {
    format!("m_{kind}{n:016x}AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-aBcDeFgHiJkLmNoPqRsTuVwXyZ_0123456789ab")
}

fn signed(path: &'static str, body: Vec<u8>, expect: Expect) -> Call {
    let signature = format!("sha256={}", hmac_sha256_hex(APP_SECRET.as_bytes(), &body));
    let value = HeaderValue::from_str(&signature).unwrap_or(HeaderValue::from_static("bad"));
    Call {
        path,
        body: Bytes::from(body),
        headers: vec![(SIGNATURE, value)],
        expect,
    }
}

/// Signed text-message webhooks with unique `mid`s, built per request.
pub struct Intake {
    next: AtomicU64,
    path: &'static str,
    kind: char,
}

impl Intake {
    fn new(path: &'static str, kind: char) -> Self {
        Intake {
            next: AtomicU64::new(0),
            path,
            kind,
        }
    }

    /// The bare ceiling's requests: the same as intake's (each built and signed for the
    /// request), posted to the bare handler. So both rows pay the same load-generator cost
    /// per request, and the ratio compares only what the servers do with them.
    pub fn bare() -> Self {
        Intake::new("/bare", 'b')
    }
}

impl Scenario for Intake {
    fn call(&self, _client: usize, _seq: u64) -> Call {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let text = TEXTS[(n % TEXTS.len() as u64) as usize];
        let body = webhook_body(&psid(1, n % INTAKE_CUSTOMERS), &mid(self.kind, n), text);
        signed(self.path, body, Expect::Success)
    }
}

/// Webhook intake; runs last, because the worker is still answering its backlog afterwards.
pub async fn run_intake(options: &Options, fakes: &Fakes, service: &Service) -> Row {
    let before = fakes.replies.count();
    let scenario = Arc::new(Intake::new("/webhooks/messenger", 'i'));
    let measured =
        crate::measure_service("messenger intake", service, options.plan(), scenario).await;
    let replies = fakes.replies.count() - before;
    let mut row = Row::new("messenger webhook intake (signed, durable)", measured);
    row.note(format!(
        "intake: {} events from {INTAKE_CUSTOMERS} customers; meanwhile the worker processed them \
         and sent {replies} replies (join prompts), on the same CPUs",
        row.measured.completed()
    ));
    row
}

/// Webhook intake with processing held back by the operator switch: every 200 still waits
/// for its events' flush, but no processing competes for the CPUs. Then lets go and times the
/// worker through the backlog.
pub async fn run_held_intake(
    options: &Options,
    fakes: &Fakes,
    service: &Service,
) -> anyhow::Result<Row> {
    hold(service, true).await?;
    let before = fakes.replies.count();
    // Its own mids ('h'), so none repeats one of the intake run's; one scenario for every
    // round, so none repeats one of an earlier round's either.
    let scenario: Arc<dyn Scenario> = Arc::new(Intake::new("/webhooks/messenger", 'h'));
    let ceiling_scenario: Arc<dyn Scenario> = Arc::new(Intake::bare());
    // The ratio is the target, and this VM's speed drifts by ±15% between workloads a minute
    // apart: so the ceiling is measured again in rounds alternating with this row's, the
    // window split between them.
    let plan = options.plan();
    let round = Plan {
        window: plan.window / HELD_ROUNDS,
        warmup: (plan.window / HELD_ROUNDS / 4).min(Duration::from_millis(500)),
        ..plan
    };
    let (mut ceilings, mut rounds) = (Vec::new(), Vec::new());
    for i in 1..=HELD_ROUNDS {
        ceilings.push(
            crate::measure(
                &format!("bare ceiling, round {i} of {HELD_ROUNDS}"),
                fakes.bare_addr,
                round,
                Arc::clone(&ceiling_scenario),
            )
            .await,
        );
        rounds.push(
            crate::measure_service(
                &format!("messenger intake, processing held, round {i} of {HELD_ROUNDS}"),
                service,
                round,
                Arc::clone(&scenario),
            )
            .await,
        );
    }
    let ratios: Vec<String> = rounds
        .iter()
        .zip(&ceilings)
        .map(|(r, c)| format!("{:.2}", r.rate() / c.rate().max(1e-9)))
        .collect();
    let ceiling = Measured::concat(ceilings);
    let measured = Measured::concat(rounds);
    // Requests that completed outside the window were recorded too: the backlog is all of them.
    let recorded = measured.completed();
    let held_replies = fakes.replies.count() - before;
    let let_go = std::time::Instant::now();
    hold(service, false).await?;
    let deadline = let_go + Duration::from_secs(120);
    let mut last = (fakes.replies.count(), let_go);
    while std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = fakes.replies.count();
        if now != last.0 {
            last = (now, std::time::Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let drained = last.0 - before - held_replies;
    let secs = last.1.duration_since(let_go).as_secs_f64();
    let mut row = Row::new(
        "messenger webhook intake, processing held (signed, durable)",
        measured,
    );
    row.ceiling = Some(ceiling.rate());
    row.note(format!(
        "held intake ran in {HELD_ROUNDS} rounds of {:.1} s, each after a round of the bare \
         ceiling with the same requests: ceiling {:.0} req/s over those rounds (p99 {} ms), \
         ratio per round {}",
        round.window.as_secs_f64(),
        ceiling.rate(),
        ceiling
            .percentile(0.99)
            .map_or_else(|| "–".into(), |d| format!("{:.2}", d.as_secs_f64() * 1e3)),
        ratios.join(", ")
    ));
    row.note(format!(
        "held intake: {recorded} events acknowledged in the window while processing was held \
         ({held_replies} replies meanwhile, from lanes already busy); once let go, the worker sent \
         {drained} replies in {secs:.1} s ({:.0} replies/s) working through the backlog",
        drained as f64 / secs.max(1e-3)
    ));
    Ok(row)
}

/// `PUT /admin/messenger/processing`, the operator's switch.
async fn hold(service: &Service, held: bool) -> anyhow::Result<()> {
    let res = reqwest::Client::new()
        .put(format!(
            "http://{}/admin/messenger/processing",
            service.addr
        ))
        .bearer_auth(crate::service::ADMIN_TOKEN)
        .json(&serde_json::json!({ "held": held }))
        .send()
        .await
        .context("PUT /admin/messenger/processing")?;
    anyhow::ensure!(
        res.status().is_success(),
        "holding processing answered {}",
        res.status()
    );
    Ok(())
}

struct Claims {
    replies: Arc<Replies>,
    members: usize,
    clients: usize,
    next_order: AtomicU64,
}

impl Scenario for Claims {
    fn call(&self, client: usize, seq: u64) -> Call {
        let member = owned_member(client, self.clients, self.members, seq);
        let psid = psid(2, member);
        let order_n = self.next_order.fetch_add(1, Ordering::Relaxed);
        let order = order_n.to_string();
        let text = match seq % 3 {
            0 => format!("#{order}"),
            1 => format!("order {order}"),
            _ => order.clone(),
        };
        let reply = self.replies.expect(&psid, &order);
        signed(
            "/webhooks/messenger",
            // The order number is unique per call, also across runs: so is the mid.
            webhook_body(&psid, &mid('c', order_n), &text),
            Expect::Reply(reply),
        )
    }
}

/// End-to-end claims: webhook in, shop round trip, credit, reply out through the Send API.
pub async fn run_claims(
    options: &Options,
    fakes: &Fakes,
    service: &Service,
) -> anyhow::Result<Vec<Row>> {
    let members = options.members(CLAIM_MEMBERS);
    join_members(service, members).await?;
    let scenario = Arc::new(Claims {
        replies: Arc::clone(&fakes.replies),
        members,
        clients: options.connections,
        next_order: AtomicU64::new(FIRST_ORDER),
    });
    let measured = crate::measure_service(
        "messenger claims",
        service,
        options.plan(),
        Arc::clone(&scenario) as Arc<dyn Scenario>,
    )
    .await;
    let mut row = Row::new(
        "messenger claim, webhook → Send API reply (events/s)",
        measured,
    );
    row.note(format!(
        "messenger claims: {members} members; latency = webhook sent → reply received by the fake Send API"
    ));
    let mut rows = vec![row];
    if let Some(rate) = options.rate {
        let plan = options.plan().paced(rate);
        let measured =
            crate::measure_service("messenger claims, paced", service, plan, scenario).await;
        rows.push(Row::new(
            format!("messenger claim, paced at {rate:.0}/s: webhook → Send API reply"),
            measured,
        ));
    }
    Ok(rows)
}

/// Joins `n` Messenger members through the program (the join flow's last step).
async fn join_members(service: &Service, n: usize) -> anyhow::Result<()> {
    let program = service.program();
    crate::each(n, 32, move |i| {
        let program = Arc::clone(&program);
        async move {
            let who = ChatIdentity::new(Channel::Messenger, &psid(2, i as u64))?;
            let email = Email::parse(&format!("fb-{i}@bench.example"))?;
            match program.join(&who, email, Profile::default()).await? {
                JoinResult::Joined(_) => Ok(()),
                _ => anyhow::bail!("member {i} did not join"),
            }
        }
    })
    .await
    .context("join the Messenger members")
}
