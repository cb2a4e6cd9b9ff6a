//! A storage node: the shard store and this node's metadata Raft replica, served on the
//! internal RPC. Only wiring lives here; the parts are in the core crate.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use baobab::coord::{ClusterView, Coordinator};
use baobab::gc::{Gc, GcConfig};
use baobab::meta::{MetaConfig, MetaNode};
use baobab::repair::{Heal, RepairConfig, Scrub};
use baobab::retire::Retire;
use baobab::rpc::{
    read_body, serve, status_response, Peer, RpcClient, RpcHandler, RpcListener, RpcResponse,
    RpcTls, MAX_MESSAGE_BYTES,
};
use baobab::shard::{ShardReserve, ShardRpc, ShardStore, TEMP_MIN_AGE, TEMP_SWEEP_INTERVAL};
use baobab::types::NodeId;
use baobab::worker;
use http::{Request, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;

/// What a storage node needs to start.
pub struct StorageNodeConfig {
    pub node_id: NodeId,
    pub data_dir: PathBuf,
    /// Every storage node's RPC address, this one included.
    pub members: BTreeMap<NodeId, String>,
    /// How long unlinked data stays readable before the retire worker deletes it.
    pub retired_data_grace: std::time::Duration,
    /// Free space on the data directory's file system that shard writes leave to metadata.
    pub shard_reserve: ShardReserve,
    /// The garbage collector of unreferenced shard files (it acts while this node leads); the
    /// sweep of abandoned temp files runs as often, at most every `TEMP_SWEEP_INTERVAL`.
    pub gc: GcConfig,
    /// The cluster as the heal worker places rebuilt shards in it.
    pub cluster: ClusterView,
    /// Healing and scrub (they act while this node leads).
    pub repair: RepairConfig,
}

/// What `/v1/node/status` answers.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NodeStatus {
    pub node_id: u64,
    /// The metadata leader this node knows of.
    pub leader: Option<u64>,
    /// Why this node's metadata Raft stopped, if it did (it then neither votes nor follows).
    #[serde(default)]
    pub raft_fatal: Option<String>,
}

struct Handler {
    node_id: NodeId,
    shards: ShardRpc,
    meta: OnceLock<Arc<MetaNode>>,
}

#[async_trait::async_trait]
impl RpcHandler for Handler {
    async fn handle(&self, req: Request<Incoming>) -> RpcResponse {
        let path = req.uri().path().to_string();
        if path.starts_with("/v1/shard/") {
            return self.shards.handle(req).await;
        }
        if path == "/v1/node/status" {
            let meta = self.meta.get();
            let status = NodeStatus {
                node_id: self.node_id.0,
                leader: meta.and_then(|m| m.current_leader()).map(|n| n.0),
                raft_fatal: meta.and_then(|m| m.fatal_error()),
            };
            return match baobab::rpc::encode(&status) {
                Ok(b) => http::Response::new(baobab::rpc::full_body(b)),
                Err(e) => status_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            };
        }
        if path.starts_with("/v1/raft/") || path.starts_with("/v1/meta/") {
            let Some(meta) = self.meta.get() else {
                return status_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "metadata replica starting",
                );
            };
            let Some(Peer(peer)) = req.extensions().get::<Peer>().copied() else {
                return status_response(StatusCode::FORBIDDEN, "no peer identity");
            };
            let body = match read_body(req.into_body(), MAX_MESSAGE_BYTES).await {
                Ok(b) => b,
                Err(e) => return status_response(StatusCode::BAD_REQUEST, e.to_string()),
            };
            return match meta.handle_rpc(peer, &path, body).await {
                Ok(reply) => {
                    let mut resp = http::Response::new(baobab::rpc::full_body(reply));
                    *resp.status_mut() = StatusCode::OK;
                    resp
                }
                Err(e) => status_response(
                    StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    e.message,
                ),
            };
        }
        status_response(StatusCode::NOT_FOUND, "no such rpc path")
    }
}

