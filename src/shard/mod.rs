//! The shard store of a storage node: shard files on local disk, written durably, read by range.
//!
//! Crash consistency: a shard is written to a temp file, fsynced, renamed to its final name and
//! the directory fsynced before the write is acknowledged; so an acknowledged shard survives a
//! crash, and a crash mid-write leaves only a `*.tmp` file, removed at the next start
//! ([`ShardStore::open`]). The store does not interpret shard contents beyond checking the header
//! on write: readers verify the per-block BLAKE3 hashes.

mod rpc;
mod writer;

pub use rpc::{delete_shard, shard_path_and_query, ShardRpc};

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::codec::shard_format::{ShardFormatError, ShardHeader, HEADER_LEN};
use crate::fsutil;
use crate::types::VersionId;
use writer::ShardFileWriter;

#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("shard not found")]
    NotFound,
    #[error("bad shard header: {0}")]
    BadHeader(#[from] ShardFormatError),
    #[error("shard header does not match its name")]
    HeaderMismatch,
    #[error("shard body ended early or failed: {0}")]
    Body(String),
    #[error("disk: {0}")]
    Io(#[from] std::io::Error),
}

/// Shard files under `<data_dir>/shards`.
#[derive(Debug, Clone)]
pub struct ShardStore {
    root: PathBuf,
}

impl ShardStore {
    pub fn open(data_dir: &Path) -> Result<Self, ShardError> {
        let root = data_dir.join("shards");
        std::fs::create_dir_all(&root)?;
        let removed = fsutil::remove_stale_temp_files(&root)?;
        if removed > 0 {
            tracing::info!(removed, "removed temp shard files left by a crash");
        }
        Ok(ShardStore { root })
    }

    pub fn path(&self, version: VersionId, shard_index: u8) -> PathBuf {
        let name = version.to_string();
        self.root
            .join(&name[..2])
            .join(format!("{name}.{shard_index}"))
    }

    /// Writes a whole shard file from a stream of chunks, durably. Returns the bytes written.
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
        let path = self.path(version, shard_index);
        if let Some(dir) = path.parent() {
            fsutil::ensure_dir_durable(dir).await?;
        }
        let tmp = fsutil::temp_path(&path);
        let result = async {
            let mut writer = ShardFileWriter::create(&tmp).await?;
            let mut written: u64 = 0;
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
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    /// Reads `len` bytes at `offset` of a shard file (fewer if the file is shorter).
    pub async fn read(
        &self,
        version: VersionId,
        shard_index: u8,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, ShardError> {
        let path = self.path(version, shard_index);
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
            Ok(Bytes::from(buf))
        })
        .await
        .map_err(|e| ShardError::Io(std::io::Error::other(e)))?
    }

    /// Deletes a shard file; deleting a missing one is not an error.
    pub async fn delete(&self, version: VersionId, shard_index: u8) -> Result<(), ShardError> {
        match tokio::fs::remove_file(self.path(version, shard_index)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
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
                .read(v, 1, HEADER_LEN, 100)
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
            store.read(v, 2, 0, 1).await,
            Err(ShardError::NotFound)
        ));
        store.delete(v, 1).await.expect("delete");
        assert!(matches!(
            store.read(v, 1, 0, 1).await,
            Err(ShardError::NotFound)
        ));
    }
}
