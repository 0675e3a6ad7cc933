//! Pins the changes made to the vendored sled (`vendor/sled/LOYALTY-PATCHES.md`) by what they
//! are for, so the tests fail if the registry crate comes back without them: fewer wake-ups of
//! sled's I/O threads (counted as those threads' voluntary context switches,
//! `/proc/self/task/*/status`), and a snapshot left half-written by a crash ignored. Recovery's
//! read-ahead (change 5) is only advice to the kernel, which no test can see: its test pins the
//! path it takes, a cold reopen over reused segments. Change 7 is memory, the mail benchmark's
//! figure: its test pins the path it changes, a reopen from a snapshot of pages with several
//! fragments. A store left by the build that had change 4 (since removed) still opens. Linux
//! only, as the counters are.
#![cfg(target_os = "linux")]

mod common;

use std::sync::Mutex;

/// sled's I/O pool is one per process: the tests must not count each other's wake-ups.
static POOL: Mutex<()> = Mutex::new(());

/// Total voluntary context switches of the threads named `sled-io-*`, and how many there are.
fn pool_switches() -> (u64, usize) {
    let mut total = 0;
    let mut threads = 0;
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let dir = task.expect("task entry").path();
        let Ok(name) = std::fs::read_to_string(dir.join("comm")) else {
            continue; // the thread ended meanwhile
        };
        if !name.starts_with("sled-io") {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(dir.join("status")) else {
            continue;
        };
        let switches = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .expect("voluntary_ctxt_switches in status");
        total += switches;
        threads += 1;
    }
    (total, threads)
}

fn open() -> (tempfile::TempDir, sled::Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    (dir, db)
}

/// Starts sled's pool (it starts on first use) and lets its threads settle into their wait.
fn warm_pool(db: &sled::Db) {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(db.flush_async())
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
}

const FLUSHES: u64 = 200;

/// A fresh store, and the wake-ups of sled's I/O threads (with how many there are) while
/// `FLUSHES` small writes are each followed by `flush`.
fn pool_wakeups_while(flush: impl Fn(&sled::Db)) -> (u64, usize, tempfile::TempDir, sled::Db) {
    let _pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, db) = open();
    warm_pool(&db);
    let (before, threads) = pool_switches();
    for i in 0..FLUSHES {
        db.insert(i.to_be_bytes(), vec![7u8; 100]).unwrap();
        flush(&db);
    }
    let (after, _) = pool_switches();
    (after - before, threads, dir, db)
}

#[test]
fn a_flush_writes_the_log_itself_without_waking_sleds_io_threads() {
    let (woken, threads, dir, db) = pool_wakeups_while(|db| {
        db.flush().unwrap();
    });
    assert!(threads > 0, "sled's I/O threads are running");
    // Handed to the pool, each flush's write wakes at least one I/O thread (all of them, without
    // the other patch): 200 or more. Written by the flushing thread, what is left is the
    // pool's idle timeouts (one a second for each of seven threads) and sled's own periodic
    // flush (two a second): none in the 0.1 s this takes here, ~45 if a slow disk made it 5 s.
    assert!(
        woken < FLUSHES / 2,
        "sled's I/O threads woke {woken} times for {FLUSHES} flushes"
    );
    drop(db);
    let db = common::raw_sled(dir.path());
    assert_eq!(
        db.len(),
        FLUSHES as usize,
        "every flushed write is read back"
    );
}

#[test]
fn a_job_for_sleds_pool_wakes_one_io_thread_not_all_of_them() {
    // `flush_async` runs the flush as a job on sled's pool: one job at a time, each awaited.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (woken, threads, _dir, _db) = pool_wakeups_while(|db| {
        rt.block_on(db.flush_async()).unwrap();
    });
    assert!(threads >= 2, "sled keeps several idle I/O threads");
    // Waking one thread per job reads about two switches a job here (its wake-up and its wait
    // inside the flush); waking every idle thread read over eleven.
    assert!(
        woken < FLUSHES * 4,
        "{threads} I/O threads woke {woken} times for {FLUSHES} jobs"
    );
    assert!(
        woken >= FLUSHES / 2,
        "the jobs ran on the pool ({woken} wake-ups)"
    );
}

