//! Request authentication on the internal RPC: HMAC-SHA256 keyed by the cluster secret over
//! (protocol version, method, path and query, timestamp). The secret itself never crosses the wire
//! and never reaches a log. This authenticates peers but does not encrypt: mutual TLS comes with
//! the security issue.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::{MAX_CLOCK_SKEW_SECS, PROTOCOL_VERSION};

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
    /// the secret itself keys nothing but the RPC tags.
    pub fn derive_key(&self, purpose: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC accepts keys of any length");
        mac.update(format!("baobab-derive\n{purpose}").as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn mac(&self, method: &str, path_and_query: &str, timestamp_secs: u64) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC accepts keys of any length");
        mac.update(
            format!("baobab-rpc\n{PROTOCOL_VERSION}\n{method}\n{path_and_query}\n{timestamp_secs}")
                .as_bytes(),
        );
        mac
    }

    /// The hex tag a client sends for this request.
    pub fn sign(&self, method: &str, path_and_query: &str, timestamp_secs: u64) -> String {
        hex::encode(
            self.mac(method, path_and_query, timestamp_secs)
                .finalize()
                .into_bytes(),
        )
    }

    /// Checks a tag in constant time, and that the timestamp is within the allowed skew.
    pub fn verify(
        &self,
        method: &str,
        path_and_query: &str,
        timestamp_secs: u64,
        tag_hex: &str,
    ) -> bool {
        let now = unix_now_secs();
        if now.abs_diff(timestamp_secs) > MAX_CLOCK_SKEW_SECS {
            return false;
        }
        let Ok(tag) = hex::decode(tag_hex) else {
            return false;
        };
        self.mac(method, path_and_query, timestamp_secs)
            .verify_slice(&tag)
            .is_ok()
    }
}

/// This machine's clock, unix milliseconds (0 before 1970).
pub fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub fn unix_now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify() {
        let s = ClusterSecret::new("secret");
        let now = unix_now_secs();
        let tag = s.sign("POST", "/v1/meta/read", now);
        assert!(s.verify("POST", "/v1/meta/read", now, &tag));
        assert!(!s.verify("POST", "/v1/meta/write", now, &tag));
        assert!(!ClusterSecret::new("other").verify("POST", "/v1/meta/read", now, &tag));
        assert!(!s.verify(
            "POST",
            "/v1/meta/read",
            now - 1000,
            &s.sign("POST", "/v1/meta/read", now - 1000)
        ));
        assert!(!s.verify("POST", "/v1/meta/read", now, "zz"));
    }
}
