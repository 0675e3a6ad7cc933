//! The mail row's child process (`--probe-mail`): the mail service alone on the filled store,
//! with a clock the bench sets, runs the steps the row measures (`mail.rs`) and prints its
//! figures as one JSON line: the due set, statements rendered, two scheduler passes, memory,
//! and a walk of every member for comparison.

use crate::members::status_kib;
use crate::{machine, service};
use anyhow::Context;
use chrono::{DateTime, Duration as Days, Utc};
use loyalty_bot::clock::{Clock, ManualClock};
use loyalty_bot::config::Settings;
use loyalty_bot::domain::mail::MailKind;
use loyalty_bot::domain::SegmentFilter;
use loyalty_bot::email::content::EmailTemplates;
use loyalty_bot::email::mailroom::{Letterhead, Mailroom};
use loyalty_bot::email::scheduler::Scheduler;
use loyalty_bot::metrics::Metrics;
use loyalty_bot::program::Program;
use loyalty_bot::startup::Services;
use loyalty_bot::store::LoyaltyStore;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The hidden sub-command the parent runs in a child process.
pub const PROBE_FLAG: &str = "--probe-mail";
/// Statements rendered for the render figure (the first of the due set).
const RENDER_SAMPLE: usize = 10_000;

/// What the child reports.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Probe {
    /// `Services::open` with email on, from the emptied page cache.
    pub open_ms: f64,
    pub rss_open_kib: u64,
    pub due: u64,
    pub due_ms: f64,
    /// Bytes read through `read` calls (`/proc/self/io` rchar) while finding the due set.
    pub due_rchar: u64,
    pub due_again_ms: f64,
    pub rendered: u64,
    /// Reading each member's subject and rendering their statement, one after the other.
    pub render_secs: f64,
    /// The part of it spent in `Mailroom::render`.
    pub render_only_secs: f64,
    pub render_cpu_secs: f64,
    /// Text and HTML parts, on average.
    pub statement_bytes: u64,
    /// To the plain sink, then (a day later) to the quick-ACK one.
    pub passes: Vec<Pass>,
    /// VmHWM after the passes: the row's memory figure.
    pub rss_peak_kib: u64,
    pub walk_rows: u64,
    pub walk_ms: f64,
    pub walk_rchar: u64,
    /// VmHWM after the walk, which fills sled's page cache.
    pub rss_after_walk_kib: u64,
}

/// One `Scheduler::pass` over the whole due set.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Pass {
    /// Found due by the pass's own first read of the index.
    pub due: u64,
    pub sent: u64,
    pub failed: u64,
    pub retrying: u64,
    pub postponed: u64,
    pub dropped: u64,
    pub secs: f64,
    pub cpu_secs: f64,
    /// Due after the pass (each sent statement schedules the next a period later).
    pub left_due: u64,
}

impl Pass {
    pub fn sent_per_sec(&self) -> f64 {
        self.sent as f64 / self.secs.max(1e-9)
    }
}

impl Probe {
    pub fn renders_per_sec(&self) -> f64 {
        self.rendered as f64 / self.render_secs.max(1e-9)
    }
}