/// sled's segment size (its default, which the store keeps).
const SEGMENT: u64 = 512 * 1024;

/// Change 4, since removed, kept the four segments past the log's tip written with zeroes
/// (`MessageKind::Corrupted` bytes), so a store it wrote can end in up to four such segments
/// past the log, more than the last segment's rest. This build opens one, reads every key and
/// writes on, as the registry crate's recovery does over the free segments it zeroes itself.
#[test]
fn a_log_ending_in_zeroed_segments_as_the_zeroing_build_left_it_opens_with_every_key() {
    let _pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, db) = open();
    // ~3 MiB of values, flushed as they go: the log moves through several segments.
    let value = vec![0xA5u8; 1024];
    for i in 0u32..3000 {
        db.insert(i.to_be_bytes(), value.clone()).unwrap();
        if i % 100 == 99 {
            db.flush().unwrap();
        }
    }
    db.flush().unwrap();
    drop(db);
    let log = dir.path().join("db");
    let len = std::fs::metadata(&log).unwrap().len();
    assert!(
        len > 2 * SEGMENT,
        "the values filled several segments ({len} bytes)"
    );
    let zeroed_to = len.div_ceil(SEGMENT) * SEGMENT + 4 * SEGMENT;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(zeroed_to)
        .unwrap();

    let db = common::raw_sled(dir.path());
    assert_eq!(db.len(), 3000, "every flushed write is read back");
    for i in 3000u32..4000 {
        db.insert(i.to_be_bytes(), value.clone()).unwrap();
    }
    db.flush().unwrap();
    drop(db);
    let db = common::raw_sled(dir.path());
    assert_eq!(db.len(), 4000, "and again after writing on");
    assert_eq!(
        db.get(3999u32.to_be_bytes()).unwrap().as_deref(),
        Some(&value[..])
    );
}

/// Drops `path`'s pages from the page cache (clean ones; the file is synced first).
fn evict(path: &std::path::Path) {
    let file = std::fs::File::open(path).expect("sled's log file");
    file.sync_all().expect("sync the log");
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
}

#[test]
fn a_cold_reopen_of_a_log_reused_out_of_file_order_reads_every_key() {
    let _pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, db) = open();
    // The same 2,000 keys written over and over: sled frees the segments they leave and
    // writes on into them, so the log's segments are no longer in file order, which is the
    // order recovery reads ahead in (LOYALTY-PATCHES change 5).
    let mut written = 0u64;
    for round in 0u32..12 {
        let value = vec![round as u8; 1024];
        for i in 0u32..2000 {
            db.insert(i.to_be_bytes(), value.clone()).unwrap();
            written += 1024;
            if i % 200 == 199 {
                db.flush().unwrap();
            }
        }
    }
    db.flush().unwrap();
    drop(db);
    let log = dir.path().join("db");
    let len = std::fs::metadata(&log).unwrap().len();
    assert!(
        len < written / 2,
        "the log reused its segments ({len} bytes on disk for {written} written)"
    );
    for _ in 0..2 {
        evict(&log);
        let db = common::raw_sled(dir.path());
        assert_eq!(db.len(), 2000, "every key is read back");
        for i in 0u32..2000 {
            assert_eq!(
                db.get(i.to_be_bytes()).unwrap().as_deref(),
                Some(&[11u8; 1024][..]),
                "key {i} has its last value"
            );
        }
        drop(db);
    }
}

/// The snapshot files sled keeps in `dir` (`snap.<lsn as 16 hex digits>`, no suffix).
fn snapshots(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("snap.") && name.len() == "snap.".len() + 16
        })
        .collect();
    found.sort();
    found
}

