//! The member-email row: a store whose members joined spread over one statement period, so
//! that at the bench's clock 1/28 of them have a statement due; then, in a new process (so its
//! memory is the mail service's alone) started on that store after a graceful stop with the
//! page cache emptied, the three steps of a statement run, each through the service's own
//! code: finding the due set (`due_mails`), rendering statements (`mail_subject` and
//! `Mailroom::render`), and delivering the whole due set with the scheduler's `pass` over
//! pooled SMTP connections to a loopback sink, the sending pace lifted.
//!
//! That the due set is read without walking the members shows twice: its time against a walk
//! of every member (`member_rows`, what a scheduler without the index would have to do at the
//! least), and the bytes each read from the store's files (`rchar`, page-cache hits included).

use crate::members::{self, status_kib};
use crate::smtp_sink::SmtpSink;
use crate::{machine, service};
use anyhow::Context;
use chrono::{DateTime, Duration as Days, Utc};
use loyalty_bot::clock::{Clock, ManualClock};
use loyalty_bot::domain::mail::MailKind;
use loyalty_bot::domain::SegmentFilter;
use loyalty_bot::email::scheduler::Scheduler;
use loyalty_bot::metrics::Metrics;
use loyalty_bot::startup::Services;
use loyalty_bot::store::LoyaltyStore;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The hidden sub-command the parent runs in a child process.
pub const PROBE_FLAG: &str = "--probe-mail";
/// Members of the row's store without `--members`.
pub const DEFAULT_MEMBERS: u64 = 28_000;
/// Statements rendered for the render figure (the first of the due set).
const RENDER_SAMPLE: usize = 10_000;
/// The statement period (`email.statement_every_days`, the default).
const PERIOD_DAYS: i64 = 28;

/// What the parent measured, with the child's figures.
pub struct Figures {
    pub members: u64,
    /// Members whose first statement is due at the bench's clock, counted from the fill.
    pub expected_due: u64,
    pub fill: Duration,
    /// The one-time statement backfill on the filled store (a walk of every member that
    /// schedules nothing here: every join scheduled its own), run before the stop so that the
    /// measured start does not.
    pub backfill: Duration,
    pub probe: Probe,
    pub sink: SinkCount,
}

pub struct SinkCount {
    pub messages: u64,
    pub bytes: u64,
    pub wrong: u64,
    pub connections: u64,
}

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
    pub sent: u64,
    pub failed: u64,
    pub retrying: u64,
    pub postponed: u64,
    pub dropped: u64,
    pub pass_secs: f64,
    pub pass_cpu_secs: f64,
    /// Due after the pass (each sent statement schedules the next a period later).
    pub left_due: u64,
    /// VmHWM after the pass: the row's memory figure.
    pub rss_peak_kib: u64,
    pub walk_rows: u64,
    pub walk_ms: f64,
    pub walk_rchar: u64,
    /// VmHWM after the walk, which fills sled's page cache.
    pub rss_after_walk_kib: u64,
}

impl Probe {
    pub fn renders_per_sec(&self) -> f64 {
        self.rendered as f64 / self.render_secs.max(1e-9)
    }

    pub fn sent_per_sec(&self) -> f64 {
        self.sent as f64 / self.pass_secs.max(1e-9)
    }
}

/// Member `i` of `n` joins `i/n` of a period after `base`, in English or German by turns.
fn joined(base: DateTime<Utc>, i: u64, n: u64) -> (DateTime<Utc>, &'static str) {
    let period = i128::from(Days::days(PERIOD_DAYS).num_nanoseconds().unwrap_or(i64::MAX));
    let offset = period * i128::from(i) / i128::from(n.max(1));
    let at = base + Days::nanoseconds(offset as i64);
    (at, if i % 2 == 0 { "en_US" } else { "de_DE" })
}

/// Fills a store, stops it, and runs the child against a sink on this process's runtime.
pub async fn run(n: u64) -> anyhow::Result<Figures> {
    let dir = service::temp_dir()?;
    let measured = measure(&dir, n).await;
    let _ = std::fs::remove_dir_all(&dir);
    measured
}

