//! How a shard file's bytes reach the disk, off the async threads, one batch in flight while
//! the next arrives.
//!
//! - [`DirectWriter`] (the default): `O_DIRECT` writes of 1 MiB aligned buffers. The bytes are
//!   copied once, in user space, into a buffer that stays hot in the CPU cache, and the device
//!   reads them from there; the kernel's copy into freshly allocated page-cache pages, which
//!   was more than half of a storage node's CPU under large PUTs, disappears. The last buffer
//!   is written padded to the alignment and the file is then cut to its real length.
//! - [`BufferedWriter`]: for file systems that refuse `O_DIRECT` (tmpfs on older kernels): the
//!   body's own buffers go to `writev` as they are.
//!
//! Either way the caller fsyncs (`finish` does `fdatasync`) before the shard is renamed into
//! place; `O_DIRECT` alone does not make data durable. The file's creation and its data sync
//! are reported to the durability journal (`fsutil::journal`).

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::task::JoinHandle;

use crate::fsutil::journal::{self, FsEvent};

/// Bytes per write: few syscalls and thread hops per shard.
const BATCH_BYTES: usize = 1 << 20;
/// Memory, offset and length alignment for `O_DIRECT` (covers 512 and 4096 byte sectors).
const ALIGN: usize = 4096;
/// Most buffers handed to one `writev` (Linux's IOV_MAX is 1024).
const MAX_IOVECS: usize = 1024;
/// Most bytes a writer has taken that may not be on disk yet: one batch being written and one
/// filling (or pending) behind it.
pub(super) const WRITER_BUFFERED_BYTES: u64 = 2 * BATCH_BYTES as u64;

/// The writer for one new shard file.
pub(super) struct ShardFileWriter {
    path: PathBuf,
    inner: Inner,
}

enum Inner {
    Direct(DirectWriter),
    Buffered(BufferedWriter),
}

impl ShardFileWriter {
    /// Creates (or truncates) `path`, with `O_DIRECT` when the file system takes it.
    pub async fn create(path: &Path) -> io::Result<Self> {
        let path = path.to_owned();
        blocking(move || {
            let direct = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(libc::O_DIRECT)
                .open(&path);
            let inner = match direct {
                Ok(f) => Inner::Direct(DirectWriter::new(f)),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    Inner::Buffered(BufferedWriter::new(File::create(&path)?))
                }
                Err(e) => return Err(e),
            };
            journal::record(FsEvent::FileCreated(&path));
            Ok(ShardFileWriter { path, inner })
        })
        .await
    }

    pub async fn push(&mut self, chunk: Bytes) -> io::Result<()> {
        match &mut self.inner {
            Inner::Direct(w) => w.push(&chunk).await,
            Inner::Buffered(w) => w.push(chunk).await,
        }
    }

    /// Writes what is left and makes the file's data durable.
    pub async fn finish(self) -> io::Result<()> {
        let file = match self.inner {
            Inner::Direct(w) => w.finish().await?,
            Inner::Buffered(w) => w.finish().await?,
        };
        if shard_sync_skipped() {
            return Ok(());
        }
        let path = self.path;
        blocking(move || {
            let started = std::time::Instant::now();
            file.sync_data()?;
            crate::metrics::global().shard_fsync(started.elapsed());
            journal::record(FsEvent::FileSynced(&path));
            Ok(())
        })
        .await
    }
}

/// The simulation's knob (`sim-knobs`): `finish` skips the data sync, so a shard is renamed
/// into place with its bytes still only in the page cache (the classic "rename without fsync"
/// bug), for the simulation's crash disk to find. Process-wide; never set in production.
#[cfg(feature = "sim-knobs")]
static WITHOUT_SHARD_SYNC: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Test-only (`sim-knobs`): turns the shard data sync off (`true`) or back on, process-wide.
#[cfg(feature = "sim-knobs")]
pub fn set_without_shard_sync(on: bool) {
    WITHOUT_SHARD_SYNC.store(on, std::sync::atomic::Ordering::SeqCst);
}

#[cfg(feature = "sim-knobs")]
fn shard_sync_skipped() -> bool {
    WITHOUT_SHARD_SYNC.load(std::sync::atomic::Ordering::SeqCst)
}

