//! Group commit for sled: one flusher thread serves every writer waiting for durability.
//!
//! A flush on this machine costs milliseconds while a write costs microseconds, and per-request
//! flushes barely coalesce on their own (see `docs/storage-notes.md`). So writers do not flush:
//! after its write, a writer asks for the first flush that *starts* after that point and blocks
//! until it has completed. Flushes are numbered (epochs); every writer arriving while flush `n`
//! runs waits for `n + 1`, so one sync covers all of them.
//!
//! sled's flush is `sync_file_range`: the data is on its way to the disk, but neither the file's
//! size nor the disk's write cache is forced. Given the log file, each flush ends with an
//! `fdatasync` of it, which forces both, so an answer waits for what survives a power loss.
//! It also makes sled's own periodic `fsync` (every 500 ms) cheaper: on the bench VM that took
//! 11–18 ms with half a second of unforced writes behind it and held every flush that met it;
//! with each flush forced as it goes, fewer flushes are slow (fewer, not none).
//!
//! `Db::flush_async` is never used: on sled 0.34.7 it deadlocks under concurrency (sled #1308).
//!
//! A writer either blocks ([`GroupCommit::wait`]) or, inside a deferred scope (see
//! [`super::durability`]), takes a [`Mark`] and awaits [`GroupCommit::durable`]: an async waiter
//! is woken by the flush it waits for and by no other (a task, not a parked thread per request).
//! Each wake of a task on another runtime's thread is a syscall (an eventfd write) made by the
//! flusher before it can start the next flush, so waking every waiter after every flush, as a
//! `watch` channel did, woke most of them twice (`docs/benchmark.md`, Decisions: an async waiter
//! is woken by its own flush only).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;

use super::durability::{self, Durable, FlushStats, Mark};
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
    /// sled's log file, forced with `fdatasync` after each flush ([`super::Durability::PowerLoss`]).
    log: Option<std::fs::File>,
    /// Writers between their first sled write and their request for a flush (see
    /// [`GroupCommit::writing`]): what they wrote is visible but no flush has been asked for.
    unrequested: AtomicUsize,
    /// Shared with the async waits too, which need not keep the database open.
    state: Arc<Mutex<Epochs>>,
    /// Wakes the flusher: a writer asked for a flush.
    work: Condvar,
    /// Wakes the blocked writers: a flush completed.
    done: Condvar,
    /// Runs at the start of every flush, in the flusher thread (see
    /// [`GroupCommit::before_each_flush`]).
    before_flush: std::sync::OnceLock<BeforeFlush>,
    /// Told each flush's duration, once its waiters are woken (see
    /// [`GroupCommit::after_each_flush`]).
    after_flush: std::sync::OnceLock<AfterFlush>,
    pacing: Pacing,
}

/// When the next flush starts: `gap` after the previous one began, or as soon as `batch` writes
/// wait for it. The gap lets writers share a flush (each costs CPU in sled's and the kernel's
/// I/O paths, however little it carries); once `batch` are waiting, holding them longer saves
/// little and only delays them (`docs/benchmark.md`, Decisions: group commit pacing). A write
/// after a quiet spell longer than the gap does not wait at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    pub gap: Duration,
    pub batch: u64,
}

impl Pacing {
    /// Every flush waits out the gap, however many writes wait.
    pub fn gap(gap: Duration) -> Pacing {
        Pacing {
            gap,
            batch: u64::MAX,
        }
    }
}

/// Writes what writers left to the flusher: an error fails the flush it belongs to.
pub type BeforeFlush = Box<dyn Fn() -> sled::Result<()> + Send + Sync>;

/// Observes how long a flush took (the metrics' histogram); runs on the flusher thread, so it
/// must be quick.
pub type AfterFlush = Box<dyn Fn(Duration) + Send + Sync>;

fn failure(e: Option<&sled::Error>) -> StoreError {
    match e {
        Some(e) => e.clone().into(),
        None => StoreError::Backend("flush to disk failed".into()),
    }
}

