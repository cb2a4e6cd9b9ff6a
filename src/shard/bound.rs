//! Binding a shard file to its record: a read or verification that names the digest the object
//! record holds for the shard ([`ShardDigest`]) is refused with [`ShardError::NotBound`] when
//! the file's block hashes do not give that digest, however consistent the file is in itself
//! (a file swapped on disk for another valid shard, or forged whole with matching hashes).
//!
//! A read of some blocks must still check the hashes of all of them, which are spread over the
//! file (one after each block): the digest of a file is computed once (one small read per
//! block, or from the read's own bytes when the read covers every block) and kept in
//! [`BoundCache`] under the file's identity (inode, size, change time), so a file replaced or
//! rewritten afterwards is checked again.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Mutex;

use super::ShardError;
use crate::codec::shard_format::{
    DigestBuilder, ShardDigest, ShardHeader, ShardLayout, HASH_LEN, HEADER_LEN,
};
use crate::types::VersionId;

/// Files whose digest is remembered; the cache is emptied when it is full (a miss costs one
/// small read per block of the file).
const MAX_CACHED: usize = 65_536;

/// What the object record says a shard file must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    pub digest: ShardDigest,
    /// The size of the object (or part) the shard belongs to.
    pub object_size: u64,
}

/// The identity of one state of a file: a replaced or rewritten file has another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }
}

/// The digests of shard files computed so far, by shard and file state.
#[derive(Debug, Default)]
pub struct BoundCache {
    files: Mutex<HashMap<(VersionId, u8), (FileStamp, ShardDigest)>>,
}

impl BoundCache {
    /// Checks that the open shard `file` (`version`, `shard_index`) gives `binding`'s digest.
    /// `read` is a read the caller already made of bytes `offset..` of the file, used when it
    /// holds every block's hash.
    pub fn check(
        &self,
        file: &File,
        version: VersionId,
        shard_index: u8,
        binding: Binding,
        read: Option<(u64, &[u8])>,
    ) -> Result<(), ShardError> {
        let meta = file.metadata()?;
        let stamp = FileStamp::of(&meta);
        let cached = self
            .lock()
            .get(&(version, shard_index))
            .filter(|(s, _)| *s == stamp)
            .map(|(_, d)| *d);
        let digest = match cached {
            Some(d) => d,
            None => {
                let d = file_digest(file, stamp.len, version, shard_index, binding, read)?;
                let mut files = self.lock();
                if files.len() >= MAX_CACHED {
                    files.clear();
                }
                files.insert((version, shard_index), (stamp, d));
                d
            }
        };
        if digest == binding.digest {
            Ok(())
        } else {
            Err(ShardError::NotBound)
        }
    }

