//! Whole-file verification of a shard, for the scrub and for healing: the header names the
//! shard it is stored as, the file has exactly the length its object's size gives, every
//! block's BLAKE3 matches, and the block hashes give the digest the record holds (when the
//! caller names one: `bound.rs`). Reads are paced by one budget per node ([`VerifyPacer`]), shared by
//! every verification it serves, so background checks take a bounded share of the disk.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, BufReader};

use super::{ShardError, ShardStore};
use crate::codec::shard_format::{
    block_hash, DigestBuilder, ShardDigest, ShardHeader, ShardLayout, HASH_LEN, HEADER_LEN,
};
use crate::types::VersionId;

/// Default read budget of verifications on one node.
pub const DEFAULT_VERIFY_BYTES_PER_SEC: u64 = 64 * 1024 * 1024;
/// Bytes read between two pacing decisions.
const PACE_CHUNK: u64 = 1024 * 1024;

/// The outcome of checking one shard file whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardCheck {
    /// Every block verified; `bytes` read.
    Intact {
        bytes: u64,
    },
    Missing,
    Corrupt {
        reason: String,
    },
}

/// A node's read budget for verifications: each read waits until the budget has room.
#[derive(Debug)]
pub struct VerifyPacer {
    bytes_per_sec: u64,
    next_free: Mutex<Instant>,
}

impl VerifyPacer {
    pub fn new(bytes_per_sec: u64) -> Self {
        VerifyPacer {
            bytes_per_sec: bytes_per_sec.max(1),
            next_free: Mutex::new(Instant::now()),
        }
    }

