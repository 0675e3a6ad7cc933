//! Big-endian key encoding for the sled trees.
//!
//! sled orders keys by their bytes, so every numeric key part is big-endian: then a prefix scan
//! over a member id yields that member's ledger oldest first, and journal records iterate in
//! the order taken. Nothing outside `store` should build or parse these keys.

use crate::domain::{ChatIdentity, Email, MemberId, OrderId, RequestKey};

/// `members`, `identities` and `emails` values: a member id, 8 bytes big-endian.
pub fn member(id: MemberId) -> [u8; 8] {
    id.0.to_be_bytes()
}

/// `ledger` and `member_coupons`: (member id, per-member sequence), both big-endian, so
/// [`member`] is a prefix that selects one member's rows in order.
pub fn member_seq(id: MemberId, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&id.0.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// `redeem_requests`: the member id, then the request key as given.
pub fn member_request(id: MemberId, request: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + request.len());
    k.extend_from_slice(&id.0.to_be_bytes());
    k.extend_from_slice(request.as_bytes());
    k
}

/// `journal`: a record of the sled store's atomic writes, big-endian in the order taken.
pub fn journal(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// `mail_outbox` and `mail_unsent`: an outbox id, big-endian, so ids iterate in the order
/// taken.
pub fn mail_id(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// `identities` and `conversations`: the identity's stable key (`messenger:6915…`).
pub fn identity(who: &ChatIdentity) -> Vec<u8> {
    who.key().into_bytes()
}

/// `emails` and `imported_balances`: the already-normalised (trimmed, lower-case) address.
pub fn email(email: &Email) -> Vec<u8> {
    email.as_str().as_bytes().to_vec()
}

/// `adjustment_keys`: the client's `Idempotency-Key`, as given.
pub fn request_key(key: &RequestKey) -> Vec<u8> {
    key.as_str().as_bytes().to_vec()
}

/// `orders`: the shop's order id (the number, for shops without ids), upper-cased, because
/// shops print `a-2031` and `A-2031` for the same order and a claim must not be repeatable by
/// changing case.
pub fn order(id: &OrderId) -> Vec<u8> {
    id.as_str().to_ascii_uppercase().into_bytes()
}

/// Reads back an 8-byte big-endian number (a member id value, a journal or intake record key).
pub fn read_u64(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn byte_order_of_member_seq_keys_matches_numeric_order(
            a in any::<(u64, u64)>(), b in any::<(u64, u64)>()
        ) {
            let ka = member_seq(MemberId(a.0), a.1);
            let kb = member_seq(MemberId(b.0), b.1);
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
        }

        #[test]
        fn journal_keys_sort_numerically_and_round_trip(a in any::<u64>(), b in any::<u64>()) {
            prop_assert_eq!(journal(a).cmp(&journal(b)), a.cmp(&b));
            prop_assert_eq!(read_u64(&journal(a)), Some(a));
        }
    }

    #[test]
    fn member_key_is_the_prefix_of_its_ledger_keys() {
        let id = MemberId(42);
        assert!(member_seq(id, 7).starts_with(&member(id)));
        assert!(!member_seq(MemberId(43), 0).starts_with(&member(id)));
    }

    use crate::domain::OrderNumber;

    #[test]
    fn order_keys_ignore_case() {
        let lower = OrderNumber::parse("a-2031").unwrap();
        let upper = OrderNumber::parse("#A-2031").unwrap();
        assert_eq!(order(&(&lower).into()), order(&(&upper).into()));
    }

    #[test]
    fn read_u64_refuses_wrong_lengths() {
        assert_eq!(read_u64(&[1, 2, 3]), None);
        assert_eq!(read_u64(&[0; 9]), None);
    }
}