/// The child's side: `--probe-mail <db dir> <smtp addr> <quick-ACK smtp addr> <clock>`;
/// prints one JSON line.
pub async fn probe_main(args: &[String]) -> anyhow::Result<()> {
    let [db, smtp, quick, at] = args else {
        anyhow::bail!("usage: {PROBE_FLAG} <db dir> <smtp addr> <smtp addr> <clock, RFC 3339>");
    };
    let smtp: SocketAddr = smtp.parse().context("the SMTP address")?;
    let quick: SocketAddr = quick.parse().context("the quick-ACK SMTP address")?;
    let at = DateTime::parse_from_rfc3339(at)
        .context("the clock")?
        .with_timezone(&Utc);
    let settings = service::settings_for_mail(Path::new(db), smtp)?;
    let clock = Arc::new(ManualClock::default());
    clock.set(at);
    let started = Instant::now();
    let services = Services::open_with_clock(&settings, &Metrics::default(), clock.clone())
        .await
        .context("open the services on the filled store")?;
    let mut p = Probe {
        open_ms: ms(started.elapsed()),
        rss_open_kib: status_kib("VmRSS:").unwrap_or(0),
        ..Probe::default()
    };
    let program = Arc::clone(&services.program);

    let (rchar, started) = (io_rchar(), Instant::now());
    let due = program.due_mails(clock.now(), usize::MAX).await?;
    p.due_ms = ms(started.elapsed());
    p.due_rchar = io_rchar().saturating_sub(rchar);
    p.due = due.len() as u64;
    let started = Instant::now();
    let again = program.due_mails(clock.now(), usize::MAX).await?;
    p.due_again_ms = ms(started.elapsed());
    anyhow::ensure!(again.len() == due.len(), "the due set changed by itself");
    drop(again);

    let (cpu, started) = (machine::process_cpu(), Instant::now());
    let (mut render_only, mut bytes) = (Duration::ZERO, 0);
    for d in due.iter().take(RENDER_SAMPLE) {
        anyhow::ensure!(d.kind == MailKind::Statement, "a due {:?}", d.kind);
        let subject = program
            .mail_subject(d.member)
            .await?
            .context("a due member is missing")?;
        let rendering = Instant::now();
        let content = services
            .mailroom
            .render(MailKind::Statement, None, &subject, at)?
            .context("a statement rendered to nothing")?;
        render_only += rendering.elapsed();
        bytes += content.text.len() + content.html.len();
        p.rendered += 1;
    }
    p.render_secs = started.elapsed().as_secs_f64();
    p.render_only_secs = render_only.as_secs_f64();
    p.render_cpu_secs = secs_since(cpu);
    p.statement_bytes = (bytes as u64) / p.rendered.max(1);
    drop(due);

    let first = pass(&program, Arc::clone(&services.mailroom), &settings, &clock).await?;
    p.passes.push(first);
    clock.set(at + Days::days(1));
    let quick_settings = service::settings_for_mail(Path::new(db), quick)?;
    let quick_room = mailroom(&quick_settings, &program).await?;
    p.passes
        .push(pass(&program, quick_room, &quick_settings, &clock).await?);
    p.rss_peak_kib = status_kib("VmHWM:").unwrap_or(0);

    let (rchar, started) = (io_rchar(), Instant::now());
    let filter = SegmentFilter::default();
    let store = Arc::clone(&services.store);
    p.walk_rows = tokio::task::spawn_blocking(move || {
        let mut rows = 0u64;
        store.member_rows(&filter, None, &mut |_| {
            rows += 1;
            ControlFlow::Continue(())
        })?;
        anyhow::Ok(rows)
    })
    .await
    .context("the walk panicked")??;
    p.walk_ms = ms(started.elapsed());
    p.walk_rchar = io_rchar().saturating_sub(rchar);
    p.rss_after_walk_kib = status_kib("VmHWM:").unwrap_or(0);
    println!("{}", serde_json::to_string(&p)?);
    services.store.flush_now().context("the final flush")?;
    Ok(())
}

/// One scheduler pass at the clock's time, through `room`.
async fn pass(
    program: &Arc<Program>,
    room: Arc<Mailroom>,
    settings: &Settings,
    clock: &Arc<ManualClock>,
) -> anyhow::Result<Pass> {
    let due = program.due_mails(clock.now(), usize::MAX).await?.len() as u64;
    let clock_dyn: Arc<dyn Clock> = clock.clone();
    let scheduler = Scheduler::new(Arc::clone(program), room, &settings.email, clock_dyn);
    let (cpu, started) = (machine::process_cpu(), Instant::now());
    let report = scheduler.pass(&CancellationToken::new()).await?;
    Ok(Pass {
        due,
        sent: report.sent,
        failed: report.failed,
        retrying: report.retrying,
        postponed: report.postponed,
        dropped: report.dropped,
        secs: started.elapsed().as_secs_f64(),
        cpu_secs: secs_since(cpu),
        left_due: program.due_mails(clock.now(), usize::MAX).await?.len() as u64,
    })
}

/// A second mailroom as the service builds its own (`startup/services.rs`), sending to the
/// SMTP server of `settings`.
async fn mailroom(settings: &Settings, program: &Program) -> anyhow::Result<Arc<Mailroom>> {
    let templates = EmailTemplates::load(settings.flows_dir.as_deref())?;
    let head = Letterhead::from_settings(settings);
    let key = program.mail_link_key().await?;
    Ok(Arc::new(Mailroom::new(
        &settings.email,
        templates,
        head,
        key,
    )?))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn secs_since(cpu: Option<Duration>) -> f64 {
    machine::process_cpu()
        .zip(cpu)
        .map_or(0.0, |(now, then)| (now - then).as_secs_f64())
}

/// Bytes this process has read through `read`-like calls, from the page cache or the disk.
fn io_rchar() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("rchar:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}
