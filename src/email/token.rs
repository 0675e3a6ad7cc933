//! Unsubscribe tokens: who the one-click URL unsubscribes, in a form nobody can forge or read.
//!
//! A token is 48 lowercase hex characters (URL-safe as is): a 128-bit HMAC-SHA256 tag over the
//! member id, then the id XORed with a mask derived from that tag. The tag makes it
//! unforgeable; the mask keeps member ids (and so the member count) out of every mail header.
//! The same member always gets the same token, so no state is stored. Changing the key voids
//! every token sent so far.

use crate::domain::MemberId;
use crate::signature::hmac_sha256;
use subtle::ConstantTimeEq;

const TAG_LEN: usize = 16;
const ID_LEN: usize = 8;
const TOKEN_HEX_LEN: usize = 2 * (TAG_LEN + ID_LEN);

pub fn sign(key: &[u8; 32], member: MemberId) -> String {
    let id = member.0.to_be_bytes();
    let tag = tag(key, &id);
    let mut bytes = [0u8; TAG_LEN + ID_LEN];
    bytes[..TAG_LEN].copy_from_slice(&tag);
    bytes[TAG_LEN..].copy_from_slice(&xor(&id, &mask(key, &tag)));
    hex::encode(bytes)
}

/// The member `token` was signed for with `key`; `None` for anything else, however malformed.
pub fn verify(key: &[u8; 32], token: &str) -> Option<MemberId> {
    if token.len() != TOKEN_HEX_LEN {
        return None;
    }
    let mut bytes = [0u8; TAG_LEN + ID_LEN];
    hex::decode_to_slice(token, &mut bytes).ok()?;
    let (given_tag, masked) = bytes.split_at(TAG_LEN);
    let id = xor(masked.try_into().ok()?, &mask(key, given_tag));
    let ok: bool = tag(key, &id).ct_eq(given_tag).into();
    ok.then(|| MemberId(u64::from_be_bytes(id)))
}

fn tag(key: &[u8; 32], id: &[u8; ID_LEN]) -> [u8; TAG_LEN] {
    let mac = hmac_sha256(
        key,
        &[b"loyalty-bot unsubscribe tag\0".as_slice(), id].concat(),
    );
    mac[..TAG_LEN]
        .try_into()
        .expect("a SHA-256 MAC is 32 bytes")
}

fn mask(key: &[u8; 32], tag: &[u8]) -> [u8; ID_LEN] {
    let mac = hmac_sha256(
        key,
        &[b"loyalty-bot unsubscribe mask\0".as_slice(), tag].concat(),
    );
    mac[..ID_LEN].try_into().expect("a SHA-256 MAC is 32 bytes")
}

fn xor(a: &[u8; ID_LEN], b: &[u8; ID_LEN]) -> [u8; ID_LEN] {
    std::array::from_fn(|i| a[i] ^ b[i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn a_token_names_its_member_and_only_with_its_key() {
        let token = sign(&KEY, MemberId(42));
        assert_eq!(verify(&KEY, &token), Some(MemberId(42)));
        assert_eq!(verify(&[8; 32], &token), None);
        assert_eq!(
            sign(&KEY, MemberId(42)),
            token,
            "stable, so no state is needed"
        );
    }

    #[test]
    fn tokens_are_url_safe_and_do_not_show_the_member_id() {
        let token = sign(&KEY, MemberId(1));
        assert_eq!(token.len(), 48);
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        let id_hex = hex::encode(1u64.to_be_bytes());
        assert!(!token.contains(&id_hex), "{token}");
        assert_ne!(&sign(&KEY, MemberId(2))[..32], &token[..32]);
    }

    #[test]
    fn every_single_character_change_is_rejected() {
        let token = sign(&KEY, MemberId(123_456));
        for i in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
            let tampered = String::from_utf8(bytes).unwrap();
            assert_eq!(verify(&KEY, &tampered), None, "changed at {i}: {tampered}");
        }
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        let token = sign(&KEY, MemberId(9));
        for bad in [
            "",
            "42",
            &token[..47],
            &format!("{token}0"),
            &format!("{}zz", &token[..46]),
            &format!("{}é", &token[..46]),
            &"ff".repeat(24),
        ] {
            assert_eq!(verify(&KEY, bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn any_member_round_trips(id in any::<u64>()) {
            prop_assert_eq!(verify(&KEY, &sign(&KEY, MemberId(id))), Some(MemberId(id)));
        }

        #[test]
        fn no_string_panics(s in "\\PC{0,64}") {
            let _ = verify(&KEY, &s);
        }
    }
}