    /// Forgets a shard (deleted, or about to be replaced by a write).
    pub fn forget(&self, version: VersionId, shard_index: u8) {
        self.lock().remove(&(version, shard_index));
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(VersionId, u8), (FileStamp, ShardDigest)>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The digest of a shard file of `file_len` bytes. A file whose header names another shard or
/// whose length does not fit the object size gives a digest no record holds (all zeroes is as
/// good as any: it is compared, never trusted).
fn file_digest(
    file: &File,
    file_len: u64,
    version: VersionId,
    shard_index: u8,
    binding: Binding,
    read: Option<(u64, &[u8])>,
) -> Result<ShardDigest, ShardError> {
    let mismatch = ShardDigest([0; crate::codec::shard_format::DIGEST_LEN]);
    let mut header = [0u8; HEADER_LEN as usize];
    if file.read_exact_at(&mut header, 0).is_err() {
        return Ok(mismatch);
    }
    let Ok(header) = ShardHeader::decode(&header) else {
        return Ok(mismatch);
    };
    if header.version != version || header.shard_index != shard_index {
        return Ok(mismatch);
    }
    let layout = ShardLayout::new(header.profile.k, header.block_size, binding.object_size);
    if layout.file_len() != file_len {
        return Ok(mismatch);
    }
    let mut digest = DigestBuilder::new(version, shard_index);
    let mut hash = [0u8; HASH_LEN as usize];
    for b in 0..layout.n_blocks() {
        let at = layout.record_offset(b) + layout.shard_len(b);
        let in_read = read.and_then(|(offset, bytes)| {
            let start = usize::try_from(at.checked_sub(offset)?).ok()?;
            bytes.get(start..start + HASH_LEN as usize)
        });
        match in_read {
            Some(h) => digest.block(h),
            None => {
                file.read_exact_at(&mut hash, at)?;
                digest.block(&hash);
            }
        }
    }
    Ok(digest.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::shard_format::block_hash;
    use crate::types::ErasureProfile;

    /// Writes shard 1 of a 2+1 object of `size` bytes in 1 KiB blocks, its bytes `fill`;
    /// returns the file's path and its digest.
    fn shard_file(
        dir: &std::path::Path,
        v: VersionId,
        size: u64,
        fill: u8,
    ) -> (std::path::PathBuf, ShardDigest) {
        let header = ShardHeader {
            profile: ErasureProfile { k: 2, m: 1 },
            shard_index: 1,
            block_size: 1024,
            version: v,
        };
        let layout = ShardLayout::new(2, 1024, size);
        let mut bytes = header.encode().to_vec();
        let mut digest = DigestBuilder::new(v, 1);
        for b in 0..layout.n_blocks() {
            let shard = vec![fill.wrapping_add(b as u8); layout.shard_len(b) as usize];
            let hash = block_hash(&shard);
            digest.block(&hash);
            bytes.extend_from_slice(&shard);
            bytes.extend_from_slice(&hash);
        }
        let path = dir.join(format!("{v}.{fill}"));
        std::fs::write(&path, bytes).expect("write");
        (path, digest.finish())
    }

    #[test]
    fn a_file_replaced_by_another_consistent_one_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let v = VersionId(9);
        let size = 5000;
        let (path, digest) = shard_file(dir.path(), v, size, 1);
        let cache = BoundCache::default();
        let binding = Binding {
            digest,
            object_size: size,
        };
        let open = |p: &std::path::Path| File::open(p).expect("open");
        cache
            .check(&open(&path), v, 1, binding, None)
            .expect("the original is bound");
        // Again from the cache, and from a read that holds every hash.
        let all = std::fs::read(&path).expect("read");
        cache
            .check(&open(&path), v, 1, binding, Some((0, &all)))
            .expect("cached");
        // From a read of some blocks in the middle: their hashes from the read, the others
        // read from the file.
        let layout = ShardLayout::new(2, 1024, size);
        let (lo, hi) = layout.records_range(1, 3);
        BoundCache::default()
            .check(
                &open(&path),
                v,
                1,
                binding,
                Some((lo, &all[lo as usize..hi as usize])),
            )
            .expect("from a partial read");
        let fresh = BoundCache::default();
        fresh
            .check(
                &open(&path),
                v,
                1,
                binding,
                Some((HEADER_LEN, &all[HEADER_LEN as usize..])),
            )
            .expect("from the read's own bytes");

        // Another shard of the same size, internally consistent (every block matches its
        // hash, the header names this shard): replaced on disk, it is refused even though the
        // cache knew the file before.
        let (other, _) = shard_file(dir.path(), v, size, 7);
        std::fs::rename(&other, &path).expect("swap");
        assert!(matches!(
            cache.check(&open(&path), v, 1, binding, None),
            Err(ShardError::NotBound)
        ));
        // The wrong object size, or asked as another shard or version: refused.
        let (path, digest) = shard_file(dir.path(), v, size, 1);
        let wrong_size = Binding {
            digest,
            object_size: size + 1,
        };
        for (v, i, b) in [
            (v, 1, wrong_size),
            (
                v,
                0,
                Binding {
                    digest,
                    object_size: size,
                },
            ),
            (
                VersionId(8),
                1,
                Binding {
                    digest,
                    object_size: size,
                },
            ),
        ] {
            assert!(matches!(
                BoundCache::default().check(&open(&path), v, i, b, None),
                Err(ShardError::NotBound)
            ));
        }
    }
}
