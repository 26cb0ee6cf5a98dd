//! Keyed hashing of customer identifiers (emails, phone numbers, card fingerprints).
//!
//! Raw identifiers never leave the tap: signals, logs and metrics carry `h:<32 hex>` made with
//! HMAC-SHA256 under a configured key, so replicas sharing the key agree on the same subject and
//! nobody without the key can confirm a guessed address.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// What kind of identifier is hashed (each is normalized differently, and kinds never collide).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PiiKind {
    Email,
    Phone,
    /// Card fingerprints, customer ids and other opaque payment subjects.
    Payment,
}

/// Hashes identifiers with a secret key.
#[derive(Clone)]
pub struct PiiHasher {
    key: Vec<u8>,
}

impl std::fmt::Debug for PiiHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PiiHasher(<key redacted>)")
    }
}

impl PiiHasher {
    pub fn new(key: impl Into<Vec<u8>>) -> PiiHasher {
        PiiHasher { key: key.into() }
    }

    /// A hasher with a random key (subjects then only agree within this process).
    pub fn random() -> PiiHasher {
        let mut key = [0u8; 32];
        // Filling from the system RNG only fails when the OS has no entropy source at all.
        let _ = aws_lc_rs::rand::fill(&mut key);
        PiiHasher::new(key.to_vec())
    }

    /// `h:` and the first 128 bits of HMAC-SHA256(key, kind || normalized value), in hex.
    pub fn hash(&self, kind: PiiKind, value: &str) -> String {
        let normalized = match kind {
            PiiKind::Email => normalize_email(value),
            PiiKind::Phone => value
                .chars()
                .filter(|c| c.is_ascii_digit() || *c == '+')
                .collect(),
            PiiKind::Payment => value.trim().to_string(),
        };
        let tag: &[u8] = match kind {
            PiiKind::Email => b"email\0",
            PiiKind::Phone => b"phone\0",
            PiiKind::Payment => b"payment\0",
        };
        // HMAC accepts keys of any length.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC accepts keys of any length");
        mac.update(tag);
        mac.update(normalized.as_bytes());
        let digest = mac.finalize().into_bytes();
        format!("h:{}", hex::encode(&digest[..16]))
    }
}

/// Lower-cases and trims an address; `Name <a@b>` keeps only the address.
fn normalize_email(value: &str) -> String {
    let v = value.trim();
    let v = match (v.rfind('<'), v.rfind('>')) {
        (Some(l), Some(r)) if l < r => &v[l + 1..r],
        _ => v,
    };
    v.trim().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_keyed_normalized_and_never_raw() {
        let h = PiiHasher::new(b"k1".to_vec());
        let a = h.hash(PiiKind::Email, "Jane@Example.com ");
        assert_eq!(a, h.hash(PiiKind::Email, "Jane Doe <jane@example.com>"));
        assert!(a.starts_with("h:") && a.len() == 34 && !a.contains("example"));
        assert_ne!(
            a,
            PiiHasher::new(b"k2".to_vec()).hash(PiiKind::Email, "jane@example.com")
        );
        assert_eq!(
            h.hash(PiiKind::Phone, "+1 (703) 111-1"),
            h.hash(PiiKind::Phone, "+17031111")
        );
        assert_ne!(
            h.hash(PiiKind::Phone, "123"),
            h.hash(PiiKind::Payment, "123")
        );
    }
}
