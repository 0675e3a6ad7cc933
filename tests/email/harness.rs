//! An application with email on, pointed at a real SMTP server, on a clock the test moves.

use super::common::psid::{exchange, text_of, Psid};
use super::common::smtp::{Received, SmtpServer};
use super::common::{spawn_app_with_clock, TestApp};
use loyalty_bot::clock::ManualClock;
use loyalty_bot::config::Secret;
use loyalty_bot::domain::mail::MailState;
use loyalty_bot::domain::{Email, MemberAccount};
use loyalty_bot::flows::payloads;
use std::sync::Arc;
use std::time::Duration;

pub struct MailApp {
    pub app: TestApp,
    pub smtp: SmtpServer,
    pub clock: Arc<ManualClock>,
    pub start: chrono::DateTime<chrono::Utc>,
}

/// Email on (verification as given), the scheduler looking every second, no pacing to speak of.
pub async fn mail_app(verify: bool) -> MailApp {
    let smtp = SmtpServer::start();
    let clock = Arc::new(ManualClock::default());
    let start = chrono::Utc::now();
    clock.set(start);
    let url = smtp.url();
    let app = spawn_app_with_clock(
        |s| {
            s.email.smtp_url = Some(Secret::new(url));
            s.email.verify = verify;
            s.email.scan_every = Duration::from_secs(1);
            s.email.max_per_minute = 60_000;
            s.messenger.page_username = "cafe.rewards".into();
        },
        clock.clone(),
    )
    .await;
    MailApp {
        app,
        smtp,
        clock,
        start,
    }
}

impl MailApp {
    /// A Messenger customer types `text`; the bot's answer.
    pub async fn say(&self, who: &Psid, text: &str) -> String {
        self.send(who, who.text(text)).await
    }

    async fn send(&self, who: &Psid, body: Vec<u8>) -> String {
        let app = &self.app;
        text_of(&exchange(app.client(), app.address(), &app.graph_api, who, body).await)
    }

    /// Join over Messenger: the link, consent, the email. The answer to the email.
    pub async fn start_join(&self, who: &Psid, email: &str) -> String {
        self.send(who, who.get_started("join")).await;
        self.send(who, who.tap("Yes, join", payloads::JOIN_YES))
            .await;
        self.say(who, email).await
    }

    /// Moves the test clock to `days` after the start.
    pub fn at_day(&self, days: i64) {
        self.clock.set(self.start + chrono::Duration::days(days));
    }

    pub fn advance(&self, by: chrono::Duration) {
        self.clock
            .set(loyalty_bot::clock::Clock::now(self.clock.as_ref()) + by);
    }

    /// Mail received for `to`, oldest first.
    pub fn mail_to(&self, to: &str) -> Vec<Received> {
        self.smtp
            .messages()
            .into_iter()
            .filter(|m| m.rcpt_to.iter().any(|r| r.eq_ignore_ascii_case(to)))
            .collect()
    }

    /// Waits up to 10 s until `to` has received `n` messages; returns them.
    pub async fn wait_for_mail(&self, to: &str, n: usize) -> Vec<Received> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.mail_to(to);
            if got.len() >= n {
                return got;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{to} received {} messages, expected {n}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn member(&self, email: &str) -> Option<MemberAccount> {
        let email = Email::parse(email).unwrap();
        self.app.program().member_by_email(&email).await.unwrap()
    }

    pub async fn mail_state(&self, email: &str) -> MailState {
        let id = self.member(email).await.expect("a member").member.id;
        let subject = self.app.program().mail_subject(id).await.unwrap();
        subject.expect("a member").state
    }

    /// Waits until the scheduler has passed over the member's statement due before `day` (its
    /// next one is then after `day`).
    pub async fn wait_statement_turn_passed(&self, email: &str, day: i64) {
        let end = self.start + chrono::Duration::days(day);
        self.wait_for_state(
            email,
            |s| s.next_statement_at.is_some_and(|n| n > end),
            "the statement's turn passed",
        )
        .await;
    }

    /// Waits until the member's state satisfies `cond` (the scheduler runs every second).
    pub async fn wait_for_state(&self, email: &str, cond: impl Fn(&MailState) -> bool, what: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !cond(&self.mail_state(email).await) {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The text part of a received mail.
pub fn text_part(m: &Received) -> String {
    m.parsed().body_text(0).expect("a text part").into_owned()
}

/// The HTML part of a received mail.
pub fn html_part(m: &Received) -> String {
    m.parsed().body_html(0).expect("an HTML part").into_owned()
}

pub fn subject(m: &Received) -> String {
    m.parsed().subject().unwrap_or_default().to_owned()
}

/// A raw header's value (unfolded), e.g. `List-Unsubscribe`.
pub fn header(m: &Received, name: &str) -> Option<String> {
    let parsed = m.parsed();
    parsed
        .headers()
        .iter()
        .find(|h| h.name().eq_ignore_ascii_case(name))
        .map(|h| {
            let raw = &m.raw[h.offset_start() as usize..h.offset_end() as usize];
            String::from_utf8_lossy(raw)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
}

/// The six-digit code in a verification mail.
pub fn code_in(m: &Received) -> String {
    let text = text_part(m);
    text.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap_or_else(|| panic!("no code in {text}"))
        .to_owned()
}
