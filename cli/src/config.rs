//! `baobab.toml`: the one typed configuration of a `baobab server` process. Every problem is
//! reported at start-up, all at once. The cluster secret may come from the file, a file it
//! names, or the `BAOBAB_CLUSTER_SECRET` environment variable; it is never logged. `[rpc_tls]`
//! names the process's certificate for the internal RPC (`baobab cert`).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use baobab::coord::ClusterView;
use baobab::placement::NodeSlot;
use baobab::rpc::{ClusterSecret, Identity, RpcTls};
use baobab::types::{ErasureProfile, NodeId, SiteId, DEFAULT_BLOCK_SIZE_BYTES};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Stores shards and a metadata replica.
    Storage,
    /// Serves S3.
    Gateway,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Roles of this process.
    pub roles: Vec<Role>,
    /// This storage node's id (role storage): one of `nodes`.
    pub node_id: Option<u64>,
    /// Where this process keeps its data.
    pub data_dir: PathBuf,
    /// Internal RPC listen address (role storage).
    pub rpc_listen: Option<String>,
    /// The shared cluster secret (at least 16 characters).
    pub cluster_secret: Option<String>,
    /// A file holding the cluster secret.
    pub cluster_secret_file: Option<PathBuf>,
    /// This process's certificate on the internal RPC (mutual TLS; required).
    pub rpc_tls: Option<RpcTlsConfig>,
    /// Log to this file (appending) instead of stderr.
    pub log_file: Option<PathBuf>,
    /// Serve Prometheus metrics of this process on `http://<this>/metrics` (e.g.
    /// "127.0.0.1:9100"); off when absent.
    pub metrics_listen: Option<String>,
    /// The S3 listener (role gateway).
    pub s3: Option<S3Config>,
    /// The erasure profile of new objects.
    #[serde(default)]
    pub erasure: ErasureConfig,
    /// Object block size before erasure coding.
    #[serde(default = "default_block_size")]
    pub block_size_bytes: u32,
    /// Every storage node of the cluster; the same list in every process's file.
    pub nodes: Vec<NodeConfig>,
    /// Seconds the data of a replaced or deleted object stays readable for GETs that started
    /// before (role storage: the retire worker waits this long; default 60).
    #[serde(default = "default_retired_data_grace_secs")]
    pub retired_data_grace_secs: u64,
    /// Seconds between two rounds of the garbage collector of shard files that no record
    /// references (role storage; the metadata leader runs it; default 6 h). The sweep of
    /// abandoned temp shard files runs this often too, at most every 5 minutes.
    #[serde(default = "default_gc_interval_secs")]
    pub gc_interval_secs: u64,
    /// Seconds a shard file must be old before the garbage collector may delete it (default
    /// 1 h): far beyond any write's timeouts, so no write in flight loses its shards.
    #[serde(default = "default_gc_min_age_secs")]
    pub gc_min_age_secs: u64,
    /// Free space kept for metadata on the data directory's file system (role storage): shard
    /// writes are refused before it is reached, so the node's Raft log and state machine can
    /// always write. Default: the larger of 1 GiB and 5 % of the file system.
    pub shard_reserve_bytes: Option<u64>,
    /// Seconds between the starts of two scrub passes, which re-read and verify every shard of
    /// the cluster (role storage; the metadata leader runs it; default 7 days).
    #[serde(default = "default_scrub_interval_secs")]
    pub scrub_interval_secs: u64,
    /// Bytes per second a storage node reads to verify shards for the scrub and healing
    /// (default 64 MiB/s): the share of the disk background checks may take.
    #[serde(default = "default_scrub_bytes_per_sec")]
    pub scrub_bytes_per_sec: u64,
}

fn default_scrub_interval_secs() -> u64 {
    baobab::repair::DEFAULT_SCRUB_INTERVAL.as_secs()
}

fn default_scrub_bytes_per_sec() -> u64 {
    baobab::shard::DEFAULT_VERIFY_BYTES_PER_SEC
}

fn default_block_size() -> u32 {
    DEFAULT_BLOCK_SIZE_BYTES
}

