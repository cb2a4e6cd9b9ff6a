//! The free-space reserve of a storage node's data file system. Shards and the node's metadata
//! (RocksDB: the Raft log and the state machine) share that file system, and a failed RocksDB
//! write stops the node's Raft for good; so shard writes are refused while the reserve is still
//! free, and metadata keeps writing into it.
//!
//! A shard's length is not known when its write starts (the header does not carry it; the
//! gateway streams the object), so a write checks before its first byte and then after every
//! [`SPACE_CHECK_INTERVAL_BYTES`], each time asking for [`SPACE_CHECK_MARGIN_BYTES`] above the
//! reserve: what it may put on disk before its next check. Concurrent writes each see the same
//! free space, so together they can overshoot by one margin each; the reserve absorbs that.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::writer::WRITER_BUFFERED_BYTES;
use super::ShardError;

/// The default reserve is the larger of this and [`DEFAULT_RESERVE_PERCENT`] of the file system.
pub const DEFAULT_RESERVE_MIN_BYTES: u64 = 1 << 30;
pub const DEFAULT_RESERVE_PERCENT: u64 = 5;
/// Bytes a shard write takes in between two free-space checks.
pub const SPACE_CHECK_INTERVAL_BYTES: u64 = 1 << 20;
/// Free space a check asks for above the reserve: one interval of new bytes, plus what the file
/// writer may still hold in its buffers (taken from the body, not yet on disk, so not yet seen by
/// the check).
pub const SPACE_CHECK_MARGIN_BYTES: u64 = 4 << 20;
const _: () =
    assert!(SPACE_CHECK_MARGIN_BYTES >= SPACE_CHECK_INTERVAL_BYTES + WRITER_BUFFERED_BYTES);

/// How much free space the shard store leaves to metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardReserve {
    /// The larger of 1 GiB and 5 % of the file system.
    Default,
    Bytes(u64),
}

impl ShardReserve {
    /// From a configured byte count; none configured is the default.
    pub fn from_config(bytes: Option<u64>) -> Self {
        bytes.map_or(ShardReserve::Default, ShardReserve::Bytes)
    }

    /// The reserve on a file system of `total_bytes`.
    pub fn bytes(self, total_bytes: u64) -> u64 {
        match self {
            ShardReserve::Default => {
                DEFAULT_RESERVE_MIN_BYTES.max(total_bytes / 100 * DEFAULT_RESERVE_PERCENT)
            }
            ShardReserve::Bytes(b) => b,
        }
    }
}

/// A file system's size and the space an unprivileged writer may still use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsSpace {
    pub total_bytes: u64,
    pub available_bytes: u64,
}

/// Reads the space of the file system holding a path.
pub type SpaceProbe = Arc<dyn Fn(&Path) -> io::Result<FsSpace> + Send + Sync>;

/// `statvfs(2)`. Available is `f_bavail`: root may write into the blocks ext4 keeps for it, but
/// counting them would let shards take what the reserve is meant to keep.
pub fn statvfs_space(path: &Path) -> io::Result<FsSpace> {
    let st = nix::sys::statvfs::statvfs(path).map_err(io::Error::from)?;
    let frag = st.fragment_size() as u64;
    Ok(FsSpace {
        total_bytes: (st.blocks() as u64).saturating_mul(frag),
        available_bytes: (st.blocks_available() as u64).saturating_mul(frag),
    })
}

/// Whether an I/O error means the file system (or the writer's quota) is out of space.
pub fn is_out_of_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Refuses unless `space` leaves `margin_bytes` above the reserve.
pub fn check(space: FsSpace, reserve: ShardReserve, margin_bytes: u64) -> Result<(), ShardError> {
    let reserve_bytes = reserve.bytes(space.total_bytes);
    if space.available_bytes < reserve_bytes.saturating_add(margin_bytes) {
        return Err(ShardError::DiskFull(format!(
            "{} bytes available, {reserve_bytes} reserved for metadata",
            space.available_bytes
        )));
    }
    Ok(())
}