async fn measure(dir: &Path, n: u64) -> anyhow::Result<Figures> {
    let db = service::db_path(dir);
    // Whole seconds, so the clock handed to the child as text is the same instant.
    let base = DateTime::from_timestamp((Utc::now() - Days::days(PERIOD_DAYS + 1)).timestamp(), 0)
        .context("the base time")?;
    // The clock stands one day into the second period: the first day's joiners are due.
    let at = base + Days::days(PERIOD_DAYS + 1);
    let expected_due = (0..n).filter(|&i| joined(base, i, n).0 + Days::days(PERIOD_DAYS) <= at);
    let expected_due = expected_due.count() as u64;
    eprintln!("mail row: filling a store with {n} members joined over {PERIOD_DAYS} days ...");
    let (fill, backfill) = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || fill(&db, n, base, at))
            .await
            .context("the fill panicked")??
    };
    eprintln!("  filled in {:.1} s", fill.as_secs_f64());
    // As before the cold starts: the last write-back finishes, then the page cache is emptied.
    rustix::fs::sync();
    tokio::time::sleep(Duration::from_secs(2)).await;
    members::evict(&db);
    let sink = SmtpSink::start().await?;
    eprintln!(
        "running the mail row in a new process ({expected_due} due; SMTP sink on {}) ...",
        sink.addr
    );
    let probe = probe_in_child(&db, sink.addr, at).await;
    let received = &sink.received;
    let count = SinkCount {
        messages: received.messages.load(Relaxed),
        bytes: received.bytes.load(Relaxed),
        wrong: received.wrong.load(Relaxed),
        connections: received.connections.load(Relaxed),
    };
    sink.stop().await;
    let probe = probe?;
    eprintln!(
        "  due set {} in {:.0} ms; {:.0} statements rendered/s; {} sent in {:.1} s ({:.0}/s)",
        probe.due,
        probe.due_ms,
        probe.renders_per_sec(),
        probe.sent,
        probe.pass_secs,
        probe.sent_per_sec()
    );
    Ok(Figures {
        members: n,
        expected_due,
        fill,
        backfill,
        probe,
        sink: count,
    })
}

/// The fill, the one-time backfill, and a graceful stop.
fn fill(
    db: &Path,
    n: u64,
    base: DateTime<Utc>,
    at: DateTime<Utc>,
) -> anyhow::Result<(Duration, Duration)> {
    let (took, store) = members::fill_with(db, n, 64 << 20, &|i| joined(base, i, n))?;
    let started = Instant::now();
    let scheduled = store
        .ensure_statement_schedule(&store.mail_policy(), at)
        .context("the statement backfill")?;
    let backfill = started.elapsed();
    anyhow::ensure!(scheduled == 0, "the backfill scheduled {scheduled}: joins did not");
    store
        .close()
        .context("close the filled store")?
        .write_snapshot()
        .context("snapshot the filled store")?;
    Ok((took, backfill))
}

async fn probe_in_child(db: &Path, smtp: SocketAddr, at: DateTime<Utc>) -> anyhow::Result<Probe> {
    let exe = std::env::current_exe().context("find the bench binary")?;
    let mut command = std::process::Command::new(exe);
    command
        .arg(PROBE_FLAG)
        .arg(db)
        .arg(smtp.to_string())
        .arg(at.to_rfc3339());
    // The sink answers on this process's runtime while the child runs.
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .context("the mail probe's waiter panicked")?
        .context("run the mail probe")?;
    anyhow::ensure!(
        out.status.success(),
        "the mail probe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.trim()).with_context(|| format!("read the probe's answer {line:?}"))
}

/// The child's side: `--probe-mail <db dir> <smtp addr> <clock>`; prints one JSON line.
pub async fn probe_main(args: &[String]) -> anyhow::Result<()> {
    let [db, smtp, at] = args else {
        anyhow::bail!("usage: {PROBE_FLAG} <db dir> <smtp addr> <clock, RFC 3339>");
    };
    let smtp: SocketAddr = smtp.parse().context("the SMTP address")?;
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

    let scheduler = Scheduler::new(
        Arc::clone(&program),
        Arc::clone(&services.mailroom),
        &settings.email,
        clock.clone(),
    );
    let (cpu, started) = (machine::process_cpu(), Instant::now());
    let report = scheduler.pass(&CancellationToken::new()).await?;
    p.pass_secs = started.elapsed().as_secs_f64();
    p.pass_cpu_secs = secs_since(cpu);
    (p.sent, p.failed, p.retrying) = (report.sent, report.failed, report.retrying);
    (p.postponed, p.dropped) = (report.postponed, report.dropped);
    p.left_due = program.due_mails(clock.now(), usize::MAX).await?.len() as u64;
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

/// The row's checks for `--smoke`: every due member found, rendered, sent and received once,
/// every message well-formed.
pub fn smoke_ok(f: &Figures) -> bool {
    let p = &f.probe;
    let checks = [
        ("due set as filled", p.due == f.expected_due && p.due > 0),
        ("statements rendered", p.rendered > 0),
        ("every due statement sent", p.sent == f.expected_due),
        (
            "no failure",
            p.failed + p.retrying + p.postponed + p.dropped == 0,
        ),
        ("nothing left due", p.left_due == 0),
        ("the sink got each once", f.sink.messages == p.sent),
        ("every message well-formed", f.sink.wrong == 0),
    ];
    let mut ok = true;
    for (what, passed) in checks {
        if !passed {
            eprintln!("smoke: mail row: {what}: no");
            ok = false;
        }
    }
    ok
}
