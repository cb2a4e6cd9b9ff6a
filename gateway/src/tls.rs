//! TLS on the S3 listener: a certificate chain and key from PEM files as a rustls server
//! configuration (ring provider, TLS 1.2 and 1.3, ALPN `http/1.1`), replaced whole by
//! [`S3Tls::reload`] (the binary calls it on SIGHUP). New connections use the pair loaded last;
//! connections already open keep theirs. A pair that does not load is refused and the old one
//! kept. Reads the two files it is given; writes nothing.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The certificate chain (leaf first) and its private key, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Pem {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{0}: no certificate in the file")]
    NoCertificate(PathBuf),
    #[error("certificate and key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The listener's current TLS configuration.
pub struct S3Tls {
    files: TlsFiles,
    current: RwLock<Arc<rustls::ServerConfig>>,
}

impl S3Tls {
    /// Loads the pair; an error names the file and what is wrong with it.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let config = server_config(&files)?;
        Ok(Arc::new(S3Tls {
            files,
            current: RwLock::new(Arc::new(config)),
        }))
    }

    /// Loads the files again; on success new connections use the new pair, on error nothing
    /// changes.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.files)?;
        *self.current.write().expect("tls config lock poisoned") = Arc::new(config);
        Ok(())
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// An acceptor with the pair loaded last.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let config = Arc::clone(&self.current.read().expect("tls config lock poisoned"));
        tokio_rustls::TlsAcceptor::from(config)
    }
}

fn server_config(files: &TlsFiles) -> Result<rustls::ServerConfig, TlsError> {
    let certs = read_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|source| TlsError::Pem {
        path: files.key.clone(),
        source,
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_err = |source| TlsError::Pem {
        path: path.to_path_buf(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> TlsFiles {
        let cert =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
        let files = TlsFiles {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&files.cert, cert.cert.pem()).expect("write cert");
        std::fs::write(&files.key, cert.signing_key.serialize_pem()).expect("write key");
        files
    }

    #[test]
    fn loads_reloads_and_keeps_the_old_pair_on_a_bad_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = write_pair(dir.path(), "a");
        let tls = S3Tls::load(files.clone()).expect("loads");
        let first = Arc::clone(&tls.current.read().expect("lock"));
        assert_eq!(first.alpn_protocols, vec![b"http/1.1".to_vec()]);
        // A new pair in the same files: reloaded.
        let other = write_pair(dir.path(), "b");
        std::fs::copy(&other.cert, &files.cert).expect("copy");
        std::fs::copy(&other.key, &files.key).expect("copy");
        tls.reload().expect("reloads");
        let second = Arc::clone(&tls.current.read().expect("lock"));
        assert!(!Arc::ptr_eq(&first, &second));
        // A broken file: refused, the pair in use stays.
        std::fs::write(&files.cert, "not a certificate").expect("write");
        assert!(matches!(tls.reload(), Err(TlsError::NoCertificate(_))));
        assert!(Arc::ptr_eq(&second, &tls.current.read().expect("lock")));
        // A key that does not match the certificate: refused.
        std::fs::copy(&other.cert, &files.cert).expect("copy");
        let third = write_pair(dir.path(), "c");
        std::fs::copy(&third.key, &files.key).expect("copy");
        assert!(tls.reload().is_err());
        assert!(Arc::ptr_eq(&second, &tls.current.read().expect("lock")));
    }

    #[test]
    fn missing_files_are_named() {
        let err = S3Tls::load(TlsFiles {
            cert: "/nonexistent/s3.crt".into(),
            key: "/nonexistent/s3.key".into(),
        })
        .err()
        .expect("fails")
        .to_string();
        assert!(err.contains("/nonexistent/s3.crt"), "{err}");
    }
}
