//! Storage nodes that stopped answering (a send or commit that timed out, a refused
//! connection, a read that timed out). Writes place their shards elsewhere and reads ask other
//! shards first while a node is marked, so a paused or dead node costs one timeout, not one per
//! request. A probe (`/v1/node/status`, every [`PROBE_EVERY`]) clears the mark as soon as the
//! node answers again. In memory, per coordinator.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::rpc::{RpcClient, RpcError};
use crate::types::NodeId;

/// How often a marked node is asked whether it answers again.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);
/// Bound on one probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

pub struct NodeHealth {
    rpc: RpcClient,
    down: Mutex<HashSet<NodeId>>,
}

impl NodeHealth {
    pub fn new(rpc: RpcClient) -> Self {
        NodeHealth {
            rpc,
            down: Mutex::default(),
        }
    }

    /// Whether `node` is marked as not answering.
    pub fn avoided(&self, node: NodeId) -> bool {
        self.lock().contains(&node)
    }

    /// Marks `node` after `error` if the error says the node does not answer (a timeout or a
    /// failed connection; not an answer such as 404 or 507).
    pub fn observe(self: &Arc<Self>, node: NodeId, error: &RpcError) {
        if matches!(error, RpcError::Timeout { .. } | RpcError::Connect { .. }) {
            self.mark(node, &error.to_string());
        }
    }

    /// Marks `node` as not answering (`why` for the log) and starts probing it.
    pub fn mark(self: &Arc<Self>, node: NodeId, why: &str) {
        if !self.lock().insert(node) {
            return;
        }
        tracing::warn!(%node, reason = why, "storage node not answering; avoided until it does");
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                let answer = this
                    .rpc
                    .call::<(), serde::de::IgnoredAny>(node, "/v1/node/status", &(), PROBE_TIMEOUT)
                    .await;
                if answer.is_ok() {
                    this.lock().remove(&node);
                    tracing::info!(%node, "storage node answers again");
                    return;
                }
            }
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<NodeId>> {
        // Single insert/remove calls: a panic cannot leave the set half-changed.
        self.down.lock().unwrap_or_else(|e| e.into_inner())
    }
}
