//! Exactly-once writes: the state machine remembers the result of every write that carried a
//! [`RequestId`] and answers a retry of it (a client that timed out or followed a new leader
//! resends the same write) with that result instead of applying it again. Without this, a
//! retried `PutObject` committed after a newer one points the key back at the older data.
//!
//! Keyspace: `d/<client, 16 hex><seq, 16 hex>` → [`DedupRecord`], and the expiry index
//! `e/<applied_ms, 16 hex>/<client><seq>` → empty, scanned from the oldest by [`expire_ops`].

use serde::{Deserialize, Serialize};

use super::error::MetaError;
use super::model::{CommandResult, RequestId, DEDUP_WINDOW_MS};
use super::state::{encode_value, get_decoded, Op, StateRead};

const EXPIRY_PREFIX: &[u8] = b"e/";
/// Expired records removed per applied entry at most (bounds the work of one apply; a backlog
/// drains over the following entries).
const EXPIRE_PER_ENTRY: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupRecord {
    pub applied_ms: i64,
    pub result: CommandResult,
}

fn id_hex(id: RequestId) -> String {
    format!("{:016x}{:016x}", id.client, id.seq)
}

pub fn dedup_key(id: RequestId) -> Vec<u8> {
    format!("d/{}", id_hex(id)).into_bytes()
}

fn expiry_key(applied_ms: i64, id: RequestId) -> Vec<u8> {
    format!("e/{:016x}/{}", applied_ms.max(0), id_hex(id)).into_bytes()
}

/// The result the write `id` had, if it was applied within the window.
pub fn lookup(state: &dyn StateRead, id: RequestId) -> Result<Option<CommandResult>, MetaError> {
    Ok(get_decoded::<DedupRecord>(state, &dedup_key(id))?.map(|r| r.result))
}

/// The changes that remember `result` for the write `id` applied at `applied_ms`.
pub fn remember_ops(
    applied_ms: i64,
    id: RequestId,
    result: &CommandResult,
) -> Result<Vec<Op>, MetaError> {
    let record = DedupRecord {
        applied_ms,
        result: result.clone(),
    };
    Ok(vec![
        Op::Put(dedup_key(id), encode_value(&record)?),
        Op::Put(expiry_key(applied_ms, id), Vec::new()),
    ])
}

/// The changes that forget the oldest records applied more than [`DEDUP_WINDOW_MS`] before
/// `now_ms` (at most [`EXPIRE_PER_ENTRY`]).
pub fn expire_ops(state: &dyn StateRead, now_ms: i64) -> Result<Vec<Op>, MetaError> {
    let horizon = now_ms.saturating_sub(DEDUP_WINDOW_MS);
    let mut ops = Vec::new();
    let mut cursor = state.cursor();
    cursor.seek(EXPIRY_PREFIX);
    while ops.len() < 2 * EXPIRE_PER_ENTRY {
        let Some((k, _)) = cursor.current()? else {
            break;
        };
        if !k.starts_with(EXPIRY_PREFIX) {
            break;
        }
        let Some((applied_ms, id)) = parse_expiry_key(k) else {
            // Not ours to judge; drop the malformed index entry alone.
            ops.push(Op::Delete(k.to_vec()));
            cursor.next();
            continue;
        };
        if applied_ms >= horizon {
            break;
        }
        ops.push(Op::Delete(dedup_key(id)));
        ops.push(Op::Delete(k.to_vec()));
        cursor.next();
    }
    Ok(ops)
}

fn parse_expiry_key(k: &[u8]) -> Option<(i64, RequestId)> {
    let s = std::str::from_utf8(k.strip_prefix(EXPIRY_PREFIX)?).ok()?;
    let (ms, id) = s.split_once('/')?;
    if id.len() != 32 {
        return None;
    }
    Some((
        i64::from_str_radix(ms, 16).ok()?,
        RequestId {
            client: u64::from_str_radix(id.get(..16)?, 16).ok()?,
            seq: u64::from_str_radix(id.get(16..)?, 16).ok()?,
        },
    ))
}
