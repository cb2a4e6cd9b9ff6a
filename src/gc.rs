//! The garbage collector of shard files that no record references: shards of a write whose
//! commit failed or whose outcome was unknown (the gateway keeps those), of a shard stream cut
//! off after its node committed the file, of a failed commit whose delete did not reach the
//! node. Data that a committed command unlinks is not this module's: the retire queue frees it
//! ([`crate::retire`]), and the collector leaves every version the queue names alone.
//!
//! Runs on every storage node, acts only on the metadata leader. Each round pages through
//! every storage node's committed shard files older than `min_age` ([`list_old_shards`]), and
//! for each page, in this order:
//! 1. the listing (the candidates), then
//! 2. the leader's state machine, after confirming leadership and applying everything
//!    committed so far ([`MetaNode::referenced_versions`]), then
//! 3. deletes the candidates no record names.
//!
//! Why that is safe against writes in flight: a write's shard files are complete (last
//! modified) before its record is committed, and the commit follows within the coordinator's
//! timeouts (seconds). A file older than `min_age` (default 1 h) when listed belongs to a write
//! that committed before the listing — then step 2 sees its record — or will never commit.
//! Deleting a file a record names never happens: the check is by version, and a version the
//! retire queue holds counts as referenced.
//!
//! Bounded: [`PAGE_SHARDS`] names per page, [`PAGES_PER_NODE_PER_ROUND`] pages per node per
//! round (the walk resumes where it stopped in the next round), deletes paced by
//! [`DELETE_PACING`]. A node that does not answer is skipped until the next round. Nothing is
//! persisted: a new leader starts its walks from the beginning.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use tracing::{debug, info, warn};

use crate::meta::MetaNode;
use crate::rpc::RpcClient;
use crate::shard::{delete_shard, list_old_shards, ShardName};
use crate::types::{NodeId, VersionId};
use crate::worker::{Round, Worker};

/// Default time between two rounds.
pub const DEFAULT_GC_INTERVAL: Duration = Duration::from_secs(6 * 60 * 60);
/// Default age a shard file must have reached before the collector may delete it.
pub const DEFAULT_GC_MIN_AGE: Duration = Duration::from_secs(60 * 60);
/// Below this minimum age, writes in flight could lose shards (the coordinator's shard commit
/// timeout is 30 s, a metadata write's 15 s): a setting for tests only, warned about.
pub const SAFE_GC_MIN_AGE: Duration = Duration::from_secs(5 * 60);
/// Shard names asked for per listing page (one metadata scan each).
pub const PAGE_SHARDS: usize = 20_000;
/// Pages read per node in one round at most.
pub const PAGES_PER_NODE_PER_ROUND: usize = 50;
/// Pause between two deletes (at most ~200 deletes a second).
pub const DELETE_PACING: Duration = Duration::from_millis(5);
/// Longest wait for the leader's reference scan of one page (leadership check included).
const SCAN_TIMEOUT: Duration = Duration::from_secs(120);

const _: () = assert!(PAGE_SHARDS <= crate::shard::MAX_LIST_PAGE_SHARDS);

/// When the collector runs and what it may delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcConfig {
    /// Time between rounds.
    pub interval: Duration,
    /// Shard files younger than this are never deleted.
    pub min_age: Duration,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            interval: DEFAULT_GC_INTERVAL,
            min_age: DEFAULT_GC_MIN_AGE,
        }
    }
}

/// What one round did, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct RoundSummary {
    /// Nodes whose listing answered.
    nodes: usize,
    /// Nodes skipped (listing or deletes failed).
    skipped: usize,
    /// Old shard files looked at.
    scanned: usize,
    /// Unreferenced shard files deleted.
    deleted: usize,
    /// Old shard files kept because a record names their version.
    kept: usize,
}

/// Where each node's walk stands: after this name, or from the start.
type Cursors = BTreeMap<NodeId, Option<ShardName>>;

/// The garbage collector, driven by [`crate::worker::run`] every `interval` (first after one
/// interval).
pub struct Gc {
    rpc: RpcClient,
    min_age: Duration,
    cursors: Cursors,
}

