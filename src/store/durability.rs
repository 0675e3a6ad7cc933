//! Waiting for durability without blocking a thread: store operations run inline on the
//! caller's (async) thread inside a [`deferred`] scope, and the caller then awaits the flush
//! that makes them durable.
//!
//! A whole turn (one customer request) can also be [`collecting`]: its operations then record
//! their marks instead of awaiting each one, and the channel awaits the highest mark once,
//! before it tells the customer anything. One flush wait per turn instead of one per store
//! call: the rule that matters is "nothing is announced before it is durable", and the flush
//! that covers the last mark covers every earlier one. An operation that is followed by a side
//! effect outside the store (a coupon made at the shop) uses [`run_durably_now`] instead.
//!
//! Every store method is durable when it returns; a backend that must flush calls
//! [`take_over`] first, and when the call runs inside a deferred scope the scope records what
//! to wait for instead of the method blocking. [`run_durably`] is the only way the service
//! uses it, so "returned" still means "on disk" wherever a result reaches a customer. A thread
//! parked per operation (and the wake-ups to hand its result back) was what the intake
//! profile showed; a waker per operation costs almost nothing.
//!
//! [`FlushStats`] is what a backend tells about its flushes' durations (for the benchmark).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;

use serde::Deserialize;

use super::StoreError;

/// What an acknowledged write survives: what every answer waits for before it goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Each group-commit flush ends with an `fdatasync` of the log: an acknowledged write
    /// survives a power loss or a kernel crash, on a disk that honours cache flushes.
    #[default]
    PowerLoss,
    /// sled's own flush only (`sync_file_range`): an acknowledged write survives the process
    /// dying (`kill -9`, OOM, panic); a power loss can take the last second or so.
    ProcessCrash,
}

impl Durability {
    /// As written in `config.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::PowerLoss => "power_loss",
            Durability::ProcessCrash => "process_crash",
        }
    }
}

/// A backend's position in its write-ahead order: everything written before it is durable
/// once a flush numbered `mark` or later has succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mark(pub u64);

/// A boxed future resolving when the writes up to a [`Mark`] are durable.
pub type Durable = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'static>>;

/// What a backend that defers flushing must offer: an awaitable flush.
pub trait AwaitDurable {
    /// Resolves once everything written before `mark` was taken is on disk.
    fn durable(&self, mark: Mark) -> Durable;

    /// How its flushes have gone since it opened (diagnostics; `None`: not tracked).
    fn flush_stats(&self) -> Option<FlushStats> {
        None
    }
}

/// Flush durations since the store opened, counted per bucket, so that the difference of two
/// readings describes the time between them. A slow flush holds every waiting answer, so the
/// tail buckets explain tail latencies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushStats {
    /// Flushes that took less than [`FlushStats::BUCKETS_MS`]`[i]` (and at least the bucket
    /// before); the last count is everything slower.
    pub counts: [u64; 8],
}

impl FlushStats {
    pub const BUCKETS_MS: [u64; 7] = [1, 2, 5, 10, 20, 50, 100];

    /// The bucket of a flush that took `ms` milliseconds.
    pub fn bucket(ms: u64) -> usize {
        Self::BUCKETS_MS
            .iter()
            .position(|&b| ms < b)
            .unwrap_or(Self::BUCKETS_MS.len())
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Flushes that took `ms` or longer (`ms` one of [`FlushStats::BUCKETS_MS`]).
    pub fn at_least(&self, ms: u64) -> u64 {
        self.counts[Self::bucket(ms)..].iter().sum()
    }

    /// Both periods' flushes together.
    pub fn plus(&self, other: &FlushStats) -> FlushStats {
        let mut counts = self.counts;
        for (c, o) in counts.iter_mut().zip(other.counts) {
            *c += o;
        }
        FlushStats { counts }
    }

    /// What happened between `earlier` and this reading.
    pub fn since(&self, earlier: &FlushStats) -> FlushStats {
        let mut counts = self.counts;
        for (c, e) in counts.iter_mut().zip(earlier.counts) {
            *c = c.saturating_sub(e);
        }
        FlushStats { counts }
    }
}

thread_local! {
    /// `Some(highest mark so far)` inside a deferred scope on this thread.
    static SCOPE: Cell<Option<Option<Mark>>> = const { Cell::new(None) };
}

/// Called by a backend about to block for `mark`: `true` means a deferred scope took the wait
/// over (return at once; the scope's owner awaits it), `false` means block as usual.
pub fn take_over(mark: Mark) -> bool {
    SCOPE.with(|scope| match scope.get() {
        Some(highest) => {
            scope.set(Some(Some(highest.map_or(mark, |h| h.max(mark)))));
            true
        }
        None => false,
    })
}

/// Runs `f` with the durability waits of the store calls it makes deferred; returns its result
/// and the mark to await (`None` when nothing needs a flush). `f` must not await: the scope is
/// this thread's.
pub fn deferred<R>(f: impl FnOnce() -> R) -> (R, Option<Mark>) {
    /// Restores the enclosing scope even if `f` panics, so a later call on this thread is not
    /// silently deferred.
    struct Restore(Option<Option<Mark>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            SCOPE.with(|s| s.set(self.0));
        }
    }
    let outer = SCOPE.with(|s| s.replace(Some(None)));
    let restore = Restore(outer);
    let out = f();
    let mine = SCOPE.with(|s| s.get()).flatten();
    drop(restore);
    // A nested scope's waits still bind the enclosing one.
    if let (Some(m), Some(_)) = (mine, outer) {
        take_over(m);
    }
    (out, mine)
}

