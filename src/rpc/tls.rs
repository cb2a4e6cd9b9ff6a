//! Mutual TLS on the internal RPC. Every connection between two processes of a cluster is
//! TLS 1.3, and both ends present a certificate issued by the cluster CA ([`super::cert`]).
//! Each side knows who the other is from the DNS name in its certificate:
//! - a client dials node N under the name `node-N.baobab.internal` and the handshake fails
//!   unless the peer's certificate is valid for that name, so it talks to node N or to no one;
//! - a server reads its peer's [`Identity`] (a storage node, a gateway, an admin tool) from the
//!   client certificate; `serve` refuses Raft and membership traffic from anything but a node.
//!
//! A process trusts every CA of its bundle, so a CA is rotated by trusting the old and the new
//! one for a while (SECURITY.md). A certificate of another cluster (another CA) is refused at
//! the handshake; a request replayed inside a TLS session cannot be, by construction.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::{ring as ring_provider, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::types::NodeId;

/// The DNS domain of the names in cluster certificates; never resolved (a name is only matched
/// against certificates).
pub const NAME_DOMAIN: &str = "baobab.internal";

/// Bound on a TLS handshake, on either side.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Who a certificate says its holder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Identity {
    /// A storage node (shards, a metadata replica, a Raft voter).
    Node(NodeId),
    /// An S3 gateway.
    Gateway,
    /// An operator's tool (`baobab key …`, `baobab bucket …`).
    Admin,
}

impl Identity {
    /// The DNS name a certificate for this identity carries.
    pub fn dns_name(self) -> String {
        match self {
            Identity::Node(id) => format!("node-{}.{NAME_DOMAIN}", id.0),
            Identity::Gateway => format!("gateway.{NAME_DOMAIN}"),
            Identity::Admin => format!("admin.{NAME_DOMAIN}"),
        }
    }

    /// The identity a DNS name stands for, if it is one of ours.
    pub fn from_dns_name(name: &str) -> Option<Identity> {
        let label = name.strip_suffix(NAME_DOMAIN)?.strip_suffix('.')?;
        match label {
            "gateway" => Some(Identity::Gateway),
            "admin" => Some(Identity::Admin),
            _ => {
                let id = label.strip_prefix("node-")?;
                // Digits only: "node-+1" or "node-01" name no node.
                if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) || id.starts_with('0') {
                    return None;
                }
                id.parse().ok().map(|n| Identity::Node(NodeId(n)))
            }
        }
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Node(id) => write!(f, "node {}", id.0),
            Identity::Gateway => f.write_str("gateway"),
            Identity::Admin => f.write_str("admin"),
        }
    }
}

/// The identity in a certificate: the first of its DNS names that is one of ours. None for a
/// certificate that does not parse or names none (it is then refused).
pub fn identity_of(cert: &CertificateDer<'_>) -> Option<Identity> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let san = parsed.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::DNSName(d) => Identity::from_dns_name(d),
        _ => None,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{what}: {reason}")]
    Pem { what: &'static str, reason: String },
    #[error("{0}")]
    Setup(String),
}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        TlsError::Setup(e.to_string())
    }
}

