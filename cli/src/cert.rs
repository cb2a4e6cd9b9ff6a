//! `baobab cert`: the cluster CA and the certificates of nodes, gateways and admin tools, as
//! files in one directory: `ca.pem`/`ca.key` and `<name>.pem`/`<name>.key` where name is
//! `node-N`, `gateway` or `admin`. Keys are written mode 0600; nothing is ever overwritten.

use std::path::{Path, PathBuf};

use baobab::rpc::cert::{self, CertPair};
use baobab::rpc::Identity;

/// The file stem of an identity's certificate and key.
pub fn file_stem(identity: Identity) -> String {
    match identity {
        Identity::Node(id) => format!("node-{}", id.0),
        Identity::Gateway => "gateway".into(),
        Identity::Admin => "admin".into(),
    }
}

/// The certificate, key and CA paths of `identity` in `dir`, as `[rpc_tls]` names them.
pub struct TlsPaths {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn paths(dir: &Path, identity: Identity) -> TlsPaths {
    let stem = file_stem(identity);
    TlsPaths {
        ca: dir.join("ca.pem"),
        cert: dir.join(format!("{stem}.pem")),
        key: dir.join(format!("{stem}.key")),
    }
}

async fn write_pair(cert_path: &Path, key_path: &Path, pair: &CertPair) -> anyhow::Result<()> {
    for p in [cert_path, key_path] {
        if p.exists() {
            anyhow::bail!("{} exists; remove it first to replace it", p.display());
        }
    }
    // The key first: a certificate never exists without its key.
    baobab::fsutil::write_private(key_path, pair.key_pem.as_bytes()).await?;
    baobab::fsutil::write_durable(cert_path, pair.cert_pem.as_bytes()).await?;
    Ok(())
}

/// `baobab cert ca`: a new cluster CA in `dir`.
pub async fn create_ca(dir: &Path, name: &str, days: u32) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let pair = cert::new_ca(name, days)?;
    write_pair(&dir.join("ca.pem"), &dir.join("ca.key"), &pair).await?;
    println!(
        "{}",
        serde_json::json!({
            "ca": dir.join("ca.pem"),
            "key": dir.join("ca.key"),
            "days": days,
        })
    );
    Ok(())
}

fn read_ca(dir: &Path) -> anyhow::Result<CertPair> {
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read_to_string(&p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))
    };
    Ok(CertPair {
        cert_pem: read("ca.pem")?,
        key_pem: read("ca.key")?,
    })
}

/// `baobab cert issue`: a certificate for `identity`, signed by the CA in `ca_dir`, written to
/// `out` (default: the CA's directory).
pub async fn issue(
    ca_dir: &Path,
    out: Option<&Path>,
    identity: Identity,
    days: u32,
) -> anyhow::Result<()> {
    let ca = read_ca(ca_dir)?;
    let out = out.unwrap_or(ca_dir);
    std::fs::create_dir_all(out)?;
    let pair = cert::issue(&ca, identity, days)?;
    let p = paths(out, identity);
    write_pair(&p.cert, &p.key, &pair).await?;
    println!(
        "{}",
        serde_json::json!({
            "identity": identity.to_string(),
            "name": identity.dns_name(),
            "cert": p.cert,
            "key": p.key,
            "days": days,
        })
    );
    Ok(())
}

/// The CA and a certificate for each of `identities` in `dir`, made where missing: how
/// `baobab dev` gets its cluster's TLS with zero configuration.
pub async fn ensure(dir: &Path, identities: &[Identity]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let ca = if dir.join("ca.pem").exists() {
        read_ca(dir)?
    } else {
        let pair = cert::new_ca("dev", cert::DEFAULT_CA_DAYS)?;
        write_pair(&dir.join("ca.pem"), &dir.join("ca.key"), &pair).await?;
        pair
    };
    for id in identities {
        let p = paths(dir, *id);
        if !p.cert.exists() || !p.key.exists() {
            let _ = std::fs::remove_file(&p.cert);
            let _ = std::fs::remove_file(&p.key);
            let pair = cert::issue(&ca, *id, cert::DEFAULT_CERT_DAYS)?;
            write_pair(&p.cert, &p.key, &pair).await?;
        }
    }
    Ok(())
}
