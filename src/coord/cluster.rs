//! The coordinator's view of the cluster: storage nodes, their sites, the erasure profile.
//! Static from configuration for now; the control group's versioned cluster map replaces it.

use crate::placement::{place, NodeSlot};
use crate::types::{ErasureProfile, NodeId, VersionId};

#[derive(Debug, Clone)]
pub struct ClusterView {
    pub nodes: Vec<NodeSlot>,
    pub profile: ErasureProfile,
    pub block_size: u32,
}

impl ClusterView {
    /// Shard homes then fallbacks for `version`.
    pub fn placement(&self, version: VersionId) -> Vec<NodeId> {
        place(version, &self.nodes, self.profile)
    }
}
