//! `--members N`: fills a fresh store with N members through the store's own `join` (the
//! records the service writes, not a shortcut), then measures what a shop owner sizes a server
//! by: bytes on disk per member, the time the real service needs to start on that store with
//! the page cache emptied (cold), after a graceful stop and after a crash, and the resident
//! memory of that process.

use anyhow::Context;
use chrono::{DateTime, Utc};
use loyalty_bot::domain::{Channel, ChatIdentity, Email, Points, Profile};
use loyalty_bot::store::{durability, LoyaltyStore, NewMember, SledStore};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The hidden sub-command the parent runs in a child process for the cold-start figures.
pub const PROBE_FLAG: &str = "--probe-open";

/// Members written per deferred scope: one flush per batch instead of one per join.
const BATCH: u64 = 2_000;

/// What `--members` measured.
pub struct Figures {
    pub members: u64,
    pub fill: Duration,
    /// On disk after the fill, before the stop (as a crash after the fill leaves it).
    pub disk_bytes: u64,
    /// The graceful stop after the fill: closing the store and writing sled's snapshot; `None`
    /// when the snapshot failed (the starts after the stop then recover the log).
    pub stop_ms: Option<f64>,
    pub starts: Starts,
}

/// The service's starts on the filled store, each in a new process.
pub struct Starts {
    /// The first start on the store as a `kill -9` after the fill left it (a copy): it
    /// recovers everything the fill wrote, as sled writes its snapshot only at open (or, now,
    /// at a graceful stop).
    pub after_crash: Probe,
    /// The starts after the graceful stop, in start order; the first reads the stop's
    /// snapshot, the later ones the same one, as no start recovers anything past it.
    pub after_stop_ms: Vec<f64>,
    /// Every start after the stop found its page cache emptied.
    pub after_stop_cold: bool,
    /// The probe, of all, whose start peaked highest in memory (for the memory figures).
    pub peak: Probe,
}

impl Starts {
    /// The starts measured; `None` without one after the stop.
    pub fn of(after_crash: Probe, after_stop: Vec<Probe>) -> Option<Starts> {
        let after_stop_ms: Vec<f64> = after_stop.iter().map(|p| p.open_ms).collect();
        after_stop_ms.first()?;
        let after_stop_cold = after_stop.iter().all(|p| p.cold);
        let peak = after_stop
            .into_iter()
            .chain(std::iter::once(after_crash.clone()))
            .max_by_key(|p| p.rss_peak_kib)?;
        Some(Starts {
            after_crash,
            after_stop_ms,
            after_stop_cold,
            peak,
        })
    }

    /// The cold-start figure: the first start after the fill's graceful stop, as after a
    /// reboot, or a deploy, following a long run.
    pub fn first_after_stop_ms(&self) -> f64 {
        self.after_stop_ms[0]
    }
}

/// What the child process reports.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct Probe {
    /// From the start of `Application::build` until it is ready to serve.
    pub open_ms: f64,
    /// Resident memory right after the start.
    pub rss_open_kib: u64,
    /// Peak resident memory after looking up `lookups` random members by email.
    pub rss_peak_kib: u64,
    pub lookups: u64,
    pub lookup_us_p50: f64,
    /// The page cache was emptied for the store's files before the start.
    pub cold: bool,
}

pub fn identity(n: u64) -> ChatIdentity {
    ChatIdentity::new(Channel::Messenger, &format!("9{n:015}")).expect("a valid PSID")
}

pub fn email(n: u64) -> Email {
    Email::parse(&format!("member-{n}@bulk.example")).expect("a valid email")
}

/// Fills `path` with `n` members on all CPUs and flushes; returns the store still open.
pub fn fill(path: &Path, n: u64, cache_bytes: u64) -> anyhow::Result<(Duration, SledStore)> {
    fill_with(path, n, cache_bytes, &|_| (chrono::Utc::now(), "en_US"))
}

/// [`fill`] with member `i` joining at the time and in the locale `shape(i)` gives.
pub fn fill_with(
    path: &Path,
    n: u64,
    cache_bytes: u64,
    shape: &(dyn Fn(u64) -> (DateTime<Utc>, &'static str) + Sync),
) -> anyhow::Result<(Duration, SledStore)> {
    let started = Instant::now();
    let store = SledStore::open(path, cache_bytes).context("open the store to fill")?;
    let threads = std::thread::available_parallelism().map_or(2, usize::from) as u64;
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let store = &store;
                scope.spawn(move || -> anyhow::Result<()> {
                    let mut i = t;
                    while i < n {
                        let (done, _mark) = durability::deferred(|| -> anyhow::Result<()> {
                            for _ in 0..BATCH {
                                if i >= n {
                                    break;
                                }
                                let (joined_at, locale) = shape(i);
                                let member = NewMember {
                                    identity: identity(i),
                                    email: email(i),
                                    profile: Profile {
                                        first_name: Some("Bulk".into()),
                                        locale: Some(locale.into()),
                                    },
                                    bonus: Points(50),
                                };
                                store.join(member, joined_at)?;
                                i += threads;
                            }
                            Ok(())
                        });
                        done?;
                        if t == 0 && i % 100_000 < threads * BATCH {
                            eprintln!("  {} members written", i.min(n));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a filling thread panicked"))??;
        }
        Ok(())
    })?;
    store.flush_now().context("flush the filled store")?;
    Ok((started.elapsed(), store))
}

/// Copies the directory `from` to `to`, files and subdirectories.
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Bytes of every file under `dir`.
pub fn disk_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            disk_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// Drops `dir`'s files from the page cache (after syncing them, since dirty pages stay),
/// so the next open reads from disk. Returns whether every file was evicted.
pub fn evict(dir: &Path) -> bool {
    let mut all = true;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            all &= evict(&path);
            continue;
        }
        let Ok(file) = std::fs::File::open(&path) else {
            all = false;
            continue;
        };
        let synced = file.sync_all().is_ok();
        let advised = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).is_ok();
        all &= synced && advised;
    }
    all
}

