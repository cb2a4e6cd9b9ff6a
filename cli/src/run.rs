//! `baobab server` and `baobab status`: start roles from a config file, or talk to a running
//! cluster with the cluster secret. Key and bucket administration is in `admin.rs`.

use std::path::Path;
use std::time::Duration;

use baobab::codec::seal::SealKey;
use baobab::coord::Coordinator;
use baobab::meta::request::{CreateAccessKey, GetAccessKey};
use baobab::meta::{AccessKeyRecord, MetaClient, Refused};
use baobab::rpc::RpcClient;
use baobab::types::NodeId;
use baobab_gateway::{serve_s3_with, GatewayConfig};
use baobab_storage_node::{NodeStatus, StorageNode, StorageNodeConfig};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Role};

/// Logs go to stderr, or to `log_file` when set. `RUST_LOG` overrides the default `info`.
pub fn init_logging(log_file: Option<&Path>) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // openraft logs every unreachable peer (and every call into a stopped Raft) at ERROR, so
        // only its storage failures stay on; its fatal errors are logged by `MetaNode` from the
        // Raft metrics, and shown by `baobab status`. s3s logs every rejected client request
        // (bad signature, malformed XML, bad bucket name) at ERROR: both are expected events,
        // not failures of ours. Our code logs what matters (leader changes, degraded writes, data
        // path errors); `RUST_LOG=s3s=debug` brings s3s's view back when needed.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(
                "info,openraft=off,openraft::storage=error,openraft::core::sm=error,s3s=off,h2=warn,hyper=warn",
            )
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
        }
        None => {
            use std::io::IsTerminal;
            builder
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr)
                .init()
        }
    }
    Ok(())
}

/// Cancels the token on SIGINT or SIGTERM.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        tracing::info!("shutting down");
        token.cancel();
    });
}

/// Reloads the S3 listener's certificate and key on every SIGHUP; a pair that does not load is
/// logged and the one in use kept.
fn reload_tls_on_sighup(tls: std::sync::Arc<baobab_gateway::S3Tls>) -> anyhow::Result<()> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let files = tls.files();
            match tls.reload() {
                Ok(()) => {
                    tracing::info!(cert = %files.cert.display(), "S3 TLS certificate reloaded")
                }
                Err(e) => {
                    tracing::error!(error = %e, "S3 TLS certificate not reloaded; keeping the one in use")
                }
            }
        }
    });
    Ok(())
}

/// Reloads the internal RPC's CA bundle, certificate and key on every SIGHUP (a rotation
/// without a restart: new connections, served and dialled, use them); files that do not load,
/// or a certificate for another identity, are logged and the ones in use kept.
fn reload_rpc_tls_on_sighup(
    tls: baobab::rpc::RpcTls,
    files: crate::config::RpcTlsConfig,
) -> anyhow::Result<()> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match tls.reload(&files.ca, &files.cert, &files.key) {
                Ok(()) => {
                    tracing::info!(cert = %files.cert.display(), "RPC TLS certificate reloaded")
                }
                Err(e) => {
                    tracing::error!(error = %e, "RPC TLS certificate not reloaded; keeping the one in use")
                }
            }
        }
    });
    Ok(())
}

/// The key that seals access-key secrets in the metadata.
pub fn secrets_key(secret: &baobab::rpc::ClusterSecret) -> SealKey {
    SealKey::new(secret.derive_key(baobab::meta::ACCESS_KEY_SEAL_PURPOSE))
}

