//! `baobab dev`: a whole cluster in one process with zero configuration: three storage nodes in
//! sites site-a, site-b, site-c (erasure 2+1) and one gateway, talking over the real internal
//! RPC on loopback (mutual TLS, as between servers). Data under `--data-dir`; the cluster
//! secret, the cluster CA with every process's certificate (`tls/`) and the access key are
//! created on first start and kept, so a restart keeps everything.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use baobab::codec::seal::SealKey;
use baobab::coord::{ClusterView, Coordinator};
use std::os::unix::fs::PermissionsExt;

use baobab::gc::GcConfig;
use baobab::meta::request::ListAccessKeys;
use baobab::meta::{AccessKeyRecord, MetaClient};
use baobab::placement::NodeSlot;
use baobab::repair::RepairConfig;
use baobab::rpc::{ClusterSecret, Identity, RpcClient, RpcTls};
use baobab::shard::ShardReserve;
use baobab::types::{ErasureProfile, NodeId, SiteId, DEFAULT_BLOCK_SIZE_BYTES};
use baobab_gateway::{serve_s3, GatewayConfig};
use baobab_storage_node::{StorageNode, StorageNodeConfig};
use tokio_util::sync::CancellationToken;

use crate::run::{cancel_on_signal, ensure_access_key, init_logging, new_key_pair};

const SITES: [&str; 3] = ["site-a", "site-b", "site-c"];
const REGION: &str = "us-east-1";
/// Where under the data directory the cluster CA and certificates live.
const TLS_DIR: &str = "tls";

/// Reads `export NAME=value` lines.
fn read_env_file(path: &Path) -> BTreeMap<String, String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return BTreeMap::new();
    };
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

/// The dev cluster's access key: the one named "dev" in the cluster if there is one (so a restart
/// keeps the credentials even if dev.env was lost), else the one in dev.env, else a new one.
async fn dev_key(
    meta: &MetaClient,
    seal: &SealKey,
    env_path: &Path,
) -> anyhow::Result<AccessKeyRecord> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let existing = loop {
        match meta.ask(ListAccessKeys).await {
            Ok(Ok(keys)) => break keys,
            Ok(Err(refused)) => anyhow::bail!("reading access keys: {refused}"),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "metadata not ready yet");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(anyhow::anyhow!(e).context("reading access keys")),
        }
    };
    if let Some(mut key) = existing.into_iter().find(|k| k.name == "dev") {
        key.secret = key
            .open_secret(seal)
            .map_err(|e| anyhow::anyhow!("the dev key's secret does not open: {e}"))?;
        return Ok(key);
    }
    let previous = read_env_file(env_path);
    let pair = match (
        previous.get("AWS_ACCESS_KEY_ID"),
        previous.get("AWS_SECRET_ACCESS_KEY"),
    ) {
        (Some(id), Some(secret)) => (id.clone(), secret.clone()),
        _ => new_key_pair(),
    };
    ensure_access_key(
        meta,
        seal,
        "dev".to_string(),
        pair,
        true,
        Duration::from_secs(60),
    )
    .await
}

/// `<data-dir>/baobab.toml`: a gateway-shaped config naming this cluster's nodes and secret,
/// for admin commands (`baobab key create --config baobab-data/baobab.toml …`).
async fn write_admin_config(
    data_dir: &Path,
    s3_port: u16,
    members: &BTreeMap<NodeId, String>,
) -> anyhow::Result<()> {
    let tls = crate::cert::paths(&data_dir.join(TLS_DIR), Identity::Admin);
    let mut text = format!(
        "# For admin commands against `baobab dev` (baobab key|bucket|status --config THIS_FILE).\n\
         roles = [\"gateway\"]\n\
         data_dir = {dir:?}\n\
         cluster_secret_file = {secret:?}\n\
         [rpc_tls]\nca = {ca:?}\ncert = {cert:?}\nkey = {key:?}\n\
         [s3]\nlisten = \"127.0.0.1:{s3_port}\"\n\
         [erasure]\nk = 2\nm = 1\n",
        dir = data_dir.join("admin").display().to_string(),
        secret = data_dir.join("cluster.secret").display().to_string(),
        ca = tls.ca.display().to_string(),
        cert = tls.cert.display().to_string(),
        key = tls.key.display().to_string(),
    );
    for ((id, addr), site) in members.iter().zip(SITES) {
        text.push_str(&format!(
            "[[nodes]]\nid = {}\nsite = \"{site}\"\nrpc_addr = \"{addr}\"\n",
            id.0
        ));
    }
    baobab::fsutil::write_durable(&data_dir.join("baobab.toml"), text.as_bytes()).await?;
    Ok(())
}

