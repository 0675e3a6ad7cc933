//! Points: whole, non-negative numbers with checked arithmetic.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A whole number of loyalty points. Balances never go below zero.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Points(pub u64);

impl Points {
    pub const ZERO: Points = Points(0);

    pub fn value(self) -> u64 {
        self.0
    }

    pub fn checked_add(self, other: Points) -> Option<Points> {
        self.0.checked_add(other.0).map(Points)
    }

    pub fn checked_sub(self, other: Points) -> Option<Points> {
        self.0.checked_sub(other.0).map(Points)
    }

    /// How many points are missing to reach `target` (zero when already there).
    pub fn gap_to(self, target: Points) -> Points {
        Points(target.0.saturating_sub(self.0))
    }
}

impl fmt::Display for Points {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