/// Runs one store operation on the current thread and returns once its effect is durable,
/// without parking a thread for the flush; inside a [`collecting`] scope it returns at once and
/// the scope's owner awaits. Meant for point operations (microseconds); long scans belong on
/// the blocking pool.
pub async fn run_durably<S, T>(
    store: &S,
    f: impl FnOnce(&S) -> Result<T, StoreError>,
) -> Result<T, StoreError>
where
    S: AwaitDurable + ?Sized,
{
    run(store, f, Wait::UnlessCollecting).await
}

/// [`run_durably`] that always awaits, also inside a [`collecting`] scope: for a write that
/// must be on disk before a side effect outside the store. Its flush also covers every mark
/// the scope collected so far.
pub async fn run_durably_now<S, T>(
    store: &S,
    f: impl FnOnce(&S) -> Result<T, StoreError>,
) -> Result<T, StoreError>
where
    S: AwaitDurable + ?Sized,
{
    run(store, f, Wait::Always).await
}

/// Whether a [`collecting`] scope may take an operation's flush wait over.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    UnlessCollecting,
    Always,
}

async fn run<S, T>(
    store: &S,
    f: impl FnOnce(&S) -> Result<T, StoreError>,
    wait: Wait,
) -> Result<T, StoreError>
where
    S: AwaitDurable + ?Sized,
{
    let (out, mark) = deferred(|| f(store));
    let out = out?;
    if let Some(mark) = mark {
        if wait == Wait::Always || !collect(mark) {
            store.durable(mark).await?;
        }
    }
    Ok(out)
}

tokio::task_local! {
    /// The highest mark collected by the current task's [`collecting`] scope.
    static COLLECTED: Cell<Option<Mark>>;
}

/// Runs `fut` with the durability waits of its [`run_durably`] calls collected; returns its
/// output and the mark to await before announcing anything it did (`None`: nothing to wait
/// for). The caller must await that mark (or a later one) before answering.
pub async fn collecting<F: Future>(fut: F) -> (F::Output, Option<Mark>) {
    COLLECTED
        .scope(Cell::new(None), async {
            let out = fut.await;
            (out, COLLECTED.with(Cell::get))
        })
        .await
}

/// Inside a [`collecting`] scope: adds `mark` to it and returns `true`.
fn collect(mark: Mark) -> bool {
    COLLECTED
        .try_with(|c| c.set(Some(c.get().map_or(mark, |m| m.max(mark)))))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_scope_nothing_is_taken_over() {
        assert!(!take_over(Mark(1)));
    }

    #[test]
    fn a_scope_keeps_the_highest_mark() {
        let ((), mark) = deferred(|| {
            assert!(take_over(Mark(3)));
            assert!(take_over(Mark(7)));
            assert!(take_over(Mark(5)));
        });
        assert_eq!(mark, Some(Mark(7)));
        assert!(!take_over(Mark(1)), "the scope ended");
    }

    #[test]
    fn a_scope_without_writes_needs_no_wait() {
        let (n, mark) = deferred(|| 42);
        assert_eq!((n, mark), (42, None));
    }

    #[test]
    fn a_nested_scope_also_binds_the_outer_one() {
        let (inner, outer) = deferred(|| {
            take_over(Mark(2));
            deferred(|| take_over(Mark(9))).1
        });
        assert_eq!(inner, Some(Mark(9)));
        assert_eq!(outer, Some(Mark(9)));
    }

    /// Counts the marks awaited; every mark is durable at once.
    struct Counting(std::sync::atomic::AtomicU64);

    impl AwaitDurable for Counting {
        fn durable(&self, _: Mark) -> Durable {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async { Ok(()) })
        }
    }

    fn write(mark: u64) -> impl FnOnce(&Counting) -> Result<u64, StoreError> {
        move |_| {
            take_over(Mark(mark));
            Ok(mark)
        }
    }

    #[tokio::test]
    async fn a_collecting_scope_awaits_nothing_and_returns_the_highest_mark() {
        let store = Counting(Default::default());
        let ((), mark) = collecting(async {
            run_durably(&store, write(4)).await.unwrap();
            run_durably(&store, write(2)).await.unwrap();
        })
        .await;
        assert_eq!(mark, Some(Mark(4)));
        assert_eq!(store.0.into_inner(), 0);
    }

    #[tokio::test]
    async fn outside_a_collecting_scope_each_operation_awaits_its_flush() {
        let store = Counting(Default::default());
        run_durably(&store, write(1)).await.unwrap();
        run_durably(&store, write(2)).await.unwrap();
        assert_eq!(store.0.into_inner(), 2);
    }

    #[tokio::test]
    async fn run_durably_now_awaits_even_inside_a_collecting_scope() {
        let store = Counting(Default::default());
        let ((), mark) = collecting(async {
            run_durably_now(&store, write(3)).await.unwrap();
        })
        .await;
        assert_eq!(store.0.into_inner(), 1);
        assert_eq!(mark, None, "an awaited mark needs no second wait");
    }

    #[test]
    fn flush_stats_count_per_bucket_and_subtract() {
        let mut s = FlushStats::default();
        for ms in [0, 1, 4, 19, 20, 99, 100, 5000] {
            s.counts[FlushStats::bucket(ms)] += 1;
        }
        assert_eq!(s.counts, [1, 1, 1, 0, 1, 1, 1, 2]);
        assert_eq!((s.total(), s.at_least(20), s.at_least(100)), (8, 4, 2));
        let mut later = s;
        later.counts[7] += 1;
        assert_eq!(later.since(&s).at_least(100), 1);
        assert_eq!(later.since(&s).total(), 1);
    }

    #[test]
    fn a_panic_inside_a_scope_ends_it() {
        let caught = std::panic::catch_unwind(|| deferred(|| panic!("boom")));
        assert!(caught.is_err());
        assert!(!take_over(Mark(1)), "no scope may survive the panic");
    }
}
