//! The PUT data path: stream the body, cut it into blocks, erasure-code each block and stream
//! shard `i` of every block to its node, all nodes in parallel with bounded queues.
//!
//! Durability: the outcome is returned only after at least the write quorum of nodes answered
//! that their shard file is durable (fsync + rename). The quorum is k + 1 when m > 0, lowered
//! to k (a degraded write, logged) when fewer nodes are reachable; below k the write fails and
//! written shards are deleted.
//!
//! Space: a node out of space refuses its shard with `507` (before reading the body when it
//! can). The shard then goes to the next fallback node where the cluster has one (resent whole
//! while it is at most [`FALLBACK_REPLAY_BLOCKS`] blocks long), else it is missing like a dead
//! node's; the node is skipped by new writes for a while ([`super::full`]). When fewer than k
//! shards can be placed because nodes are full, the write fails with `StorageFull`.
//!
//! Failures: a shard whose node dies, stalls or errors mid-write moves to a fallback the same
//! way while it is short enough to resend. A shard that could go nowhere is `None` in the
//! record, and the commit queues the piece for healing ([`crate::meta::repair`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::channel::mpsc;
use futures::{SinkExt, Stream, StreamExt};
use http::Method;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

use super::{
    CoordError, Coordinator, SHARD_COMMIT_TIMEOUT, SHARD_QUEUE_CHUNKS, SHARD_SEND_TIMEOUT,
};
use crate::codec::shard_format::{block_hash, DigestBuilder, ShardDigests, ShardHeader};
use crate::meta::ObjectData;
use crate::rpc::RpcError;
use crate::shard::{is_disk_full, shard_path_and_query};
use crate::types::{NodeId, VersionId, INLINE_THRESHOLD_BYTES, MAX_OBJECT_SIZE_BYTES};

/// What a write produced: the size and where the bytes are.
#[derive(Debug)]
pub struct WriteOutcome {
    pub size: u64,
    pub data: ObjectData,
}

type ShardSender = mpsc::Sender<Result<Bytes, std::io::Error>>;

/// Shard blocks kept per shard to resend it whole to a fallback node when its node refuses it
/// for lack of space. Nodes refuse right after the header, but the gateway streams meanwhile,
/// so a few blocks may be out by then; an object of at most this many blocks moves even when the
/// refusal comes at the end. Bounds the extra memory per PUT to this many blocks of shards.
pub const FALLBACK_REPLAY_BLOCKS: usize = 4;
/// How long a shard writer whose stream the node closed waits for the node's answer (which
/// says whether it refused the shard for lack of space); it is on its way by then.
const CLOSED_STREAM_ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// One shard's stream to its node.
pub(super) struct ShardWriter {
    pub(super) node: NodeId,
    /// None once the body is complete, or once the writer was dropped (then `failed`).
    pub(super) tx: Option<ShardSender>,
    failed: bool,
    /// Set just before a complete body is closed. A body that ends without it ends with an
    /// error instead, so the node discards the partial shard rather than committing it.
    pub(super) complete: Arc<AtomicBool>,
    /// The node's answer while it has not been taken into `answer`.
    response: Option<tokio::task::JoinHandle<Result<(), RpcError>>>,
    answer: Option<Result<(), RpcError>>,
    /// Everything this shard's stream carried so far (header, then each block's shard bytes and
    /// hash), while it is at most `FALLBACK_REPLAY_BLOCKS` blocks long.
    replay: Option<Vec<Bytes>>,
}

impl ShardWriter {
    /// Takes the node's answer if it has come.
    async fn poll_answer(&mut self) {
        if self.response.as_ref().is_some_and(|h| h.is_finished()) {
            self.wait_answer(CLOSED_STREAM_ANSWER_TIMEOUT).await;
        }
    }

    /// Waits up to `timeout` for the node's answer; false if it did not come.
    pub(super) async fn wait_answer(&mut self, timeout: std::time::Duration) -> bool {
        let Some(h) = self.response.as_mut() else {
            return self.answer.is_some();
        };
        match tokio::time::timeout(timeout, h).await {
            Ok(joined) => {
                self.response = None;
                self.answer = Some(joined.unwrap_or_else(|e| {
                    Err(RpcError::Body(format!("shard writer task failed: {e}")))
                }));
                true
            }
            Err(_) => false,
        }
    }

    /// The node answered that it has no space for the shard.
    fn refused_full(&self) -> bool {
        matches!(&self.answer, Some(Err(e)) if is_disk_full(e))
    }

    pub(super) fn durable(&self) -> bool {
        matches!(self.answer, Some(Ok(())))
    }

