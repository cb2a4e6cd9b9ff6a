//! Healing one erasure-coded piece: check every shard whole on its node, rebuild the missing
//! and corrupt ones from the intact ones, and report them healed only once they were re-read
//! and verified where they now live.
//!
//! A shard whose file is missing or corrupt is rebuilt on the same node; a shard the write
//! placed nowhere goes to its placement home, or a fallback when the home holds another shard
//! of the piece or is out of space or not answering. A shard whose node does not answer is
//! neither counted intact nor rebuilt: the piece is not healed until that node answers (it may
//! come back with its shard). Rebuilding reads the piece like a GET (k intact shards, BLAKE3
//! checked per block), encodes each block again and streams only the rebuilt shards' bytes.

use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};

use super::write::ShardWriter;
use super::{CoordError, Coordinator, SHARD_COMMIT_TIMEOUT, SHARD_SEND_TIMEOUT};
use crate::codec::shard_format::{block_hash, ShardDigests, ShardLayout};
use crate::meta::ObjectData;
use crate::shard::{verify_shard, ShardCheck};
use crate::types::{NodeId, VersionId};

/// What healing a piece did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healed {
    /// Where the record said the shards were, and where they are now (every one verified).
    pub before: Vec<Option<NodeId>>,
    pub after: Vec<Option<NodeId>>,
    /// Shards rebuilt, and the bytes of their files.
    pub rebuilt: u32,
    pub bytes: u64,
}

/// The state of one shard before healing.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Found {
    Intact,
    /// Missing or corrupt on its node, or placed nowhere: rebuild it.
    Damaged(String),
    /// Its node did not answer.
    Unknown(String),
}

impl Coordinator {
    /// Heals piece `version` (`data`, `size` bytes): see the module documentation.
    pub async fn heal(
        &self,
        version: VersionId,
        data: &ObjectData,
        size: u64,
    ) -> Result<Healed, CoordError> {
        let ObjectData::Sharded {
            k,
            m,
            block_size,
            shard_nodes,
            digests,
        } = data
        else {
            return Err(CoordError::Heal("not erasure-coded data".into()));
        };
        let (k, n) = (*k as usize, *k as usize + *m as usize);
        if k == 0 || *block_size == 0 {
            return Err(CoordError::Heal(format!(
                "the record gives an impossible layout (k {k}, block size {block_size})"
            )));
        }
        if shard_nodes.len() != n {
            return Err(CoordError::Heal(format!(
                "the record lists {} shards for {k}+{m}",
                shard_nodes.len()
            )));
        }
        let found = self.check_shards(version, shard_nodes, digests, size).await;
        let damaged: Vec<usize> = (0..n)
            .filter(|&i| matches!(found[i], Found::Damaged(_)))
            .collect();
        if let Some((i, why)) = found.iter().enumerate().find_map(|(i, f)| match f {
            Found::Unknown(why) => Some((i, why)),
            _ => None,
        }) {
            return Err(CoordError::HealBlocked(format!(
                "shard {i} could not be checked: {why}"
            )));
        }
        if damaged.is_empty() {
            return Ok(Healed {
                before: shard_nodes.clone(),
                after: shard_nodes.clone(),
                rebuilt: 0,
                bytes: 0,
            });
        }
        let intact = n - damaged.len();
        if intact < k {
            return Err(CoordError::Heal(format!(
                "only {intact} intact shards, {k} needed to rebuild"
            )));
        }
        let targets = self.heal_targets(version, shard_nodes, &damaged)?;
        let mut source = shard_nodes.clone();
        for &i in &damaged {
            source[i] = None;
        }
        let source = ObjectData::Sharded {
            k: k as u8,
            m: *m,
            block_size: *block_size,
            shard_nodes: source,
            digests: digests.clone(),
        };
        self.rebuild(version, &source, size, &targets).await?;
        let mut after = shard_nodes.clone();
        let mut bytes = 0;
        for &(i, node) in &targets {
            let check = verify_shard(&self.rpc, node, version, i as u8, size, digests.get(i))
                .await
                .map_err(|e| CoordError::HealBlocked(format!("node {node}: {e}")))?;
            match check {
                ShardCheck::Intact { bytes: b } => bytes += b,
                other => {
                    return Err(CoordError::Heal(format!(
                        "rebuilt shard {i} on node {node} does not verify: {other:?}"
                    )))
                }
            }
            after[i] = Some(node);
        }
        Ok(Healed {
            before: shard_nodes.clone(),
            after,
            rebuilt: targets.len() as u32,
            bytes,
        })
    }

