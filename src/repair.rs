//! The repair workers of a storage node, acting only while it leads the metadata group (like
//! [`crate::retire`] and [`crate::gc`]): healing and scrub. Their queue and progress live in the
//! state machine ([`crate::meta::repair`]), so a restart or a new leader picks them up where
//! they stand.
//!
//! - **Healing** takes the queued pieces that are due — degraded writes (queued with their
//!   commit), shards a GET found missing or corrupt, the scrub's findings — and heals each with
//!   [`Coordinator::heal`]: every shard checked whole, the damaged ones rebuilt, re-read and
//!   verified; only then is the piece reported healed (and its record pointed at any new
//!   shard home). A failed attempt is retried with a growing backoff, except while a node
//!   that holds or is to receive a shard does not answer: then every [`FIRST_BACKOFF`].
//! - **Scrub** walks every object and part record in pages and has each shard's node verify
//!   the whole file (header, length, every block's BLAKE3), at the node's verification budget
//!   ([`crate::shard::VerifyPacer`]); what fails is queued for healing. A pass starts
//!   `scrub_interval` after the previous one started.
//!
//! Both run on [`crate::worker`]: units of work are bounded (a page of records, a batch of due
//! pieces), progress is reported through Raft after each unit, the tasks stop when dropped.

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::{debug, info, warn};

use crate::coord::{CoordError, Coordinator};
use crate::meta::repair::WalkedPiece;
use crate::meta::{
    request::{HealProgress, QueueHeal, ScrubProgress},
    HealOwner, HealRecord, HealReport, HealResult, MetaNode, ObjectData, ScrubPage, ShardDamage,
    Write, WriteReply, WriteRequest,
};
use crate::rpc::unix_now_ms as now_ms;
use crate::shard::{verify_shard, ShardCheck};
use crate::worker::{Round, Worker};

/// Default time between the starts of two scrub passes.
pub const DEFAULT_SCRUB_INTERVAL: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// How the repair workers run on a storage node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairConfig {
    /// Time between the starts of two scrub passes.
    pub scrub_interval: Duration,
    /// This node's read budget for whole-shard verifications (scrub and healing).
    pub verify_bytes_per_sec: u64,
    /// Runs the heal worker. Off only where a test shows what a cluster without healing loses
    /// (the simulation's seed for the write-quorum fix): degraded writes then stay short.
    pub heal: bool,
}

impl Default for RepairConfig {
    fn default() -> Self {
        RepairConfig {
            scrub_interval: DEFAULT_SCRUB_INTERVAL,
            verify_bytes_per_sec: crate::shard::DEFAULT_VERIFY_BYTES_PER_SEC,
            heal: true,
        }
    }
}
/// How often the workers look for work when idle.
pub const IDLE_TICK: Duration = Duration::from_secs(1);
/// Queued pieces taken per heal round.
const HEALS_PER_ROUND: usize = 8;
/// Records per scrub page.
const SCRUB_PAGE_RECORDS: usize = 64;
/// Backoff of a failed heal: this, doubled per failed attempt, at most [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(10 * 60);

/// The heal worker, driven by [`crate::worker::run`] every [`IDLE_TICK`].
pub struct Heal {
    pub coord: Coordinator,
}

#[async_trait::async_trait]
impl Worker for Heal {
    fn name(&self) -> &'static str {
        "heal"
    }

    async fn round(&mut self, meta: &MetaNode) -> Result<Round, String> {
        let due = meta
            .due_heals(now_ms(), HEALS_PER_ROUND)
            .map_err(|e| format!("reading the repair queue: {e}"))?;
        let full = due.len() >= HEALS_PER_ROUND;
        for entry in due {
            if !meta.is_leader() {
                return Ok(Round::Idle);
            }
            heal_one(meta, &self.coord, entry).await;
        }
        Ok(if full { Round::More } else { Round::Idle })
    }
}

/// Heals one queued piece and reports the result through Raft.
async fn heal_one(meta: &MetaNode, coord: &Coordinator, entry: HealRecord) {
    let version = entry.version;
    let result = match meta.piece(&entry.owner, version) {
        Ok(None) => HealResult::Gone,
        Ok(Some(piece)) => match coord.heal(version, &piece.data, piece.size).await {
            Ok(healed) => {
                if healed.rebuilt > 0 {
                    info!(%version, shards = healed.rebuilt, bytes = healed.bytes, "shards rebuilt and verified");
                } else {
                    info!(%version, "every shard verified intact; nothing to rebuild");
                }
                HealResult::Healed {
                    before: healed.before,
                    after: healed.after,
                    shards: healed.rebuilt,
                    bytes: healed.bytes,
                }
            }
            Err(e) => {
                // Waiting for a node to answer again is not the piece's fault: retry soon,
                // without growing the backoff, so healing follows the node's return at once
                // (logged once per piece, not every 2 s).
                let (backoff, blocked) = match e {
                    CoordError::HealBlocked(_) => (FIRST_BACKOFF, true),
                    _ => (backoff(entry.attempts), false),
                };
                if blocked && entry.attempts > 0 {
                    debug!(%version, attempts = entry.attempts + 1, error = %e, "healing still waits for a node");
                } else {
                    warn!(%version, attempts = entry.attempts + 1, retry_in_secs = backoff.as_secs(), error = %e, "healing failed; retrying later");
                }
                HealResult::Failed {
                    error: e.to_string(),
                    retry_at_ms: now_ms() + backoff.as_millis() as i64,
                }
            }
        },
        Err(e) => {
            warn!(%version, error = %e, "could not read the record of a queued piece");
            return;
        }
    };
    report(meta, HealProgress { version, result }).await;
}