/// Runs this binary as a child that starts the service on `db` and reports a [`Probe`].
pub fn probe_in_child(db: &Path, members: u64, cold: bool) -> anyhow::Result<Probe> {
    let exe = std::env::current_exe().context("find the bench binary")?;
    let out = std::process::Command::new(exe)
        .arg(PROBE_FLAG)
        .arg(db)
        .arg(members.to_string())
        .arg(if cold { "cold" } else { "warm" })
        .output()
        .context("run the open probe")?;
    anyhow::ensure!(
        out.status.success(),
        "the open probe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.trim()).with_context(|| format!("read the probe's answer {line:?}"))
}

/// The child's side: `--probe-open <db dir> <members> <cold|warm>`; prints one JSON line.
pub async fn probe_main(args: &[String]) -> anyhow::Result<()> {
    let [db, members, cold] = args else {
        anyhow::bail!("usage: {PROBE_FLAG} <db dir> <members> <cold|warm>");
    };
    let db = PathBuf::from(db);
    let members: u64 = members.parse().context("members")?;
    let settings = crate::service::settings_for_probe(&db)?;
    let started = Instant::now();
    let app = loyalty_bot::startup::Application::build(settings)
        .await
        .context("start the service on the filled store")?;
    let open_ms = started.elapsed().as_secs_f64() * 1e3;
    let rss_open_kib = status_kib("VmRSS:").unwrap_or(0);
    let program = app.program();
    let lookups = 20_000.min(members);
    let mut times = Vec::with_capacity(lookups as usize);
    // Spread over the whole key space: a lookup of member i touches its own part of the tree.
    let step = (members / lookups.max(1)).max(1);
    for k in 0..lookups {
        let n = (k * step + k % step) % members;
        let email = email(n);
        let t = Instant::now();
        let found = program
            .member_by_email(&email)
            .await
            .context("look a member up")?;
        times.push(t.elapsed());
        anyhow::ensure!(found.is_some(), "member {n} is missing");
    }
    times.sort_unstable();
    let lookup_us_p50 = times
        .get(times.len() / 2)
        .map_or(0.0, |d| d.as_secs_f64() * 1e6);
    let probe = Probe {
        open_ms,
        rss_open_kib,
        rss_peak_kib: status_kib("VmHWM:").unwrap_or(0),
        lookups,
        lookup_us_p50,
        cold: cold == "cold",
    };
    println!("{}", serde_json::to_string(&probe)?);
    let stop = app.shutdown_handle();
    let run = tokio::spawn(app.run_until_stopped());
    stop.shutdown();
    run.await.context("the probe's service panicked")??;
    Ok(())
}

/// A `/proc/self/status` field in KiB.
pub fn status_kib(field: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(open_ms: f64, rss_peak_kib: u64) -> Probe {
        Probe {
            open_ms,
            rss_peak_kib,
            ..Probe::default()
        }
    }

    #[test]
    fn the_first_start_after_the_stop_is_the_cold_start_figure_and_memory_the_highest_peak() {
        let crash = probe(1100.0, 310);
        let starts = Starts::of(
            crash,
            vec![probe(150.0, 300), probe(250.0, 280), probe(180.0, 305)],
        )
        .unwrap();
        assert_eq!(starts.after_crash.open_ms, 1100.0);
        assert_eq!(
            starts.after_stop_ms,
            [150.0, 250.0, 180.0],
            "in start order"
        );
        assert_eq!(
            starts.first_after_stop_ms(),
            150.0,
            "not the crash start, not the median"
        );
        assert_eq!(
            starts.peak.rss_peak_kib, 310,
            "the crash start counts for memory"
        );
        let quieter = Starts::of(probe(1100.0, 200), vec![probe(150.0, 300)]).unwrap();
        assert_eq!(quieter.peak.rss_peak_kib, 300);
        assert!(Starts::of(probe(1.0, 1), Vec::new()).is_none());
    }
}
