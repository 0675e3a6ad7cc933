//! The 24-hour standard messaging window (protocols.md §b.6): a Page may message a person
//! freely within 24 hours of their last message to it, and ManyChat's `sendContent` holds to the
//! same rule (its error 3011, §e.2). Each channel notes when each person last wrote (a Messenger
//! event, a ManyChat Dynamic Block call), so that news nobody asked for (an order refunded, a
//! paid order credited) goes out only while the window is open. Kept in memory, and across a
//! graceful restart in the store ([`crate::store::RecentSenders`]). After a crash the windows
//! kept at the last graceful stop are read again, and those opened since read as closed until
//! each person writes again: their news waits for the statement email, which is the cautious
//! side of the rule.

use crate::clock::Clock;
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const WINDOW: Duration = Duration::hours(24);
/// People whose window has closed are dropped once the map holds this many.
const PRUNE_AT: usize = 100_000;

pub struct InboundWindow {
    clock: Arc<dyn Clock>,
    seen: Mutex<Seen>,
}

struct Seen {
    last: HashMap<String, DateTime<Utc>>,
    /// The size at which closed windows are dropped next: twice what a pruning left, so that a
    /// map of people who all wrote within the day is not walked again on every event.
    prune_at: usize,
}

impl InboundWindow {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        InboundWindow {
            clock,
            seen: Mutex::new(Seen {
                last: HashMap::new(),
                prune_at: PRUNE_AT,
            }),
        }
    }

    /// `who` (a PSID, a ManyChat subscriber id) wrote to the Page now.
    pub fn saw(&self, who: &str) {
        let now = self.clock.now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = seen.last.get_mut(who) {
            *at = now;
            return;
        }
        if seen.last.len() >= seen.prune_at {
            seen.last.retain(|_, at| now - *at < WINDOW);
            seen.prune_at = (seen.last.len() * 2).max(PRUNE_AT);
        }
        seen.last.insert(who.to_owned(), now);
    }

    /// Everyone whose window is open now, with when they last wrote: what a graceful stop
    /// keeps for the next start ([`crate::store::RecentSenders`]).
    pub fn open_ones(&self) -> Vec<(String, DateTime<Utc>)> {
        let now = self.clock.now();
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.last
            .iter()
            .filter(|(_, at)| now - **at < WINDOW)
            .map(|(who, at)| (who.clone(), *at))
            .collect()
    }

    /// Notes what an earlier run kept: each person wrote at the time given, unless they have
    /// written since. Closed windows are left out; a time ahead of the clock (a clock set back
    /// since) counts as now, so no window stays open longer than 24 hours from here.
    pub fn restore(&self, kept: Vec<(String, DateTime<Utc>)>) {
        let now = self.clock.now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        for (who, at) in kept {
            let at = at.min(now);
            if now - at >= WINDOW {
                continue;
            }
            let last = seen.last.entry(who).or_insert(at);
            *last = (*last).max(at);
        }
    }

    /// Whether the Page may message `who` now without a reply to answer.
    pub fn is_open(&self, who: &str) -> bool {
        let now = self.clock.now();
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.last.get(who).is_some_and(|at| now - *at < WINDOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use chrono::TimeZone;

    #[test]
    fn the_window_is_open_for_24_hours_after_the_persons_last_message() {
        let clock = Arc::new(ManualClock::default());
        let t0 = Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap();
        clock.set(t0);
        let w = InboundWindow::new(clock.clone());
        assert!(!w.is_open("1"), "never wrote");
        w.saw("1");
        clock.set(t0 + Duration::hours(23));
        assert!(w.is_open("1"));
        assert!(!w.is_open("2"));
        clock.set(t0 + Duration::hours(24));
        assert!(!w.is_open("1"));
    }

    #[test]
    fn closed_windows_are_dropped_as_the_map_grows_and_open_ones_kept() {
        let clock = Arc::new(ManualClock::default());
        let t0 = Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap();
        clock.set(t0);
        let w = InboundWindow::new(clock.clone());
        for i in 0..PRUNE_AT / 2 {
            w.saw(&format!("old{i}"));
        }
        clock.set(t0 + Duration::hours(25));
        for i in 0..PRUNE_AT {
            w.saw(&format!("new{i}"));
        }
        let seen = w.seen.lock().unwrap();
        // Pruned once, at PRUNE_AT: the old ones went, every new one stayed.
        assert_eq!(seen.last.len(), PRUNE_AT);
        assert!(!seen.last.contains_key("old0"));
        assert_eq!(seen.prune_at, PRUNE_AT);
        drop(seen);
        assert!(w.is_open("new0") && w.is_open(&format!("new{}", PRUNE_AT - 1)));
        // All open now: the next pruning waits until the map has doubled.
        w.saw("one more");
        w.saw("and another");
        let seen = w.seen.lock().unwrap();
        assert_eq!(seen.last.len(), PRUNE_AT + 2);
        assert_eq!(seen.prune_at, 2 * PRUNE_AT);
    }

    #[test]
    fn open_windows_kept_by_an_earlier_run_are_restored_and_closed_ones_left_out() {
        let clock = Arc::new(ManualClock::default());
        let t0 = Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap();
        clock.set(t0);
        let before = InboundWindow::new(clock.clone());
        before.saw("old");
        clock.set(t0 + Duration::hours(20));
        before.saw("recent");
        clock.set(t0 + Duration::hours(25));
        let kept = before.open_ones();
        assert_eq!(kept, vec![("recent".to_owned(), t0 + Duration::hours(20))]);

        let after = InboundWindow::new(clock.clone());
        after.saw("recent");
        let mut with_old = kept;
        with_old.push(("old".to_owned(), t0));
        after.restore(with_old);
        assert!(after.is_open("recent") && !after.is_open("old"));
        // Writing since counts over what was kept.
        clock.set(t0 + Duration::hours(45));
        assert!(after.is_open("recent"));
    }
}
