//! The cluster CA and the certificates it issues: `baobab cert`, `baobab dev` and the tests make
//! them here. ECDSA P-256 keys; the CA may only sign names under [`NAME_DOMAIN`] (an X.509 name
//! constraint, checked by every peer), and signs no other CA.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, GeneralSubtree, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, NameConstraints, SerialNumber,
};

use super::tls::{Identity, NAME_DOMAIN};

/// How long a CA is valid by default: ten years (it is rotated on purpose, not by expiry).
pub const DEFAULT_CA_DAYS: u32 = 3650;
/// How long a node, gateway or admin certificate is valid by default.
pub const DEFAULT_CERT_DAYS: u32 = 825;

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertPair(<key redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("certificate: {0}")]
pub struct CertError(String);

impl From<rcgen::Error> for CertError {
    fn from(e: rcgen::Error) -> Self {
        CertError(e.to_string())
    }
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    // An hour back: a peer whose clock is a little behind still accepts a fresh certificate.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
    params.serial_number = Some(SerialNumber::from_slice(&rand::random::<[u8; 16]>()));
}

/// A new cluster CA named `cluster` (its common name, for operators).
pub fn new_ca(cluster: &str, days: u32) -> Result<CertPair, CertError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("Baobab cluster CA {cluster}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.name_constraints = Some(NameConstraints {
        permitted_subtrees: vec![GeneralSubtree::DnsName(NAME_DOMAIN.to_string())],
        excluded_subtrees: Vec::new(),
    });
    validity(&mut params, days);
    let cert = params.self_signed(&key)?;
    Ok(CertPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A certificate for `identity`, signed by `ca`. Valid as a server and as a client: a storage
/// node is both.
pub fn issue(ca: &CertPair, identity: Identity, days: u32) -> Result<CertPair, CertError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![identity.dns_name()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("baobab {identity}"));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, days);
    let cert = params.signed_by(&key, &issuer)?;
    Ok(CertPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A whole cluster's TLS in memory, for `baobab dev` and tests: one CA, and the [`super::RpcTls`]
/// of any identity on demand.
#[derive(Debug, Clone)]
pub struct ClusterCa {
    pub ca: CertPair,
}

impl ClusterCa {
    pub fn generate(cluster: &str) -> Result<ClusterCa, CertError> {
        Ok(ClusterCa {
            ca: new_ca(cluster, DEFAULT_CA_DAYS)?,
        })
    }

    /// A fresh certificate for `identity` as a ready TLS configuration.
    pub fn tls(&self, identity: Identity) -> Result<super::RpcTls, CertError> {
        let pair = issue(&self.ca, identity, DEFAULT_CERT_DAYS)?;
        super::RpcTls::from_pem(
            self.ca.cert_pem.as_bytes(),
            pair.cert_pem.as_bytes(),
            pair.key_pem.as_bytes(),
        )
        .map_err(|e| CertError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::NodeId;

    #[test]
    fn issued_certificates_carry_their_identity() {
        let ca = ClusterCa::generate("test").expect("ca");
        for id in [
            Identity::Node(NodeId(3)),
            Identity::Gateway,
            Identity::Admin,
        ] {
            assert_eq!(ca.tls(id).expect("tls").identity(), id);
        }
    }
}
