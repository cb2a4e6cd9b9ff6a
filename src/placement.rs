//! Deterministic placement of an object version's shards on nodes: rendezvous hashing of the
//! version id over the nodes, weighted by capacity, with at most m shards per site when the
//! cluster has enough sites. Pure: the same map and version always give the same answer.

use std::collections::HashMap;

use crate::types::{ErasureProfile, NodeId, SiteId, VersionId};

/// What placement needs to know about a storage node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSlot {
    pub id: NodeId,
    pub site: SiteId,
    /// Relative weight (e.g. capacity in GiB); 0 means never chosen.
    pub weight: u64,
}

/// Nodes ordered by preference for `version`: the first `k + m` (or fewer when the cluster is
/// smaller) are the shard homes, in shard order; the rest are fallbacks in order. No more than
/// `m` of the first `k + m` share a site when the cluster has at least `ceil((k+m)/m)` sites.
pub fn place(version: VersionId, nodes: &[NodeSlot], profile: ErasureProfile) -> Vec<NodeId> {
    let mut scored: Vec<(f64, &NodeSlot)> = nodes
        .iter()
        .filter(|n| n.weight > 0)
        .map(|n| (score(version, n), n))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.id.cmp(&b.1.id)));

    let n = profile.n_shards();
    let n_sites = {
        let mut sites: Vec<&SiteId> = scored.iter().map(|(_, s)| &s.site).collect();
        sites.sort();
        sites.dedup();
        sites.len()
    };
    let per_site_cap = if profile.m > 0 && n_sites * profile.m as usize >= n {
        profile.m as usize
    } else {
        n
    };

    let mut chosen: Vec<NodeId> = Vec::with_capacity(scored.len());
    let mut per_site: HashMap<&SiteId, usize> = HashMap::new();
    let mut deferred: Vec<NodeId> = Vec::new();
    for (_, slot) in &scored {
        let count = per_site.entry(&slot.site).or_default();
        if chosen.len() < n && *count >= per_site_cap {
            deferred.push(slot.id);
            continue;
        }
        *count += 1;
        chosen.push(slot.id);
    }
    chosen.extend(deferred);
    chosen
}

/// Weighted rendezvous score: -w / ln(u) with u uniform in (0,1) from a hash of (version, node).
fn score(version: VersionId, node: &NodeSlot) -> f64 {
    let mut h = blake3::Hasher::new();
    h.update(&version.0.to_le_bytes());
    h.update(&node.id.0.to_le_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_bytes()[..8]);
    let u = ((u64::from_le_bytes(first) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -(node.weight as f64) / u.ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cluster(sites: &[&str]) -> Vec<NodeSlot> {
        sites
            .iter()
            .enumerate()
            .map(|(i, s)| NodeSlot {
                id: NodeId(i as u64 + 1),
                site: SiteId(s.to_string()),
                weight: 100,
            })
            .collect()
    }

    #[test]
    fn three_sites_two_plus_one_uses_every_site() {
        let nodes = cluster(&["a", "b", "c"]);
        let p = ErasureProfile { k: 2, m: 1 };
        for v in 0..200u128 {
            let order = place(VersionId(v), &nodes, p);
            let mut first: Vec<_> = order[..3].to_vec();
            first.sort();
            assert_eq!(first, vec![NodeId(1), NodeId(2), NodeId(3)]);
        }
    }

    #[test]
    fn spread_is_even() {
        let nodes = cluster(&["a", "a", "b", "b", "c", "c"]);
        let p = ErasureProfile { k: 2, m: 1 };
        let mut counts = HashMap::new();
        for v in 0..6000u128 {
            for id in &place(VersionId(v * 7919), &nodes, p)[..3] {
                *counts.entry(*id).or_insert(0) += 1;
            }
        }
        for (_, c) in counts {
            assert!((2500..3500).contains(&c), "uneven spread: {c}");
        }
    }

    proptest! {
        #[test]
        fn at_most_m_per_site_and_stable(v in any::<u128>()) {
            let nodes = cluster(&["a", "a", "b", "b", "c", "c", "d"]);
            let p = ErasureProfile { k: 4, m: 2 };
            let order = place(VersionId(v), &nodes, p);
            prop_assert_eq!(order.len(), nodes.len());
            let mut per_site: HashMap<String, usize> = HashMap::new();
            for id in &order[..6] {
                let site = nodes.iter().find(|n| n.id == *id).map(|n| n.site.0.clone()).unwrap_or_default();
                *per_site.entry(site).or_default() += 1;
            }
            prop_assert!(per_site.values().all(|c| *c <= 2));
            prop_assert_eq!(order, place(VersionId(v), &nodes, p));
        }
    }
}
