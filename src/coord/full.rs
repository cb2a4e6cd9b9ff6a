//! Storage nodes that recently refused a shard for lack of space (`507`). New writes put their
//! shards elsewhere for [`FULL_NODE_SKIP`], so a full node costs one refusal per gateway per
//! period rather than one per PUT; after it, the node is asked again (deletes may have freed
//! space). In memory, per coordinator: a restart forgets it, which costs one refusal.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::types::NodeId;

/// How long a node that refused a shard for lack of space is left out of new writes.
pub const FULL_NODE_SKIP: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub struct FullNodes {
    until: Mutex<HashMap<NodeId, Instant>>,
}

impl FullNodes {
    /// Records that `node` refused a shard for lack of space.
    pub fn mark(&self, node: NodeId) {
        self.mark_at(node, Instant::now())
    }

    /// Whether `node` refused a shard for lack of space less than [`FULL_NODE_SKIP`] ago.
    pub fn contains(&self, node: NodeId) -> bool {
        self.contains_at(node, Instant::now())
    }

    fn mark_at(&self, node: NodeId, now: Instant) {
        let was_full = self
            .lock()
            .insert(node, now + FULL_NODE_SKIP)
            .is_some_and(|until| until > now);
        if !was_full {
            tracing::warn!(%node, skip_secs = FULL_NODE_SKIP.as_secs(), "storage node out of space for shards; new writes skip it");
        }
    }

    fn contains_at(&self, node: NodeId, now: Instant) -> bool {
        let mut until = self.lock();
        until.retain(|_, t| *t > now);
        until.contains_key(&node)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, Instant>> {
        // A panic while holding the lock cannot leave the map half-changed (single calls).
        self.until.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_node_is_skipped_for_a_while() {
        let full = FullNodes::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        assert!(!full.contains_at(NodeId(2), t0));
        full.mark_at(NodeId(2), t0);
        assert!(full.contains_at(NodeId(2), t0));
        assert!(!full.contains_at(NodeId(1), t0));
        assert!(full.contains_at(NodeId(2), t0 + FULL_NODE_SKIP - ms(1)));
        // A new refusal extends the period.
        full.mark_at(NodeId(2), t0 + FULL_NODE_SKIP - ms(1));
        assert!(full.contains_at(NodeId(2), t0 + FULL_NODE_SKIP + ms(1)));
        assert!(!full.contains_at(NodeId(2), t0 + 2 * FULL_NODE_SKIP));
    }
}