#[derive(Default)]
struct Epochs {
    /// Highest flush epoch some writer waits for.
    requested: u64,
    /// Epoch of the flush running or last run (flushes are numbered from 1).
    started: u64,
    /// Requests since that flush started: the writes the next one will serve (one writer may
    /// ask for several).
    asked: u64,
    /// Epoch of the last flush that finished, successfully or not.
    completed: u64,
    /// Epoch of the last flush that succeeded: a write is durable once any flush that started
    /// after it succeeded, so a failed flush followed by a good one still serves its waiters.
    succeeded: u64,
    /// Why the last failed flush failed, handed to the writers it leaves undurable.
    failure: Option<sled::Error>,
    /// Async writers waiting, each with the flush it waits for: one past `completed` or two
    /// (the flush running and the next). Registered and taken under this lock, so a flush
    /// that completes after a waiter looked always finds it.
    waiters: Vec<(u64, Arc<AtomicWaker>)>,
    /// How long the flushes so far took (their count is the total).
    stats: FlushStats,
    shutdown: bool,
    /// The flusher thread has ended: an async wait that is still pending never will be served.
    flusher_gone: bool,
}

impl Epochs {
    /// What a writer waiting for flush `target` is told; `None` while that flush has not run.
    fn verdict(&self, target: u64) -> Option<Result<(), StoreError>> {
        if self.completed < target {
            return None;
        }
        Some(if self.succeeded >= target {
            Ok(())
        } else {
            Err(failure(self.failure.as_ref()))
        })
    }
}

impl GroupCommit {
    /// Starts the flusher thread for `db`, its flushes started as `pacing` says. Each flush is
    /// sled's own (`sync_file_range`): survives a process crash.
    pub fn start(db: sled::Db, pacing: Pacing) -> Result<Self, StoreError> {
        Self::spawn(db, pacing, None)
    }

    /// [`GroupCommit::start`], each flush followed by an `fdatasync` of `log` (sled's log
    /// file, opened by the caller): survives a power loss.
    pub fn start_forcing(
        db: sled::Db,
        pacing: Pacing,
        log: std::fs::File,
    ) -> Result<Self, StoreError> {
        Self::spawn(db, pacing, Some(log))
    }

