//! The repair queue and its statistics, kept in the state machine so that they survive
//! restarts and leader changes: erasure-coded pieces known to lack a shard (a degraded write,
//! a read or a scrub that found a shard missing or corrupt), for the heal worker
//! (`crate::repair`) on the leader to rebuild, and what healing and scrubbing have verified so
//! far, for `baobab repair status`.
//!
//! A piece is named by its data version and by its *owner*: the state-machine key of the record
//! that holds it (`o/…` an object, `p/…` a part of an upload in progress). When an upload is
//! completed its parts move into the object's record, and their queue entries move with them.
//!
//! Keyspace: `h/<version, 32 hex digits>` → [`HealRecord`]; `r/stats` → [`RepairStats`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::MetaError;
use super::model::{CommandResult, ObjectData, ObjectRecord, PartRecord};
use super::state::{decode_value, encode_value, get_decoded, object_key, Op, StateRead};
use crate::types::{BucketId, NodeId, VersionId};

pub(crate) const HEAL_PREFIX: &[u8] = b"h/";
const STATS_KEY: &[u8] = b"r/stats";
/// Longest error text kept in a queue entry.
const MAX_ERROR_LEN: usize = 300;
/// Entries listed by name in a status report at most.
pub const REPORT_PENDING_LIMIT: usize = 100;

/// What is wrong with one shard of a piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ShardDamage {
    /// The write placed it nowhere (no node could take it): the record says `None`.
    Unplaced,
    /// Its node answered that the file is not there.
    Missing,
    /// Its file fails the BLAKE3 check of a block, its header or its length.
    Corrupt,
}

/// Who holds a piece, as a reporter names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HealOwner {
    /// The state-machine key of the record (`o/…` or `p/…`).
    Record(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The current object under a bucket and key (what a gateway's GET knows).
    Object { bucket: BucketId, key: String },
}

/// A finding: shards of piece `version` that are damaged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealReport {
    pub version: VersionId,
    pub owner: HealOwner,
    pub damage: BTreeMap<u8, ShardDamage>,
}

/// One queued piece.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealRecord {
    pub version: VersionId,
    /// The state-machine key of the record holding the piece.
    #[serde(with = "serde_bytes")]
    pub owner: Vec<u8>,
    /// The damaged shards known so far, by index.
    pub damage: BTreeMap<u8, ShardDamage>,
    pub queued_ms: i64,
    pub attempts: u32,
    /// Not tried again before this time (backoff after a failed attempt).
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
}

/// What the heal worker did with one queued piece.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HealResult {
    /// Every shard was re-read and verified, after rebuilding `shards` of them (`bytes` written).
    /// `before` is where the record said the shards were when the worker read it, `after` where
    /// they are now; the record is changed only if it still says `before`.
    Healed {
        before: Vec<Option<NodeId>>,
        after: Vec<Option<NodeId>>,
        shards: u32,
        bytes: u64,
    },
    /// No record holds the piece any more (overwritten, deleted): nothing to heal.
    Gone,
    /// The attempt failed; try again at `retry_at_ms`.
    Failed { error: String, retry_at_ms: i64 },
}

/// Where the scrub stands, and what its last complete pass verified.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubState {
    pub passes_completed: u64,
    /// When the pass in progress (or the last one) started; 0 before the first.
    pub pass_started_ms: i64,
    /// The last record key the pass in progress has checked; None at a pass's start.
    #[serde(with = "serde_bytes")]
    pub cursor: Option<Vec<u8>>,
    /// What the pass in progress found so far.
    pub counts: ScrubCounts,
    pub last_pass: Option<ScrubPass>,
}

/// What scrubbing found, over a page or a pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubCounts {
    /// Shards re-read and verified intact, and their bytes.
    pub shards_verified: u64,
    pub bytes_verified: u64,
    /// Shards found missing, corrupt or unplaced (queued for healing).
    pub shards_bad: u64,
    /// Shards that could not be checked (their node did not answer).
    pub shards_unchecked: u64,
}

impl std::ops::AddAssign for ScrubCounts {
    fn add_assign(&mut self, o: ScrubCounts) {
        self.shards_verified += o.shards_verified;
        self.bytes_verified += o.bytes_verified;
        self.shards_bad += o.shards_bad;
        self.shards_unchecked += o.shards_unchecked;
    }
}

/// A complete scrub pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubPass {
    pub started_ms: i64,
    pub finished_ms: i64,
    pub counts: ScrubCounts,
}

/// What one page of a scrub pass found (the scrub worker's progress report).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubPage {
    /// The pass this page belongs to (its start): a page of an older pass is ignored.
    pub pass_started_ms: i64,
    /// The last record key the page covered; None: the pass is complete.
    #[serde(with = "serde_bytes")]
    pub cursor: Option<Vec<u8>>,
    pub counts: ScrubCounts,
}