    /// Waits for the budget to cover `bytes`.
    async fn take(&self, bytes: u64) {
        let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec as f64);
        let wait = {
            let mut next = self.next_free.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let start = (*next).max(now);
            *next = start + cost;
            start - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

impl ShardStore {
    /// Checks shard `shard_index` of `version`, an object (or part) of `object_size` bytes.
    pub async fn verify(
        &self,
        version: VersionId,
        shard_index: u8,
        object_size: u64,
        digest: Option<ShardDigest>,
        pacer: &VerifyPacer,
    ) -> Result<ShardCheck, ShardError> {
        let file = match tokio::fs::File::open(self.path(version, shard_index)).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ShardCheck::Missing),
            Err(e) => return Err(e.into()),
        };
        let file_len = file.metadata().await?.len();
        let mut reader = BufReader::with_capacity(PACE_CHUNK as usize, file);
        let corrupt = |reason: String| Ok(ShardCheck::Corrupt { reason });
        let mut header = [0u8; HEADER_LEN as usize];
        if reader.read_exact(&mut header).await.is_err() {
            return corrupt(format!("file of {file_len} bytes has no whole header"));
        }
        let header = match ShardHeader::decode(&header) {
            Ok(h) => h,
            Err(e) => return corrupt(format!("header: {e}")),
        };
        if header.version != version || header.shard_index != shard_index {
            return corrupt("header names another shard".into());
        }
        let layout = ShardLayout::new(header.profile.k, header.block_size, object_size);
        if file_len != layout.file_len() {
            return corrupt(format!(
                "length {file_len}, expected {} for an object of {object_size} bytes",
                layout.file_len()
            ));
        }
        let mut record = Vec::new();
        let mut unpaced = 0u64;
        let mut computed = DigestBuilder::new(version, shard_index);
        for b in 0..layout.n_blocks() {
            let len = layout.shard_len(b) as usize;
            record.resize(len + HASH_LEN as usize, 0);
            reader.read_exact(&mut record).await?;
            let (data, hash) = record.split_at(len);
            if block_hash(data) != hash {
                return corrupt(format!("block {b} fails its BLAKE3 check"));
            }
            computed.block(hash);
            unpaced += record.len() as u64;
            if unpaced >= PACE_CHUNK {
                pacer.take(unpaced).await;
                unpaced = 0;
            }
        }
        pacer.take(unpaced).await;
        if digest.is_some_and(|d| d != computed.finish()) {
            return corrupt(
                "its blocks are consistent but not the ones its record names (replaced on disk)"
                    .into(),
            );
        }
        Ok(ShardCheck::Intact { bytes: file_len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::shard_format::block_hash;
    use crate::types::ErasureProfile;
    use bytes::Bytes;

    /// Writes a 2-of-3 shard of an object of `size` bytes (1 KiB blocks) and returns the store.
    async fn store_with_shard(dir: &std::path::Path, size: u64) -> ShardStore {
        let store = ShardStore::open(dir).expect("open");
        let header = ShardHeader {
            profile: ErasureProfile { k: 2, m: 1 },
            shard_index: 1,
            block_size: 1024,
            version: VersionId(9),
        };
        let layout = ShardLayout::new(2, 1024, size);
        let mut chunks: Vec<Result<Bytes, std::io::Error>> = vec![Ok(header.encode())];
        for b in 0..layout.n_blocks() {
            let shard = vec![b as u8; layout.shard_len(b) as usize];
            let hash = Bytes::copy_from_slice(&block_hash(&shard));
            chunks.push(Ok(Bytes::from(shard)));
            chunks.push(Ok(hash));
        }
        store
            .write(VersionId(9), 1, Box::pin(futures::stream::iter(chunks)))
            .await
            .expect("write");
        store
    }

    #[tokio::test]
    async fn intact_missing_corrupt_and_short() {
        let dir = tempfile::tempdir().expect("tempdir");
        let size = 2500;
        let store = store_with_shard(dir.path(), size).await;
        let pacer = VerifyPacer::new(u64::MAX);
        let v = VersionId(9);
        assert!(matches!(
            store
                .verify(v, 1, size, None, &pacer)
                .await
                .expect("verify"),
            ShardCheck::Intact { .. }
        ));
        assert_eq!(
            store
                .verify(v, 0, size, None, &pacer)
                .await
                .expect("verify"),
            ShardCheck::Missing
        );
        // The size the record gives must match the file's length.
        assert!(matches!(
            store
                .verify(v, 1, size + 2000, None, &pacer)
                .await
                .expect("verify"),
            ShardCheck::Corrupt { .. }
        ));
        // Bound to the record's digest: this file's passes, any other fails.
        let mut d = DigestBuilder::new(v, 1);
        let layout = ShardLayout::new(2, 1024, size);
        for b in 0..layout.n_blocks() {
            d.block(&block_hash(&vec![b as u8; layout.shard_len(b) as usize]));
        }
        let digest = d.finish();
        assert!(matches!(
            store
                .verify(v, 1, size, Some(digest), &pacer)
                .await
                .expect("verify"),
            ShardCheck::Intact { .. }
        ));
        let other = ShardDigest([1; crate::codec::shard_format::DIGEST_LEN]);
        match store
            .verify(v, 1, size, Some(other), &pacer)
            .await
            .expect("verify")
        {
            ShardCheck::Corrupt { reason } => assert!(reason.contains("record"), "{reason}"),
            other => panic!("not detected: {other:?}"),
        }
        // One flipped byte in block 1.
        let path = store.path(v, 1);
        let mut bytes = std::fs::read(&path).expect("read");
        let layout = ShardLayout::new(2, 1024, size);
        bytes[layout.record_offset(1) as usize + 3] ^= 0xff;
        std::fs::write(&path, &bytes).expect("write");
        match store
            .verify(v, 1, size, None, &pacer)
            .await
            .expect("verify")
        {
            ShardCheck::Corrupt { reason } => assert!(reason.contains("block 1"), "{reason}"),
            other => panic!("not detected: {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_budget_paces_reads() {
        let pacer = VerifyPacer::new(10 * 1024 * 1024);
        let start = Instant::now();
        for _ in 0..3 {
            pacer.take(1024 * 1024).await;
        }
        // 3 MiB at 10 MiB/s: the third read waits for the first two (~0.2 s).
        assert!(start.elapsed() >= Duration::from_millis(150));
    }
}