pub async fn server(config_path: &Path) -> anyhow::Result<()> {
    let cfg = Config::load(config_path)?;
    init_logging(cfg.log_file.as_deref())?;
    let token = CancellationToken::new();
    cancel_on_signal(token.clone());
    let secret = cfg.secret()?;
    let tls = cfg.rpc_tls()?;
    if let Some(files) = cfg.rpc_tls.clone() {
        reload_rpc_tls_on_sighup(tls.clone(), files)?;
    }
    std::fs::create_dir_all(&cfg.data_dir)?;
    let _metrics = match &cfg.metrics_listen {
        Some(listen) => Some(
            baobab::metrics::serve(listen)
                .await
                .map_err(|e| anyhow::anyhow!("cannot serve metrics on {listen}: {e}"))?,
        ),
        None => None,
    };

    let mut storage = None;
    if cfg.roles.contains(&Role::Storage) {
        let node_id = NodeId(
            cfg.node_id
                .ok_or_else(|| anyhow::anyhow!("node_id missing"))?,
        );
        let listen = cfg
            .rpc_listen
            .clone()
            .ok_or_else(|| anyhow::anyhow!("rpc_listen missing"))?;
        let listener = tokio::net::TcpListener::bind(&listen).await?;
        let node_cfg = StorageNodeConfig {
            node_id,
            data_dir: cfg.data_dir.clone(),
            members: cfg.members(),
            retired_data_grace: std::time::Duration::from_secs(cfg.retired_data_grace_secs),
            shard_reserve: baobab::shard::ShardReserve::from_config(cfg.shard_reserve_bytes),
            gc: cfg.gc(),
            cluster: cfg.cluster_view(),
            repair: cfg.repair(),
        };
        let t = token.clone();
        storage = Some(
            StorageNode::start(node_cfg, listener, tls.clone(), async move {
                t.cancelled().await
            })
            .await?,
        );
        tracing::info!(node = %node_id, rpc = %listen, "storage role running");
    }
    let mut gateway = None;
    if cfg.roles.contains(&Role::Gateway) {
        let s3 = cfg
            .s3
            .clone()
            .ok_or_else(|| anyhow::anyhow!("[s3] missing"))?;
        let rpc = RpcClient::new(tls.clone(), cfg.members().into_iter().collect());
        let meta = MetaClient::new(rpc.clone(), cfg.members().keys().copied().collect());
        let coord = Coordinator::new(rpc, cfg.cluster_view())?;
        let tls = match s3.tls_files() {
            Some(files) => {
                let tls = baobab_gateway::S3Tls::load(files)?;
                reload_tls_on_sighup(tls.clone())?;
                Some(tls)
            }
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(&s3.listen).await?;
        tracing::info!(listen = %s3.listen, https = tls.is_some(), "gateway role serving S3");
        let t = token.clone();
        let gw_cfg = GatewayConfig {
            region: s3.region.clone(),
            root_domain: s3.root_domain.clone(),
            secrets_key: secrets_key(&secret),
        };
        gateway = Some(tokio::spawn(serve_s3_with(
            listener,
            gw_cfg,
            s3.limits(),
            tls,
            meta,
            coord,
            async move { t.cancelled().await },
        )));
    }
    token.cancelled().await;
    if let Some(g) = gateway {
        match g.await {
            Ok(Err(e)) => tracing::error!(error = %e, "gateway stopped with an error"),
            Err(e) => tracing::error!(error = %e, "gateway task failed"),
            Ok(Ok(())) => {}
        }
    }
    if let Some(s) = storage {
        s.stop().await;
    }
    tracing::info!("stopped");
    Ok(())
}

fn random_string(alphabet: &[u8], len: usize) -> String {
    (0..len)
        .map(|_| alphabet[rand::random_range(0..alphabet.len())] as char)
        .collect()
}

/// A new access key id and secret, in the shapes AWS uses.
pub fn new_key_pair() -> (String, String) {
    let id = format!(
        "BK{}",
        random_string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 18)
    );
    let secret = random_string(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        40,
    );
    (id, secret)
}

/// Creates the key (its secret sealed) unless it exists; returns the key as stored, with its
/// secret opened. Retries until the metadata group has a leader, for at most `deadline`.
pub async fn ensure_access_key(
    meta: &MetaClient,
    seal: &SealKey,
    name: String,
    pair: (String, String),
    allow_create_bucket: bool,
    deadline: Duration,
) -> anyhow::Result<AccessKeyRecord> {
    let record = AccessKeyRecord {
        key_id: pair.0.clone(),
        secret: pair.1,
        name,
        allow_create_bucket,
        created_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
    }
    .seal(seal);
    let started = tokio::time::Instant::now();
    let mut backoff = Duration::from_millis(100);
    loop {
        let attempt = async {
            let create = CreateAccessKey {
                record: record.clone(),
            };
            match meta.send(create).await? {
                Ok(()) => Ok(record.clone()),
                Err(Refused::AccessKeyExists) => {
                    let get = GetAccessKey {
                        key_id: pair.0.clone(),
                    };
                    meta.ask(get)
                        .await??
                        .ok_or_else(|| anyhow::anyhow!("the access key exists but cannot be read"))
                }
                Err(other) => Err(anyhow::anyhow!("creating the access key: {other}")),
            }
        };
        match attempt.await {
            Ok(mut r) => {
                r.secret = r
                    .open_secret(seal)
                    .map_err(|e| anyhow::anyhow!("the key's secret does not open: {e}"))?;
                return Ok(r);
            }
            Err(e) if started.elapsed() < deadline => {
                tracing::debug!(error = %e, "access key not created yet; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e.context("creating the access key")),
        }
    }
}

pub async fn status(config_path: &Path) -> anyhow::Result<()> {
    let cfg = Config::load(config_path)?;
    let rpc = RpcClient::new(cfg.rpc_tls()?, cfg.members().into_iter().collect());
    let mut nodes = Vec::new();
    let mut leader = None;
    for id in cfg.members().keys() {
        let answer: Result<NodeStatus, _> = rpc
            .call(*id, "/v1/node/status", &(), Duration::from_secs(2))
            .await;
        match answer {
            Ok(s) => {
                leader = leader.or(s.leader);
                let mut node =
                    serde_json::json!({"id": id.0, "reachable": true, "leader": s.leader});
                if let Some(fatal) = s.raft_fatal {
                    node["raft_fatal"] = fatal.into();
                }
                nodes.push(node);
            }
            Err(_) => nodes.push(serde_json::json!({"id": id.0, "reachable": false})),
        }
    }
    println!("{}", serde_json::json!({"leader": leader, "nodes": nodes}));
    Ok(())
}
