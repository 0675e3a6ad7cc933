//! Balances changed by hand rather than by orders: an operator's adjustment (a goodwill credit,
//! a correction) and a balance imported from another loyalty program, waiting for its email.
//!
//! Both are bounded by [`MAX_MANUAL_POINTS`]: a number beyond it is far more likely a pasted
//! order total or phone number than a real balance, and a typo that mints millions of points
//! is hard to take back once the customer has spent them.

use super::{DomainError, Email, MemberId, Points};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The largest change (either way) one adjustment or one imported row may make.
pub const MAX_MANUAL_POINTS: u64 = 10_000_000;

/// The longest reason an adjustment may carry, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// An operator's change of a balance: non-zero points (negative debits) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adjustment {
    points: i64,
    reason: String,
}

impl Adjustment {
    /// Checks the rules; the reason is kept trimmed.
    pub fn new(points: i64, reason: &str) -> Result<Self, DomainError> {
        if points == 0 {
            return Err(DomainError::InvalidAdjustment(
                "`points` must not be zero".into(),
            ));
        }
        if points.unsigned_abs() > MAX_MANUAL_POINTS {
            return Err(DomainError::InvalidAdjustment(format!(
                "`points` must be between -{MAX_MANUAL_POINTS} and {MAX_MANUAL_POINTS}"
            )));
        }
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(DomainError::InvalidAdjustment(
                "a `reason` is required: say why the balance changes".into(),
            ));
        }
        if reason.chars().count() > MAX_REASON_CHARS {
            return Err(DomainError::InvalidAdjustment(format!(
                "`reason` is longer than {MAX_REASON_CHARS} characters"
            )));
        }
        Ok(Adjustment {
            points,
            reason: reason.to_owned(),
        })
    }

    /// Signed: negative debits.
    pub fn points(&self) -> i64 {
        self.points
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// A client's name for one request (the `Idempotency-Key` header): a repeated request with the
/// same key is answered from the first one instead of being applied again.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestKey(String);

impl RequestKey {
    /// The longest key, in characters (a UUID is 36).
    pub const MAX_LEN: usize = 200;

    /// 1 to [`RequestKey::MAX_LEN`] visible ASCII characters, taken as given (case matters).
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        if raw.is_empty() || raw.len() > Self::MAX_LEN || !raw.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(DomainError::InvalidRequestKey(Self::MAX_LEN));
        }
        Ok(RequestKey(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A balance brought over from another program, kept under its email until a member with
/// that email holds it (then `applied` says who and when; the record stays, so that importing
/// the same file again adds nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedBalance {
    pub email: Email,
    pub points: Points,
    /// When the customer joined the other program, if the file said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joined_at: Option<DateTime<Utc>>,
    pub imported_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<AppliedImport>,
}

/// Which member received an imported balance, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedImport {
    pub member: MemberId,
    pub at: DateTime<Utc>,
}

impl ImportedBalance {
    /// When a member holding this balance joined: the earlier of their own join and the date
    /// the other program knew them from, so "member since" carries over.
    pub fn member_since(&self, joined_here: DateTime<Utc>) -> DateTime<Utc> {
        self.joined_at.map_or(joined_here, |t| t.min(joined_here))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adjustment_needs_non_zero_bounded_points_and_a_reason() {
        let a = Adjustment::new(-20, "  damaged parcel goodwill ").unwrap();
        assert_eq!((a.points(), a.reason()), (-20, "damaged parcel goodwill"));
        assert!(Adjustment::new(MAX_MANUAL_POINTS as i64, "x").is_ok());
        for (points, reason, names) in [
            (0, "x", "points"),
            (MAX_MANUAL_POINTS as i64 + 1, "x", "points"),
            (i64::MIN, "x", "points"),
            (5, "", "reason"),
            (5, " \t ", "reason"),
            (5, &"é".repeat(MAX_REASON_CHARS + 1), "reason"),
        ] {
            let e = Adjustment::new(points, reason).unwrap_err().to_string();
            assert!(e.contains(names), "{points} {reason:?}: {e}");
        }
    }

    #[test]
    fn request_keys_are_bounded_visible_ascii() {
        assert_eq!(RequestKey::parse("a-Key_1").unwrap().as_str(), "a-Key_1");
        assert!(RequestKey::parse(&"k".repeat(RequestKey::MAX_LEN)).is_ok());
        for bad in ["", " ", "a b", "ключ", &"k".repeat(RequestKey::MAX_LEN + 1)] {
            assert!(RequestKey::parse(bad).is_err(), "{bad:?}");
        }
    }
}
