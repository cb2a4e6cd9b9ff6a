//! Sealing small secrets (access-key secrets) for storage in replicated metadata:
//! ChaCha20-Poly1305 under a key derived from the cluster secret, the record's id as associated
//! data (a sealed value moved to another record does not open). A metadata dump alone reveals
//! no secret. Pure: the nonce comes from the caller.
//!
//! Format (a string, so it fits the existing `secret` field): `sealed:v1:<base64(nonce ‖ ct)>`.
//! A value without the prefix is a secret stored before sealing existed, returned as is.

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

const PREFIX: &str = "sealed:v1:";
const NONCE_LEN: usize = 12;

/// A 32-byte sealing key.
#[derive(Clone)]
pub struct SealKey([u8; 32]);

impl SealKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        SealKey(bytes)
    }
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed value does not open with this key (another cluster secret?)")]
    WrongKey,
}

pub fn is_sealed(value: &str) -> bool {
    value.starts_with(PREFIX)
}

pub fn seal(key: &SealKey, aad: &str, plaintext: &str, nonce: [u8; NONCE_LEN]) -> String {
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&key.0));
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext.as_bytes(),
                aad: aad.as_bytes(),
            },
        )
        .expect("ChaCha20-Poly1305 encryption of a short message cannot fail");
    let mut raw = nonce.to_vec();
    raw.extend(ct);
    format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// Opens a sealed value; an unsealed (legacy) value comes back unchanged.
pub fn open(key: &SealKey, aad: &str, value: &str) -> Result<String, SealError> {
    let Some(b64) = value.strip_prefix(PREFIX) else {
        return Ok(value.to_string());
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| SealError::Malformed)?;
    if raw.len() < NONCE_LEN {
        return Err(SealError::Malformed);
    }
    let (nonce, ct) = raw.split_at(NONCE_LEN);
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&key.0));
    let pt = cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ct,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| SealError::WrongKey)?;
    String::from_utf8(pt).map_err(|_| SealError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let k = SealKey::new([7; 32]);
        let sealed = seal(&k, "BKID", "the secret", [1; 12]);
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("the secret"));
        assert_eq!(open(&k, "BKID", &sealed).expect("opens"), "the secret");
        assert!(matches!(
            open(&k, "OTHER", &sealed),
            Err(SealError::WrongKey)
        ));
        assert!(matches!(
            open(&SealKey::new([8; 32]), "BKID", &sealed),
            Err(SealError::WrongKey)
        ));
        assert!(matches!(
            open(&k, "BKID", "sealed:v1:!!"),
            Err(SealError::Malformed)
        ));
        assert!(matches!(
            open(&k, "BKID", "sealed:v1:AAAA"),
            Err(SealError::Malformed)
        ));
        assert_eq!(
            open(&k, "BKID", "legacy-plain").expect("legacy"),
            "legacy-plain"
        );
    }
}
