//! The shard store of a storage node: shard files on local disk, written durably, read by range.
//!
//! Crash consistency: a shard is written to a temp file, fsynced, renamed to its final name and
//! the directory fsynced before the write is acknowledged; so an acknowledged shard survives a
//! crash, and a crash mid-write leaves only a `*.tmp` file, removed at the next start
//! ([`ShardStore::open`]). The store's directory and each prefix directory are fsynced into
//! their parents before the first shard is renamed into them (once per process, even when they
//! already existed: another write may have created one and not synced it yet). Each step is
//! reported to the durability journal (`fsutil::journal`), which the simulation uses to lose
//! what a power loss may lose. A write that fails or is dropped (its stream reset) removes its temp
//! file itself; what still escapes (a drop racing the file's creation) is removed by the
//! periodic sweep of temp files older than [`TEMP_MIN_AGE`] (`scan.rs`). The store does not
//! interpret shard contents beyond checking the header on write: readers verify the per-block
//! BLAKE3 hashes, and a read or verification that names the digest the record holds is refused
//! when the file does not give it (`bound.rs`).
//!
//! Committed shard files that no metadata record references (a write whose commit failed or
//! whose outcome was unknown) are found by the garbage collector (`crate::gc`) through
//! [`ShardStore::list_old`] and deleted through the RPC.
//!
//! Space: a write is refused (`DiskFull`, before its first byte or part-way) when it would eat
//! into the free space kept for the node's metadata (`space.rs`); running out of space anyway
//! (ENOSPC) is the same refusal. Either way the temp file is removed.

mod bound;
mod leases;
mod rpc;
mod scan;
mod space;
mod verify;
mod writer;

pub use bound::{Binding, BoundCache};
pub use leases::{ReadLeases, READ_LEASE};
pub use rpc::{
    delete_shard, delete_shard_if_idle, is_disk_full, is_not_bound, list_old_shards,
    shard_path_and_query, shard_read_path, verify_shard, ShardRpc, SHARD_LIST_TIMEOUT,
};
pub use scan::{
    run_temp_sweep, ShardListPage, ShardName, MAX_LIST_PAGE_SHARDS, TEMP_MIN_AGE,
    TEMP_SWEEP_INTERVAL,
};
pub use space::{
    statvfs_space, FsSpace, ShardReserve, SpaceProbe, DEFAULT_RESERVE_MIN_BYTES,
    DEFAULT_RESERVE_PERCENT,
};
pub use verify::{ShardCheck, VerifyPacer, DEFAULT_VERIFY_BYTES_PER_SEC};
#[cfg(feature = "sim-knobs")]
pub use writer::set_without_shard_sync;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::codec::shard_format::{ShardFormatError, ShardHeader, HEADER_LEN};
use crate::fsutil;
use crate::types::VersionId;
use space::{SpaceGuard, SPACE_CHECK_INTERVAL_BYTES};
use writer::ShardFileWriter;

#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("shard not found")]
    NotFound,
    #[error("bad shard header: {0}")]
    BadHeader(#[from] ShardFormatError),
    #[error("shard header does not match its name")]
    HeaderMismatch,
    /// The file's block hashes do not give the digest its object record holds: not the shard
    /// that was written (swapped or forged on disk).
    #[error("shard file does not match its object record")]
    NotBound,
    #[error("shard body ended early or failed: {0}")]
    Body(String),
    /// No room for the shard above the metadata reserve, or the disk is out of space.
    #[error("no space for shards: {0}")]
    DiskFull(String),
    #[error("disk: {0}")]
    Io(std::io::Error),
}

impl From<std::io::Error> for ShardError {
    fn from(e: std::io::Error) -> Self {
        if space::is_out_of_space(&e) {
            ShardError::DiskFull(e.to_string())
        } else {
            ShardError::Io(e)
        }
    }
}

