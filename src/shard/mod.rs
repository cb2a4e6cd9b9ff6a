//! The shard store of a storage node: shard files on local disk, written durably, read by range.
//!
//! Crash consistency: a shard is written to a temp file, fsynced, renamed to its final name and
//! the directory fsynced before the write is acknowledged; so an acknowledged shard survives a
//! crash, and a crash mid-write leaves only a `*.tmp` file, removed at the next start
//! ([`ShardStore::open`]). The store does not interpret shard contents beyond checking the header
//! on write: readers verify the per-block BLAKE3 hashes.

mod rpc;

pub use rpc::{shard_path_and_query, ShardRpc};

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::codec::shard_format::{ShardFormatError, ShardHeader, HEADER_LEN};
use crate::fsutil;
use crate::types::VersionId;

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

/// Bytes gathered from the incoming stream before one vectored write: few syscalls and
/// thread hops per shard, and the body's own buffers go to the kernel without a copy.
const WRITE_BATCH_BYTES: usize = 1 << 20;

/// Most buffers handed to one `writev` (Linux's IOV_MAX is 1024).
const MAX_IOVECS: usize = 1024;

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(std::io::Error::other)?
}

/// Writes batches of chunks to a file on the blocking pool, one batch in flight while the
/// next is received.
struct PipelinedWriter {
    file: Option<std::fs::File>,
    in_flight: Option<tokio::task::JoinHandle<std::io::Result<std::fs::File>>>,
}

impl PipelinedWriter {
    fn new(file: std::fs::File) -> Self {
        PipelinedWriter {
            file: Some(file),
            in_flight: None,
        }
    }

    async fn take_file(&mut self) -> std::io::Result<std::fs::File> {
        if let Some(h) = self.in_flight.take() {
            return h.await.map_err(std::io::Error::other)?;
        }
        self.file
            .take()
            .ok_or_else(|| std::io::Error::other("shard file lost after a failed write"))
    }

    async fn submit(&mut self, chunks: Vec<Bytes>) -> std::io::Result<()> {
        let mut file = self.take_file().await?;
        if chunks.is_empty() {
            self.file = Some(file);
            return Ok(());
        }
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            write_all_vectored(&mut file, &chunks)?;
            Ok(file)
        }));
        Ok(())
    }

    async fn finish(mut self) -> std::io::Result<std::fs::File> {
        self.take_file().await
    }
}

/// `write_all` over several buffers with `writev`, resuming after short writes.
fn write_all_vectored(file: &mut std::fs::File, chunks: &[Bytes]) -> std::io::Result<()> {
    use std::io::{IoSlice, Write};
    let (mut idx, mut off) = (0usize, 0usize);
    while idx < chunks.len() {
        let slices: Vec<IoSlice<'_>> = std::iter::once(&chunks[idx][off..])
            .chain(chunks[idx + 1..].iter().map(|c| &c[..]))
            .take(MAX_IOVECS)
            .map(IoSlice::new)
            .collect();
        let mut n = match file.write_vectored(&slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        while idx < chunks.len() && n >= chunks[idx].len() - off {
            n -= chunks[idx].len() - off;
            idx += 1;
            off = 0;
        }
        off += n;
    }
    Ok(())
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
            tokio::fs::create_dir_all(dir).await?;
        }
        let tmp = fsutil::temp_path(&path);
        let result = async {
            let file = tokio::fs::File::create(&tmp).await?.into_std().await;
            let mut writer = PipelinedWriter::new(file);
            let mut pending: Vec<Bytes> = Vec::new();
            let mut pending_len = 0usize;
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
                if chunk.is_empty() {
                    continue;
                }
                written += chunk.len() as u64;
                pending_len += chunk.len();
                pending.push(chunk);
                if pending_len >= WRITE_BATCH_BYTES {
                    writer.submit(std::mem::take(&mut pending)).await?;
                    pending_len = 0;
                }
            }
            if !header_checked {
                return Err(ShardError::BadHeader(ShardFormatError::Truncated));
            }
            writer.submit(pending).await?;
            let file = writer.finish().await?;
            blocking(move || file.sync_data()).await?;
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

    /// More buffers than one writev takes, of uneven sizes, arrive in order and whole.
    #[test]
    fn vectored_write_of_many_chunks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let chunks: Vec<Bytes> = (0..3000u32)
            .map(|i| Bytes::from(vec![(i % 251) as u8; 1 + (i as usize * 7) % 300]))
            .collect();
        let mut file = std::fs::File::create(&path).expect("create");
        write_all_vectored(&mut file, &chunks).expect("write");
        drop(file);
        let want: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        assert_eq!(std::fs::read(&path).expect("read"), want);
    }
}
