//! The cluster secret: the root of the keys that seal secrets at rest (access-key secrets in the
//! metadata). It never crosses the wire and never reaches a log. Peers authenticate each other
//! with certificates (`tls.rs`), not with this secret.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The shared cluster secret. Debug never shows it.
#[derive(Clone)]
pub struct ClusterSecret(Vec<u8>);

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(<redacted>)")
    }
}

impl ClusterSecret {
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        ClusterSecret(secret.into())
    }

    /// A key for `purpose`, derived from the secret (HMAC-SHA256 with a purpose label), so
    /// no two uses share a key.
    pub fn derive_key(&self, purpose: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC accepts keys of any length");
        mac.update(format!("baobab-derive\n{purpose}").as_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// This machine's clock, unix milliseconds (0 before 1970).
pub fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_differ_by_purpose_and_secret() {
        let s = ClusterSecret::new("secret-secret-secret");
        assert_eq!(s.derive_key("a"), s.derive_key("a"));
        assert_ne!(s.derive_key("a"), s.derive_key("b"));
        assert_ne!(
            s.derive_key("a"),
            ClusterSecret::new("other-secret-secret").derive_key("a")
        );
    }
}
