//! The GET data path: for the blocks a byte range needs, read shard records from k nodes (data
//! shards first), verify each block's BLAKE3, and fall back to parity shards for blocks that
//! are missing or corrupt. Each read names the digest the record holds for the shard, so a node
//! refuses a file that is consistent in itself but not the one written (`shard::bound`), and
//! that shard counts as corrupt. Windows of blocks are fetched with one window of read-ahead, so
//! memory stays bounded whatever the object size.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use http::Method;

use super::{CoordError, Coordinator, SHARD_READ_TIMEOUT};
use crate::codec::shard_format::{block_hash, ShardLayout, HASH_LEN};
use crate::meta::{ObjectData, ShardDamage};
use crate::rpc::{full_body, read_body, RpcError};
use crate::shard::{is_not_bound, shard_read_path, Binding};
use crate::types::{NodeId, VersionId, READ_WINDOW_BLOCKS};

/// The blocks of one shard for one window: None where missing or corrupt.
type ShardBlocks = Vec<Option<Bytes>>;

/// One window of a read: blocks `first..end_block`, of which bytes `start..end` of the object
/// are wanted.
#[derive(Debug, Clone, Copy)]
struct Window {
    first: u64,
    end_block: u64,
    start: u64,
    end: u64,
}

/// One unit of a read: bytes held in the record, or one window of one sharded piece (an object,
/// or one part of a multipart object).
enum ReadTask {
    Inline(Bytes),
    /// A sharded piece whose record gives an impossible layout (k or block size 0: no writer
    /// makes one, a damaged metadata store could): the read fails cleanly instead of dividing
    /// by zero.
    Impossible,
    Window {
        version: VersionId,
        data: Arc<ObjectData>,
        size: u64,
        window: Window,
    },
}

/// Appends the tasks that read bytes `start..end` of one inline or sharded piece.
fn piece_tasks(
    tasks: &mut Vec<ReadTask>,
    version: VersionId,
    data: &ObjectData,
    size: u64,
    start: u64,
    end: u64,
) {
    match data {
        ObjectData::Inline(bytes) => {
            let s = (start as usize).min(bytes.len());
            let e = (end as usize).min(bytes.len()).max(s);
            if e > s {
                tasks.push(ReadTask::Inline(Bytes::copy_from_slice(&bytes[s..e])));
            }
        }
        ObjectData::Sharded { k, block_size, .. }
            if end > start && (*k == 0 || *block_size == 0) =>
        {
            tasks.push(ReadTask::Impossible);
        }
        ObjectData::Sharded { block_size, .. } if end > start => {
            let data = Arc::new(data.clone());
            let bs = *block_size as u64;
            let first = start / bs;
            let last_excl = (end - 1) / bs + 1;
            for w in (first..last_excl).step_by(READ_WINDOW_BLOCKS as usize) {
                tasks.push(ReadTask::Window {
                    version,
                    data: data.clone(),
                    size,
                    window: Window {
                        first: w,
                        end_block: (w + READ_WINDOW_BLOCKS).min(last_excl),
                        start,
                        end,
                    },
                });
            }
        }
        // Empty ranges, and `Parts` (never nested inside a part).
        _ => {}
    }
}

/// Called by a read for each shard it found missing or corrupt: (piece version, shard index,
/// what is wrong).
pub type DamageHook = Arc<dyn Fn(VersionId, u8, ShardDamage) + Send + Sync>;