    fn spawn(db: sled::Db, pacing: Pacing, log: Option<std::fs::File>) -> Result<Self, StoreError> {
        let shared = Arc::new(Shared {
            db,
            log,
            unrequested: AtomicUsize::new(0),
            state: Arc::new(Mutex::new(Epochs::default())),
            work: Condvar::new(),
            done: Condvar::new(),
            before_flush: std::sync::OnceLock::new(),
            after_flush: std::sync::OnceLock::new(),
            pacing,
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

    /// Sets the write that opens every flush (once; later calls are ignored). The flush that
    /// starts after a writer's request runs it first, so what a writer handed to it before its
    /// request is written and flushed for that writer: a batch of many writers' data, in one
    /// sled write instead of one each.
    pub fn before_each_flush(&self, write: BeforeFlush) {
        let _ = self.shared.before_flush.set(write);
    }

    /// Sets what is told each flush's duration (once; later calls are ignored).
    pub fn after_each_flush(&self, observe: AfterFlush) {
        let _ = self.shared.after_flush.set(observe);
    }

    /// Blocks until everything written before this call is on disk. Call it after the write,
    /// from a thread that may block. Inside a deferred scope it returns at once and the scope
    /// awaits the flush instead.
    pub fn wait(&self) -> Result<(), StoreError> {
        let mark = self.request();
        self.wait_for(mark)
    }

    /// Marks the start of a write: call before the first sled write, then
    /// [`Writing::wait`] after the last. While a write is open, [`GroupCommit::settle_read`]
    /// asks for a fresh flush, since a reader may already see part of it.
    pub fn writing(&self) -> Writing<'_> {
        self.shared.unrequested.fetch_add(1, SeqCst);
        Writing {
            commit: self,
            requested: false,
        }
    }

    fn wait_for(&self, mark: Mark) -> Result<(), StoreError> {
        if durability::take_over(mark) {
            return Ok(());
        }
        self.block_for(mark)
    }

    fn block_for(&self, mark: Mark) -> Result<(), StoreError> {
        let mut st = self.shared.lock();
        loop {
            if let Some(verdict) = st.verdict(mark.0) {
                return verdict;
            }
            st = self
                .shared
                .done
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// After a read whose answer may reach a customer: while some write is not yet durable,
    /// what was just read may include it (another request's claim, a credit in a balance), so
    /// the reader waits for a flush that starts after its read. That covers writes whose flush
    /// is pending and writes still open ([`GroupCommit::writing`]: applied in part, their
    /// flush not yet asked for; a multi-key operation is such a write for tens of
    /// microseconds). With nothing pending it costs nothing.
    pub fn settle_read(&self) -> Result<(), StoreError> {
        // The counter is read after the data (the caller read first): a writer whose data
        // the read saw has either raised it already, or has requested its flush.
        let open = self.shared.unrequested.load(SeqCst) > 0;
        let pending = {
            let st = self.shared.lock();
            // `succeeded`, not `completed`: after a failed flush nothing is durable yet.
            st.requested > st.succeeded
        };
        if open || pending {
            self.wait()
        } else {
            Ok(())
        }
    }

    /// Asks for the first flush that starts after this call and returns its number.
    pub fn request(&self) -> Mark {
        let mut st = self.shared.lock();
        // A flush numbered `started` or lower may have begun before our write finished, so it
        // does not count: we need the next one.
        let target = st.started + 1;
        st.asked += 1;
        if st.requested < target {
            st.requested = target;
            self.shared.work.notify_one();
        } else if st.asked == self.shared.pacing.batch {
            // The flusher may be waiting out the gap: enough writes wait to start now.
            self.shared.work.notify_one();
        }
        Mark(target)
    }

    /// Resolves once flush `mark` (or a later one) has succeeded.
    pub fn durable(&self, mark: Mark) -> Durable {
        Box::pin(FlushWait {
            state: Arc::clone(&self.shared.state),
            target: mark.0,
            waker: None,
        })
    }

    /// How long they took.
    pub fn stats(&self) -> FlushStats {
        self.shared.lock().stats
    }
}

/// [`GroupCommit::durable`]'s future.
struct FlushWait {
    state: Arc<Mutex<Epochs>>,
    target: u64,
    /// Set once registered among the waiters; a later poll only updates the waker in it.
    waker: Option<Arc<AtomicWaker>>,
}

impl Future for FlushWait {
    type Output = Result<(), StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let target = self.target;
        let mut st = lock(&self.state);
        if let Some(verdict) = st.verdict(target) {
            return Poll::Ready(verdict);
        }
        if st.flusher_gone {
            return Poll::Ready(Err(StoreError::Backend("the store was closed".into())));
        }
        match &self.waker {
            // Under the lock, so the flush's taking of the waiters cannot slip between the
            // check above and this; a wake already taken but not yet made reaches this waker.
            Some(waker) => waker.register(cx.waker()),
            None => {
                let waker = Arc::new(AtomicWaker::new());
                waker.register(cx.waker());
                st.waiters.push((target, Arc::clone(&waker)));
                drop(st);
                self.waker = Some(waker);
            }
        }
        Poll::Pending
    }
}

/// An open write; see [`GroupCommit::writing`].
#[must_use = "a write must end with `wait`, or be dropped after a failure"]
pub struct Writing<'a> {
    commit: &'a GroupCommit,
    requested: bool,
}

impl Writing<'_> {
    /// The write is complete: asks for its flush and waits for it (inside a deferred scope,
    /// leaves the wait to the scope), like [`GroupCommit::wait`].
    pub fn wait(mut self) -> Result<(), StoreError> {
        let mark = self.commit.request();
        self.requested = true;
        let commit = self.commit;
        drop(self);
        commit.wait_for(mark)
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        // Dropped without `wait` (the operation failed part-way): whatever it did write still
        // gets a flush, so that readers settle on it. Only then is the write no longer open.
        if !self.requested {
            let _ = self.commit.request();
        }
        self.commit.shared.unrequested.fetch_sub(1, SeqCst);
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
        lock(&self.state)
    }

    fn flush(&self) -> sled::Result<()> {
        if let Some(write) = self.before_flush.get() {
            write()?;
        }
        self.db.flush()?;
        if let Some(log) = &self.log {
            rustix::fs::fdatasync(log).map_err(|e| sled::Error::Io(e.into()))?;
        }
        Ok(())
    }

    fn run(&self) {
        let Pacing { gap, batch } = self.pacing;
        let mut last: Option<Instant> = None;
        loop {
            let epoch = {
                let mut st = self.lock();
                loop {
                    if st.requested <= st.started {
                        if st.shutdown {
                            // Shutting down with no flush asked for; any waiter left is told.
                            st.flusher_gone = true;
                            let left = std::mem::take(&mut st.waiters);
                            drop(st);
                            for (_, waker) in left {
                                waker.wake();
                            }
                            return;
                        }
                        st = self.work.wait(st).unwrap_or_else(PoisonError::into_inner);
                        continue;
                    }
                    // Waiting here, before taking the next epoch, lets the writers arriving
                    // meanwhile join this flush instead of each paying for one of their own.
                    let left = last
                        .and_then(|l| gap.checked_sub(l.elapsed()))
                        .filter(|left| !left.is_zero());
                    match left {
                        Some(left) if st.asked < batch && !st.shutdown => {
                            st = self
                                .work
                                .wait_timeout(st, left)
                                .map(|(st, _)| st)
                                .unwrap_or_else(|e| e.into_inner().0);
                        }
                        _ => break,
                    }
                }
                st.started += 1;
                st.asked = 0;
                st.started
            };
            let began = Instant::now();
            last = Some(began);
            // A panic here would end the thread and leave every waiter hanging for good; as a
            // failed flush, the waiters get an error and the next flush may still succeed.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.flush()))
                .unwrap_or_else(|_| {
                    Err(sled::Error::ReportableBug("the sled flush panicked".into()))
                });
            let elapsed = began.elapsed();
            if elapsed > SLOW_FLUSH {
                tracing::warn!(elapsed_ms = elapsed.as_millis() as u64, "slow sled flush");
            }
            let mut st = self.lock();
            st.completed = epoch;
            let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
            st.stats.counts[FlushStats::bucket(ms)] += 1;
            match result {
                Ok(_) => st.succeeded = epoch,
                Err(e) => {
                    tracing::error!(error = %e, epoch, "sled flush failed");
                    st.failure = Some(e);
                }
            }
            let ready = take_served(&mut st.waiters, epoch);
            drop(st);
            // The async waiters first: a blocked one that returns has seen them all woken.
            for waker in ready {
                waker.wake();
            }
            self.done.notify_all();
            if let Some(observe) = self.after_flush.get() {
                observe(elapsed);
            }
        }
    }
}

fn lock(state: &Mutex<Epochs>) -> MutexGuard<'_, Epochs> {
    // The state is a few counters updated atomically under the lock; a panicking holder cannot
    // leave them half-written, so a poisoned lock is still usable.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Takes the waiters that flush `epoch` serves, leaving those waiting for the next.
fn take_served(waiters: &mut Vec<(u64, Arc<AtomicWaker>)>, epoch: u64) -> Vec<Arc<AtomicWaker>> {
    let mut ready = Vec::with_capacity(waiters.len());
    waiters.retain(|(target, waker)| {
        if *target <= epoch {
            ready.push(Arc::clone(waker));
            false
        } else {
            true
        }
    });
    ready
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
        let gc = Arc::new(GroupCommit::start(db.clone(), Pacing::gap(Duration::ZERO)).unwrap());
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
        let flushes = gc.stats().total();
        let waits = (writers * rounds) as u64;
        assert!(
            flushes >= 1 && flushes < waits,
            "{flushes} flushes for {waits} waits"
        );
    }