    /// Stops streaming and waiting (a dropped sender without `complete` discards the shard).
    pub(super) fn drop_stream(&mut self) {
        self.tx = None;
        self.failed = true;
        if let Some(h) = self.response.take() {
            h.abort();
        }
    }
}

/// The shard writers of one object version.
struct ShardWriters {
    version: VersionId,
    /// Placement order: the k + m shard homes, then fallbacks.
    order: Vec<NodeId>,
    /// By shard index; None when no node could take the shard.
    slots: Vec<Option<ShardWriter>>,
    /// Shards that lost their node to a full disk and found no other.
    lost_to_full: usize,
    blocks_sent: usize,
    /// Every shard's digest so far, by shard index (shards placed nowhere too: the record
    /// holds the digest a rebuilt shard must have).
    digests: Vec<DigestBuilder>,
}

impl ShardWriters {
    fn nodes_in_use(&self) -> Vec<Option<NodeId>> {
        self.slots
            .iter()
            .map(|w| w.as_ref().map(|w| w.node))
            .collect()
    }

    fn streaming(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .filter(|w| w.tx.is_some())
            .count()
    }
}

impl Coordinator {
    /// Writes the bytes of `body` as object version `version`. Small bodies come back inline.
    pub async fn write<S, E>(&self, version: VersionId, body: S) -> Result<WriteOutcome, CoordError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let block_size = self.cluster.block_size as usize;
        let mut body = body;
        let mut block = BytesMut::with_capacity(block_size);
        let mut size: u64 = 0;
        let mut writers: Option<ShardWriters> = None;

        let result = async {
            while let Some(chunk) = body.next().await {
                let mut chunk = chunk.map_err(|e| CoordError::Body(e.to_string()))?;
                size += chunk.len() as u64;
                if size > MAX_OBJECT_SIZE_BYTES {
                    return Err(CoordError::TooLarge {
                        limit: MAX_OBJECT_SIZE_BYTES,
                    });
                }
                while !chunk.is_empty() {
                    let take = (block_size - block.len()).min(chunk.len());
                    block.extend_from_slice(&chunk.split_to(take));
                    if block.len() == block_size {
                        let ws = match writers.as_mut() {
                            Some(ws) => ws,
                            None => writers.insert(self.open_writers(version)?),
                        };
                        self.send_block(ws, block.split().freeze()).await?;
                    }
                }
            }
            if writers.is_none() && size <= INLINE_THRESHOLD_BYTES {
                return Ok(None);
            }
            let mut ws = match writers.take() {
                Some(ws) => ws,
                None => self.open_writers(version)?,
            };
            if !block.is_empty() {
                self.send_block(&mut ws, block.split().freeze()).await?;
            }
            Ok(Some(ws))
        }
        .await;