/// The cluster's choice of TLS: 1.3 only, AES-128-GCM first (the fastest with AES-NI; 128-bit
/// keys are ample), on ring.
fn provider() -> Arc<CryptoProvider> {
    let mut p = ring_provider::default_provider();
    p.cipher_suites = vec![
        ring_provider::cipher_suite::TLS13_AES_128_GCM_SHA256,
        ring_provider::cipher_suite::TLS13_AES_256_GCM_SHA384,
        ring_provider::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(p)
}

/// One process's TLS: the CAs it trusts, its certificate and key, as a server and a client
/// configuration. Cheap to clone; clones share one state, so [`RpcTls::reload_pem`] changes
/// what every new connection of the process (served or dialled) uses. Connections already open
/// keep their session.
#[derive(Clone)]
pub struct RpcTls {
    configs: Arc<std::sync::RwLock<Configs>>,
    identity: Identity,
}

struct Configs {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

impl std::fmt::Debug for RpcTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcTls")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl RpcTls {
    /// From PEM: `ca_bundle` holds every CA certificate to trust, `cert_chain` this process's
    /// certificate (then any intermediates), `key` its private key.
    pub fn from_pem(ca_bundle: &[u8], cert_chain: &[u8], key: &[u8]) -> Result<RpcTls, TlsError> {
        let cas = certs_from_pem(ca_bundle, "CA bundle")?;
        let chain = certs_from_pem(cert_chain, "certificate")?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::Pem {
            what: "private key",
            reason: e.to_string(),
        })?;
        let identity = identity_of(&chain[0]).ok_or_else(|| {
            TlsError::Setup(format!(
                "the certificate names no cluster identity (a DNS name like {}); issue it with `baobab cert issue`",
                Identity::Node(NodeId(1)).dns_name()
            ))
        })?;
        let mut roots = RootCertStore::empty();
        for ca in cas {
            roots
                .add(ca)
                .map_err(|e| TlsError::Setup(format!("CA bundle: {e}")))?;
        }
        let roots = Arc::new(roots);
        let provider = provider();
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| TlsError::Setup(format!("client verifier: {e}")))?;
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())?;
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        client.alpn_protocols = vec![b"h2".to_vec()];
        Ok(RpcTls {
            configs: Arc::new(std::sync::RwLock::new(Configs {
                server: Arc::new(server),
                client: Arc::new(client),
            })),
            identity,
        })
    }

    /// Replaces the CAs, certificate and key of every new connection (a rotation without a
    /// restart: SIGHUP). The new certificate must name the same identity; on any error nothing
    /// changes.
    pub fn reload_pem(
        &self,
        ca_bundle: &[u8],
        cert_chain: &[u8],
        key: &[u8],
    ) -> Result<(), TlsError> {
        let fresh = Self::from_pem(ca_bundle, cert_chain, key)?;
        if fresh.identity != self.identity {
            return Err(TlsError::Setup(format!(
                "the new certificate is for {}, this process is {}",
                fresh.identity, self.identity
            )));
        }
        let new = fresh.configs.read().unwrap_or_else(|e| e.into_inner());
        let mut cur = self.configs.write().unwrap_or_else(|e| e.into_inner());
        cur.server = new.server.clone();
        cur.client = new.client.clone();
        Ok(())
    }

    /// [`Self::reload_pem`] from the three PEM files of the configuration.
    pub fn reload(&self, ca_bundle: &Path, cert_chain: &Path, key: &Path) -> Result<(), TlsError> {
        let (ca, chain, key) = (read_pem(ca_bundle)?, read_pem(cert_chain)?, read_pem(key)?);
        self.reload_pem(&ca, &chain, &key)
    }

    /// From the three PEM files of a process's configuration.
    pub fn load(ca_bundle: &Path, cert_chain: &Path, key: &Path) -> Result<RpcTls, TlsError> {
        Self::from_pem(
            &read_pem(ca_bundle)?,
            &read_pem(cert_chain)?,
            &read_pem(key)?,
        )
    }

    /// Who this process's certificate says it is.
    pub fn identity(&self) -> Identity {
        self.identity
    }

    pub(super) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let configs = self.configs.read().unwrap_or_else(|e| e.into_inner());
        tokio_rustls::TlsAcceptor::from(configs.server.clone())
    }

    pub(super) fn connector(&self) -> tokio_rustls::TlsConnector {
        let configs = self.configs.read().unwrap_or_else(|e| e.into_inner());
        tokio_rustls::TlsConnector::from(configs.client.clone())
    }
}

fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// The name a client asks node `node` for.
pub(super) fn server_name(node: NodeId) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(Identity::Node(node).dns_name())
        .map_err(|e| TlsError::Setup(format!("server name: {e}")))
}

fn certs_from_pem(
    pem: &[u8],
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            reason: "no certificate in the file".into(),
        });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip_through_their_names() {
        for id in [
            Identity::Node(NodeId(1)),
            Identity::Node(NodeId(42)),
            Identity::Gateway,
            Identity::Admin,
        ] {
            assert_eq!(Identity::from_dns_name(&id.dns_name()), Some(id));
        }
        for name in [
            "node-.baobab.internal",
            "node-01.baobab.internal",
            "node-+1.baobab.internal",
            "node-1.baobab.internal.evil",
            "node-1baobab.internal",
            "node-1.example.com",
            "gateway.baobab.internalx",
            "node-99999999999999999999999.baobab.internal",
        ] {
            assert_eq!(Identity::from_dns_name(name), None, "{name}");
        }
    }
}
