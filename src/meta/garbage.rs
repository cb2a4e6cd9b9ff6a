//! The retire queue: erasure-coded data that a committed command unlinked (an overwritten or
//! deleted object, a replaced or unused part, an aborted upload), kept in the state machine so
//! that it survives restarts and leader changes. The retire worker (on the leader) deletes the
//! shards once the grace period has passed and then forgets the entries
//! ([`super::model::Command::ForgetGarbage`]).
//!
//! Keyspace: `g/<retired_ms, 16 hex digits>/<version, 32 hex digits>` → [`GarbageRecord`], so a
//! scan from the start yields the oldest first.

use super::error::MetaError;
use super::model::{GarbageId, GarbageRecord, ObjectData};
use super::state::{decode_value, encode_value, get_decoded, Op, StateRead};
use crate::types::VersionId;

pub(crate) const GARBAGE_PREFIX: &[u8] = b"g/";

pub fn garbage_key(id: GarbageId) -> Vec<u8> {
    // Times before 1970 do not occur; clamp rather than wrap so ordering holds.
    format!("g/{:016x}/{:032x}", id.retired_ms.max(0), id.version.0).into_bytes()
}

/// The changes that queue every erasure-coded piece of `data` (parts expanded; inline data has
/// nothing to delete) for retirement at `retired_ms`.
pub fn retire_ops(
    retired_ms: i64,
    version: VersionId,
    data: &ObjectData,
) -> Result<Vec<Op>, MetaError> {
    let mut ops = Vec::new();
    for (version, piece) in data.pieces(version) {
        if let ObjectData::Sharded { shard_nodes, .. } = piece {
            let id = GarbageId {
                retired_ms,
                version,
            };
            let record = GarbageRecord {
                id,
                shard_nodes: shard_nodes.clone(),
            };
            ops.push(Op::Put(garbage_key(id), encode_value(&record)?));
        }
    }
    Ok(ops)
}

/// The oldest entries retired at or before `before_ms`, at most `limit`.
pub fn due(
    state: &dyn StateRead,
    before_ms: i64,
    limit: usize,
) -> Result<Vec<GarbageRecord>, MetaError> {
    let mut out = Vec::new();
    let mut cursor = state.cursor();
    cursor.seek(GARBAGE_PREFIX);
    while out.len() < limit {
        let Some((k, v)) = cursor.current()? else {
            break;
        };
        if !k.starts_with(GARBAGE_PREFIX) {
            break;
        }
        let record: GarbageRecord = decode_value(v)?;
        if record.id.retired_ms > before_ms {
            break;
        }
        out.push(record);
        cursor.next();
    }
    Ok(out)
}

/// The changes that forget the `done` entries and re-queue the `retry` ones under their new
/// records; entries no longer queued are left alone (a repeated progress report is a no-op).
pub fn progress_ops(
    state: &dyn StateRead,
    done: &[GarbageId],
    retry: &[(GarbageId, GarbageRecord)],
) -> Result<Vec<Op>, MetaError> {
    let mut ops = Vec::new();
    for id in done {
        let k = garbage_key(*id);
        if get_decoded::<GarbageRecord>(state, &k)?.is_some() {
            ops.push(Op::Delete(k));
        }
    }
    for (old, record) in retry {
        let k = garbage_key(*old);
        if get_decoded::<GarbageRecord>(state, &k)?.is_some() {
            ops.push(Op::Delete(k));
            ops.push(Op::Put(garbage_key(record.id), encode_value(record)?));
        }
    }
    Ok(ops)
}

/// How many entries are queued (for status; scans the queue).
pub fn queued(state: &dyn StateRead) -> Result<usize, MetaError> {
    let mut n = 0;
    let mut cursor = state.cursor();
    cursor.seek(GARBAGE_PREFIX);
    while let Some((k, _)) = cursor.current()? {
        if !k.starts_with(GARBAGE_PREFIX) {
            break;
        }
        n += 1;
        cursor.next();
    }
    Ok(n)
}
