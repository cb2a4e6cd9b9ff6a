//! The PUT data path: stream the body, cut it into blocks, erasure-code each block and stream
//! shard `i` of every block to its node, all nodes in parallel with bounded queues.
//!
//! Durability: the outcome is returned only after at least the write quorum of nodes answered
//! that their shard file is durable (fsync + rename). The quorum is k + 1 when m > 0, lowered
//! to k (a degraded write, logged) when fewer nodes are reachable; below k the write fails and
//! written shards are deleted.

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
use crate::codec::shard_format::{block_hash, ShardHeader};
use crate::meta::ObjectData;
use crate::rpc::RpcError;
use crate::shard::shard_path_and_query;
use crate::types::{NodeId, VersionId, INLINE_THRESHOLD_BYTES, MAX_OBJECT_SIZE_BYTES};

/// What a write produced: the size and where the bytes are.
#[derive(Debug)]
pub struct WriteOutcome {
    pub size: u64,
    pub data: ObjectData,
}

type ShardSender = mpsc::Sender<Result<Bytes, std::io::Error>>;

/// One shard's stream to its node.
struct ShardWriter {
    node: NodeId,
    /// None once the body is complete, or once the writer was dropped (then `failed`).
    tx: Option<ShardSender>,
    failed: bool,
    /// Set just before a complete body is closed. A body that ends without it ends with an
    /// error instead, so the node discards the partial shard rather than committing it.
    complete: Arc<AtomicBool>,
    response: tokio::task::JoinHandle<Result<(), RpcError>>,
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
        let mut writers: Option<Vec<ShardWriter>> = None;

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
                            None => writers.insert(self.open_writers(version).await?),
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
                None => self.open_writers(version).await?,
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
            Ok(Some(ws)) => self.finish(version, size, ws).await,
            Err(e) => {
                if let Some(ws) = writers {
                    self.abort(version, ws).await;
                }
                Err(e)
            }
        }
    }

    async fn open_writers(&self, version: VersionId) -> Result<Vec<ShardWriter>, CoordError> {
        let profile = self.cluster.profile;
        let n = profile.n_shards();
        let order = self.cluster.placement(version);
        if order.len() < n {
            return Err(CoordError::ClusterTooSmall {
                have: order.len(),
                need: n,
            });
        }
        let mut writers = Vec::with_capacity(n);
        for (i, node) in order.into_iter().take(n).enumerate() {
            let (mut tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(SHARD_QUEUE_CHUNKS);
            let header = ShardHeader {
                profile,
                shard_index: i as u8,
                block_size: self.cluster.block_size,
                version,
            };
            let _ = tx.try_send(Ok(header.encode()));
            let complete = Arc::new(AtomicBool::new(false));
            let complete_at_end = complete.clone();
            let tail = futures::stream::once(async move {
                (!complete_at_end.load(Ordering::Acquire))
                    .then(|| Err(std::io::Error::other("shard write abandoned")))
            })
            .filter_map(futures::future::ready);
            let body = BodyExt::boxed(StreamBody::new(rx.chain(tail).map(|r| r.map(Frame::data))));
            let rpc = self.rpc.clone();
            let path = shard_path_and_query(version, i as u8, None);
            let response = tokio::spawn(async move {
                // The call ends when the node has made the shard durable; sends are bounded
                // separately by SHARD_SEND_TIMEOUT, the final answer by SHARD_COMMIT_TIMEOUT.
                rpc.request(
                    node,
                    Method::PUT,
                    &path,
                    body,
                    std::time::Duration::from_secs(24 * 3600),
                )
                .await
                .map(|_| ())
            });
            writers.push(ShardWriter {
                node,
                tx: Some(tx),
                failed: false,
                complete,
                response,
            });
        }
        Ok(writers)
    }

    async fn send_block(
        &self,
        writers: &mut [ShardWriter],
        block: Bytes,
    ) -> Result<(), CoordError> {
        let shards = self.erasure.encode(block);
        let sends = writers.iter_mut().zip(shards).map(|(w, shard)| async move {
            let Some(tx) = w.tx.as_mut() else { return };
            let hash = Bytes::copy_from_slice(&block_hash(&shard));
            let sent = tokio::time::timeout(SHARD_SEND_TIMEOUT, async {
                tx.send(Ok(shard)).await?;
                tx.send(Ok(hash)).await
            })
            .await;
            if !matches!(sent, Ok(Ok(()))) {
                tracing::warn!(node = %w.node, "shard writer stalled or failed; continuing without it");
                w.tx = None;
                w.failed = true;
            }
        });
        futures::future::join_all(sends).await;
        let alive = writers.iter().filter(|w| w.tx.is_some()).count();
        let need = self.cluster.profile.k as usize;
        if alive < need {
            return Err(CoordError::WriteQuorum { ok: alive, need });
        }
        Ok(())
    }

    async fn finish(
        &self,
        version: VersionId,
        size: u64,
        mut writers: Vec<ShardWriter>,
    ) -> Result<WriteOutcome, CoordError> {
        let profile = self.cluster.profile;
        for w in writers.iter_mut() {
            if let Some(mut tx) = w.tx.take() {
                w.complete.store(true, Ordering::Release);
                let _ = tx.close().await;
            }
        }
        let mut shard_nodes = Vec::with_capacity(writers.len());
        for (i, w) in writers.into_iter().enumerate() {
            let node = w.node;
            if w.failed {
                // Dropped mid-stream (dead or stalled node): its shard is incomplete; do not wait.
                w.response.abort();
                shard_nodes.push(None);
                continue;
            }
            let outcome = tokio::time::timeout(SHARD_COMMIT_TIMEOUT, w.response).await;
            match outcome {
                Ok(Ok(Ok(()))) => shard_nodes.push(Some(node)),
                other => {
                    tracing::warn!(%version, shard = i, %node, outcome = ?other.map(|r| r.map(|r| r.err())), "shard not written");
                    shard_nodes.push(None);
                }
            }
        }
        let ok = shard_nodes.iter().flatten().count();
        let data = ObjectData::Sharded {
            k: profile.k,
            m: profile.m,
            block_size: self.cluster.block_size,
            shard_nodes,
        };
        let k = profile.k as usize;
        if ok < k {
            self.delete_shards_in_background(version, &data);
            return Err(CoordError::WriteQuorum { ok, need: k });
        }
        if ok < profile.n_shards() {
            tracing::warn!(%version, ok, n = profile.n_shards(), "degraded write: accepted with fewer shards than k+m");
        }
        Ok(WriteOutcome { size, data })
    }

    async fn abort(&self, version: VersionId, writers: Vec<ShardWriter>) {
        let mut shard_nodes = Vec::with_capacity(writers.len());
        for mut w in writers {
            // Dropping the sender without `complete` ends the body with an error, so the node
            // discards its temp file instead of committing a partial shard.
            w.tx = None;
            w.response.abort();
            shard_nodes.push(Some(w.node));
        }
        let profile = self.cluster.profile;
        let data = ObjectData::Sharded {
            k: profile.k,
            m: profile.m,
            block_size: self.cluster.block_size,
            shard_nodes,
        };
        self.delete_shards_in_background(version, &data);
    }
}
