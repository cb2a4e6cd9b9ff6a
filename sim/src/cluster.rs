//! The simulated cluster's parts: storage node hosts (the real `StorageNode`, RocksDB and shard
//! files in a temp dir that outlives crashes) and the client's object service, wired as
//! `gateway/src/server.rs` and `cli/src/dev.rs` wire them, over turmoil's network.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use baobab::coord::{ClusterView, Coordinator};
use baobab::gc::GcConfig;
use baobab::meta::MetaClient;
use baobab::object::ObjectService;
use baobab::placement::NodeSlot;
use baobab::repair::RepairConfig;
use baobab::rpc::cert::ClusterCa;
use baobab::rpc::{Identity, RpcTls};
use baobab::shard::ShardReserve;
use baobab::types::{ErasureProfile, NodeId, SiteId, DEFAULT_BLOCK_SIZE_BYTES};
use baobab_storage_node::{StorageNode, StorageNodeConfig};

use crate::net::{sim_rpc_client, SimListener, RPC_PORT};

/// The simulated cluster's shape, shared by every host.
#[derive(Clone)]
pub struct ClusterSpec {
    /// Every storage node's TLS (its certificate from the cluster CA), and the gateway's.
    pub node_tls: BTreeMap<NodeId, RpcTls>,
    pub gateway_tls: RpcTls,
    pub members: BTreeMap<NodeId, String>,
    pub view: ClusterView,
    /// Whether the nodes run the heal worker (see `SimOptions::without_healing`).
    pub heal: bool,
}

/// A certificate of the simulated cluster's CA, ready to use.
fn tls(ca: &ClusterCa, identity: Identity) -> RpcTls {
    ca.tls(identity)
        .expect("the simulated cluster's certificates are valid")
}

pub fn host_name(node: NodeId) -> String {
    format!("node{}", node.0)
}

impl ClusterSpec {
    /// `n_nodes` nodes, each its own site, erasure `k`+`m`.
    pub fn new(n_nodes: u64, profile: ErasureProfile) -> ClusterSpec {
        let members: BTreeMap<NodeId, String> = (1..=n_nodes)
            .map(|i| (NodeId(i), format!("{}:{RPC_PORT}", host_name(NodeId(i)))))
            .collect();
        let view = ClusterView {
            nodes: members
                .keys()
                .map(|id| NodeSlot {
                    id: *id,
                    site: SiteId(format!("site-{}", id.0)),
                    weight: 100,
                })
                .collect(),
            profile,
            block_size: DEFAULT_BLOCK_SIZE_BYTES,
        };
        let ca = ClusterCa::generate("sim").expect("a cluster CA");
        ClusterSpec {
            node_tls: members
                .keys()
                .map(|id| (*id, tls(&ca, Identity::Node(*id))))
                .collect(),
            gateway_tls: tls(&ca, Identity::Gateway),
            members,
            view,
            heal: true,
        }
    }

    /// An RPC client over the simulated network, as `tls`'s identity (the client host's
    /// checks use one too).
    pub fn rpc(&self, tls: &RpcTls) -> baobab::rpc::RpcClient {
        sim_rpc_client(
            tls.clone(),
            self.members
                .iter()
                .map(|(id, a)| (*id, a.clone()))
                .collect(),
        )
    }

    /// A storage node's software: starts the real node on `data_dir` and serves until the
    /// host is crashed (which drops everything, as a process kill would).
    pub async fn run_node(&self, node: NodeId, data_dir: PathBuf) -> turmoil::Result {
        let cfg = StorageNodeConfig {
            node_id: node,
            data_dir,
            members: self.members.clone(),
            // Retired data is freed at once (the retire worker's next round), so a record that
            // points at retired data loses it within the run.
            retired_data_grace: Duration::ZERO,
            shard_reserve: ShardReserve::Bytes(0),
            gc: GcConfig::default(),
            cluster: self.view.clone(),
            repair: RepairConfig {
                // The scrub never starts within a run; healing is driven by the repair queue.
                scrub_interval: Duration::from_secs(24 * 60 * 60),
                heal: self.heal,
                ..RepairConfig::default()
            },
        };
        let listener = SimListener::bind().await?;
        let tls = self.node_tls[&node].clone();
        let _node =
            StorageNode::start_with(cfg, listener, self.rpc(&tls), tls, std::future::pending())
                .await
                .map_err(|e| format!("{} failed to start: {e:#}", host_name(node)))?;
        std::future::pending::<()>().await;
        Ok(())
    }

    /// The object service as a gateway builds it, over the simulated network.
    pub fn object_service(&self, without_request_ids: bool) -> ObjectService {
        let rpc = self.rpc(&self.gateway_tls);
        let mut meta = MetaClient::new(rpc.clone(), self.members.keys().copied().collect());
        if without_request_ids {
            meta = meta.without_request_ids();
        }
        let coord = Coordinator::new(rpc, self.view.clone()).expect("the simulated view is valid");
        ObjectService::new(meta, coord)
    }
}