/// `[rpc_tls]`: PEM files made by `baobab cert`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RpcTlsConfig {
    /// Every CA this process trusts: the cluster CA, or the old and the new one during a
    /// rollover (certificates concatenated).
    pub ca: PathBuf,
    /// This process's certificate (`baobab cert issue --node N`, `--gateway` or `--admin`).
    pub cert: PathBuf,
    /// Its private key (mode 0600).
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Listen address, e.g. "127.0.0.1:3900".
    pub listen: String,
    /// The region clients sign for.
    #[serde(default = "default_region")]
    pub region: String,
    /// Domain for virtual-hosted-style requests (`bucket.<root_domain>`).
    pub root_domain: Option<String>,
    /// Connections served at once; more wait in the listen backlog until one closes
    /// (default 4096).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Seconds a client has to send a request head; an idle keep-alive connection is closed
    /// after as long (default 20).
    #[serde(default = "default_header_read_timeout_secs")]
    pub header_read_timeout_secs: u64,
    /// Seconds a request body may bring no byte before the request fails with `400
    /// RequestTimeout` (and its partial shards are dropped); also how long a client may read
    /// nothing of a response before its connection is closed (default 60).
    #[serde(default = "default_body_idle_timeout_secs")]
    pub body_idle_timeout_secs: u64,
    /// Requests per second each access key may make (a token bucket holding one second's
    /// worth; past it `503 SlowDown`). Off by default.
    pub requests_per_sec_per_key: Option<u32>,
    /// PEM certificate chain (leaf first): with `tls_key`, the listener speaks HTTPS only, and
    /// reloads both files on SIGHUP. Without them, plain HTTP (loopback, or behind a
    /// TLS-terminating proxy).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl S3Config {
    /// The listener's bounds on its clients.
    pub fn limits(&self) -> baobab_gateway::ListenerLimits {
        baobab_gateway::ListenerLimits {
            max_connections: self.max_connections,
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout_secs),
            body_idle_timeout: std::time::Duration::from_secs(self.body_idle_timeout_secs),
            requests_per_sec_per_key: self.requests_per_sec_per_key,
        }
    }

    /// The certificate and key files, when TLS is on.
    pub fn tls_files(&self) -> Option<baobab_gateway::TlsFiles> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(baobab_gateway::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        }
    }

    fn problems(&self, problems: &mut Vec<String>) {
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) | (None, Some(_)) => {
                problems.push("s3.tls_cert, s3.tls_key: set both or neither".into())
            }
            _ => {}
        }
        if let Some(files) = self.tls_files() {
            if let Err(e) = baobab_gateway::S3Tls::load(files) {
                problems.push(format!("s3.tls_cert, s3.tls_key: {e}"));
            }
        }
        if self.listen.parse::<SocketAddr>().is_err() {
            problems.push(format!("s3.listen: {:?} is not host:port", self.listen));
        }
        if self.max_connections == 0 {
            problems.push("s3.max_connections: must be at least 1".into());
        }
        if self.header_read_timeout_secs == 0 {
            problems.push("s3.header_read_timeout_secs: must be at least 1".into());
        }
        if self.body_idle_timeout_secs == 0 {
            problems.push("s3.body_idle_timeout_secs: must be at least 1".into());
        }
        if self.requests_per_sec_per_key == Some(0) {
            problems.push(
                "s3.requests_per_sec_per_key: must be at least 1 (omit it for no limit)".into(),
            );
        }
    }
}

fn default_max_connections() -> usize {
    baobab_gateway::ListenerLimits::default().max_connections
}

fn default_header_read_timeout_secs() -> u64 {
    baobab_gateway::ListenerLimits::default()
        .header_read_timeout
        .as_secs()
}

fn default_body_idle_timeout_secs() -> u64 {
    baobab_gateway::ListenerLimits::default()
        .body_idle_timeout
        .as_secs()
}

fn default_retired_data_grace_secs() -> u64 {
    baobab::retire::DEFAULT_RETIRED_DATA_GRACE.as_secs()
}

fn default_gc_interval_secs() -> u64 {
    baobab::gc::DEFAULT_GC_INTERVAL.as_secs()
}

fn default_gc_min_age_secs() -> u64 {
    baobab::gc::DEFAULT_GC_MIN_AGE.as_secs()
}