/// Totals since the cluster was created.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairStats {
    /// Shards rebuilt and then re-read and verified.
    pub healed_shards: u64,
    pub healed_bytes: u64,
    /// Pieces whose every shard was verified intact by the heal worker.
    pub healed_pieces: u64,
    pub last_healed_ms: i64,
    /// Failed heal attempts (each retried later).
    pub failed_attempts: u64,
    pub scrub: ScrubState,
}

/// What `baobab repair status` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairReport {
    /// Pieces queued, and their damaged shards by kind.
    pub queued_pieces: u64,
    pub shards_missing: u64,
    pub shards_corrupt: u64,
    pub shards_unplaced: u64,
    /// The first queued entries (at most [`REPORT_PENDING_LIMIT`]).
    pub pending: Vec<HealRecord>,
    pub stats: RepairStats,
}

pub fn heal_key(version: VersionId) -> Vec<u8> {
    format!("h/{:032x}", version.0).into_bytes()
}

/// A piece as its record holds it: its data and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub data: ObjectData,
    pub size: u64,
}

/// A record that holds pieces.
enum Holder {
    Object(ObjectRecord),
    Part(PartRecord),
}

fn read_holder(state: &dyn StateRead, owner: &[u8]) -> Result<Option<Holder>, MetaError> {
    let Some(bytes) = state.get(owner)? else {
        return Ok(None);
    };
    if owner.starts_with(b"o/") {
        Ok(Some(Holder::Object(decode_value(&bytes)?)))
    } else if owner.starts_with(b"p/") {
        Ok(Some(Holder::Part(decode_value(&bytes)?)))
    } else {
        Ok(None)
    }
}

impl Holder {
    fn piece(&self, version: VersionId) -> Option<Piece> {
        let (own, size, data) = match self {
            Holder::Object(r) => (r.version, r.size, &r.data),
            Holder::Part(p) => (p.version, p.size, &p.data),
        };
        match data {
            ObjectData::Parts(parts) => {
                parts.iter().find(|p| p.version == version).map(|p| Piece {
                    data: p.data.clone(),
                    size: p.size,
                })
            }
            other if own == version => Some(Piece {
                data: other.clone(),
                size,
            }),
            _ => None,
        }
    }

    /// Points the shards of piece `version` at `after` if they are at `before`; whether it did.
    fn move_shards(
        &mut self,
        version: VersionId,
        before: &[Option<NodeId>],
        after: &[Option<NodeId>],
    ) -> bool {
        let (own, data) = match self {
            Holder::Object(r) => (r.version, &mut r.data),
            Holder::Part(p) => (p.version, &mut p.data),
        };
        let data = match data {
            ObjectData::Parts(parts) => match parts.iter_mut().find(|p| p.version == version) {
                Some(p) => &mut p.data,
                None => return false,
            },
            other if own == version => other,
            _ => return false,
        };
        match data {
            ObjectData::Sharded { shard_nodes, .. }
                if shard_nodes == before && after.len() == before.len() =>
            {
                shard_nodes.clone_from_slice(after);
                true
            }
            _ => false,
        }
    }

    fn encode(&self) -> Result<Vec<u8>, MetaError> {
        match self {
            Holder::Object(r) => encode_value(r),
            Holder::Part(p) => encode_value(p),
        }
    }
}

/// The piece `version` held by the record at `owner`, if that record still holds it.
pub fn piece(
    state: &dyn StateRead,
    owner: &[u8],
    version: VersionId,
) -> Result<Option<Piece>, MetaError> {
    Ok(read_holder(state, owner)?.and_then(|h| h.piece(version)))
}

