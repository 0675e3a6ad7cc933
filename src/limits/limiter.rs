//! One rate limit: at most `max` events per `window` per key, as a token bucket that holds `max`
//! tokens and refills one every `window / max`. It is kept as GCRA (the "generic cell rate
//! algorithm"): one time stamp per key, the moment the key's bucket will be full again. A key
//! whose time stamp has passed is indistinguishable from a key never seen, so idle keys are
//! dropped and memory is bounded by `max_keys` however many distinct keys arrive.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Monotonic time since some fixed start; injectable so tests can move it by hand.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Duration;
}

/// The process's monotonic clock.
pub struct SystemClock(std::time::Instant);

impl SystemClock {
    pub fn new() -> Self {
        SystemClock(std::time::Instant::now())
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// A clock that only moves when told to (tests).
#[derive(Default)]
pub struct ManualClock(Mutex<Duration>);

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `max` events per `window`; `max == 0` means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub max: u32,
    pub window: Duration,
}

impl Rate {
    /// The time one token takes to come back.
    fn interval(self) -> Duration {
        self.window / self.max.max(1)
    }
}

/// A refusal: the limit is reached; one more event is allowed after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limit reached; retry after {} s", retry_after_secs(*.retry_after))]
pub struct Limited {
    pub retry_after: Duration,
}

impl Limited {
    /// Whole seconds, rounded up, for a `Retry-After` header (never 0: "now" would be wrong).
    pub fn retry_after_secs(&self) -> u64 {
        retry_after_secs(self.retry_after)
    }
}

fn retry_after_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// A rate limit per key (a member, a client address).
pub struct Limiter<K> {
    rate: Rate,
    clock: Arc<dyn Clock>,
    max_keys: usize,
    /// Key → the time its bucket is full again ("theoretical arrival time" in GCRA). A std
    /// mutex: held for one hash-map operation, never across an await.
    full_at: Mutex<HashMap<K, Duration>>,
    /// Counts the refusals (`loyalty_rate_limited_total`); counts into nothing until set.
    refusals: prometheus_client::metrics::counter::Counter,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(rate: Rate, clock: Arc<dyn Clock>, max_keys: usize) -> Self {
        Limiter {
            rate,
            clock,
            max_keys: max_keys.max(1),
            full_at: Mutex::new(HashMap::new()),
            refusals: Default::default(),
        }
    }

    /// Counts this limit's refusals into `counter`.
    pub fn count_refusals(&mut self, counter: prometheus_client::metrics::counter::Counter) {
        self.refusals = counter;
    }

    /// Takes one token for `key`, or says how long until one is back. A refusal changes nothing.
    pub fn acquire(&self, key: &K) -> Result<(), Limited> {
        if self.rate.max == 0 {
            return Ok(());
        }
        let now = self.clock.now();
        let mut map = self.lock();
        let full_at = map.get(key).copied().unwrap_or(now).max(now);
        let after = full_at + self.rate.interval();
        // The bucket holds `max` tokens: it may run at most one window ahead of now.
        if after > now + self.rate.window {
            self.refusals.inc();
            return Err(Limited {
                retry_after: after - now - self.rate.window,
            });
        }
        if !map.contains_key(key) && map.len() >= self.max_keys {
            self.make_room(&mut map, now);
        }
        map.insert(key.clone(), after);
        Ok(())
    }

    /// Gives back a token taken by [`Limiter::acquire`] (for budgets reserved up front and
    /// charged only for some outcomes, such as failed claims).
    pub fn refund(&self, key: &K) {
        if self.rate.max == 0 {
            return;
        }
        let now = self.clock.now();
        let mut map = self.lock();
        if let Some(full_at) = map.get_mut(key) {
            *full_at = full_at.saturating_sub(self.rate.interval());
            if *full_at <= now {
                map.remove(key);
            }
        }
    }

    /// How many keys are tracked (for tests of the memory bound).
    pub fn tracked_keys(&self) -> usize {
        self.lock().len()
    }