/// The shard store's view of its file system's free space.
#[derive(Clone)]
pub struct SpaceGuard {
    root: PathBuf,
    reserve: ShardReserve,
    probe: SpaceProbe,
    /// What the last check read (total, available), for the metrics; 0/0 before any.
    last: Arc<(AtomicU64, AtomicU64)>,
}

impl std::fmt::Debug for SpaceGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpaceGuard")
            .field("root", &self.root)
            .field("reserve", &self.reserve)
            .finish_non_exhaustive()
    }
}

impl SpaceGuard {
    pub fn new(root: PathBuf, reserve: ShardReserve, probe: SpaceProbe) -> Self {
        SpaceGuard {
            root,
            reserve,
            probe,
            last: Arc::default(),
        }
    }

    /// The space the last check read, if one ran.
    pub fn last(&self) -> Option<FsSpace> {
        let total_bytes = self.last.0.load(Ordering::Relaxed);
        (total_bytes > 0).then(|| FsSpace {
            total_bytes,
            available_bytes: self.last.1.load(Ordering::Relaxed),
        })
    }

    /// Refuses (`DiskFull`) unless the next [`SPACE_CHECK_INTERVAL_BYTES`] of a write fit above
    /// the reserve.
    pub async fn check(&self) -> Result<(), ShardError> {
        let root = self.root.clone();
        let probe = self.probe.clone();
        let space = tokio::task::spawn_blocking(move || probe(&root))
            .await
            .map_err(io::Error::other)??;
        self.last.0.store(space.total_bytes, Ordering::Relaxed);
        self.last.1.store(space.available_bytes, Ordering::Relaxed);
        check(space, self.reserve, SPACE_CHECK_MARGIN_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn default_reserve_is_the_larger_of_1_gib_and_5_percent() {
        assert_eq!(ShardReserve::Default.bytes(4 * GIB), GIB);
        assert_eq!(ShardReserve::Default.bytes(0), GIB);
        assert_eq!(ShardReserve::Default.bytes(1000 * GIB), 50 * GIB);
        assert_eq!(ShardReserve::Bytes(7).bytes(1000 * GIB), 7);
        assert_eq!(ShardReserve::from_config(None), ShardReserve::Default);
        assert_eq!(ShardReserve::from_config(Some(0)), ShardReserve::Bytes(0));
    }

    #[test]
    fn refuses_what_would_reach_into_the_reserve() {
        let space = |available_bytes| FsSpace {
            total_bytes: 100 * GIB,
            available_bytes,
        };
        let reserve = ShardReserve::Bytes(GIB);
        assert!(check(space(GIB + 10), reserve, 10).is_ok());
        assert!(matches!(
            check(space(GIB + 9), reserve, 10),
            Err(ShardError::DiskFull(_))
        ));
        // The default on 100 GiB is 5 GiB.
        assert!(check(space(5 * GIB), ShardReserve::Default, 1).is_err());
        assert!(check(space(6 * GIB), ShardReserve::Default, 1).is_ok());
        // A reserve near u64::MAX refuses, never overflows.
        assert!(check(space(u64::MAX - 1), ShardReserve::Bytes(u64::MAX - 1), 1).is_err());
    }

    #[test]
    fn statvfs_reads_this_file_system() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = statvfs_space(dir.path()).expect("statvfs");
        assert!(s.total_bytes > 0 && s.available_bytes <= s.total_bytes);
        assert!(statvfs_space(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn enospc_and_edquot_are_out_of_space() {
        assert!(is_out_of_space(&io::Error::from_raw_os_error(libc::ENOSPC)));
        assert!(is_out_of_space(&io::Error::from_raw_os_error(libc::EDQUOT)));
        assert!(!is_out_of_space(&io::Error::from_raw_os_error(libc::EIO)));
        assert!(!is_out_of_space(&io::Error::other("x")));
    }
}
