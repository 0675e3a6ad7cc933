//! The member-email row: a store whose members joined spread over one statement period, so
//! that at the bench's clock 1/28 of them have a statement due; then, in a new process (so its
//! memory is the mail service's alone) started on that store after a graceful stop with the
//! page cache emptied, the three steps of a statement run, each through the service's own
//! code: finding the due set (`due_mails`), rendering statements (`mail_subject` and
//! `Mailroom::render`), and delivering the whole due set with the scheduler's `pass` over
//! pooled SMTP connections to a loopback sink, the sending pace lifted. A second pass, the
//! clock a day later (the next 1/28 due), delivers through a second mailroom to a sink that
//! acknowledges at once (`smtp_sink.rs`): the first shows what an ordinary mail server gets,
//! the second what the service does without TCP's delayed-ACK wait.
//!
//! That the due set is read without walking the members shows twice: its time against a walk
//! of every member (`member_rows`, what a scheduler without the index would have to do at the
//! least), and the bytes each read from the store's files (`rchar`, page-cache hits included).
//! The child's side is `mail_probe.rs`.

use crate::mail_probe::{Probe, PROBE_FLAG};
use crate::members;
use crate::service;
use crate::smtp_sink::SmtpSink;
use anyhow::Context;
use chrono::{DateTime, Duration as Days, Utc};
use loyalty_bot::store::LoyaltyStore;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// Members of the row's store without `--members`.
pub const DEFAULT_MEMBERS: u64 = 28_000;
/// The statement period (`email.statement_every_days`, the default).
const PERIOD_DAYS: i64 = 28;

/// What the parent measured, with the child's figures.
pub struct Figures {
    pub members: u64,
    /// Members whose first statement is due at each pass's clock (the first day's joiners,
    /// then the second day's), counted from the fill.
    pub expected_due: [u64; 2],
    pub fill: Duration,
    /// The one-time statement backfill on the filled store (a walk of every member that
    /// schedules nothing here: every join scheduled its own), run before the stop so that the
    /// measured start does not.
    pub backfill: Duration,
    pub probe: Probe,
    /// The plain sink's, then the quick-ACK one's.
    pub sinks: [SinkCount; 2],
}

pub struct SinkCount {
    pub messages: u64,
    pub bytes: u64,
    pub wrong: u64,
    pub connections: u64,
}

/// Member `i` of `n` joins `i/n` of a period after `base`, in English or German by turns.
fn joined(base: DateTime<Utc>, i: u64, n: u64) -> (DateTime<Utc>, &'static str) {
    let period = i128::from(
        Days::days(PERIOD_DAYS)
            .num_nanoseconds()
            .unwrap_or(i64::MAX),
    );
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
    let due_by = |at: DateTime<Utc>| {
        let due = (0..n).filter(|&i| joined(base, i, n).0 + Days::days(PERIOD_DAYS) <= at);
        due.count() as u64
    };
    let first = due_by(at);
    let expected_due = [first, due_by(at + Days::days(1)) - first];
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
    let sinks = [SmtpSink::start(false).await?, SmtpSink::start(true).await?];
    eprintln!(
        "running the mail row in a new process ({} due, then {} a day later) ...",
        expected_due[0], expected_due[1]
    );
    let probe = probe_in_child(&db, [sinks[0].addr, sinks[1].addr], at).await;
    let counts = sinks.each_ref().map(|sink| {
        let received = &sink.received;
        SinkCount {
            messages: received.messages.load(Relaxed),
            bytes: received.bytes.load(Relaxed),
            wrong: received.wrong.load(Relaxed),
            connections: received.connections.load(Relaxed),
        }
    });
    for sink in sinks {
        sink.stop().await;
    }
    let probe = probe?;
    eprintln!(
        "  due set {} in {:.0} ms; {:.0} statements rendered/s",
        probe.due,
        probe.due_ms,
        probe.renders_per_sec(),
    );
    for pass in &probe.passes {
        eprintln!(
            "  {} sent in {:.1} s ({:.0}/s)",
            pass.sent,
            pass.secs,
            pass.sent_per_sec()
        );
    }
    Ok(Figures {
        members: n,
        expected_due,
        fill,
        backfill,
        probe,
        sinks: counts,
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
    anyhow::ensure!(
        scheduled == 0,
        "the backfill scheduled {scheduled}: joins did not"
    );
    store
        .close()
        .context("close the filled store")?
        .write_snapshot()
        .context("snapshot the filled store")?;
    Ok((took, backfill))
}

async fn probe_in_child(
    db: &Path,
    smtp: [SocketAddr; 2],
    at: DateTime<Utc>,
) -> anyhow::Result<Probe> {
    let exe = std::env::current_exe().context("find the bench binary")?;
    let mut command = std::process::Command::new(exe);
    command
        .arg(PROBE_FLAG)
        .arg(db)
        .arg(smtp[0].to_string())
        .arg(smtp[1].to_string())
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

/// Each pass sent its whole due set, as the fill made it, and nothing else; its sink got
/// each message once, well-formed.
pub fn delivered_all(f: &Figures, i: usize) -> bool {
    let Some(pass) = f.probe.passes.get(i) else {
        return false;
    };
    let sink = &f.sinks[i];
    pass.due == f.expected_due[i]
        && pass.sent == pass.due
        && pass.failed + pass.retrying + pass.postponed + pass.dropped == 0
        && pass.left_due == 0
        && sink.messages == pass.sent
        && sink.wrong == 0
}

/// The row's checks for `--smoke`: the due set found, statements rendered, and both passes
/// delivered in full.
pub fn smoke_ok(f: &Figures) -> bool {
    let p = &f.probe;
    let checks = [
        ("due set as filled", p.due == f.expected_due[0] && p.due > 0),
        ("statements rendered", p.rendered > 0),
        ("first pass delivered in full", delivered_all(f, 0)),
        ("second pass delivered in full", delivered_all(f, 1)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_spread_over_one_period_so_a_day_of_them_falls_due_each_day() {
        let base = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let n = 28_000;
        let due_by = |days: i64| {
            let at = base + Days::days(PERIOD_DAYS + days);
            let due = (0..n).filter(|&i| joined(base, i, n).0 + Days::days(PERIOD_DAYS) <= at);
            due.count()
        };
        assert_eq!(due_by(0), 1, "only the first joiner, at the base");
        assert_eq!(due_by(1), 1_001);
        assert_eq!(due_by(2) - due_by(1), 1_000);
        assert_eq!(due_by(28), 28_000);
        assert_eq!(joined(base, 1, n).1, "de_DE");
    }
}
