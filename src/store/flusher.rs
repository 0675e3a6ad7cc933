//! Group commit for sled: one flusher thread serves every writer waiting for durability.
//!
//! A flush on this machine costs milliseconds while a write costs microseconds, and per-request
//! flushes barely coalesce on their own (see `docs/storage-notes.md`). So writers do not flush:
//! after its write, a writer asks for the first flush that *starts* after that point and blocks
//! until it has completed. Flushes are numbered (epochs); every writer arriving while flush `n`
//! runs waits for `n + 1`, so one sync covers all of them.
//!
//! `Db::flush_async` is never used: on sled 0.34.7 it deadlocks under concurrency (sled #1308).

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::StoreError;

/// A flush slower than this is logged: a long one once stalled webhook answers for seconds.
const SLOW_FLUSH: Duration = Duration::from_secs(1);

/// Shared by the store (the writers) and the flusher thread.
pub struct GroupCommit {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    db: sled::Db,
    state: Mutex<Epochs>,
    /// Wakes the flusher: a writer asked for a flush.
    work: Condvar,
    /// Wakes the writers: a flush completed.
    done: Condvar,
}

#[derive(Default)]
struct Epochs {
    /// Highest flush epoch some writer waits for.
    requested: u64,
    /// Epoch of the flush running or last run (flushes are numbered from 1).
    started: u64,
    /// Epoch of the last flush that finished, successfully or not.
    completed: u64,
    /// Epoch of the last flush that succeeded: a write is durable once any flush that started
    /// after it succeeded, so a failed flush followed by a good one still serves its waiters.
    succeeded: u64,
    /// Why the last failed flush failed, handed to the writers it leaves undurable.
    failure: Option<sled::Error>,
    /// How many flushes ran, for tests and diagnostics.
    flushes: u64,
    shutdown: bool,
}

impl GroupCommit {
    /// Starts the flusher thread for `db`.
    pub fn start(db: sled::Db) -> Result<Self, StoreError> {
        let shared = Arc::new(Shared {
            db,
            state: Mutex::new(Epochs::default()),
            work: Condvar::new(),
            done: Condvar::new(),
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("sled-flusher".into())
            .spawn(move || worker.run())
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        Ok(GroupCommit {
            shared,
            thread: Some(thread),
        })
    }

    /// Blocks until everything written before this call is on disk. Call it after the write,
    /// from a thread that may block (tokio's blocking pool, not an async task).
    pub fn wait(&self) -> Result<(), StoreError> {
        let mut st = self.shared.lock();
        // A flush numbered `started` or lower may have begun before our write finished, so it
        // does not count: we need the next one.
        let target = st.started + 1;
        if st.requested < target {
            st.requested = target;
            self.shared.work.notify_one();
        }
        while st.completed < target {
            st = self
                .shared
                .done
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if st.succeeded >= target {
            return Ok(());
        }
        Err(match &st.failure {
            Some(e) => e.clone().into(),
            None => StoreError::Backend("flush to disk failed".into()),
        })
    }

    /// How many flushes have run so far.
    pub fn flush_count(&self) -> u64 {
        self.shared.lock().flushes
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.work.notify_one();
        if let Some(t) = self.thread.take() {
            // The thread only ends by seeing `shutdown`; a panic there has already been printed.
            let _ = t.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Epochs> {
        // The state is a few counters updated atomically under the lock; a panicking holder
        // cannot leave them half-written, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn run(&self) {
        loop {
            let epoch = {
                let mut st = self.lock();
                while st.requested <= st.started && !st.shutdown {
                    st = self.work.wait(st).unwrap_or_else(PoisonError::into_inner);
                }
                if st.requested <= st.started {
                    return; // shutting down with nobody waiting
                }
                st.started += 1;
                st.started
            };
            let began = Instant::now();
            let result = self.db.flush();
            let elapsed = began.elapsed();
            if elapsed > SLOW_FLUSH {
                tracing::warn!(elapsed_ms = elapsed.as_millis() as u64, "slow sled flush");
            }
            let mut st = self.lock();
            st.completed = epoch;
            st.flushes += 1;
            match result {
                Ok(_) => st.succeeded = epoch,
                Err(e) => {
                    tracing::error!(error = %e, epoch, "sled flush failed");
                    st.failure = Some(e);
                }
            }
            self.done.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    fn temp_db() -> (tempfile::TempDir, sled::Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        (dir, db)
    }

    #[test]
    fn many_concurrent_writers_share_fewer_flushes_than_writers() {
        let (_dir, db) = temp_db();
        let gc = Arc::new(GroupCommit::start(db.clone()).unwrap());
        let writers = 32;
        let rounds = 4;
        let barrier = Arc::new(Barrier::new(writers));
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (db, gc, barrier) = (db.clone(), Arc::clone(&gc), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    for r in 0..rounds {
                        barrier.wait();
                        db.insert(format!("w{w}-{r}"), vec![0u8; 64]).unwrap();
                        gc.wait().unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let flushes = gc.flush_count();
        let waits = (writers * rounds) as u64;
        assert!(
            flushes >= 1 && flushes < waits,
            "{flushes} flushes for {waits} waits"
        );
    }

    #[test]
    fn a_wait_is_served_by_a_flush_that_started_after_it() {
        let (_dir, db) = temp_db();
        let gc = GroupCommit::start(db.clone()).unwrap();
        for i in 0..3u64 {
            db.insert(i.to_be_bytes(), vec![1]).unwrap();
            gc.wait().unwrap();
            // A lone writer always gets a fresh flush of its own.
            assert_eq!(gc.flush_count(), i + 1);
        }
    }

    #[test]
    fn dropping_stops_the_flusher_thread() {
        let (_dir, db) = temp_db();
        let gc = GroupCommit::start(db).unwrap();
        gc.wait().unwrap();
        drop(gc); // would hang here if the thread ignored shutdown
    }
}