fn default_region() -> String {
    "us-east-1".to_string()
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureConfig {
    /// Data shards per block.
    pub k: u8,
    /// Parity shards per block.
    pub m: u8,
}

impl Default for ErasureConfig {
    fn default() -> Self {
        ErasureConfig { k: 2, m: 1 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub id: u64,
    /// The node's site (failure domain).
    pub site: String,
    /// The node's internal RPC address as others reach it.
    pub rpc_addr: String,
    /// Relative placement weight (e.g. capacity in GiB).
    #[serde(default = "default_weight")]
    pub weight: u64,
}

fn default_weight() -> u64 {
    100
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let cfg: Config =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Every problem at once.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        if self.roles.is_empty() {
            problems.push("roles: name at least one of \"storage\", \"gateway\"".to_string());
        }
        let ids: HashSet<u64> = self.nodes.iter().map(|n| n.id).collect();
        if ids.len() != self.nodes.len() {
            problems.push("nodes: ids must be unique".into());
        }
        for n in &self.nodes {
            if n.rpc_addr.parse::<SocketAddr>().is_err() {
                problems.push(format!(
                    "nodes[{}].rpc_addr: {:?} is not host:port",
                    n.id, n.rpc_addr
                ));
            }
        }
        let profile = ErasureProfile {
            k: self.erasure.k,
            m: self.erasure.m,
        };
        if profile.k == 0 || profile.n_shards() > 255 {
            problems.push(format!(
                "erasure: {}+{} is not a valid profile",
                profile.k, profile.m
            ));
        } else if self.nodes.len() < profile.n_shards() {
            problems.push(format!(
                "erasure: {}+{} needs at least {} nodes, {} configured",
                profile.k,
                profile.m,
                profile.n_shards(),
                self.nodes.len()
            ));
        }
        if self.gc_interval_secs == 0 {
            problems.push("gc_interval_secs: must be at least 1".into());
        }
        if self.gc_min_age_secs == 0 {
            problems.push("gc_min_age_secs: must be at least 1".into());
        }
        if self.scrub_interval_secs == 0 {
            problems.push("scrub_interval_secs: must be at least 1".into());
        }
        if self.scrub_bytes_per_sec < 1024 * 1024 {
            problems.push("scrub_bytes_per_sec: must be at least 1048576".into());
        }
        if self.block_size_bytes < 4096 || self.block_size_bytes > 64 * 1024 * 1024 {
            problems.push("block_size_bytes: must be between 4096 and 67108864".into());
        }
        if self.roles.contains(&Role::Storage) {
            match self.node_id {
                None => problems.push("node_id: required with role storage".into()),
                Some(id) if !ids.contains(&id) => {
                    problems.push(format!("node_id: {id} is not in nodes"))
                }
                Some(_) => {}
            }
            match &self.rpc_listen {
                None => problems.push("rpc_listen: required with role storage".into()),
                Some(a) if a.parse::<SocketAddr>().is_err() => {
                    problems.push(format!("rpc_listen: {a:?} is not host:port"))
                }
                Some(_) => {}
            }
        }
        if self.roles.contains(&Role::Gateway) {
            match &self.s3 {
                None => problems.push("[s3]: required with role gateway".into()),
                Some(s3) => s3.problems(&mut problems),
            }
        }
        if let Err(e) = self.secret() {
            problems.push(e.to_string());
        }
        match self.rpc_tls() {
            Err(e) => problems.push(e.to_string()),
            Ok(tls) if self.roles.contains(&Role::Storage) => {
                if let Some(id) = self.node_id {
                    if tls.identity() != Identity::Node(NodeId(id)) {
                        problems.push(format!(
                            "rpc_tls.cert: is for {}, not node {id} (`baobab cert issue --node {id}`)",
                            tls.identity()
                        ));
                    }
                }
            }
            Ok(_) => {}
        }
        if problems.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("invalid configuration:\n  - {}", problems.join("\n  - "))
        }
    }

    pub fn secret(&self) -> anyhow::Result<ClusterSecret> {
        let secret = if let Ok(s) = std::env::var("BAOBAB_CLUSTER_SECRET") {
            s
        } else if let Some(s) = &self.cluster_secret {
            s.clone()
        } else if let Some(path) = &self.cluster_secret_file {
            std::fs::read_to_string(path)
                .map_err(|e| {
                    anyhow::anyhow!("cluster_secret_file: cannot read {}: {e}", path.display())
                })?
                .trim()
                .to_string()
        } else {
            anyhow::bail!(
                "cluster_secret: set cluster_secret, cluster_secret_file or BAOBAB_CLUSTER_SECRET"
            );
        };
        if secret.len() < 16 {
            anyhow::bail!("cluster_secret: must be at least 16 characters");
        }
        Ok(ClusterSecret::new(secret.into_bytes()))
    }

    /// This process's TLS on the internal RPC, read from the `[rpc_tls]` files.
    pub fn rpc_tls(&self) -> anyhow::Result<RpcTls> {
        let Some(files) = &self.rpc_tls else {
            anyhow::bail!(
                "[rpc_tls]: required (ca, cert, key); make them with `baobab cert ca` and `baobab cert issue`"
            );
        };
        RpcTls::load(&files.ca, &files.cert, &files.key)
            .map_err(|e| anyhow::anyhow!("rpc_tls: {e}"))
    }

    /// The garbage collector's settings.
    pub fn gc(&self) -> baobab::gc::GcConfig {
        baobab::gc::GcConfig {
            interval: std::time::Duration::from_secs(self.gc_interval_secs),
            min_age: std::time::Duration::from_secs(self.gc_min_age_secs),
        }
    }

    /// The repair workers' settings.
    pub fn repair(&self) -> baobab::repair::RepairConfig {
        baobab::repair::RepairConfig {
            scrub_interval: std::time::Duration::from_secs(self.scrub_interval_secs),
            verify_bytes_per_sec: self.scrub_bytes_per_sec,
            heal: true,
        }
    }

    pub fn members(&self) -> BTreeMap<NodeId, String> {
        self.nodes
            .iter()
            .map(|n| (NodeId(n.id), n.rpc_addr.clone()))
            .collect()
    }

    pub fn cluster_view(&self) -> ClusterView {
        ClusterView {
            nodes: self
                .nodes
                .iter()
                .map(|n| NodeSlot {
                    id: NodeId(n.id),
                    site: SiteId(n.site.clone()),
                    weight: n.weight,
                })
                .collect(),
            profile: ErasureProfile {
                k: self.erasure.k,
                m: self.erasure.m,
            },
            block_size: self.block_size_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_every_problem() {
        let cfg: Config = toml::from_str(
            r#"
            roles = ["storage", "gateway"]
            data_dir = "/tmp/x"
            cluster_secret = "short"
            [[nodes]]
            id = 1
            site = "a"
            rpc_addr = "nope"
            "#,
        )
        .expect("parses");
        let err = cfg.validate().expect_err("invalid").to_string();
        for needle in [
            "node_id",
            "rpc_listen",
            "[s3]",
            "rpc_addr",
            "needs at least 3 nodes",
            "at least 16",
            "[rpc_tls]",
        ] {
            assert!(err.contains(needle), "{needle} missing from {err}");
        }
    }

    #[test]
    fn gc_settings_default_and_refuse_zero() {
        let cfg: Config =
            toml::from_str("roles = []\ndata_dir = \"/x\"\nnodes = []\n").expect("parses");
        assert_eq!(cfg.gc(), baobab::gc::GcConfig::default());
        let cfg: Config = toml::from_str(
            "roles = []\ndata_dir = \"/x\"\nnodes = []\ngc_interval_secs = 0\ngc_min_age_secs = 0\n",
        )
        .expect("parses");
        let err = cfg.validate().expect_err("invalid").to_string();
        for needle in ["gc_interval_secs", "gc_min_age_secs"] {
            assert!(err.contains(needle), "{needle} missing from {err}");
        }
        let cfg: Config = toml::from_str(
            "roles = []\ndata_dir = \"/x\"\nnodes = []\ngc_interval_secs = 2\ngc_min_age_secs = 5\n",
        )
        .expect("parses");
        assert_eq!(cfg.gc().interval, std::time::Duration::from_secs(2));
        assert_eq!(cfg.gc().min_age, std::time::Duration::from_secs(5));
    }

    #[test]
    fn s3_limits_default_and_refuse_zero() {
        let base = "roles = []\ndata_dir = \"/x\"\nnodes = []\n[s3]\nlisten = \"127.0.0.1:1\"\n";
        let cfg: Config = toml::from_str(base).expect("parses");
        let s3 = cfg.s3.as_ref().expect("s3");
        assert_eq!(s3.limits(), baobab_gateway::ListenerLimits::default());
        let cfg: Config = toml::from_str(&format!(
            "{base}max_connections = 0\nheader_read_timeout_secs = 0\nbody_idle_timeout_secs = 0\nrequests_per_sec_per_key = 0\n"
        ))
        .expect("parses");
        let mut problems = Vec::new();
        cfg.s3.as_ref().expect("s3").problems(&mut problems);
        let all = problems.join("\n");
        for needle in [
            "max_connections",
            "header_read_timeout_secs",
            "body_idle_timeout_secs",
            "requests_per_sec_per_key",
        ] {
            assert!(all.contains(needle), "{needle} missing from {all}");
        }
        let cfg: Config = toml::from_str(&format!(
            "{base}max_connections = 10\nheader_read_timeout_secs = 3\nbody_idle_timeout_secs = 2\nrequests_per_sec_per_key = 50\n"
        ))
        .expect("parses");
        let limits = cfg.s3.as_ref().expect("s3").limits();
        assert_eq!(limits.max_connections, 10);
        assert_eq!(
            limits.header_read_timeout,
            std::time::Duration::from_secs(3)
        );
        assert_eq!(limits.body_idle_timeout, std::time::Duration::from_secs(2));
        assert_eq!(limits.requests_per_sec_per_key, Some(50));
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(
            toml::from_str::<Config>("roles = []\ndata_dir = \"/x\"\nnodes = []\nbogus = 1\n")
                .is_err()
        );
    }
}
