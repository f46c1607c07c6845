//! API keys and ids.
//!
//! A key is `bht_` followed by 64 lowercase hex digits (32 random bytes).
//! It is shown once at creation; the store keeps only its SHA-256.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefix of every API key.
pub const KEY_PREFIX: &str = "bht_";

/// Randomness has one source for the whole project.
pub use bhatti_proto::token::{RandomError, random_bytes};
use bhatti_proto::token::{hex, random_hex};

/// A new API key (plaintext).
pub fn generate_key() -> Result<String, RandomError> {
    Ok(format!("{KEY_PREFIX}{}", random_hex::<32>()?))
}

/// Whether `key` has the shape of an API key (cheap pre-check before a
/// store lookup).
pub fn is_well_formed(key: &str) -> bool {
    key.strip_prefix(KEY_PREFIX).is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Hex SHA-256 of a key: what the store holds.
pub fn hash_key(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

/// Constant-time equality of two hashes or tokens.
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A new opaque id, `prefix` + 16 hex digits.
pub fn new_id(prefix: &str) -> Result<String, RandomError> {
    Ok(format!("{prefix}{}", random_hex::<8>()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_well_formed_unique_and_hash_stably() {
        let a = generate_key().expect("key");
        let b = generate_key().expect("key");
        assert!(is_well_formed(&a) && is_well_formed(&b));
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 64);
        assert_eq!(hash_key(&a), hash_key(&a));
        assert_ne!(hash_key(&a), hash_key(&b));
        // Known vector: SHA-256 of the empty string.
        assert_eq!(
            hash_key(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn malformed_keys_are_recognised() {
        for bad in [
            "",
            "bht_",
            "bht_xyz",
            &format!("bht_{}", "A".repeat(64)),
            &"a".repeat(68),
        ] {
            assert!(!is_well_formed(bad), "{bad:?}");
        }
    }

    #[test]
    fn ids_and_tokens() {
        let id = new_id("sb-").expect("id");
        assert!(id.starts_with("sb-") && id.len() == 3 + 16);
        assert!(ct_eq("abc", "abc") && !ct_eq("abc", "abd") && !ct_eq("abc", "ab"));
    }
}
