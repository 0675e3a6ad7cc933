//! The ManyChat workloads: `POST /manychat/claim` with a unique order number per request, and
//! `POST /manychat/redeem` of the free mug by members topped up beforehand. Both include the
//! shop round trip (verify, or coupon creation). Members join through `POST /manychat/join`.

use crate::cli::{Options, Workload};
use crate::fakes::{CREDITED_MARKER, TOP_UP_PREFIX};
use crate::load::{owned_member, Call, Expect, Scenario};
use crate::report::Row;
use crate::service::{Service, MANYCHAT_TOKEN};
use anyhow::Context;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, AUTHORIZATION};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Claiming members in a full run; redeeming members are `2 × connections`.
const CLAIM_MEMBERS: usize = 1000;
const FIRST_ORDER: u64 = 20_000_000;
/// The reward every redemption takes, and what its coupon codes start with.
const REWARD: &str = "free-mug";
const COUPON_MARKER: &str = "MUG-";

fn subscriber(pool: u64, n: usize) -> String {
    format!("15{pool:02}{n:08}")
}

fn call(path: &'static str, body: &Value, expect: Expect) -> Call {
    let auth = HeaderValue::from_str(&format!("Bearer {MANYCHAT_TOKEN}"))
        .expect("the bench token is ASCII");
    Call {
        path,
        body: Bytes::from(body.to_string()),
        headers: vec![(AUTHORIZATION, auth)],
        expect,
    }
}

struct Claims {
    members: usize,
    clients: usize,
    next_order: AtomicU64,
}

impl Scenario for Claims {
    fn call(&self, client: usize, seq: u64) -> Call {
        let member = owned_member(client, self.clients, self.members, seq) as usize;
        let order = self.next_order.fetch_add(1, Ordering::Relaxed).to_string();
        let body = json!({"id": subscriber(1, member), "order_number": order});
        call(
            "/manychat/claim",
            &body,
            Expect::BodyContains(CREDITED_MARKER),
        )
    }
}

struct Redeems {
    members: usize,
}

impl Scenario for Redeems {
    fn call(&self, client: usize, seq: u64) -> Call {
        // Two members per client, taken in turn.
        let member = (client * 2 + (seq % 2) as usize) % self.members;
        let body = json!({"id": subscriber(2, member), "reward_id": REWARD});
        call(
            "/manychat/redeem",
            &body,
            Expect::BodyContains(COUPON_MARKER),
        )
    }
}

/// Sets up the members, then measures claims and redemptions.
pub async fn run(options: &Options, service: &Service) -> anyhow::Result<Vec<Row>> {
    let plan = options.plan();
    let members = options.members(CLAIM_MEMBERS);
    let client = Setup::new(service)?;
    let mut rows = Vec::new();
    if options.runs(Workload::Claim) {
        client.join(1, members).await?;
        let claims = Arc::new(Claims {
            members,
            clients: options.connections,
            next_order: AtomicU64::new(FIRST_ORDER),
        });
        let claimed = crate::measure_service(
            "manychat claims",
            service,
            plan,
            Arc::clone(&claims) as Arc<dyn Scenario>,
        )
        .await;
        let mut row = Row::new("manychat claim (shop verify + credit)", claimed);
        row.note(format!(
            "manychat claims: {members} members, one unique order per request"
        ));
        rows.push(row);
        if let Some(rate) = options.rate {
            let paced = plan.paced(rate);
            let claimed =
                crate::measure_service("manychat claims, paced", service, paced, claims).await;
            rows.push(Row::new(
                format!("manychat claim, paced at {rate:.0}/s"),
                claimed,
            ));
        }
    }
    if !options.runs(Workload::Redeem) {
        return Ok(rows);
    }
    let redeemers = options.connections * 2;
    client.join(2, redeemers).await?;
    client.top_up(2, redeemers).await?;
    let redeems = Arc::new(Redeems { members: redeemers });
    let redeemed = crate::measure_service("manychat redemptions", service, plan, redeems).await;
    let mut redeems = Row::new("manychat redeem (coupon at shop + debit)", redeemed);
    redeems.note(format!(
        "manychat redemptions: {redeemers} members topped up with 1,000,000 points each"
    ));
    rows.push(redeems);
    Ok(rows)
}

/// Set-up calls over reqwest: not measured.
#[derive(Clone)]
struct Setup {
    http: reqwest::Client,
    base: String,
}

impl Setup {
    fn new(service: &Service) -> anyhow::Result<Setup> {
        Ok(Setup {
            http: reqwest::Client::builder()
                .build()
                .context("build the set-up client")?,
            base: format!("http://{}", service.addr),
        })
    }

    async fn post(&self, path: &str, body: Value, must_contain: &str) -> anyhow::Result<()> {
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(MANYCHAT_TOKEN)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = res.status();
        let text = res.text().await.with_context(|| format!("read {path}"))?;
        anyhow::ensure!(
            status.is_success() && text.contains(must_contain),
            "POST {path} answered {status}: {text}"
        );
        Ok(())
    }

    async fn join(&self, pool: u64, n: usize) -> anyhow::Result<()> {
        let this = Arc::new(self.clone());
        crate::each(n, 32, move |i| {
            let this = Arc::clone(&this);
            async move {
                let email = format!("mc-{pool}-{i}@bench.example");
                let body = json!({"id": subscriber(pool, i), "first_name": "Bench",
                    "custom_fields": {"email_input": email}});
                this.post("/manychat/join", body, "loyalty_member").await
            }
        })
        .await
        .context("join the ManyChat members")
    }

    /// One claim of a top-up order (worth 1,000,000 points) per member.
    async fn top_up(&self, pool: u64, n: usize) -> anyhow::Result<()> {
        let this = Arc::new(self.clone());
        crate::each(n, 32, move |i| {
            let this = Arc::clone(&this);
            async move {
                let order = format!("{TOP_UP_PREFIX}{pool}{i:08}");
                let body = json!({"id": subscriber(pool, i), "order_number": order});
                this.post("/manychat/claim", body, CREDITED_MARKER).await
            }
        })
        .await
        .context("top up the redeeming members")
    }
}
