//! The wall clock, as the rules that depend on dates read it (verification codes expiring, mail
//! falling due), so that tests can move it instead of sleeping.

use chrono::{DateTime, Utc};
use std::sync::Mutex;

/// Where time-dependent rules read the time: the wall clock, or a test's.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The wall clock moved by a fixed offset: a test that runs the real binary "29 days later".
pub struct ShiftedClock(pub chrono::Duration);

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.0
    }
}

/// A clock a test sets by hand.
#[derive(Default)]
pub struct ManualClock(Mutex<Option<DateTime<Utc>>>);

impl ManualClock {
    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or_else(Utc::now)
    }
}