/// The shards that a freshly committed piece lacks (written nowhere).
fn unplaced(data: &ObjectData) -> BTreeMap<u8, ShardDamage> {
    match data {
        ObjectData::Sharded { shard_nodes, .. } => shard_nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.is_none())
            .map(|(i, _)| (i as u8, ShardDamage::Unplaced))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// The changes that queue every piece of `data` (committed at `owner` just now) that lacks
/// shards: a degraded write is queued for healing with its commit.
pub fn degraded_write_ops(
    at_ms: i64,
    owner: &[u8],
    version: VersionId,
    data: &ObjectData,
) -> Result<Vec<Op>, MetaError> {
    let mut ops = Vec::new();
    for (version, piece) in data.pieces(version) {
        let damage = unplaced(piece);
        if !damage.is_empty() {
            let record = HealRecord {
                version,
                owner: owner.to_vec(),
                damage,
                queued_ms: at_ms,
                attempts: 0,
                next_attempt_ms: at_ms,
                last_error: None,
            };
            ops.push(Op::Put(heal_key(version), encode_value(&record)?));
        }
    }
    Ok(ops)
}

/// The changes that move the queue entries of `versions` (parts being completed) to `owner`.
pub fn reown_ops(
    state: &dyn StateRead,
    versions: impl Iterator<Item = VersionId>,
    owner: &[u8],
) -> Result<Vec<Op>, MetaError> {
    let mut ops = Vec::new();
    for version in versions {
        let k = heal_key(version);
        if let Some(mut record) = get_decoded::<HealRecord>(state, &k)? {
            record.owner = owner.to_vec();
            ops.push(Op::Put(k, encode_value(&record)?));
        }
    }
    Ok(ops)
}

/// Queues findings (merged into entries already queued); findings about pieces no record
/// holds any more are dropped.
pub fn queue_ops(
    state: &dyn StateRead,
    at_ms: i64,
    reports: &[HealReport],
) -> Result<(CommandResult, Vec<Op>), MetaError> {
    let mut ops = Vec::new();
    for report in reports {
        if report.damage.is_empty() {
            continue;
        }
        let owner = match &report.owner {
            HealOwner::Record(k) => k.clone(),
            HealOwner::Object { bucket, key } => object_key(*bucket, key),
        };
        if piece(state, &owner, report.version)?.is_none() {
            continue;
        }
        let k = heal_key(report.version);
        let mut record = get_decoded::<HealRecord>(state, &k)?.unwrap_or(HealRecord {
            version: report.version,
            owner: owner.clone(),
            damage: BTreeMap::new(),
            queued_ms: at_ms,
            attempts: 0,
            next_attempt_ms: at_ms,
            last_error: None,
        });
        record.owner = owner;
        record.damage.extend(report.damage.iter());
        // New evidence: worth trying at once even if an attempt failed before.
        record.next_attempt_ms = at_ms;
        ops.push(Op::Put(k, encode_value(&record)?));
    }
    Ok((CommandResult::Ok, ops))
}

/// The repair totals (and where the scrub stands), without reading the queue.
pub fn stats(state: &dyn StateRead) -> Result<RepairStats, MetaError> {
    Ok(get_decoded(state, STATS_KEY)?.unwrap_or_default())
}

/// The heal worker's report on one queued piece. Idempotent: a report on an entry that is no
/// longer queued changes nothing.
pub fn progress_ops(
    state: &dyn StateRead,
    at_ms: i64,
    version: VersionId,
    result: &HealResult,
) -> Result<(CommandResult, Vec<Op>), MetaError> {
    let k = heal_key(version);
    let Some(mut entry) = get_decoded::<HealRecord>(state, &k)? else {
        return Ok((CommandResult::Ok, vec![]));
    };
    let mut stats = stats(state)?;
    let mut ops = Vec::new();
    let outcome = match result {
        HealResult::Healed {
            before,
            after,
            shards,
            bytes,
        } => {
            let Some(mut holder) = read_holder(state, &entry.owner)? else {
                // Deleted meanwhile: nothing left to heal.
                return Ok((CommandResult::Ok, vec![Op::Delete(k)]));
            };
            if before != after && !holder.move_shards(version, before, after) {
                // The record changed since the worker read it: heal again from what it says.
                return Ok((CommandResult::PreconditionFailed, vec![]));
            }
            if before != after {
                ops.push(Op::Put(entry.owner.clone(), holder.encode()?));
            }
            ops.push(Op::Delete(k));
            stats.healed_shards += u64::from(*shards);
            stats.healed_bytes += bytes;
            stats.healed_pieces += 1;
            stats.last_healed_ms = at_ms;
            CommandResult::Ok
        }
        HealResult::Gone => {
            return Ok((CommandResult::Ok, vec![Op::Delete(k)]));
        }
        HealResult::Failed { error, retry_at_ms } => {
            entry.attempts += 1;
            entry.next_attempt_ms = *retry_at_ms;
            entry.last_error = Some(truncate(error));
            ops.push(Op::Put(k, encode_value(&entry)?));
            stats.failed_attempts += 1;
            CommandResult::Ok
        }
    };
    ops.push(Op::Put(STATS_KEY.to_vec(), encode_value(&stats)?));
    Ok((outcome, ops))
}

fn truncate(s: &str) -> String {
    if s.len() <= MAX_ERROR_LEN {
        return s.to_string();
    }
    let mut end = MAX_ERROR_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The scrub worker's progress: adds a page's findings to the pass in progress, starting a
/// new pass when the page says so and closing it when the page is the last.
pub fn scrub_ops(
    state: &dyn StateRead,
    at_ms: i64,
    page: &ScrubPage,
) -> Result<(CommandResult, Vec<Op>), MetaError> {
    let mut stats = stats(state)?;
    let s = &mut stats.scrub;
    if page.pass_started_ms != s.pass_started_ms {
        if page.pass_started_ms < s.pass_started_ms {
            // A late report of an older pass (a deposed leader's).
            return Ok((CommandResult::PreconditionFailed, vec![]));
        }
        s.pass_started_ms = page.pass_started_ms;
        s.counts = ScrubCounts::default();
    }
    s.counts += page.counts;
    s.cursor = page.cursor.clone();
    if page.cursor.is_none() {
        s.passes_completed += 1;
        s.last_pass = Some(ScrubPass {
            started_ms: s.pass_started_ms,
            finished_ms: at_ms,
            counts: s.counts,
        });
    }
    Ok((
        CommandResult::Ok,
        vec![Op::Put(STATS_KEY.to_vec(), encode_value(&stats)?)],
    ))
}

/// The queued entries due at `now_ms`, oldest version key first, at most `limit`.
pub fn due(state: &dyn StateRead, now_ms: i64, limit: usize) -> Result<Vec<HealRecord>, MetaError> {
    let mut out = Vec::new();
    let mut cursor = state.cursor();
    cursor.seek(HEAL_PREFIX);
    while out.len() < limit {
        let Some((k, v)) = cursor.current()? else {
            break;
        };
        if !k.starts_with(HEAL_PREFIX) {
            break;
        }
        let record: HealRecord = decode_value(v)?;
        if record.next_attempt_ms <= now_ms {
            out.push(record);
        }
        cursor.next();
    }
    Ok(out)
}

/// The status report: the whole queue counted, its first entries listed, the totals.
pub fn report(state: &dyn StateRead) -> Result<RepairReport, MetaError> {
    let mut r = RepairReport {
        stats: stats(state)?,
        ..Default::default()
    };
    let mut cursor = state.cursor();
    cursor.seek(HEAL_PREFIX);
    while let Some((k, v)) = cursor.current()? {
        if !k.starts_with(HEAL_PREFIX) {
            break;
        }
        let record: HealRecord = decode_value(v)?;
        r.queued_pieces += 1;
        for d in record.damage.values() {
            match d {
                ShardDamage::Missing => r.shards_missing += 1,
                ShardDamage::Corrupt => r.shards_corrupt += 1,
                ShardDamage::Unplaced => r.shards_unplaced += 1,
            }
        }
        if r.pending.len() < REPORT_PENDING_LIMIT {
            r.pending.push(record);
        }
        cursor.next();
    }
    Ok(r)
}

/// One erasure-coded piece found by a walk over the records, for the scrub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkedPiece {
    /// The state-machine key of the record holding it.
    pub owner: Vec<u8>,
    pub version: VersionId,
    pub piece: Piece,
}

/// The erasure-coded pieces of the records after `after` (objects, then parts of uploads in
/// progress), from at most `limit` records; the last record key read (None: the walk is over).
pub fn walk(
    state: &dyn StateRead,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<(Vec<WalkedPiece>, Option<Vec<u8>>), MetaError> {
    let mut out = Vec::new();
    let mut cursor = state.cursor();
    let start: Vec<u8> = match after {
        Some(a) => [a, &[0u8]].concat(),
        None => b"o/".to_vec(),
    };
    cursor.seek(&start);
    let mut records = 0;
    let mut last = None;
    while records < limit {
        let Some((k, v)) = cursor.current()? else {
            return Ok((out, None));
        };
        let holder = if k.starts_with(b"o/") {
            Holder::Object(decode_value(v)?)
        } else if k.starts_with(b"p/") {
            Holder::Part(decode_value(v)?)
        } else if k < b"p/".as_slice() {
            // Between the two ranges (nothing sorts there today): skip to the parts.
            cursor.seek(b"p/");
            continue;
        } else {
            return Ok((out, None));
        };
        let (own, data) = match &holder {
            Holder::Object(r) => (r.version, &r.data),
            Holder::Part(p) => (p.version, &p.data),
        };
        for (version, data) in data.pieces(own) {
            if matches!(data, ObjectData::Sharded { .. }) {
                if let Some(piece) = holder.piece(version) {
                    out.push(WalkedPiece {
                        owner: k.to_vec(),
                        version,
                        piece,
                    });
                }
            }
        }
        records += 1;
        last = Some(k.to_vec());
        cursor.next();
    }
    Ok((out, last))
}

#[cfg(test)]
#[path = "repair_tests.rs"]
mod tests;