/// Every open writes a snapshot as `snap.<lsn>.generating`, syncs it and renames it to
/// `snap.<lsn>`. A crash (`kill -9`, power loss) before the rename leaves the `.generating`
/// file empty or cut short, and the registry crate's open takes the newest name it finds,
/// that one included, so every later open failed with `Corruption` (upstream issues #1527,
/// #1533; LOYALTY-PATCHES change 6). Here such a leftover is planted under a name newer than
/// the last snapshot's: empty, cut in half, and whole (a whole one is read, as upstream does).
#[test]
fn a_snapshot_left_half_written_by_a_crashed_start_does_not_stop_the_next_one() {
    let _pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    for keep in [0.0, 0.5, 1.0] {
        let (dir, db) = open();
        for i in 0u32..3000 {
            db.insert(i.to_be_bytes(), &[1u8; 100][..]).unwrap();
        }
        db.flush().unwrap();
        drop(db);
        // This open's snapshot covers the keys above; the keys written after it are only in
        // the log, as after a crash.
        let db = common::raw_sled(dir.path());
        for i in 3000u32..6000 {
            db.insert(i.to_be_bytes(), &[2u8; 100][..]).unwrap();
        }
        db.flush().unwrap();
        drop(db);
        let last = snapshots(dir.path())
            .pop()
            .expect("the open wrote a snapshot");
        let lsn =
            u64::from_str_radix(&last.file_name().unwrap().to_string_lossy()[5..], 16).unwrap();
        let bytes = std::fs::read(&last).unwrap();
        let cut = (bytes.len() as f64 * keep) as usize;
        let leftover = dir
            .path()
            .join(format!("snap.{:016X}.generating", lsn + 4096));
        std::fs::write(&leftover, &bytes[..cut]).unwrap();

        // A half-written snapshot left over must not stop the open (`raw_sled` panics then).
        let db = common::raw_sled(dir.path());
        assert_eq!(db.len(), 6000, "every key is read back ({keep} written)");
        for i in 0u32..6000 {
            let want = if i < 3000 { 1u8 } else { 2 };
            assert_eq!(
                db.get(i.to_be_bytes()).unwrap().as_deref(),
                Some(&[want; 100][..]),
                "key {i} ({keep} written)"
            );
        }
        drop(db);
        assert!(
            !leftover.exists(),
            "the leftover is removed once a snapshot is written"
        );
        let db = common::raw_sled(dir.path());
        assert_eq!(db.len(), 6000, "and a later open reads every key too");
    }
}

/// Change 7 sizes each page's list of log locations from the snapshot's count of them; how
/// much memory that takes is the mail benchmark's measure. Here: a store whose pages were
/// updated in place (each update a fragment in the log, so a page has several locations),
/// reopened from the snapshot of them, reads back every key's last value, also after more
/// updates and another reopen.
#[test]
fn a_store_reopened_from_a_snapshot_of_pages_with_several_fragments_reads_every_key() {
    let _pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, mut db) = open();
    let value = |i: u32, round: u32| (i ^ round).to_be_bytes();
    for round in 0..4u32 {
        // Every key in the first round, then one in 3, 5 and 7: pages of 0 to 3 fragments.
        for i in (0u32..5000).filter(|i| round == 0 || i % (2 * round + 1) == 0) {
            db.insert(i.to_be_bytes(), &value(i, round)[..]).unwrap();
        }
        db.flush().unwrap();
        drop(db);
        // Each open writes the snapshot this round's reopen reads.
        drop(common::raw_sled(dir.path()));
        let reopened = common::raw_sled(dir.path());
        assert_eq!(reopened.len(), 5000, "every key after round {round}");
        for i in 0u32..5000 {
            let last = (0..=round)
                .rev()
                .find(|&r| r == 0 || i % (2 * r + 1) == 0)
                .unwrap();
            assert_eq!(
                reopened.get(i.to_be_bytes()).unwrap().as_deref(),
                Some(&value(i, last)[..]),
                "key {i} after round {round}"
            );
        }
        db = reopened;
    }
}