        match result {
            Ok(None) => Ok(WriteOutcome {
                size,
                data: ObjectData::Inline(block.to_vec()),
            }),
            Ok(Some(ws)) => self.finish(size, ws).await,
            Err(e) => {
                if let Some(ws) = writers {
                    self.abort(ws);
                }
                Err(e)
            }
        }
    }

    /// Starts a writer for each shard, on its home or, for homes known to be full, a fallback.
    fn open_writers(&self, version: VersionId) -> Result<ShardWriters, CoordError> {
        let n = self.cluster.profile.n_shards();
        let k = self.cluster.profile.k as usize;
        let order = self.cluster.placement(version);
        if order.len() < n {
            return Err(CoordError::ClusterTooSmall {
                have: order.len(),
                need: n,
            });
        }
        // Nodes that do not answer are avoided too, unless that leaves fewer than k shards:
        // then they are tried (they may be back), and only full nodes are left out.
        let mut targets = self.cluster.shard_targets(&order, |node| {
            self.full_nodes.contains(node) || self.health.avoided(node)
        });
        if targets.iter().flatten().count() < k {
            targets = self
                .cluster
                .shard_targets(&order, |node| self.full_nodes.contains(node));
        }
        let placed = targets.iter().flatten().count();
        if placed < k {
            return Err(CoordError::StorageFull {
                ok: placed,
                need: k,
            });
        }
        let slots = targets
            .into_iter()
            .enumerate()
            .map(|(i, node)| {
                let header = self.shard_header(version, i).encode();
                node.map(|node| self.start_shard(version, i, node, vec![header]))
            })
            .collect();
        Ok(ShardWriters {
            version,
            order,
            slots,
            lost_to_full: n - placed,
            blocks_sent: 0,
            digests: (0..n)
                .map(|i| DigestBuilder::new(version, i as u8))
                .collect(),
        })
    }

    pub(super) fn shard_header(&self, version: VersionId, index: usize) -> ShardHeader {
        ShardHeader {
            profile: self.cluster.profile,
            shard_index: index as u8,
            block_size: self.cluster.block_size,
            version,
        }
    }

    /// Starts streaming shard `index` to `node`, beginning with `sent` (at least the header).
    pub(super) fn start_shard(
        &self,
        version: VersionId,
        index: usize,
        node: NodeId,
        sent: Vec<Bytes>,
    ) -> ShardWriter {
        let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(SHARD_QUEUE_CHUNKS);
        let complete = Arc::new(AtomicBool::new(false));
        let complete_at_end = complete.clone();
        let tail = futures::stream::once(async move {
            (!complete_at_end.load(Ordering::Acquire))
                .then(|| Err(std::io::Error::other("shard write abandoned")))
        })
        .filter_map(futures::future::ready);
        let head = futures::stream::iter(sent.clone().into_iter().map(Ok));
        let body = BodyExt::boxed(StreamBody::new(
            head.chain(rx).chain(tail).map(|r| r.map(Frame::data)),
        ));
        let rpc = self.rpc.clone();
        let path = shard_path_and_query(version, index as u8, None);
        let response = tokio::spawn(crate::rpc::trace::carry(async move {
            // The call ends when the node has made the shard durable (or refused it); sends
            // are bounded separately by SHARD_SEND_TIMEOUT, the final answer by
            // SHARD_COMMIT_TIMEOUT.
            rpc.request(
                node,
                Method::PUT,
                &path,
                body,
                std::time::Duration::from_secs(24 * 3600),
            )
            .await
            .map(|_| ())
        }));
        ShardWriter {
            node,
            tx: Some(tx),
            failed: false,
            complete,
            response: Some(response),
            answer: None,
            replay: Some(sent),
        }
    }

    async fn send_block(&self, ws: &mut ShardWriters, block: Bytes) -> Result<(), CoordError> {
        self.move_refused_shards(ws).await;
        let shards = self.erasure.encode(block);
        ws.blocks_sent += 1;
        let keep_for_replay = ws.blocks_sent <= FALLBACK_REPLAY_BLOCKS;
        let hashes: Vec<[u8; 32]> = shards.iter().map(|s| block_hash(s)).collect();
        for (digest, hash) in ws.digests.iter_mut().zip(&hashes) {
            digest.block(hash);
        }
        let sends = ws.slots.iter_mut().zip(shards).zip(hashes).map(|((slot, shard), hash)| async move {
            let Some(w) = slot.as_mut() else { return };
            let hash = Bytes::copy_from_slice(&hash);
            if keep_for_replay {
                if let Some(replay) = w.replay.as_mut() {
                    replay.push(shard.clone());
                    replay.push(hash.clone());
                }
            } else {
                w.replay = None;
            }
            let Some(tx) = w.tx.as_mut() else { return };
            let sent = tokio::time::timeout(SHARD_SEND_TIMEOUT, async {
                tx.send(Ok(shard)).await?;
                tx.send(Ok(hash)).await
            })
            .await;
            match sent {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    // The stream was closed: the node answered early (a refusal) or is gone.
                    w.tx = None;
                    w.failed = true;
                    w.wait_answer(CLOSED_STREAM_ANSWER_TIMEOUT).await;
                    if !w.refused_full() {
                        tracing::warn!(node = %w.node, answer = ?w.answer, "shard writer failed; continuing without it");
                    }
                    if let Some(Err(e)) = &w.answer {
                        self.health.observe(w.node, e);
                    }
                }
                Err(_) => {
                    tracing::warn!(node = %w.node, "shard writer stalled; continuing without it");
                    self.health.mark(w.node, "shard send stalled");
                    w.tx = None;
                    w.failed = true;
                }
            }
        });
        futures::future::join_all(sends).await;
        self.move_refused_shards(ws).await;
        let alive = ws.streaming();
        if alive < self.cluster.profile.k as usize {
            return Err(self.too_few_shards(ws, alive));
        }
        Ok(())
    }

    /// Moves the shards whose nodes refused them for lack of space, or failed them (a dead,
    /// stalled or erroring node), to fallback nodes, resending what was sent, where the cluster
    /// has a fallback and the shard is still short enough to resend; a full node's shard that
    /// cannot move is given up, a failed node's stays failed (missing from the record, so
    /// queued for healing with the commit). Returns whether any moved.
    async fn move_refused_shards(&self, ws: &mut ShardWriters) -> bool {
        let mut moved = false;
        for i in 0..ws.slots.len() {
            let Some(w) = ws.slots[i].as_mut() else {
                continue;
            };
            w.poll_answer().await;
            let full = w.refused_full();
            let failed =
                !full && !w.durable() && (w.failed || w.answer.is_some()) && w.replay.is_some();
            if !full && !failed {
                continue;
            }
            let (from, replay) = (w.node, w.replay.take());
            w.drop_stream();
            if full {
                self.full_nodes.mark(from);
            }
            let mut in_use = ws.nodes_in_use();
            in_use[i] = None;
            let fallback = replay.and_then(|replay| {
                let node = self.cluster.fallback(&ws.order, &in_use, |n| {
                    n == from || self.full_nodes.contains(n) || self.health.avoided(n)
                })?;
                Some((node, replay))
            });
            match fallback {
                Some((node, replay)) => {
                    let why = if full { "out of space" } else { "failed" };
                    tracing::info!(version = %ws.version, shard = i, node = %from, fallback = %node, why, "shard moved to a fallback node");
                    ws.slots[i] = Some(self.start_shard(ws.version, i, node, replay));
                    moved = true;
                }
                None if full => {
                    ws.slots[i] = None;
                    ws.lost_to_full += 1;
                }
                // A failed shard with nowhere to go stays as it is: missing from the record.
                None => {}
            }
        }
        moved
    }

    /// The error of a write left with `ok` shards, fewer than k.
    fn too_few_shards(&self, ws: &ShardWriters, ok: usize) -> CoordError {
        let need = self.cluster.profile.k as usize;
        if ok + ws.lost_to_full >= need {
            CoordError::StorageFull { ok, need }
        } else {
            CoordError::WriteQuorum { ok, need }
        }
    }

    async fn finish(&self, size: u64, mut ws: ShardWriters) -> Result<WriteOutcome, CoordError> {
        let profile = self.cluster.profile;
        let version = ws.version;
        // A shard moved to a fallback at the end is streamed whole again: close and wait anew
        // (a bounded number of times: fallbacks that fail too could take turns forever).
        for _ in 0..=ws.order.len() {
            for w in ws.slots.iter_mut().flatten() {
                if let Some(mut tx) = w.tx.take() {
                    w.complete.store(true, Ordering::Release);
                    let _ = tx.close().await;
                }
            }
            let waits = ws.slots.iter_mut().flatten().map(|w| async move {
                if w.failed {
                    // Dropped mid-stream (dead or stalled node): its shard is incomplete; take
                    // its answer only if it came (a refusal), do not wait.
                    w.poll_answer().await;
                } else if !w.wait_answer(SHARD_COMMIT_TIMEOUT).await {
                    tracing::warn!(%version, node = %w.node, "shard not durable within the commit timeout");
                    self.health.mark(w.node, "shard commit timed out");
                    w.failed = true;
                } else if let Some(Err(e)) = &w.answer {
                    self.health.observe(w.node, e);
                }
            });
            futures::future::join_all(waits).await;
            if !self.move_refused_shards(&mut ws).await {
                break;
            }
        }
        let mut shard_nodes = Vec::with_capacity(ws.slots.len());
        for (i, slot) in ws.slots.iter_mut().enumerate() {
            let Some(w) = slot.as_mut() else {
                shard_nodes.push(None);
                continue;
            };
            if w.durable() {
                shard_nodes.push(Some(w.node));
                continue;
            }
            if !w.failed {
                tracing::warn!(%version, shard = i, node = %w.node, answer = ?w.answer, "shard not written");
            }
            w.drop_stream();
            shard_nodes.push(None);
        }
        let ok = shard_nodes.iter().flatten().count();
        let data = ObjectData::Sharded {
            k: profile.k,
            m: profile.m,
            block_size: self.cluster.block_size,
            shard_nodes,
            digests: ShardDigests::new(ws.digests.iter().map(DigestBuilder::finish)),
        };
        if ok < profile.k as usize {
            self.delete_shards_in_background(version, &data);
            return Err(self.too_few_shards(&ws, ok));
        }
        if ok < profile.n_shards() {
            tracing::warn!(%version, ok, n = profile.n_shards(), "degraded write: accepted with fewer shards than k+m");
        }
        Ok(WriteOutcome { size, data })
    }

    fn abort(&self, ws: ShardWriters) {
        let mut shard_nodes = Vec::with_capacity(ws.slots.len());
        for slot in ws.slots {
            // Dropping the sender without `complete` ends the body with an error, so the node
            // discards its temp file instead of committing a partial shard.
            shard_nodes.push(slot.map(|mut w| {
                w.drop_stream();
                w.node
            }));
        }
        let profile = self.cluster.profile;
        let data = ObjectData::Sharded {
            k: profile.k,
            m: profile.m,
            block_size: self.cluster.block_size,
            shard_nodes,
            digests: ShardDigests::default(),
        };
        self.delete_shards_in_background(ws.version, &data);
    }
}