    #[test]
    fn the_write_before_each_flush_runs_in_it_and_its_failure_fails_that_flush() {
        let (_dir, db) = temp_db();
        let gc = GroupCommit::start(db.clone(), Pacing::gap(Duration::ZERO)).unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&calls);
        let target = db.clone();
        gc.before_each_flush(Box::new(move || {
            if seen.fetch_add(1, SeqCst) == 0 {
                return Err(sled::Error::Unsupported("full".into()));
            }
            target.insert("batch", vec![1]).map(|_| ())
        }));
        assert!(gc.wait().is_err(), "the first flush's write failed");
        assert!(db.get("batch").unwrap().is_none());
        gc.wait().unwrap();
        assert_eq!(calls.load(SeqCst), 2);
        assert!(db.get("batch").unwrap().is_some());
    }

    #[test]
    fn a_wait_is_served_by_a_flush_that_started_after_it() {
        let (_dir, db) = temp_db();
        let gc = GroupCommit::start(db.clone(), Pacing::gap(Duration::ZERO)).unwrap();
        for i in 0..3u64 {
            db.insert(i.to_be_bytes(), vec![1]).unwrap();
            gc.wait().unwrap();
            // A lone writer always gets a fresh flush of its own.
            assert_eq!(gc.stats().total(), i + 1);
        }
    }

    #[test]
    fn fewer_writes_than_the_batch_wait_out_the_gap() {
        let (_dir, db) = temp_db();
        let gap = Duration::from_millis(300);
        let gc = GroupCommit::start(db, Pacing { gap, batch: 3 }).unwrap();
        let before_first = Instant::now();
        gc.wait().unwrap(); // flush 1: nothing before it, so no gap
        gc.wait().unwrap();
        gc.wait().unwrap();
        assert_eq!(gc.stats().total(), 3);
        assert!(
            before_first.elapsed() >= 2 * gap,
            "flushes 2 and 3 each started a gap after the one before"
        );
    }

    #[test]
    fn a_flush_starts_before_the_gap_is_over_once_a_batch_of_writes_waits() {
        let (_dir, db) = temp_db();
        // Far longer than the test may take: waiting out the gap would fail it.
        let gap = Duration::from_secs(120);
        let gc = Arc::new(GroupCommit::start(db, Pacing { gap, batch: 4 }).unwrap());
        gc.wait().unwrap();
        let started = Instant::now();
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let gc = Arc::clone(&gc);
                std::thread::spawn(move || gc.wait().unwrap())
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        assert!(started.elapsed() < gap / 4, "{:?}", started.elapsed());
        assert_eq!(gc.stats().total(), 2, "the four writers shared one flush");
    }

    #[tokio::test]
    async fn async_waiters_share_flushes_and_each_gets_a_fresh_one() {
        let (_dir, db) = temp_db();
        let gc = Arc::new(
            GroupCommit::start(db.clone(), Pacing::gap(Duration::from_millis(2))).unwrap(),
        );
        let mut waits = tokio::task::JoinSet::new();
        for i in 0..64u64 {
            let (db, gc) = (db.clone(), Arc::clone(&gc));
            waits.spawn(async move {
                db.insert(i.to_be_bytes(), vec![0u8; 32]).unwrap();
                let mark = gc.request();
                gc.durable(mark).await.unwrap();
                // Served by a flush numbered at least as high as the one it asked for.
                assert!(gc.stats().total() >= mark.0);
            });
        }
        while let Some(done) = waits.join_next().await {
            done.unwrap();
        }
        let flushes = gc.stats().total();
        assert!((1..64).contains(&flushes), "{flushes} flushes for 64 waits");
    }

    #[test]
    fn an_async_waiter_is_woken_by_its_own_flush_and_not_by_the_one_before() {
        struct Count(AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, SeqCst);
            }
        }
        let (_dir, db) = temp_db();
        // Flush 2 starts only once two writes ask for it, so the test says when it runs.
        let gc = Arc::new(
            GroupCommit::start(
                db,
                Pacing {
                    gap: Duration::from_secs(120),
                    batch: 2,
                },
            )
            .unwrap(),
        );
        let (hold, held) = std::sync::mpsc::channel::<()>();
        let held = Mutex::new(held);
        let first = AtomicUsize::new(0);
        gc.before_each_flush(Box::new(move || {
            if first.fetch_add(1, SeqCst) == 0 {
                let _ = held.lock().unwrap().recv(); // flush 1 waits for the test
            }
            Ok(())
        }));
        let one = gc.request();
        while gc.shared.lock().started < 1 {
            std::thread::yield_now();
        }
        let two = gc.request(); // flush 1 is running: this write needs flush 2
        assert_eq!(two.0, 2);

        let wakes = Arc::new(Count(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(Arc::clone(&wakes));
        let mut wait = gc.durable(two);
        let mut cx = Context::from_waker(&waker);
        assert!(wait.as_mut().poll(&mut cx).is_pending());

        hold.send(()).unwrap();
        gc.wait_for(one).unwrap();
        assert_eq!(
            wakes.0.load(SeqCst),
            0,
            "flush 1 does not serve it: no wake"
        );
        assert!(wait.as_mut().poll(&mut cx).is_pending());

        let _third = gc.request(); // the second write flush 2 waits for
        gc.wait_for(two).unwrap();
        assert_eq!(wakes.0.load(SeqCst), 1, "flush 2 wakes it, once");
        assert!(matches!(wait.as_mut().poll(&mut cx), Poll::Ready(Ok(()))));
    }

    #[test]
    fn a_wait_for_a_flush_that_never_runs_ends_with_an_error_once_the_store_closes() {
        let (_dir, db) = temp_db();
        let gc = GroupCommit::start(db, Pacing::gap(Duration::ZERO)).unwrap();
        let mut never = gc.durable(Mark(u64::MAX));
        assert!(futures_util::FutureExt::now_or_never(&mut never).is_none());
        drop(gc);
        let told = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), never).await })
            .expect("the closed store woke the waiter");
        assert!(matches!(told, Err(StoreError::Backend(_))), "{told:?}");
    }

    #[test]
    fn a_wait_inside_a_deferred_scope_returns_a_mark_instead_of_blocking() {
        let (_dir, db) = temp_db();
        let gc = GroupCommit::start(db, Pacing::gap(Duration::ZERO)).unwrap();
        let ((), mark) = durability::deferred(|| gc.wait().unwrap());
        let mark = mark.expect("the wait was deferred");
        futures_util::FutureExt::now_or_never(gc.durable(Mark(u64::MAX)))
            .is_none()
            .then_some(())
            .expect("a flush that never ran cannot be awaited as done");
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(gc.durable(mark))
            .unwrap();
        assert!(gc.stats().total() >= mark.0);
    }

    #[test]
    fn a_read_while_a_writer_waits_waits_for_the_next_flush_too() {
        let (_dir, db) = temp_db();
        // The gap holds flush 2 back long enough for the read to see it pending.
        let gc = GroupCommit::start(db, Pacing::gap(Duration::from_millis(300))).unwrap();
        gc.wait().unwrap(); // flush 1: nothing before it, so no gap
        let ((), idle) = durability::deferred(|| gc.settle_read().unwrap());
        assert_eq!(idle, None, "with no writer waiting a read costs nothing");
        let writer = gc.request();
        let ((), read) = durability::deferred(|| gc.settle_read().unwrap());
        assert_eq!(read, Some(writer), "the read waits for the writer's flush");
    }

    #[test]
    fn a_read_during_an_open_write_asks_for_a_flush_after_it() {
        let (_dir, db) = temp_db();
        let gc = GroupCommit::start(db, Pacing::gap(Duration::ZERO)).unwrap();
        gc.wait().unwrap();
        let before = gc.stats().total();
        // A multi-key operation has applied part of its writes and not yet asked for a flush:
        // nothing is pending, yet a read may see those writes.
        let writing = gc.writing();
        gc.settle_read().unwrap();
        assert!(
            gc.stats().total() > before,
            "the read waited for a flush that started after it"
        );
        writing.wait().unwrap();
        let settled = gc.stats().total();
        gc.settle_read().unwrap();
        assert_eq!(
            gc.stats().total(),
            settled,
            "nothing open or pending: no wait"
        );
    }

    #[test]
    fn a_write_dropped_after_a_failure_still_gets_its_flush() {
        let (_dir, db) = temp_db();
        let gc = GroupCommit::start(db, Pacing::gap(Duration::ZERO)).unwrap();
        gc.wait().unwrap();
        let before = gc.stats().total();
        drop(gc.writing());
        gc.settle_read().unwrap();
        assert!(gc.stats().total() > before);
    }

    #[test]
    fn a_forced_flush_fdatasyncs_the_log_and_fails_its_writers_when_that_fails() {
        let (dir, db) = temp_db();
        let log = std::fs::File::open(dir.path().join("db")).unwrap();
        let gc = GroupCommit::start_forcing(db.clone(), Pacing::gap(Duration::ZERO), log).unwrap();
        db.insert(b"k", b"v").unwrap();
        gc.wait().unwrap();
        assert_eq!(gc.stats().total(), 1);

        // procfs files cannot be synced (EINVAL): if the flush did not `fdatasync` what it
        // was given, this writer would be told its write is safe.
        let (_dir, db) = temp_db();
        let unsyncable = std::fs::File::open("/proc/self/stat").unwrap();
        let gc = GroupCommit::start_forcing(db.clone(), Pacing::gap(Duration::ZERO), unsyncable)
            .unwrap();
        db.insert(b"k", b"v").unwrap();
        let err = gc
            .wait()
            .expect_err("the fdatasync failed, so the write is not durable");
        assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    }

    #[test]
    fn dropping_stops_the_flusher_thread() {
        let (_dir, db) = temp_db();
        let gc = GroupCommit::start(db, Pacing::gap(Duration::ZERO)).unwrap();
        gc.wait().unwrap();
        drop(gc); // would hang here if the thread ignored shutdown
    }
}