/// Shard files under `<data_dir>/shards`.
#[derive(Debug, Clone)]
pub struct ShardStore {
    root: PathBuf,
    space: SpaceGuard,
    /// Prefix directories made durable by this process.
    dirs: Arc<fsutil::DurableDirs>,
    /// When each shard was last read (read leases for the retire worker).
    pub leases: Arc<ReadLeases>,
    /// Digests of shard files checked against their records.
    bound: Arc<BoundCache>,
}

impl ShardStore {
    /// The size and free space of the file system the store is on, as the last write's
    /// space check read it (no new `statvfs`); read now if no write ran yet.
    pub fn space(&self) -> std::io::Result<space::FsSpace> {
        match self.space.last() {
            Some(s) => Ok(s),
            None => space::statvfs_space(&self.root),
        }
    }

    /// Opens the store with the default reserve (see [`ShardReserve`]).
    pub fn open(data_dir: &Path) -> Result<Self, ShardError> {
        Self::open_with_reserve(data_dir, ShardReserve::Default)
    }

    pub fn open_with_reserve(data_dir: &Path, reserve: ShardReserve) -> Result<Self, ShardError> {
        Self::open_with_probe(data_dir, reserve, Arc::new(statvfs_space))
    }

    /// Opens the store reading free space through `probe` (tests pass a fake file system).
    pub fn open_with_probe(
        data_dir: &Path,
        reserve: ShardReserve,
        probe: SpaceProbe,
    ) -> Result<Self, ShardError> {
        let root = data_dir.join("shards");
        fsutil::ensure_dir_durable_blocking(&root)?;
        let removed = fsutil::remove_stale_temp_files(&root)?;
        if removed > 0 {
            tracing::info!(removed, "removed temp shard files left by a crash");
        }
        let space = SpaceGuard::new(root.clone(), reserve, probe);
        Ok(ShardStore {
            root,
            space,
            dirs: Default::default(),
            leases: Default::default(),
            bound: Default::default(),
        })
    }

    pub fn path(&self, version: VersionId, shard_index: u8) -> PathBuf {
        let name = version.to_string();
        self.root
            .join(&name[..2])
            .join(format!("{name}.{shard_index}"))
    }