fn backoff(attempts: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1u32 << attempts.min(16))
        .min(MAX_BACKOFF)
}

/// Proposes a worker's report (idempotent commands need no request id).
async fn report(meta: &MetaNode, cmd: impl WriteRequest) {
    let cmd = cmd.into();
    match meta.write(Write { id: None, cmd }).await {
        WriteReply::Ok(_) | WriteReply::NotLeader { .. } => {}
        WriteReply::Failed(e) => warn!(error = %e, "repair progress not recorded; retrying later"),
    }
}

/// The scrub worker, driven by [`crate::worker::run`] every [`IDLE_TICK`]: pages follow each
/// other without a pause while a pass is in progress (the nodes pace the reads); between passes
/// a round only looks at the clock.
pub struct Scrub {
    pub coord: Coordinator,
    pub interval: Duration,
}

#[async_trait::async_trait]
impl Worker for Scrub {
    fn name(&self) -> &'static str {
        "scrub"
    }

    async fn round(&mut self, meta: &MetaNode) -> Result<Round, String> {
        Ok(if scrub_page(meta, &self.coord, self.interval).await? {
            Round::More
        } else {
            Round::Idle
        })
    }
}

/// Scrubs the next page if a pass is in progress or due; whether it did.
async fn scrub_page(
    meta: &MetaNode,
    coord: &Coordinator,
    interval: Duration,
) -> Result<bool, String> {
    let state = meta.repair_stats().map_err(|e| e.to_string())?.scrub;
    let now = now_ms();
    let (pass_started_ms, after) = match state.cursor {
        Some(cursor) => (state.pass_started_ms, Some(cursor)),
        None if state.pass_started_ms == 0
            || now >= state.pass_started_ms + interval.as_millis() as i64 =>
        {
            info!("scrub pass started");
            (now.max(state.pass_started_ms + 1), None)
        }
        None => return Ok(false),
    };
    let (pieces, cursor) = meta
        .walk_pieces(after.as_deref(), SCRUB_PAGE_RECORDS)
        .map_err(|e| e.to_string())?;
    let mut page = ScrubPage {
        pass_started_ms,
        cursor,
        ..Default::default()
    };
    let mut findings = Vec::new();
    for piece in &pieces {
        let damage = scrub_piece(coord, piece, &mut page).await;
        if !damage.is_empty() {
            warn!(version = %piece.version, damaged = ?damage, "scrub found damaged shards; queued for healing");
            findings.push(HealReport {
                version: piece.version,
                owner: HealOwner::Record(piece.owner.clone()),
                damage,
            });
        }
    }
    if !findings.is_empty() {
        report(meta, QueueHeal { reports: findings }).await;
    }
    let done = page.cursor.is_none();
    debug!(
        pieces = pieces.len(),
        verified = page.counts.shards_verified,
        bad = page.counts.shards_bad,
        "scrub page done"
    );
    report(meta, ScrubProgress { page: page.clone() }).await;
    if done {
        info!("scrub pass complete");
    }
    Ok(!done)
}

/// Has every shard of one piece verified by its node; the damaged ones.
async fn scrub_piece(
    coord: &Coordinator,
    piece: &WalkedPiece,
    page: &mut ScrubPage,
) -> BTreeMap<u8, ShardDamage> {
    let ObjectData::Sharded {
        shard_nodes,
        digests,
        ..
    } = &piece.piece.data
    else {
        return BTreeMap::new();
    };
    let (version, size) = (piece.version, piece.piece.size);
    let checks = shard_nodes.iter().enumerate().map(|(i, node)| async move {
        let node = (*node)?;
        if coord.health.avoided(node) {
            return Some(Err(crate::rpc::RpcError::Body(format!(
                "node {node} does not answer"
            ))));
        }
        let check = verify_shard(&coord.rpc, node, version, i as u8, size, digests.get(i)).await;
        if let Err(e) = &check {
            coord.health.observe(node, e);
        }
        Some(check)
    });
    let mut damage = BTreeMap::new();
    for (i, check) in futures::future::join_all(checks)
        .await
        .into_iter()
        .enumerate()
    {
        let i = i as u8;
        match check {
            None => {
                damage.insert(i, ShardDamage::Unplaced);
            }
            Some(Ok(ShardCheck::Intact { bytes })) => {
                page.counts.shards_verified += 1;
                page.counts.bytes_verified += bytes;
                continue;
            }
            Some(Ok(ShardCheck::Missing)) => {
                damage.insert(i, ShardDamage::Missing);
            }
            Some(Ok(ShardCheck::Corrupt { .. })) => {
                damage.insert(i, ShardDamage::Corrupt);
            }
            Some(Err(e)) => {
                debug!(%version, shard = i, error = %e, "scrub could not check a shard");
                page.counts.shards_unchecked += 1;
                continue;
            }
        }
        page.counts.shards_bad += 1;
    }
    damage
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(0), FIRST_BACKOFF);
        assert_eq!(backoff(1), FIRST_BACKOFF * 2);
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
