//! The coordinator's view of the cluster: storage nodes, their sites, the erasure profile.
//! Static from configuration for now; the control group's versioned cluster map replaces it.

use crate::placement::{place, NodeSlot};
use crate::types::{ErasureProfile, NodeId, SiteId, VersionId};

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

    /// A node for each of the k + m shards of a write, given the placement `order`: the home of
    /// each shard index, or where `skip` rules the home out (a node out of space), a fallback
    /// (see [`Self::fallback`]). None where no node is left.
    pub fn shard_targets(
        &self,
        order: &[NodeId],
        skip: impl Fn(NodeId) -> bool,
    ) -> Vec<Option<NodeId>> {
        let n = self.profile.n_shards();
        let mut targets: Vec<Option<NodeId>> = order
            .iter()
            .take(n)
            .map(|&node| (!skip(node)).then_some(node))
            .collect();
        for i in 0..targets.len() {
            if targets[i].is_none() {
                targets[i] = self.fallback(order, &targets, &skip);
            }
        }
        targets
    }

    /// The first fallback in `order` (the nodes after the k + m homes) that holds none of the
    /// shards in `in_use` and is not skipped; one that keeps placement's rule of at most m shards
    /// per site comes first, but a fallback that breaks it still beats a missing shard.
    pub fn fallback(
        &self,
        order: &[NodeId],
        in_use: &[Option<NodeId>],
        skip: impl Fn(NodeId) -> bool,
    ) -> Option<NodeId> {
        let candidates: Vec<NodeId> = order
            .iter()
            .skip(self.profile.n_shards())
            .copied()
            .filter(|c| !in_use.contains(&Some(*c)) && !skip(*c))
            .collect();
        let cap = self.per_site_cap();
        let keeps_site_rule = |c: NodeId| {
            let site = self.site_of(c);
            in_use
                .iter()
                .flatten()
                .filter(|u| self.site_of(**u) == site)
                .count()
                < cap
        };
        candidates
            .iter()
            .copied()
            .find(|c| keeps_site_rule(*c))
            .or(candidates.first().copied())
    }

    fn site_of(&self, node: NodeId) -> Option<&SiteId> {
        self.nodes.iter().find(|s| s.id == node).map(|s| &s.site)
    }

    /// Placement's limit of shards per site: m when the cluster has enough sites, else none.
    fn per_site_cap(&self) -> usize {
        let mut sites: Vec<&SiteId> = self
            .nodes
            .iter()
            .filter(|n| n.weight > 0)
            .map(|n| &n.site)
            .collect();
        sites.sort();
        sites.dedup();
        let n = self.profile.n_shards();
        let m = self.profile.m as usize;
        if m > 0 && sites.len() * m >= n {
            m
        } else {
            n
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nodes 1..=n, node i in the given site.
    fn view(sites: &[&str], k: u8, m: u8) -> ClusterView {
        ClusterView {
            nodes: sites
                .iter()
                .enumerate()
                .map(|(i, s)| NodeSlot {
                    id: NodeId(i as u64 + 1),
                    site: SiteId(s.to_string()),
                    weight: 100,
                })
                .collect(),
            profile: ErasureProfile { k, m },
            block_size: 1 << 20,
        }
    }

    fn ids(v: &[u64]) -> Vec<NodeId> {
        v.iter().copied().map(NodeId).collect()
    }

    #[test]
    fn homes_unless_skipped_then_fallbacks_in_order() {
        let v = view(&["a", "b", "c", "d", "e"], 2, 1);
        let order = ids(&[3, 1, 5, 2, 4]);
        let none = |_| false;
        assert_eq!(
            v.shard_targets(&order, none),
            vec![Some(NodeId(3)), Some(NodeId(1)), Some(NodeId(5))]
        );
        // Home 1 is full: shard 1 goes to the first fallback, 2.
        assert_eq!(
            v.shard_targets(&order, |n| n == NodeId(1)),
            vec![Some(NodeId(3)), Some(NodeId(2)), Some(NodeId(5))]
        );
        // Homes 3 and 5 and fallback 2 are full: only 4 is left for them.
        let full = ids(&[3, 5, 2]);
        assert_eq!(
            v.shard_targets(&order, |n| full.contains(&n)),
            vec![Some(NodeId(4)), Some(NodeId(1)), None]
        );
    }

    #[test]
    fn a_fallback_in_a_new_site_comes_first() {
        // 2+1 over sites a, a, b, c (nodes 1..=4): homes 1 (a), 3 (b), 4 (c); fallback 2 is in a.
        let v = view(&["a", "a", "b", "c", "d"], 2, 1);
        let order = ids(&[1, 3, 4, 2, 5]);
        // Home 3 is full: fallback 2 would put two shards in site a; 5 (site d) comes first.
        assert_eq!(
            v.shard_targets(&order, |n| n == NodeId(3)),
            vec![Some(NodeId(1)), Some(NodeId(5)), Some(NodeId(4))]
        );
        // With 5 full too, site a's second node still beats a missing shard.
        let full = ids(&[3, 5]);
        assert_eq!(
            v.shard_targets(&order, |n| full.contains(&n)),
            vec![Some(NodeId(1)), Some(NodeId(2)), Some(NodeId(4))]
        );
    }

    #[test]
    fn three_nodes_have_no_fallback() {
        let v = view(&["a", "b", "c"], 2, 1);
        let order = v.placement(VersionId(7));
        let full = order[1];
        let targets = v.shard_targets(&order, |n| n == full);
        assert_eq!(targets[1], None);
        assert_eq!(targets.iter().flatten().count(), 2);
    }
}