    /// Writes a whole shard file from a stream of chunks, durably. Returns the bytes written.
    /// Refuses with `DiskFull` before reading the body when the shard would not fit above the
    /// reserve, and part-way when it stops fitting.
    pub async fn write<S, E>(
        &self,
        version: VersionId,
        shard_index: u8,
        mut body: S,
    ) -> Result<u64, ShardError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.space.check().await?;
        let path = self.path(version, shard_index);
        if let Some(dir) = path.parent() {
            self.dirs.ensure(dir).await?;
        }
        let tmp = fsutil::temp_path(&path);
        // Removes the temp file if this future is dropped before it ends (the RPC server drops
        // a handler whose stream the gateway reset).
        let mut guard = TempFileGuard(Some(tmp.clone()));
        let result = async {
            let mut writer = ShardFileWriter::create(&tmp).await?;
            let mut written: u64 = 0;
            let mut next_space_check = SPACE_CHECK_INTERVAL_BYTES;
            let mut header_checked = false;
            let mut head = Vec::with_capacity(HEADER_LEN as usize);
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| ShardError::Body(e.to_string()))?;
                if !header_checked {
                    let take = (HEADER_LEN as usize - head.len()).min(chunk.len());
                    head.extend_from_slice(&chunk[..take]);
                    if head.len() == HEADER_LEN as usize {
                        let h = ShardHeader::decode(&head)?;
                        if h.version != version || h.shard_index != shard_index {
                            return Err(ShardError::HeaderMismatch);
                        }
                        header_checked = true;
                    }
                }
                written += chunk.len() as u64;
                if written >= next_space_check {
                    self.space.check().await?;
                    next_space_check = written + SPACE_CHECK_INTERVAL_BYTES;
                }
                writer.push(chunk).await?;
            }
            if !header_checked {
                return Err(ShardError::BadHeader(ShardFormatError::Truncated));
            }
            writer.finish().await?;
            fsutil::commit_durable(&tmp, &path).await?;
            Ok(written)
        }
        .await;
        if result.is_err() {
            let _ = fsutil::remove_file(&tmp).await;
        }
        guard.0 = None;
        result
    }

    /// Reads `len` bytes at `offset` of a shard file (fewer if the file is shorter); with a
    /// `binding`, only if the file is the one its record names ([`BoundCache`]).
    pub async fn read(
        &self,
        version: VersionId,
        shard_index: u8,
        offset: u64,
        len: u64,
        binding: Option<Binding>,
    ) -> Result<Bytes, ShardError> {
        self.leases.touch(version, shard_index);
        let path = self.path(version, shard_index);
        let bound = self.bound.clone();
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(ShardError::NotFound)
                }
                Err(e) => return Err(e.into()),
            };
            let file_len = file.metadata()?.len();
            let len = len.min(file_len.saturating_sub(offset)) as usize;
            let mut buf = vec![0u8; len];
            let mut done = 0;
            while done < len {
                let n = file.read_at(&mut buf[done..], offset + done as u64)?;
                if n == 0 {
                    break;
                }
                done += n;
            }
            buf.truncate(done);
            if let Some(binding) = binding {
                bound.check(&file, version, shard_index, binding, Some((offset, &buf)))?;
            }
            Ok(Bytes::from(buf))
        })
        .await
        .map_err(|e| ShardError::Io(std::io::Error::other(e)))?
    }

    /// Deletes a shard file; deleting a missing one is not an error.
    pub async fn delete(&self, version: VersionId, shard_index: u8) -> Result<(), ShardError> {
        self.bound.forget(version, shard_index);
        match fsutil::remove_file(&self.path(version, shard_index)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// A temp file to remove when dropped armed: a shard write cancelled mid-way.
struct TempFileGuard(Option<PathBuf>);

impl Drop for TempFileGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            // One unlink, on the runtime thread: a cancelled write is rare. Any writer thread
            // still holding the file open keeps writing into the unlinked inode, then closes it.
            let _ = fsutil::remove_file_blocking(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::types::ErasureProfile;

    #[tokio::test]
    async fn write_read_delete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ShardStore::open(dir.path()).expect("open");
        let v = VersionId(42);
        let header = ShardHeader {
            profile: ErasureProfile { k: 2, m: 1 },
            shard_index: 1,
            block_size: 1024,
            version: v,
        };
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(header.encode().slice(..10)),
            Ok(header.encode().slice(10..)),
            Ok(Bytes::from_static(b"hello")),
        ];
        let n = store
            .write(v, 1, futures::stream::iter(chunks))
            .await
            .expect("write");
        assert_eq!(n, HEADER_LEN + 5);
        assert_eq!(
            store
                .read(v, 1, HEADER_LEN, 100, None)
                .await
                .expect("read")
                .as_ref(),
            b"hello"
        );
        // A header naming another shard is refused and leaves nothing behind.
        let bad: Vec<Result<Bytes, std::io::Error>> = vec![Ok(header.encode())];
        assert!(matches!(
            store.write(v, 2, futures::stream::iter(bad)).await,
            Err(ShardError::HeaderMismatch)
        ));
        assert!(matches!(
            store.read(v, 2, 0, 1, None).await,
            Err(ShardError::NotFound)
        ));
        store.delete(v, 1).await.expect("delete");
        assert!(matches!(
            store.read(v, 1, 0, 1, None).await,
            Err(ShardError::NotFound)
        ));
    }

    /// Every file under the store, temp files included.
    fn files_under(root: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(root).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                out.extend(files_under(&path));
            } else {
                out.push(path);
            }
        }
        out
    }

    /// A fake file system of 100 GiB whose free space the test sets.
    fn fake_fs(available_bytes: Arc<AtomicU64>) -> SpaceProbe {
        Arc::new(move |_| {
            Ok(FsSpace {
                total_bytes: 100 << 30,
                available_bytes: available_bytes.load(Ordering::SeqCst),
            })
        })
    }

    /// A shard of `blocks` MiB-sized chunks after its header; counts the chunks taken.
    fn shard_body(
        v: VersionId,
        blocks: usize,
        taken: Arc<AtomicU64>,
    ) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Unpin {
        let header = ShardHeader {
            profile: ErasureProfile { k: 2, m: 1 },
            shard_index: 0,
            block_size: 1 << 20,
            version: v,
        };
        let chunks = std::iter::once(header.encode())
            .chain(std::iter::repeat_n(Bytes::from(vec![1u8; 1 << 20]), blocks));
        futures::stream::iter(chunks).map(move |c| {
            taken.fetch_add(1, Ordering::SeqCst);
            Ok(c)
        })
    }

    #[tokio::test]
    async fn refuses_shards_that_would_eat_into_the_reserve() {
        let dir = tempfile::tempdir().expect("tempdir");
        let available = Arc::new(AtomicU64::new(64 << 20));
        let reserve = ShardReserve::Bytes(32 << 20);
        let store = ShardStore::open_with_probe(dir.path(), reserve, fake_fs(available.clone()))
            .expect("open");
        let root = dir.path().join("shards");

        // Room above the reserve: written whole.
        let taken = Arc::new(AtomicU64::new(0));
        store
            .write(VersionId(1), 0, shard_body(VersionId(1), 8, taken.clone()))
            .await
            .expect("fits");

        // Less than one check's margin above the reserve: refused before the body is read.
        available.store(
            (32 << 20) + space::SPACE_CHECK_MARGIN_BYTES - 1,
            Ordering::SeqCst,
        );
        let taken = Arc::new(AtomicU64::new(0));
        let refused = store
            .write(VersionId(2), 0, shard_body(VersionId(2), 8, taken.clone()))
            .await;
        assert!(
            matches!(refused, Err(ShardError::DiskFull(_))),
            "{refused:?}"
        );
        assert_eq!(taken.load(Ordering::SeqCst), 0, "the body was read");

        // The file system fills during the write: refused part-way, the temp file removed.
        available.store(64 << 20, Ordering::SeqCst);
        let taken = Arc::new(AtomicU64::new(0));
        let filling = available.clone();
        let body = shard_body(VersionId(3), 64, taken.clone()).inspect(move |_| {
            filling.fetch_sub(1 << 20, Ordering::SeqCst);
        });
        let refused = store.write(VersionId(3), 0, Box::pin(body)).await;
        assert!(
            matches!(refused, Err(ShardError::DiskFull(_))),
            "{refused:?}"
        );
        assert!(taken.load(Ordering::SeqCst) < 64, "refused only at the end");
        assert_eq!(files_under(&root), vec![store.path(VersionId(1), 0)]);
    }

    /// A write whose future is dropped mid-stream (its RPC stream reset) leaves no temp file.
    #[tokio::test]
    async fn dropped_write_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ShardStore::open(dir.path()).expect("open");
        let v = VersionId(7);
        let taken = Arc::new(AtomicU64::new(0));
        let body = shard_body(v, 2, taken.clone()).chain(futures::stream::pending());
        let write = store.write(v, 0, Box::pin(body));
        let cut = tokio::time::timeout(std::time::Duration::from_millis(200), write).await;
        assert!(cut.is_err(), "the write ended: {cut:?}");
        assert!(taken.load(Ordering::SeqCst) >= 1, "the body was not read");
        assert_eq!(
            files_under(&dir.path().join("shards")),
            Vec::<PathBuf>::new()
        );
    }

    #[test]
    fn enospc_is_disk_full() {
        let e: ShardError = std::io::Error::from_raw_os_error(libc::ENOSPC).into();
        assert!(matches!(e, ShardError::DiskFull(_)));
        let e: ShardError = std::io::Error::from_raw_os_error(libc::EIO).into();
        assert!(matches!(e, ShardError::Io(_)));
    }
}
