//! The queue's depths for the metrics, kept in memory so that a scrape reads two numbers and
//! scans nothing. Pending events are the intake's own count (`intake.rs`). Undelivered replies
//! live in the inbox's done slots, which only a scan can count: a full read of the queue
//! ([`crate::store::EventQueue::pending_outbound`], which the Messenger worker makes at start,
//! before it processes anything) sets the count, and each reply queued or marked delivered
//! moves it. Until that first read the count is unknown, and the gauge is left out.

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

use super::SledStore;
use crate::store::QueueDepths;

/// Replies queued and not delivered; negative while unknown.
pub(super) struct Undelivered(AtomicI64);

impl Undelivered {
    pub fn unknown() -> Self {
        Undelivered(AtomicI64::new(-1))
    }

    /// A full read of the queue found `n`.
    pub fn found(&self, n: usize) {
        self.0.store(i64::try_from(n).unwrap_or(i64::MAX), Relaxed);
    }

    /// `n` replies were queued.
    pub fn queued(&self, n: usize) {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let _ = self
            .0
            .fetch_update(Relaxed, Relaxed, |v| (v >= 0).then(|| v.saturating_add(n)));
    }

    /// One reply was marked delivered (or dropped for good).
    pub fn delivered(&self) {
        let _ = self
            .0
            .fetch_update(Relaxed, Relaxed, |v| (v > 0).then(|| v - 1));
    }

    pub fn get(&self) -> Option<u64> {
        u64::try_from(self.0.load(Relaxed)).ok()
    }
}

impl SledStore {
    pub(super) fn depths(&self) -> QueueDepths {
        QueueDepths {
            inbox: Some(self.intake.pending_count() as u64),
            outbox: self.undelivered.get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undelivered_replies_are_unknown_until_a_full_read_then_follow_each_change() {
        let u = Undelivered::unknown();
        u.queued(3);
        u.delivered();
        assert_eq!(u.get(), None, "changes before the first read count nothing");
        u.found(2);
        u.queued(3);
        u.delivered();
        assert_eq!(u.get(), Some(4));
        for _ in 0..10 {
            u.delivered();
        }
        assert_eq!(u.get(), Some(0), "never below zero");
    }
}