impl Coordinator {
    /// Streams bytes `start..end` of an object's data. A multipart object's parts are read in
    /// order, each only over the bytes of the range it holds, with the same one-window
    /// read-ahead across part boundaries as inside a part.
    pub fn read(
        &self,
        version: VersionId,
        data: &ObjectData,
        size: u64,
        start: u64,
        end: u64,
    ) -> BoxStream<'static, Result<Bytes, CoordError>> {
        self.read_reporting(version, data, size, start, end, None)
    }

    /// [`Self::read`], telling `on_damage` about every missing or corrupt shard it meets.
    pub fn read_reporting(
        &self,
        version: VersionId,
        data: &ObjectData,
        size: u64,
        start: u64,
        end: u64,
        on_damage: Option<DamageHook>,
    ) -> BoxStream<'static, Result<Bytes, CoordError>> {
        let mut tasks = Vec::new();
        match data {
            ObjectData::Parts(parts) => {
                let mut offset = 0u64;
                for p in parts {
                    let (p_start, p_end) = (offset, offset + p.size);
                    if p_end > start && p_start < end {
                        piece_tasks(
                            &mut tasks,
                            p.version,
                            &p.data,
                            p.size,
                            start.max(p_start) - p_start,
                            end.min(p_end) - p_start,
                        );
                    }
                    offset = p_end;
                }
            }
            other => piece_tasks(&mut tasks, version, other, size, start, end),
        }
        let this = self.clone();
        // Nodes that failed to answer during this read: later windows try them last, so a dead
        // or paused node costs one timeout per read, not one per window.
        let unreachable: Arc<Mutex<HashSet<NodeId>>> = Arc::default();
        futures::stream::iter(tasks)
            .map(move |task| {
                let this = this.clone();
                let unreachable = unreachable.clone();
                let on_damage = on_damage.clone();
                async move {
                    match task {
                        ReadTask::Inline(bytes) => Ok(vec![bytes]),
                        ReadTask::Impossible => Err(CoordError::ReadUnavailable {
                            block: 0,
                            reason:
                                "the object record gives an impossible layout (k or block size 0)"
                                    .into(),
                        }),
                        ReadTask::Window {
                            version,
                            data,
                            size,
                            window,
                        } => {
                            this.read_window(
                                version,
                                &data,
                                size,
                                window,
                                &unreachable,
                                on_damage.as_ref(),
                            )
                            .await
                        }
                    }
                }
            })
            .buffered(2)
            .flat_map(|r: Result<Vec<Bytes>, CoordError>| match r {
                Ok(pieces) => futures::stream::iter(pieces.into_iter().map(Ok).collect::<Vec<_>>()),
                Err(e) => futures::stream::iter(vec![Err(e)]),
            })
            .boxed()
    }

    /// Reads blocks `first..end_block` and returns the pieces of bytes in `start..end`.
    async fn read_window(
        &self,
        version: VersionId,
        data: &ObjectData,
        size: u64,
        window: Window,
        unreachable: &Mutex<HashSet<NodeId>>,
        on_damage: Option<&DamageHook>,
    ) -> Result<Vec<Bytes>, CoordError> {
        let Window {
            first,
            end_block,
            start,
            end,
        } = window;
        let ObjectData::Sharded {
            k,
            m,
            block_size,
            shard_nodes,
            digests,
        } = data
        else {
            return Ok(Vec::new());
        };
        let k = *k as usize;
        let n = k + *m as usize;
        let layout = ShardLayout::new(k as u8, *block_size, size);
        let n_blocks = (end_block - first) as usize;

        // shards[i] = blocks of shard i in this window, once fetched.
        let mut shards: Vec<Option<ShardBlocks>> = vec![None; n];
        // Data shards first (no decoding needed), nodes that failed earlier in this read last.
        let mut ordered: Vec<(usize, NodeId)> = shard_nodes
            .iter()
            .enumerate()
            .filter_map(|(i, node)| node.map(|node| (i, node)))
            .collect();
        {
            let failed = unreachable
                .lock()
                .expect("unreachable-node set lock poisoned");
            ordered
                .sort_by_key(|(i, node)| (failed.contains(node) || self.health.avoided(*node), *i));
        }
        let mut candidates = ordered.into_iter();
        let mut batch: Vec<(usize, NodeId)> = candidates.by_ref().take(k).collect();
        loop {
            let fetched = futures::future::join_all(batch.iter().map(|&(i, node)| {
                let binding = digests.get(i).map(|digest| Binding {
                    digest,
                    object_size: size,
                });
                self.fetch_shard_blocks(
                    version, i, node, layout, binding, first, end_block, on_damage,
                )
            }))
            .await;
            for (&(i, node), (blocks, reachable)) in batch.iter().zip(fetched) {
                if !reachable {
                    unreachable
                        .lock()
                        .expect("unreachable-node set lock poisoned")
                        .insert(node);
                }
                shards[i] = Some(blocks);
            }
            // The fewest good shards any block of the window has.
            let worst = (0..n_blocks)
                .map(|b| shards.iter().flatten().filter(|s| s[b].is_some()).count())
                .min()
                .unwrap_or(k);
            if worst >= k {
                break;
            }
            batch = candidates.by_ref().take(k - worst).collect();
            if batch.is_empty() {
                let block = (0..n_blocks)
                    .find(|&b| shards.iter().flatten().filter(|s| s[b].is_some()).count() < k)
                    .unwrap_or(0) as u64
                    + first;
                return Err(CoordError::ReadUnavailable {
                    block,
                    reason: "not enough intact shards reachable".into(),
                });
            }
        }

        let mut pieces = Vec::new();
        for b in 0..n_blocks {
            let block_index = first + b as u64;
            let block_len = layout.block_len(block_index) as usize;
            let block_start = block_index * layout.block_size;
            let want_start = start.max(block_start) - block_start;
            let want_end = end.min(block_start + block_len as u64) - block_start;
            let data_present = (0..k).all(|i| shards[i].as_ref().is_some_and(|s| s[b].is_some()));
            if data_present {
                // Fast path: the data shards are the block; hand out slices, no copy.
                let shard_len = layout.shard_len(block_index);
                for i in 0..k {
                    let s_start = i as u64 * shard_len;
                    let s_end = (s_start + shard_len).min(block_len as u64);
                    let lo = want_start.max(s_start);
                    let hi = want_end.min(s_end);
                    if lo < hi {
                        if let Some(Some(Some(shard))) =
                            shards.get(i).map(|s| s.as_ref().map(|s| s[b].clone()))
                        {
                            pieces.push(
                                shard.slice((lo - s_start) as usize..(hi - s_start) as usize),
                            );
                        }
                    }
                }
            } else {
                let input: Vec<Option<Bytes>> = (0..n)
                    .map(|i| shards[i].as_ref().and_then(|s| s[b].clone()))
                    .collect();
                let block = self.erasure.decode(input, block_len)?;
                pieces.push(block.slice(want_start as usize..want_end as usize));
            }
        }
        Ok(pieces)
    }

    /// Fetches and verifies shard `i`'s records of blocks `first..end_block` from `node`.
    /// Unreachable nodes and corrupt blocks come back as None (corruption is logged); the flag
    /// says whether the node answered at all.
    #[allow(clippy::too_many_arguments)]
    async fn fetch_shard_blocks(
        &self,
        version: VersionId,
        i: usize,
        node: NodeId,
        layout: ShardLayout,
        binding: Option<Binding>,
        first: u64,
        end_block: u64,
        on_damage: Option<&DamageHook>,
    ) -> (ShardBlocks, bool) {
        let n_blocks = (end_block - first) as usize;
        let (lo, hi) = layout.records_range(first, end_block);
        let path = shard_read_path(version, i as u8, lo, hi - lo, binding);
        let fetched = async {
            let resp = self
                .rpc
                .request(
                    node,
                    Method::GET,
                    &path,
                    full_body(Bytes::new()),
                    SHARD_READ_TIMEOUT,
                )
                .await?;
            read_body(resp.into_body(), (hi - lo) as usize + 1).await
        };
        let bytes = match tokio::time::timeout(SHARD_READ_TIMEOUT, fetched).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) if is_not_bound(&e) => {
                tracing::warn!(%version, shard = i, %node, "shard file does not match its record (replaced on disk?); reconstructing from other shards");
                if let Some(report) = on_damage {
                    report(version, i as u8, ShardDamage::Corrupt);
                }
                return (vec![None; n_blocks], true);
            }
            Ok(Err(e)) => {
                tracing::warn!(%version, shard = i, %node, error = %e, "shard read failed; using other shards");
                if matches!(e, RpcError::Status { status: 404, .. }) {
                    if let Some(report) = on_damage {
                        report(version, i as u8, ShardDamage::Missing);
                    }
                }
                self.health.observe(node, &e);
                return (vec![None; n_blocks], false);
            }
            Err(_) => {
                tracing::warn!(%version, shard = i, %node, "shard read timed out; using other shards");
                self.health.mark(node, "shard read timed out");
                return (vec![None; n_blocks], false);
            }
        };
        let mut out = Vec::with_capacity(n_blocks);
        let mut corrupt = false;
        for b in first..end_block {
            let off = (layout.record_offset(b) - lo) as usize;
            let len = layout.shard_len(b) as usize;
            let record = bytes.get(off..off + len + HASH_LEN as usize);
            let verified = record.and_then(|r| {
                let (data, hash) = r.split_at(len);
                (block_hash(data) == hash).then(|| bytes.slice(off..off + len))
            });
            if verified.is_none() {
                tracing::warn!(%version, shard = i, %node, block = b, "corrupt or short shard block detected (BLAKE3 mismatch); reconstructing from other shards");
                corrupt = true;
            }
            out.push(verified);
        }
        if let (true, Some(report)) = (corrupt, on_damage) {
            report(version, i as u8, ShardDamage::Corrupt);
        }
        (out, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record with k = 0 or a block size of 0 (no writer makes one) is a failed read, not a
    /// division by zero.
    #[test]
    fn impossible_layouts_make_a_failing_task() {
        for (k, block_size) in [(0, 1024), (2, 0)] {
            let data = ObjectData::Sharded {
                k,
                m: 1,
                block_size,
                shard_nodes: vec![None; 3],
                digests: Default::default(),
            };
            let mut tasks = Vec::new();
            piece_tasks(&mut tasks, VersionId(1), &data, 5000, 0, 5000);
            assert!(matches!(tasks.as_slice(), [ReadTask::Impossible]));
        }
    }
}
