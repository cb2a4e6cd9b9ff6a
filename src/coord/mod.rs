//! The object coordinator: writes an object's bytes as erasure-coded shards across storage
//! nodes and reads them back, verifying every shard block. It does not touch metadata: the
//! gateway commits the record that [`Coordinator::write`] returns, and hands records to
//! [`Coordinator::read`].

mod cluster;
mod full;
#[cfg(test)]
mod full_disk_tests;
mod heal;
mod health;
mod read;
mod write;

pub use cluster::ClusterView;
pub use full::FULL_NODE_SKIP;
pub use heal::Healed;
pub use read::DamageHook;
pub use write::{WriteOutcome, FALLBACK_REPLAY_BLOCKS};

use std::sync::Arc;

use crate::codec::Erasure;
use crate::meta::ObjectData;
use crate::rpc::{RpcClient, RpcError};
use crate::shard::delete_shard;
use crate::types::VersionId;
use full::FullNodes;
use health::NodeHealth;

/// Timeout of one shard read request (to the response head and body).
pub const SHARD_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// A shard writer that cannot take the next chunk within this time is dropped from the write.
pub const SHARD_SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Time a node has, after the last chunk, to make its shard durable and answer.
pub const SHARD_COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Chunks queued per shard writer: bounds memory per PUT to about this many blocks.
pub const SHARD_QUEUE_CHUNKS: usize = 8;
#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    #[error("the cluster has {have} storage nodes, the erasure profile needs {need}")]
    ClusterTooSmall { have: usize, need: usize },
    #[error("only {ok} shards were written durably, {need} needed")]
    WriteQuorum { ok: usize, need: usize },
    /// Too few storage nodes have space for shards (each keeps a reserve for its metadata).
    #[error("storage nodes are out of space: {ok} shards could be placed, {need} needed")]
    StorageFull { ok: usize, need: usize },
    #[error("request body failed: {0}")]
    Body(String),
    #[error("object too large: more than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("could not read enough shards of block {block}: {reason}")]
    ReadUnavailable { block: u64, reason: String },
    /// Healing a piece could not finish (it is tried again later).
    #[error("healing: {0}")]
    Heal(String),
    /// Healing waits for a node that does not answer (it holds or is to receive a shard).
    #[error("healing waits for a node: {0}")]
    HealBlocked(String),
    #[error("erasure: {0}")]
    Erasure(#[from] crate::codec::ErasureError),
    #[error("rpc: {0}")]
    Rpc(#[from] RpcError),
}

/// Writes and reads object data across the storage nodes.
#[derive(Clone)]
pub struct Coordinator {
    pub(crate) rpc: RpcClient,
    pub(crate) cluster: Arc<ClusterView>,
    pub(crate) erasure: Arc<Erasure>,
    /// Nodes that recently refused shards for lack of space, shared by all writes.
    pub(crate) full_nodes: Arc<FullNodes>,
    /// Nodes that stopped answering, shared by writes and reads.
    pub(crate) health: Arc<NodeHealth>,
}

impl Coordinator {
    pub fn new(rpc: RpcClient, cluster: ClusterView) -> Result<Self, CoordError> {
        let erasure = Erasure::new(cluster.profile)?;
        Ok(Coordinator {
            health: Arc::new(NodeHealth::new(rpc.clone())),
            rpc,
            cluster: Arc::new(cluster),
            erasure: Arc::new(erasure),
            full_nodes: Arc::new(FullNodes::default()),
        })
    }

    /// Deletes the shards of an object version that was never committed, at once, in the
    /// background. Best effort: a shard left behind is garbage, never wrong data. (Data that a
    /// commit unlinked goes through the state machine's retire queue instead.)
    pub fn delete_shards_in_background(&self, version: VersionId, data: &ObjectData) {
        let targets: Vec<_> = data
            .pieces(version)
            .into_iter()
            .flat_map(|(version, piece)| match piece {
                ObjectData::Sharded { shard_nodes, .. } => shard_nodes
                    .iter()
                    .enumerate()
                    .filter_map(|(i, n)| n.map(|n| (version, i as u8, n)))
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        if targets.is_empty() {
            return;
        }
        let rpc = self.rpc.clone();
        tokio::spawn(async move {
            for (version, idx, node) in targets {
                if let Err(e) = delete_shard(&rpc, node, version, idx).await {
                    tracing::warn!(%version, shard = idx, %node, error = %e, "could not delete shard; it stays as garbage");
                }
            }
        });
    }
}