impl Gc {
    /// `nodes`: every storage node of the cluster.
    pub fn new(rpc: RpcClient, nodes: Vec<NodeId>, cfg: GcConfig) -> Self {
        if cfg.min_age < SAFE_GC_MIN_AGE {
            warn!(
                min_age_secs = cfg.min_age.as_secs(),
                "gc_min_age is below the write timeouts: the garbage collector may delete shards of writes in flight (a test setting)"
            );
        }
        Gc {
            rpc,
            min_age: cfg.min_age,
            cursors: nodes.iter().map(|n| (*n, None)).collect(),
        }
    }
}

#[async_trait::async_trait]
impl Worker for Gc {
    fn name(&self) -> &'static str {
        "gc"
    }

    async fn round(&mut self, meta: &MetaNode) -> Result<Round, String> {
        let summary = round(meta, &self.rpc, self.min_age, &mut self.cursors).await;
        info!(
            nodes = summary.nodes,
            skipped = summary.skipped,
            scanned = summary.scanned,
            deleted = summary.deleted,
            kept = summary.kept,
            "garbage collection round done"
        );
        Ok(Round::Idle)
    }

    fn lost_leadership(&mut self) {
        // A later leader walks from the start; stale cursors would only skip files.
        self.cursors.values_mut().for_each(|c| *c = None);
    }
}

/// One round over every node, from where each node's walk stands.
async fn round(
    meta: &MetaNode,
    rpc: &RpcClient,
    min_age: Duration,
    cursors: &mut Cursors,
) -> RoundSummary {
    let mut summary = RoundSummary::default();
    for (node, cursor) in cursors.iter_mut() {
        match collect_node(meta, rpc, *node, min_age, cursor, &mut summary).await {
            Ok(()) => summary.nodes += 1,
            Err(e) => {
                summary.skipped += 1;
                warn!(%node, error = %e, "garbage collection skipped a node this round");
            }
        }
        if !meta.is_leader() {
            break;
        }
    }
    summary
}

/// Up to [`PAGES_PER_NODE_PER_ROUND`] pages of `node`'s walk; the walk restarts from the
/// beginning in the next round once it reached the end.
async fn collect_node(
    meta: &MetaNode,
    rpc: &RpcClient,
    node: NodeId,
    min_age: Duration,
    cursor: &mut Option<ShardName>,
    summary: &mut RoundSummary,
) -> Result<(), String> {
    for _ in 0..PAGES_PER_NODE_PER_ROUND {
        // 1. The listing: only files older than min_age, so only writes that are over.
        let page = list_old_shards(rpc, node, min_age, *cursor, PAGE_SHARDS)
            .await
            .map_err(|e| format!("listing: {e}"))?;
        // 2. Then the records, read after the listing.
        let candidates: HashSet<VersionId> = page.shards.iter().map(|s| s.version).collect();
        let referenced = if candidates.is_empty() {
            HashSet::new()
        } else {
            tokio::time::timeout(SCAN_TIMEOUT, meta.referenced_versions(candidates))
                .await
                .map_err(|_| "reference scan timed out".to_string())?
                .map_err(|e| format!("reference scan: {e}"))?
        };
        // 3. Then the deletes.
        summary.scanned += page.shards.len();
        let orphans = orphans(&page.shards, &referenced);
        summary.kept += page.shards.len() - orphans.len();
        for (i, shard) in orphans.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(DELETE_PACING).await;
            }
            delete_shard(rpc, node, shard.version, shard.shard_index)
                .await
                .map_err(|e| format!("deleting {shard}: {e}"))?;
            debug!(%node, %shard, "unreferenced shard file deleted");
            summary.deleted += 1;
        }
        *cursor = page.next_after;
        if cursor.is_none() {
            break;
        }
    }
    Ok(())
}

/// The shards of `listed` whose version no record names.
fn orphans(listed: &[ShardName], referenced: &HashSet<VersionId>) -> Vec<ShardName> {
    listed
        .iter()
        .filter(|s| !referenced.contains(&s.version))
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unreferenced_versions_are_orphans() {
        let shard = |v: u128, i: u8| ShardName {
            version: VersionId(v),
            shard_index: i,
        };
        let listed = [shard(1, 0), shard(1, 2), shard(2, 1), shard(3, 0)];
        let referenced = HashSet::from([VersionId(1), VersionId(3)]);
        assert_eq!(orphans(&listed, &referenced), vec![shard(2, 1)]);
        assert!(orphans(
            &listed,
            &HashSet::from([VersionId(1), VersionId(2), VersionId(3)])
        )
        .is_empty());
    }
}
