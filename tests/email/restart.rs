//! The real binary restarted across a statement run, its clock moved a month on with
//! `LOYALTY_TEST_CLOCK_OFFSET_SECS`: a graceful stop leaves no statement sent twice and none
//! skipped; `kill -9` skips none, and can repeat at most the one message whose "sent" was not
//! written yet (the window docs/email.md names), with the same Message-ID.

use super::common::smtp::SmtpServer;
use super::common::{test_overrides, BinaryApp, FakeGraphApi, FakeShop, MANYCHAT_TOKEN};
use super::harness::header;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const MEMBERS: usize = 40;

struct Run {
    smtp: SmtpServer,
    _shop: FakeShop,
    _graph: FakeGraphApi,
    _data: tempfile::TempDir,
    base: Vec<(String, String)>,
}

impl Run {
    async fn start() -> Run {
        let (shop, graph) = (FakeShop::start().await, FakeGraphApi::start().await);
        let data = tempfile::tempdir().unwrap();
        let smtp = SmtpServer::start();
        let mut base = test_overrides(data.path(), &shop, &graph);
        for (k, v) in [
            ("EMAIL__SMTP_URL", smtp.url()),
            ("EMAIL__VERIFY", "false".into()),
            ("EMAIL__SCAN_EVERY_SECS", "1".into()),
            // Ten a second: the run lasts about four seconds, long enough to stop it midway.
            ("EMAIL__MAX_PER_MINUTE", "600".into()),
        ] {
            base.push((format!("LOYALTY__{k}"), v));
        }
        Run {
            smtp,
            _shop: shop,
            _graph: graph,
            _data: data,
            base,
        }
    }

    async fn binary(&self, days_later: i64) -> BinaryApp {
        let mut env = self.base.clone();
        env.push((
            "LOYALTY_TEST_CLOCK_OFFSET_SECS".into(),
            (days_later * 86_400).to_string(),
        ));
        BinaryApp::start(&env).await
    }

    /// Statements received, by recipient: their Message-IDs.
    fn statements(&self) -> BTreeMap<String, Vec<String>> {
        let mut by = BTreeMap::<String, Vec<String>>::new();
        for m in self.smtp.messages() {
            let id = header(&m, "Message-ID").unwrap_or_default();
            by.entry(m.rcpt_to.join(",")).or_default().push(id);
        }
        by
    }

    async fn wait_until(&self, what: &str, cond: impl Fn(&BTreeMap<String, Vec<String>>) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cond(&self.statements()) {
            assert!(
                Instant::now() < deadline,
                "timed out: {what} ({} recipients)",
                self.statements().len()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

async fn join_members(app: &BinaryApp) {
    let client = reqwest::Client::new();
    for i in 0..MEMBERS {
        let res = client
            .post(format!("{}/manychat/join", app.address))
            .bearer_auth(MANYCHAT_TOKEN)
            .json(&json!({"id": format!("81000000000{i:05}"), "email": format!("member{i}@example.com")}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_restart_mid_run_sends_every_statement_once() {
    let run = Run::start().await;
    let app = run.binary(0).await;
    join_members(&app).await;
    app.terminate();

    let mut app = run.binary(29).await;
    run.wait_until("a few statements out", |s| s.len() >= 5)
        .await;
    app.send_sigterm();
    assert!(app
        .wait_exit(Duration::from_secs(20))
        .await
        .is_some_and(|s| s.success()));
    let sent_before = run.statements().len();
    assert!(
        sent_before < MEMBERS,
        "the stop came mid-run ({sent_before} sent)"
    );

    let app = run.binary(29).await;
    run.wait_until("every member's statement", |s| s.len() == MEMBERS)
        .await;
    // One more pass or two: nothing else may come.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    app.terminate();
    for (to, ids) in run.statements() {
        assert_eq!(ids.len(), 1, "{to} got {} statements", ids.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_skips_no_statement() {
    let run = Run::start().await;
    let app = run.binary(0).await;
    join_members(&app).await;
    app.terminate();

    let app = run.binary(29).await;
    run.wait_until("a few statements out", |s| s.len() >= 5)
        .await;
    app.kill9();

    let app = run.binary(29).await;
    run.wait_until("every member's statement", |s| s.len() == MEMBERS)
        .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    app.terminate();
    let doubled: Vec<_> = run
        .statements()
        .into_iter()
        .filter(|(_, ids)| ids.len() > 1)
        .collect();
    assert!(
        doubled.len() <= 1,
        "more than the one crash window: {doubled:?}"
    );
    for (to, ids) in doubled {
        assert!(
            ids.len() == 2 && ids[0] == ids[1],
            "{to}: a repeat keeps its Message-ID: {ids:?}"
        );
    }
}