/// A running storage node.
pub struct StorageNode {
    pub meta: Arc<MetaNode>,
    server: tokio::task::JoinHandle<()>,
    /// Background workers: the retire queue, the garbage collector, the temp-file sweep,
    /// healing and scrub.
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl StorageNode {
    /// Opens the stores, starts serving RPC on `listener` (mutual TLS as `tls`, which must be
    /// this node's certificate), and joins the metadata group.
    pub async fn start(
        cfg: StorageNodeConfig,
        listener: TcpListener,
        tls: RpcTls,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<StorageNode> {
        let rpc = RpcClient::new(
            tls.clone(),
            cfg.members
                .iter()
                .map(|(id, addr)| (*id, addr.clone()))
                .collect(),
        );
        Self::start_with(cfg, listener, rpc, tls, shutdown).await
    }

    /// [`StorageNode::start`] on any listener, calling peers through `rpc` (which must know
    /// every member's address): how a simulated network runs the real node.
    pub async fn start_with(
        cfg: StorageNodeConfig,
        listener: impl RpcListener,
        rpc: RpcClient,
        tls: RpcTls,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<StorageNode> {
        let identity = tls.identity();
        if identity != baobab::rpc::Identity::Node(cfg.node_id) {
            anyhow::bail!(
                "this is node {} but its certificate is for {identity}; issue one with `baobab cert issue --node {}`",
                cfg.node_id.0,
                cfg.node_id.0
            );
        }
        std::fs::create_dir_all(&cfg.data_dir)?;
        let store = ShardStore::open_with_reserve(&cfg.data_dir, cfg.shard_reserve)?;
        let sweep_store = store.clone();
        let handler = Arc::new(Handler {
            node_id: cfg.node_id,
            shards: ShardRpc::new(store, cfg.repair.verify_bytes_per_sec, cfg.node_id),
            meta: OnceLock::new(),
        });
        let server = tokio::spawn(serve(listener, tls, handler.clone(), shutdown));
        let meta = MetaNode::open(
            MetaConfig {
                node_id: cfg.node_id,
                dir: cfg.data_dir.join("meta"),
                members: cfg.members.clone(),
            },
            rpc.clone(),
        )
        .await?;
        let _ = handler.meta.set(meta.clone());
        let retire = tokio::spawn(worker::run(
            meta.clone(),
            Retire {
                rpc: rpc.clone(),
                grace: cfg.retired_data_grace,
            },
            baobab::retire::RETIRE_INTERVAL,
            Duration::ZERO,
        ));
        let gc = tokio::spawn(worker::run(
            meta.clone(),
            Gc::new(rpc.clone(), cfg.members.keys().copied().collect(), cfg.gc),
            cfg.gc.interval,
            cfg.gc.interval,
        ));
        let coord = Coordinator::new(rpc, cfg.cluster)?;
        let heal = cfg.repair.heal.then(|| {
            tokio::spawn(worker::run(
                meta.clone(),
                Heal {
                    coord: coord.clone(),
                },
                baobab::repair::IDLE_TICK,
                Duration::ZERO,
            ))
        });
        let scrub = tokio::spawn(worker::run(
            meta.clone(),
            Scrub {
                coord,
                interval: cfg.repair.scrub_interval,
            },
            baobab::repair::IDLE_TICK,
            Duration::ZERO,
        ));
        let sweep = tokio::spawn(baobab::shard::run_temp_sweep(
            sweep_store,
            cfg.gc.interval.min(TEMP_SWEEP_INTERVAL),
            TEMP_MIN_AGE,
        ));
        tracing::info!(node = %cfg.node_id, "storage node started");
        Ok(StorageNode {
            meta,
            server,
            workers: [retire, gc, sweep, scrub].into_iter().chain(heal).collect(),
        })
    }

    /// Stops serving and shuts the Raft replica down.
    pub async fn stop(self) {
        for worker in &self.workers {
            worker.abort();
        }
        self.meta.shutdown().await;
        self.server.abort();
    }
}