    /// Checks every placed shard whole on its node, all at once.
    async fn check_shards(
        &self,
        version: VersionId,
        shard_nodes: &[Option<NodeId>],
        digests: &ShardDigests,
        size: u64,
    ) -> Vec<Found> {
        let checks = shard_nodes.iter().enumerate().map(|(i, node)| async move {
            let Some(node) = *node else {
                return Found::Damaged("placed nowhere".into());
            };
            // A node known not to answer is not asked again until its probe succeeds (a
            // paused node would cost each queued piece a timeout).
            if self.health.avoided(node) {
                return Found::Unknown(format!("node {node} does not answer"));
            }
            match verify_shard(&self.rpc, node, version, i as u8, size, digests.get(i)).await {
                Ok(ShardCheck::Intact { .. }) => Found::Intact,
                Ok(ShardCheck::Missing) => Found::Damaged(format!("missing on node {node}")),
                Ok(ShardCheck::Corrupt { reason }) => {
                    Found::Damaged(format!("corrupt on node {node}: {reason}"))
                }
                Err(e) => {
                    self.health.observe(node, &e);
                    Found::Unknown(format!("node {node}: {e}"))
                }
            }
        });
        futures::future::join_all(checks).await
    }

    /// Where each damaged shard goes: its own node when it has one, else its placement home or
    /// a fallback that holds no other shard of the piece.
    fn heal_targets(
        &self,
        version: VersionId,
        shard_nodes: &[Option<NodeId>],
        damaged: &[usize],
    ) -> Result<Vec<(usize, NodeId)>, CoordError> {
        let order = self.cluster.placement(version);
        let mut in_use = shard_nodes.to_vec();
        let unusable = |node: NodeId| self.full_nodes.contains(node) || self.health.avoided(node);
        let mut targets = Vec::with_capacity(damaged.len());
        for &i in damaged {
            let node = match shard_nodes[i] {
                Some(node) => Some(node),
                None => order
                    .get(i)
                    .copied()
                    .filter(|home| !in_use.contains(&Some(*home)) && !unusable(*home))
                    .or_else(|| self.cluster.fallback(&order, &in_use, unusable)),
            };
            let Some(node) = node else {
                return Err(CoordError::Heal(format!(
                    "no node can take shard {i} (every other node holds a shard of it, is full or does not answer)"
                )));
            };
            in_use[i] = Some(node);
            targets.push((i, node));
        }
        Ok(targets)
    }

    /// Reads the piece from `source` (the intact shards) and streams shard `i` of every block
    /// to each target `(i, node)`; returns once every target made its file durable.
    async fn rebuild(
        &self,
        version: VersionId,
        source: &ObjectData,
        size: u64,
        targets: &[(usize, NodeId)],
    ) -> Result<(), CoordError> {
        let ObjectData::Sharded { k, block_size, .. } = source else {
            return Err(CoordError::Heal("not erasure-coded data".into()));
        };
        let layout = ShardLayout::new(*k, *block_size, size);
        let mut writers: Vec<(usize, ShardWriter)> = targets
            .iter()
            .map(|&(i, node)| {
                let header = self.shard_header(version, i).encode();
                (i, self.start_shard(version, i, node, vec![header]))
            })
            .collect();
        let result = async {
            let mut body = self.read(version, source, size, 0, size);
            let mut block = BytesMut::new();
            let mut b = 0u64;
            while b < layout.n_blocks() {
                let want = layout.block_len(b) as usize;
                while block.len() < want {
                    match body.next().await {
                        Some(piece) => block.extend_from_slice(&piece?),
                        None => {
                            return Err(CoordError::Heal(format!(
                                "the piece ended at block {b} of {}",
                                layout.n_blocks()
                            )))
                        }
                    }
                }
                let shards = self.erasure.encode(block.split_to(want).freeze());
                for (i, w) in writers.iter_mut() {
                    let shard = shards[*i].clone();
                    let hash = Bytes::copy_from_slice(&block_hash(&shard));
                    send(w, shard, hash).await?;
                }
                b += 1;
            }
            for (_, w) in writers.iter_mut() {
                if let Some(mut tx) = w.tx.take() {
                    w.complete.store(true, Ordering::Release);
                    let _ = tx.close().await;
                }
            }
            for (i, w) in writers.iter_mut() {
                if !w.wait_answer(SHARD_COMMIT_TIMEOUT).await || !w.durable() {
                    return Err(CoordError::HealBlocked(format!(
                        "node {} did not make rebuilt shard {i} durable",
                        w.node
                    )));
                }
            }
            Ok(())
        }
        .await;
        if result.is_err() {
            // Dropping a stream without `complete` makes its node discard the partial file.
            for (_, w) in writers.iter_mut() {
                w.drop_stream();
            }
        }
        result
    }
}

/// Sends one block's shard bytes and hash to a rebuilt shard's node.
async fn send(w: &mut ShardWriter, shard: Bytes, hash: Bytes) -> Result<(), CoordError> {
    let node = w.node;
    let Some(tx) = w.tx.as_mut() else {
        return Err(CoordError::HealBlocked(format!(
            "node {node} closed the stream"
        )));
    };
    let sent = tokio::time::timeout(SHARD_SEND_TIMEOUT, async {
        tx.send(Ok(shard)).await?;
        tx.send(Ok(hash)).await
    })
    .await;
    match sent {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(CoordError::HealBlocked(format!(
            "node {node} closed the rebuilt shard's stream"
        ))),
        Err(_) => Err(CoordError::HealBlocked(format!(
            "node {node} stopped taking the rebuilt shard"
        ))),
    }
}
