//! The 24-hour standard messaging window (protocols.md §b.6): a Page may message a person
//! freely within 24 hours of their last message to it, and ManyChat's `sendContent` holds to the
//! same rule (its error 3011, §e.2). Each channel notes when each person last wrote (a Messenger
//! event, a ManyChat Dynamic Block call), so that news nobody asked for (an order refunded, a
//! paid order credited) goes out only while the window is open. Kept in memory: after a restart
//! the window reads as closed until the person writes again, and the news waits for their
//! statement email, which is the cautious side of the rule.

use crate::clock::Clock;
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const WINDOW: Duration = Duration::hours(24);
/// People noted before the oldest are dropped once the map holds this many.
const PRUNE_AT: usize = 100_000;

pub struct InboundWindow {
    clock: Arc<dyn Clock>,
    last: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl InboundWindow {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        InboundWindow {
            clock,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// `who` (a PSID, a ManyChat subscriber id) wrote to the Page now.
    pub fn saw(&self, who: &str) {
        let now = self.clock.now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.len() >= PRUNE_AT {
            last.retain(|_, at| now - *at < WINDOW);
        }
        last.insert(who.to_owned(), now);
    }

    /// Whether the Page may message `who` now without a reply to answer.
    pub fn is_open(&self, who: &str) -> bool {
        let now = self.clock.now();
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.get(who).is_some_and(|at| now - *at < WINDOW)
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
}
