//! The retire worker: frees the shards of data that committed commands unlinked (overwritten
//! and deleted objects, replaced, left-out and aborted parts). The state machine queues that
//! data durably with the commit ([`crate::meta::garbage`]); this worker, running on every
//! storage node but acting only on the metadata leader, deletes each queued entry's shards
//! once the grace period has passed (so a GET that resolved the old record just before can
//! finish) and it has not been read for a read lease ([`crate::shard::READ_LEASE`]: a GET
//! still streaming it keeps it), then reports its progress through Raft. Restarts and leader changes lose nothing:
//! the new leader picks the queue up where it stands, and deleting a deleted shard is a no-op.

use std::time::Duration;

use futures::future::join_all;
use tracing::{debug, info};

use crate::meta::request::RetireProgress;
use crate::meta::{GarbageId, GarbageRecord, MetaNode, Write, WriteReply};
use crate::rpc::{unix_now_ms as now_ms, RpcClient};
use crate::shard::{delete_shard_if_idle, READ_LEASE};
use crate::worker::{Round, Worker};

/// Default time the shards of a replaced or deleted object version are kept, so that reads
/// which started before the replacement (on any gateway) can finish.
pub const DEFAULT_RETIRED_DATA_GRACE: Duration = Duration::from_secs(60);
/// How often the worker looks at the queue.
pub const RETIRE_INTERVAL: Duration = Duration::from_millis(500);
/// Queue entries handled per round at most.
const ENTRIES_PER_ROUND: usize = 128;

/// The retire worker, driven by [`crate::worker::run`] every [`RETIRE_INTERVAL`].
pub struct Retire {
    pub rpc: RpcClient,
    /// How long unlinked data stays readable.
    pub grace: Duration,
}

#[async_trait::async_trait]
impl Worker for Retire {
    fn name(&self) -> &'static str {
        "retire"
    }

    async fn round(&mut self, meta: &MetaNode) -> Result<Round, String> {
        let n = round(meta, &self.rpc, self.grace).await?;
        if n > 0 {
            debug!(entries = n, "retired data freed");
        }
        Ok(if n >= ENTRIES_PER_ROUND {
            Round::More
        } else {
            Round::Idle
        })
    }
}

/// One round: frees what is due, reports it; the number of entries handled.
async fn round(meta: &MetaNode, rpc: &RpcClient, grace: Duration) -> Result<usize, String> {
    let now = now_ms();
    let before = now.saturating_sub(grace.as_millis() as i64);
    let due = meta
        .due_garbage(before, ENTRIES_PER_ROUND)
        .map_err(|e| e.to_string())?;
    if due.is_empty() {
        return Ok(0);
    }
    let outcomes = join_all(due.iter().map(|r| free(rpc, r))).await;
    let mut done = Vec::new();
    let mut retry = Vec::new();
    for (record, left) in due.iter().zip(outcomes) {
        if left.iter().all(Option::is_none) {
            done.push(record.id);
        } else {
            // Some nodes could not be reached: try those again after another grace.
            retry.push((
                record.id,
                GarbageRecord {
                    id: GarbageId {
                        retired_ms: now,
                        version: record.id.version,
                    },
                    shard_nodes: left,
                },
            ));
        }
    }
    let n = done.len() + retry.len();
    if !retry.is_empty() {
        info!(
            entries = retry.len(),
            "some retired shards could not be deleted; retrying later"
        );
    }
    let write = Write {
        id: None,
        cmd: RetireProgress { done, retry }.into(),
    };
    match meta.write(write).await {
        WriteReply::Ok(_) => Ok(n),
        WriteReply::NotLeader { .. } => Ok(0),
        WriteReply::Failed(e) => Err(e),
    }
}

/// Deletes every shard of `record`; the shards that are left (by index).
async fn free(rpc: &RpcClient, record: &GarbageRecord) -> Vec<Option<crate::types::NodeId>> {
    let version = record.id.version;
    let attempts = record
        .shard_nodes
        .iter()
        .enumerate()
        .map(|(i, node)| async move {
            let node = (*node)?;
            match delete_shard_if_idle(rpc, node, version, i as u8, READ_LEASE).await {
                Ok(true) => None,
                Ok(false) => {
                    debug!(%version, shard = i, %node, "retired shard still being read; kept");
                    Some(node)
                }
                Err(e) => {
                    debug!(%version, shard = i, %node, error = %e, "retired shard not deleted yet");
                    Some(node)
                }
            }
        });
    join_all(attempts).await
}
