//! The segment export row: a points-range segment of the whole store downloaded as CSV over
//! HTTP (`GET /admin/members?format=csv&min_points=…&max_points=…`), as an owner exports their
//! list, read to the end by a streaming client. It reports rows per second and the process's
//! resident memory during the export above what it was just before (the idle service): the
//! export must stream, not gather.

use crate::members::status_kib;
use crate::service::{Service, ADMIN_TOKEN};
use crate::{machine, members};
use anyhow::Context;
use loyalty_bot::domain::{Points, Profile};
use loyalty_bot::store::{durability, NewMember};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The points range exported. Every member the `--members` fill writes has 50 points (the
/// signup bonus), so on that store the segment is every member: the export's worst case.
pub const RANGE: &str = "min_points=1&max_points=1000000";

/// Exports measured one after the other: the first finds sled's page cache as the start left
/// it and fills it (up to `store.cache_capacity_mb`); the next shows the export alone.
pub const ROUNDS: usize = 3;

/// What one export measured.
pub struct Round {
    pub rows: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    /// Resident memory just before the request.
    pub idle_rss_kib: u64,
    /// The highest resident memory during the export: the kernel's high-water mark reset just
    /// before it when that is allowed (`exact`), else sampled every 2 ms.
    pub peak_rss_kib: u64,
    pub exact: bool,
    /// CPU time of the whole process during the export, and of the threads serving it (the
    /// rest is the client's): steadier than rows/s on a shared machine.
    pub cpu: Option<Duration>,
    pub server_cpu: Option<Duration>,
}

impl Round {
    /// Microseconds of `cpu` per row.
    pub fn us_per_row(&self, cpu: Option<Duration>) -> Option<f64> {
        Some(cpu?.as_secs_f64() * 1e6 / self.rows.max(1) as f64)
    }

    pub fn rows_per_sec(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// MiB above `idle_kib` at the peak.
    pub fn above_mib(&self, idle_kib: u64) -> f64 {
        self.peak_rss_kib.saturating_sub(idle_kib) as f64 / 1024.0
    }
}

/// Members joined for the row when the run has no `--members` fill (as that fill does).
const SEED: u64 = 2_000;

/// [`ROUNDS`] exports, in order.
pub async fn run(service: &Service, filled: bool) -> anyhow::Result<Vec<Round>> {
    if !filled {
        seed(service).await?;
    }
    let mut rounds = Vec::with_capacity(ROUNDS);
    for round in 1..=ROUNDS {
        eprintln!("running segment export (CSV over HTTP), {round}/{ROUNDS} ...");
        let r = measure(service).await?;
        eprintln!(
            "  {} rows in {:.2} s ({:.0} rows/s), peak RSS {:.0} MiB above the idle before it",
            r.rows,
            r.elapsed.as_secs_f64(),
            r.rows_per_sec(),
            r.above_mib(r.idle_rss_kib)
        );
        rounds.push(r);
    }
    Ok(rounds)
}

async fn measure(service: &Service) -> anyhow::Result<Round> {
    let idle_rss_kib = status_kib("VmRSS:").context("read VmRSS")?;
    // `5` resets the peak-RSS counter (VmHWM) to the current RSS (Linux ≥ 4.0).
    let exact = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let (stop, sampled) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let sampler = {
        let (stop, sampled) = (Arc::clone(&stop), Arc::clone(&sampled));
        std::thread::spawn(move || {
            while !stop.load(Relaxed) {
                sampled.fetch_max(status_kib("VmRSS:").unwrap_or(0), Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let cpu_before = machine::process_cpu().zip(machine::harness_cpu());
    let exported = export(service).await;
    let cpu_after = machine::process_cpu().zip(machine::harness_cpu());
    stop.store(true, Relaxed);
    let _ = sampler.join();
    let (rows, bytes, elapsed) = exported?;
    let hwm = if exact {
        status_kib("VmHWM:").unwrap_or(0)
    } else {
        0
    };
    Ok(Round {
        rows,
        bytes,
        elapsed,
        idle_rss_kib,
        peak_rss_kib: hwm.max(sampled.load(Relaxed)),
        exact,
        cpu: cpu_after.zip(cpu_before).map(|((p, _), (p0, _))| p - p0),
        server_cpu: cpu_after
            .zip(cpu_before)
            .map(|((p, h), (p0, h0))| (p - p0).saturating_sub(h - h0)),
    })
}

/// Joins [`SEED`] members the way the `--members` fill does, with one flush for them all.
async fn seed(service: &Service) -> anyhow::Result<()> {
    let program = service.program();
    let store = program.store();
    let (joined, mark) = durability::deferred(|| -> anyhow::Result<()> {
        for i in 0..SEED {
            let member = NewMember {
                identity: members::identity(i),
                email: members::email(i),
                profile: Profile::default(),
                bonus: Points(50),
            };
            store.join(member, chrono::Utc::now())?;
        }
        Ok(())
    });
    joined?;
    if let Some(mark) = mark {
        store
            .durable(mark)
            .await
            .context("flush the seeded members")?;
    }
    Ok(())
}

/// Downloads the segment, counting lines and bytes as they arrive; returns the rows (lines
/// less the header), bytes and time to the last byte.
async fn export(service: &Service) -> anyhow::Result<(u64, u64, Duration)> {
    let url = format!("http://{}/admin/members?format=csv&{RANGE}", service.addr);
    let started = Instant::now();
    let mut res = reqwest::Client::new()
        .get(url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .context("request the segment")?;
    anyhow::ensure!(res.status() == 200, "the export answered {}", res.status());
    let (mut lines, mut bytes) = (0u64, 0u64);
    while let Some(chunk) = res.chunk().await.context("read the segment")? {
        bytes += chunk.len() as u64;
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
    }
    Ok((lines.saturating_sub(1), bytes, started.elapsed()))
}