/// The cluster secret in `path` (mode 0600: only its owner may read it), made on first use.
async fn load_or_create_secret(path: &Path) -> anyhow::Result<String> {
    if let Ok(s) = std::fs::read_to_string(path) {
        let s = s.trim().to_string();
        if s.len() >= 16 {
            // Files written before secrets were private: tighten them.
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            return Ok(s);
        }
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    baobab::fsutil::write_private(path, secret.as_bytes()).await?;
    Ok(secret)
}

pub async fn run(
    data_dir: &Path,
    s3_port: u16,
    retired_data_grace: std::time::Duration,
    shard_reserve: ShardReserve,
    gc: GcConfig,
    repair: RepairConfig,
) -> anyhow::Result<()> {
    init_logging(None)?;
    std::fs::create_dir_all(data_dir)?;
    let data_dir = data_dir.canonicalize()?;
    if s3_port > u16::MAX - 4 {
        anyhow::bail!(
            "--s3-port must leave room for the three storage node ports and the metrics port after it"
        );
    }
    let metrics_port = s3_port + 4;
    let secret = ClusterSecret::new(
        load_or_create_secret(&data_dir.join("cluster.secret"))
            .await?
            .into_bytes(),
    );
    let members: BTreeMap<NodeId, String> = (1..=3u64)
        .map(|i| (NodeId(i), format!("127.0.0.1:{}", s3_port + i as u16)))
        .collect();
    // The cluster CA and every process's certificate, made on the first start.
    let tls_dir = data_dir.join(TLS_DIR);
    let identities: Vec<Identity> = members
        .keys()
        .map(|id| Identity::Node(*id))
        .chain([Identity::Gateway, Identity::Admin])
        .collect();
    crate::cert::ensure(&tls_dir, &identities).await?;
    let tls = |identity| {
        let p = crate::cert::paths(&tls_dir, identity);
        RpcTls::load(&p.ca, &p.cert, &p.key)
    };
    let token = CancellationToken::new();
    cancel_on_signal(token.clone());

    // Bind everything first: a port in use fails the start before anything runs.
    let s3_listener = tokio::net::TcpListener::bind(("127.0.0.1", s3_port))
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on 127.0.0.1:{s3_port}: {e}"))?;
    let metrics = baobab::metrics::serve(&format!("127.0.0.1:{metrics_port}"))
        .await
        .map_err(|e| anyhow::anyhow!("cannot serve metrics on 127.0.0.1:{metrics_port}: {e}"))?;
    let mut listeners = Vec::new();
    for (id, addr) in &members {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        listeners.push((*id, l));
    }
    let view = ClusterView {
        nodes: members
            .keys()
            .zip(SITES)
            .map(|(id, site)| NodeSlot {
                id: *id,
                site: SiteId(site.to_string()),
                weight: 100,
            })
            .collect(),
        profile: ErasureProfile { k: 2, m: 1 },
        block_size: DEFAULT_BLOCK_SIZE_BYTES,
    };
    let mut nodes = Vec::new();
    for (id, listener) in listeners {
        let cfg = StorageNodeConfig {
            node_id: id,
            data_dir: data_dir.join(format!("node{}", id.0)),
            members: members.clone(),
            retired_data_grace,
            shard_reserve,
            gc,
            cluster: view.clone(),
            repair,
        };
        let t = token.clone();
        nodes.push(
            StorageNode::start(cfg, listener, tls(Identity::Node(id))?, async move {
                t.cancelled().await
            })
            .await?,
        );
    }

    let seal = crate::run::secrets_key(&secret);
    let rpc = RpcClient::new(
        tls(Identity::Gateway)?,
        members.clone().into_iter().collect(),
    );
    let meta = MetaClient::new(rpc.clone(), members.keys().copied().collect());
    let coord = Coordinator::new(rpc, view)?;
    let t = token.clone();
    let gw_cfg = GatewayConfig {
        region: REGION.to_string(),
        root_domain: Some("localhost".to_string()),
        secrets_key: seal.clone(),
    };
    let gateway = tokio::spawn(serve_s3(
        s3_listener,
        gw_cfg,
        meta.clone(),
        coord,
        async move { t.cancelled().await },
    ));

    write_admin_config(&data_dir, s3_port, &members).await?;
    let env_path = data_dir.join("dev.env");
    let key = tokio::select! {
        k = dev_key(&meta, &seal, &env_path) => k?,
        _ = token.cancelled() => anyhow::bail!("interrupted before the cluster was ready"),
    };
    let endpoint = format!("http://127.0.0.1:{s3_port}");
    let metrics_url = format!("http://{}/metrics", metrics.addr);
    let env = format!(
        "export AWS_ACCESS_KEY_ID={}\nexport AWS_SECRET_ACCESS_KEY={}\nexport AWS_ENDPOINT_URL={endpoint}\nexport AWS_REGION={REGION}\nexport BAOBAB_METRICS_URL={metrics_url}\n",
        key.key_id, key.secret
    );
    baobab::fsutil::write_private(&env_path, env.as_bytes()).await?;
    println!("Baobab dev cluster ready: 3 storage nodes (site-a, site-b, site-c), erasure 2+1, data in {}", data_dir.display());
    println!("S3 endpoint:       {endpoint}");
    println!("Access key id:     {}", key.key_id);
    println!("Secret access key: {}", key.secret);
    println!("Region:            {REGION}");
    println!("Metrics:           {metrics_url}");
    println!("Credentials for your shell: source {}", env_path.display());

    token.cancelled().await;
    match gateway.await {
        Ok(Err(e)) => tracing::error!(error = %e, "gateway stopped with an error"),
        Err(e) => tracing::error!(error = %e, "gateway task failed"),
        Ok(Ok(())) => {}
    }
    for node in nodes {
        node.stop().await;
    }
    tracing::info!("dev cluster stopped");
    Ok(())
}
