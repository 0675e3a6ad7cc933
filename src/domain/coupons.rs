//! Coupon codes: unguessable, easy to read aloud, single-use, valid for one reward's products.

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::fmt;

use super::MemberId;

/// 32 symbols with no 0/O or 1/I look-alikes: each symbol carries exactly 5 bits.
const ALPHABET: &[u8; 32] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
/// 4 groups of 4 symbols = 80 bits of entropy (the bar is 64).
const GROUPS: usize = 4;
const GROUP_LEN: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CouponCode(String);

impl CouponCode {
    /// A fresh code such as `MUG-7QX4-K2PA-9RTD-XW3M`, prefixed with up to 6 letters of the
    /// reward id so shop staff can tell codes apart. Drawn from the OS CSPRNG.
    pub fn generate(reward_id: &str) -> Self {
        let prefix: String = reward_id
            .split(|c: char| !c.is_ascii_alphanumeric())
            .find(|w| !w.is_empty() && !w.eq_ignore_ascii_case("free"))
            .unwrap_or("RWD")
            .chars()
            .take(6)
            .collect::<String>()
            .to_ascii_uppercase();
        let mut rng = rand::rngs::OsRng;
        let mut code = prefix;
        for _ in 0..GROUPS {
            code.push('-');
            for _ in 0..GROUP_LEN {
                code.push(char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]));
            }
        }
        CouponCode(code)
    }

    /// Wraps a code read back from the store or a shop.
    pub fn from_stored(code: String) -> Self {
        CouponCode(code)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CouponCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CouponStatus {
    /// Points are deducted; the shop has not yet confirmed the coupon.
    Pending,
    /// The shop created it; the customer has the code.
    Issued,
    /// The shop refused or failed: the points were given back.
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coupon {
    pub code: CouponCode,
    pub member: MemberId,
    pub reward_id: String,
    pub product_ids: Vec<String>,
    pub points: super::Points,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub status: CouponStatus,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_have_the_documented_shape_and_do_not_repeat() {
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let c = CouponCode::generate("free-mug");
            let parts: Vec<&str> = c.as_str().split('-').collect();
            assert_eq!(parts[0], "MUG");
            assert_eq!(parts.len(), 1 + GROUPS);
            for p in &parts[1..] {
                assert_eq!(p.len(), GROUP_LEN);
                assert!(p.bytes().all(|b| ALPHABET.contains(&b)), "{c}");
            }
            assert!(seen.insert(c), "duplicate code");
        }
    }

    #[test]
    fn code_entropy_is_at_least_64_bits() {
        let bits = (GROUPS * GROUP_LEN) as f64 * (ALPHABET.len() as f64).log2();
        assert!(bits >= 64.0, "{bits}");
        let unique: HashSet<_> = ALPHABET.iter().collect();
        assert_eq!(unique.len(), ALPHABET.len());
    }
}