#[cfg(not(feature = "sim-knobs"))]
fn shard_sync_skipped() -> bool {
    false
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

/// A `BATCH_BYTES` buffer whose start is `ALIGN`-aligned, allocated without unsafe code by
/// over-allocating and starting at the first aligned byte.
struct AlignedBuf {
    mem: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    fn new() -> Self {
        let mem = vec![0u8; BATCH_BYTES + ALIGN];
        // For a byte pointer the offset to the next aligned address always exists and is < ALIGN.
        let start = mem.as_ptr().align_offset(ALIGN).min(ALIGN);
        AlignedBuf { mem, start, len: 0 }
    }

    fn is_full(&self) -> bool {
        self.len == BATCH_BYTES
    }

    /// Copies as much of `data` as fits; returns how much.
    fn fill(&mut self, data: &[u8]) -> usize {
        let n = (BATCH_BYTES - self.len).min(data.len());
        let at = self.start + self.len;
        self.mem[at..at + n].copy_from_slice(&data[..n]);
        self.len += n;
        n
    }

    /// The content, padded to the alignment with whatever the buffer held before (the file is
    /// cut to its real length after the last write).
    fn padded(&self) -> &[u8] {
        let padded = self.len.next_multiple_of(ALIGN);
        &self.mem[self.start..self.start + padded]
    }
}

type DirectInFlight = JoinHandle<io::Result<(File, AlignedBuf)>>;

pub(super) struct DirectWriter {
    file: Option<File>,
    filling: AlignedBuf,
    spare: Option<AlignedBuf>,
    in_flight: Option<DirectInFlight>,
    /// File offset where `filling` starts.
    offset: u64,
}

impl DirectWriter {
    fn new(file: File) -> Self {
        DirectWriter {
            file: Some(file),
            filling: AlignedBuf::new(),
            spare: None,
            in_flight: None,
            offset: 0,
        }
    }

    /// Waits for the write in flight; gives back the file (and its buffer as the spare).
    async fn settle(&mut self) -> io::Result<File> {
        if let Some(h) = self.in_flight.take() {
            let (file, mut buf) = h.await.map_err(io::Error::other)??;
            buf.len = 0;
            self.spare = Some(buf);
            return Ok(file);
        }
        self.file
            .take()
            .ok_or_else(|| io::Error::other("shard file lost after a failed write"))
    }

    /// Starts writing `filling` at `offset` and continues in the spare buffer.
    async fn write_filling(&mut self) -> io::Result<()> {
        let file = self.settle().await?;
        let next = self.spare.take().unwrap_or_else(AlignedBuf::new);
        let buf = std::mem::replace(&mut self.filling, next);
        let offset = self.offset;
        self.offset += buf.len as u64;
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            file.write_all_at(buf.padded(), offset)?;
            Ok((file, buf))
        }));
        Ok(())
    }

    async fn push(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = self.filling.fill(data);
            data = &data[n..];
            if self.filling.is_full() {
                self.write_filling().await?;
            }
        }
        Ok(())
    }

    async fn finish(mut self) -> io::Result<File> {
        let tail = self.filling.len;
        if tail > 0 {
            self.write_filling().await?;
        }
        let file = self.settle().await?;
        let len = self.offset;
        if !tail.is_multiple_of(ALIGN) {
            return blocking(move || {
                file.set_len(len)?;
                Ok(file)
            })
            .await;
        }
        Ok(file)
    }
}

type BufferedInFlight = JoinHandle<io::Result<File>>;

pub(super) struct BufferedWriter {
    file: Option<File>,
    pending: Vec<Bytes>,
    pending_len: usize,
    in_flight: Option<BufferedInFlight>,
}

impl BufferedWriter {
    fn new(file: File) -> Self {
        BufferedWriter {
            file: Some(file),
            pending: Vec::new(),
            pending_len: 0,
            in_flight: None,
        }
    }

    async fn settle(&mut self) -> io::Result<File> {
        if let Some(h) = self.in_flight.take() {
            return h.await.map_err(io::Error::other)?;
        }
        self.file
            .take()
            .ok_or_else(|| io::Error::other("shard file lost after a failed write"))
    }

    async fn write_pending(&mut self) -> io::Result<()> {
        let mut file = self.settle().await?;
        let chunks = std::mem::take(&mut self.pending);
        self.pending_len = 0;
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            write_all_vectored(&mut file, &chunks)?;
            Ok(file)
        }));
        Ok(())
    }

    async fn push(&mut self, chunk: Bytes) -> io::Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.pending_len += chunk.len();
        self.pending.push(chunk);
        if self.pending_len >= BATCH_BYTES {
            self.write_pending().await?;
        }
        Ok(())
    }

    async fn finish(mut self) -> io::Result<File> {
        if !self.pending.is_empty() {
            self.write_pending().await?;
        }
        self.settle().await
    }
}

/// `write_all` over several non-empty buffers with `writev`, resuming after short writes.
fn write_all_vectored(file: &mut File, chunks: &[Bytes]) -> io::Result<()> {
    use std::io::{IoSlice, Write};
    let (mut idx, mut off) = (0usize, 0usize);
    while idx < chunks.len() {
        let slices: Vec<IoSlice<'_>> = std::iter::once(&chunks[idx][off..])
            .chain(chunks[idx + 1..].iter().map(|c| &c[..]))
            .take(MAX_IOVECS)
            .map(IoSlice::new)
            .collect();
        let mut n = match file.write_vectored(&slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Uneven chunks (more than one writev takes, crossing buffer boundaries, a tail that is
    /// not aligned) arrive whole and in order through both writers, and the file has exactly
    /// their length.
    #[tokio::test]
    async fn both_writers_write_exactly_the_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let chunks: Vec<Bytes> = (0..3000u32)
            .map(|i| Bytes::from(vec![(i % 251) as u8; (i as usize * 7919) % 3001]))
            .collect();
        let want: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        assert!(want.len() > 2 * BATCH_BYTES && !want.len().is_multiple_of(ALIGN));
        for direct in [true, false] {
            let path = dir.path().join(format!("f{direct}"));
            let mut w = if direct {
                // The test directory takes O_DIRECT on CI and here; elsewhere this is the
                // buffered fallback again.
                ShardFileWriter::create(&path).await.expect("create")
            } else {
                let file = File::create(&path).expect("create");
                ShardFileWriter {
                    path: path.clone(),
                    inner: Inner::Buffered(BufferedWriter::new(file)),
                }
            };
            for c in &chunks {
                w.push(c.clone()).await.expect("push");
            }
            w.finish().await.expect("finish");
            assert_eq!(std::fs::read(&path).expect("read"), want, "direct={direct}");
        }
        // Exactly one aligned buffer, and an empty file.
        for len in [BATCH_BYTES, 0, ALIGN, 1] {
            let path = dir.path().join(format!("len{len}"));
            let mut w = ShardFileWriter::create(&path).await.expect("create");
            w.push(Bytes::from(vec![7u8; len])).await.expect("push");
            w.finish().await.expect("finish");
            assert_eq!(std::fs::read(&path).expect("read"), vec![7u8; len]);
        }
    }
}
