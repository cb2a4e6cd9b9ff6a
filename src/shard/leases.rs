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
/// Entries kept at most before old ones are dropped (an entry is 40 bytes).
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Default)]
pub struct ReadLeases {
    last_read: Mutex<HashMap<(VersionId, u8), Instant>>,
}

impl ReadLeases {
    /// Records a read of shard `index` of `version` now.
    pub fn touch(&self, version: VersionId, index: u8) {
        let now = Instant::now();
        let mut map = self.lock();
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, t| now.duration_since(*t) < READ_LEASE);
        }
        map.insert((version, index), now);
    }

    /// Whether shard `index` of `version` was read less than `within` ago.
    pub fn read_within(&self, version: VersionId, index: u8, within: Duration) -> bool {
        self.lock()
            .get(&(version, index))
            .is_some_and(|t| t.elapsed() < within)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(VersionId, u8), Instant>> {
        // Single map operations: a panic cannot leave it half-changed.
        self.last_read.lock().unwrap_or_else(|e| e.into_inner())
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