    /// Drops idle keys (full buckets); if the map is still at its bound, drops the half that
    /// will be full soonest. Those keys get a fresh bucket early, which only matters to a
    /// flood of distinct keys, and such a flood gets fresh buckets anyway. Each call frees at
    /// least half the map, so the scan costs O(1) per insertion on average.
    fn make_room(&self, map: &mut HashMap<K, Duration>, now: Duration) {
        map.retain(|_, full_at| *full_at > now);
        if map.len() < self.max_keys {
            return;
        }
        let mut times: Vec<Duration> = map.values().copied().collect();
        let middle = times.len() / 2;
        let (_, cut, _) = times.select_nth_unstable(middle);
        let cut = *cut;
        map.retain(|_, full_at| *full_at > cut);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Duration>> {
        // A panic elsewhere while holding the lock leaves a consistent map (one insert).
        self.full_at.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(max: u32, window_secs: u64, max_keys: usize) -> (Limiter<u32>, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::default());
        let rate = Rate {
            max,
            window: Duration::from_secs(window_secs),
        };
        (Limiter::new(rate, clock.clone(), max_keys), clock)
    }

    #[test]
    fn a_full_bucket_allows_max_at_once_then_one_per_interval() {
        let (l, clock) = limiter(5, 900, 100);
        for i in 0..5 {
            assert_eq!(l.acquire(&1), Ok(()), "event {i}");
        }
        let refused = l.acquire(&1).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(180));
        assert_eq!(refused.retry_after_secs(), 180);
        clock.advance(Duration::from_secs(179));
        assert!(l.acquire(&1).is_err(), "not yet");
        clock.advance(Duration::from_secs(1));
        assert_eq!(l.acquire(&1), Ok(()), "one token back after 180 s");
        assert!(l.acquire(&1).is_err());
        clock.advance(Duration::from_secs(900));
        for i in 0..5 {
            assert_eq!(
                l.acquire(&1),
                Ok(()),
                "a whole window later: full again ({i})"
            );
        }
    }

    #[test]
    fn keys_have_their_own_buckets() {
        let (l, _) = limiter(1, 60, 100);
        assert!(l.acquire(&1).is_ok());
        assert!(l.acquire(&1).is_err());
        assert!(l.acquire(&2).is_ok());
    }

    #[test]
    fn a_refund_gives_one_token_back_and_never_more_than_full() {
        let (l, _) = limiter(2, 60, 100);
        l.refund(&1);
        assert!(l.acquire(&1).is_ok());
        assert!(l.acquire(&1).is_ok());
        assert!(l.acquire(&1).is_err());
        l.refund(&1);
        assert!(l.acquire(&1).is_ok());
        assert!(l.acquire(&1).is_err());
        assert_eq!(l.tracked_keys(), 1);
        l.refund(&1);
        l.refund(&1);
        assert_eq!(l.tracked_keys(), 0, "a full bucket is not kept");
    }

    #[test]
    fn zero_max_means_no_limit() {
        let (l, _) = limiter(0, 60, 100);
        for _ in 0..10_000 {
            assert!(l.acquire(&1).is_ok());
        }
        assert_eq!(l.tracked_keys(), 0);
    }

    #[test]
    fn a_flood_of_distinct_keys_never_grows_memory_past_the_bound() {
        let (l, clock) = limiter(3, 3600, 1000);
        for key in 0..100_000 {
            assert!(l.acquire(&key).is_ok());
            assert!(l.tracked_keys() <= 1000, "after key {key}");
            if key % 1000 == 0 {
                clock.advance(Duration::from_millis(10));
            }
        }
        // The most recent keys are still limited: their bucket was kept.
        assert!(l.acquire(&99_999).is_ok());
        assert!(l.acquire(&99_999).is_ok());
        assert!(l.acquire(&99_999).is_err());
    }

    #[test]
    fn idle_keys_are_dropped_first() {
        let (l, clock) = limiter(1, 10, 2);
        assert!(l.acquire(&1).is_ok());
        clock.advance(Duration::from_secs(5));
        assert!(l.acquire(&2).is_ok());
        clock.advance(Duration::from_secs(6));
        // Key 1 is full again (idle); key 2 is not. Key 3 evicts only key 1.
        assert!(l.acquire(&3).is_ok());
        assert!(l.acquire(&2).is_err(), "key 2 kept its state");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let cases = [(0, 1), (1, 1), (999, 1), (1000, 1), (1001, 2), (59_500, 60)];
        for (ms, secs) in cases {
            let l = Limited {
                retry_after: Duration::from_millis(ms),
            };
            assert_eq!(l.retry_after_secs(), secs, "{ms} ms");
        }
    }
}
