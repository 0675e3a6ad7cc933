//! HMAC-SHA256 signing and constant-time checks, shared by every signed boundary
//! (Meta's `X-Hub-Signature-256`, our generic shop contract, bearer tokens). Every comparison
//! with a secret, or with a value derived from one, goes through this module, and each takes
//! the same time wherever the first wrong byte is.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

pub fn hmac_sha256(key: &[u8], body: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

pub fn hmac_sha256_hex(key: &[u8], body: &[u8]) -> String {
    hex::encode(hmac_sha256(key, body))
}

/// Checks a `sha256=<lowercase hex>` header value against the body, in constant time.
pub fn verify_sha256_header(key: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(given) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(body);
    // `verify_slice` compares in constant time (and refuses a length other than 32 bytes).
    mac.verify_slice(&given).is_ok()
}

/// Constant-time comparison of a presented secret with the configured one.
pub fn secrets_match(presented: &str, configured: &str) -> bool {
    // Compare digests so the length of the configured secret is not revealed by timing either.
    let a = hmac_sha256(b"loyalty-bot-compare", presented.as_bytes());
    let b = hmac_sha256(b"loyalty-bot-compare", configured.as_bytes());
    !configured.is_empty() && bool::from(a.ct_eq(&b))
}

/// Checks `Authorization: Bearer <token>` against the configured token.
pub fn bearer_matches(header: Option<&str>, token: &str) -> bool {
    header
        .and_then(|h| h.strip_prefix("Bearer "))
        .is_some_and(|t| secrets_match(t.trim(), token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_vector_verifies_and_tampering_fails() {
        let body = br#"{"object":"page"}"#;
        let sig = format!("sha256={}", hmac_sha256_hex(b"k", body));
        assert!(verify_sha256_header(b"k", body, Some(&sig)));
        assert!(!verify_sha256_header(
            b"k",
            b"{\"object\":\"Page\"}",
            Some(&sig)
        ));
        assert!(!verify_sha256_header(b"other", body, Some(&sig)));
        assert!(!verify_sha256_header(
            b"k",
            body,
            Some(sig.trim_start_matches("sha256="))
        ));
        assert!(!verify_sha256_header(b"k", body, None));
        assert!(!verify_sha256_header(b"k", body, Some("sha256=zz")));
        // A prefix of the right signature is not "close enough".
        assert!(!verify_sha256_header(
            b"k",
            body,
            Some(&sig[..sig.len() - 2])
        ));
        assert!(!verify_sha256_header(b"k", body, Some("sha256=")));
    }

    #[test]
    fn bearer_tokens_are_compared_whole() {
        assert!(bearer_matches(Some("Bearer s3cret"), "s3cret"));
        assert!(!bearer_matches(Some("Bearer s3cre"), "s3cret"));
        assert!(!bearer_matches(Some("s3cret"), "s3cret"));
        assert!(!bearer_matches(None, "s3cret"));
        assert!(!bearer_matches(Some("Bearer "), ""));
    }
}
