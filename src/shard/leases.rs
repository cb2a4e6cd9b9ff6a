//! Read leases: when each shard was last read. A GET streams an object window by window, so
//! while it runs its shards are read every few seconds; the retire worker deletes a retired
//! shard only once it has not been read for [`READ_LEASE`] (`DELETE …?idle_ms=`), so a GET that
//! resolved the old record before an overwrite streams to its end however long it takes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::types::VersionId;

/// How long after its last read a retired shard is kept.
pub const READ_LEASE: Duration = Duration::from_secs(30);
/// How often expired entries are dropped (by time, so a busy node never prunes per read).
const PRUNE_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct ReadLeases {
    state: Mutex<Leases>,
}

#[derive(Debug)]
struct Leases {
    last_read: HashMap<(VersionId, u8), Instant>,
    pruned_at: Instant,
}

impl Default for ReadLeases {
    fn default() -> Self {
        ReadLeases {
            state: Mutex::new(Leases {
                last_read: HashMap::new(),
                pruned_at: Instant::now(),
            }),
        }
    }
}

impl ReadLeases {
    /// Records a read of shard `index` of `version` now. The map holds the shards read in the
    /// last `READ_LEASE + PRUNE_EVERY` at most.
    pub fn touch(&self, version: VersionId, index: u8) {
        let now = Instant::now();
        let mut state = self.lock();
        if now.duration_since(state.pruned_at) >= PRUNE_EVERY {
            state
                .last_read
                .retain(|_, t| now.duration_since(*t) < READ_LEASE);
            state.pruned_at = now;
        }
        state.last_read.insert((version, index), now);
    }

    /// Whether shard `index` of `version` was read less than `within` ago.
    pub fn read_within(&self, version: VersionId, index: u8, within: Duration) -> bool {
        self.lock()
            .last_read
            .get(&(version, index))
            .is_some_and(|t| t.elapsed() < within)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Leases> {
        // Single map operations: a panic cannot leave it half-changed.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_holds_the_lease() {
        let leases = ReadLeases::default();
        let v = VersionId(7);
        assert!(!leases.read_within(v, 0, READ_LEASE));
        leases.touch(v, 0);
        assert!(leases.read_within(v, 0, READ_LEASE));
        assert!(!leases.read_within(v, 1, READ_LEASE));
        assert!(!leases.read_within(v, 0, Duration::ZERO));
    }
}
