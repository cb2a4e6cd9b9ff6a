//! The metadata snapshot file: written and read as a stream, so neither building, sending nor
//! installing a snapshot ever holds the state in memory.
//!
//! Format (version 2):
//! - `BBSNAP` and a version byte (2);
//! - a frame holding the MessagePack [`SnapshotHeader`];
//! - frames holding MessagePack `Vec<(key, value)>` batches of `sm_data` in key order;
//! - an empty frame (the end: a truncated file is an error, not a smaller state).
//!
//! A frame is a little-endian u32 length, then that many bytes (at most [`MAX_FRAME_BYTES`]).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::error::MetaError;
use super::raft::{LogId, StoredMembership};

const MAGIC: &[u8; 6] = b"BBSNAP";
pub const SNAPSHOT_FORMAT_VERSION: u8 = 2;
/// Entries are flushed into a frame once it holds this many bytes.
const FRAME_TARGET_BYTES: usize = 1 << 20;
/// A frame larger than this is corrupt (one entry is far below it).
pub const MAX_FRAME_BYTES: usize = 64 << 20;

/// What a snapshot is of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub last_applied: Option<LogId>,
    pub last_membership: StoredMembership,
}

fn codec(e: impl std::fmt::Display) -> MetaError {
    MetaError::Codec(format!("snapshot file: {e}"))
}

fn io(e: std::io::Error) -> MetaError {
    MetaError::Storage(format!("snapshot file: {e}"))
}

/// Writes a snapshot file entry by entry.
pub struct SnapshotWriter {
    out: BufWriter<File>,
    batch: Vec<(ByteBuf, ByteBuf)>,
    batch_bytes: usize,
    pub entries: u64,
}

fn write_frame(out: &mut impl Write, bytes: &[u8]) -> Result<(), MetaError> {
    let len = u32::try_from(bytes.len()).map_err(|_| codec("frame too large"))?;
    out.write_all(&len.to_le_bytes()).map_err(io)?;
    out.write_all(bytes).map_err(io)
}

impl SnapshotWriter {
    pub fn create(path: &Path, header: &SnapshotHeader) -> Result<Self, MetaError> {
        let mut out = BufWriter::with_capacity(1 << 20, File::create(path).map_err(io)?);
        out.write_all(MAGIC).map_err(io)?;
        out.write_all(&[SNAPSHOT_FORMAT_VERSION]).map_err(io)?;
        write_frame(&mut out, &rmp_serde::to_vec_named(header).map_err(codec)?)?;
        Ok(SnapshotWriter {
            out,
            batch: Vec::new(),
            batch_bytes: 0,
            entries: 0,
        })
    }

    pub fn push(&mut self, key: &[u8], value: &[u8]) -> Result<(), MetaError> {
        self.batch_bytes += key.len() + value.len() + 8;
        self.batch
            .push((ByteBuf::from(key.to_vec()), ByteBuf::from(value.to_vec())));
        self.entries += 1;
        if self.batch_bytes >= FRAME_TARGET_BYTES {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn flush_batch(&mut self) -> Result<(), MetaError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let bytes = rmp_serde::to_vec(&self.batch).map_err(codec)?;
        write_frame(&mut self.out, &bytes)?;
        self.batch.clear();
        self.batch_bytes = 0;
        Ok(())
    }

    /// Ends the file and makes it durable; its size in bytes.
    pub fn finish(mut self) -> Result<u64, MetaError> {
        self.flush_batch()?;
        write_frame(&mut self.out, &[])?;
        let file = self.out.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        Ok(file.metadata().map_err(io)?.len())
    }
}

/// Reads a snapshot file batch by batch.
pub struct SnapshotReader {
    input: BufReader<File>,
    done: bool,
}

fn read_frame(input: &mut impl Read) -> Result<Vec<u8>, MetaError> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len).map_err(io)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(codec(format!("frame of {len} bytes")));
    }
    let mut buf = vec![0u8; len];
    input.read_exact(&mut buf).map_err(io)?;
    Ok(buf)
}

impl SnapshotReader {
    /// Opens `file` (read from its start) and reads its header.
    pub fn open(file: File) -> Result<(Self, SnapshotHeader), MetaError> {
        let mut input = BufReader::with_capacity(1 << 20, file);
        let mut magic = [0u8; 7];
        input.read_exact(&mut magic).map_err(io)?;
        if &magic[..6] != MAGIC {
            return Err(codec("not a snapshot file"));
        }
        if magic[6] != SNAPSHOT_FORMAT_VERSION {
            return Err(codec(format!("unknown format version {}", magic[6])));
        }
        let header = rmp_serde::from_slice(&read_frame(&mut input)?).map_err(codec)?;
        Ok((SnapshotReader { input, done: false }, header))
    }

    /// The next batch of entries; None at the end.
    pub fn next_batch(&mut self) -> Result<Option<Vec<(ByteBuf, ByteBuf)>>, MetaError> {
        if self.done {
            return Ok(None);
        }
        let frame = read_frame(&mut self.input)?;
        if frame.is_empty() {
            self.done = true;
            return Ok(None);
        }
        rmp_serde::from_slice(&frame).map(Some).map_err(codec)
    }
}

/// Where snapshot files live: `<meta dir>/snapshots`.
pub fn snapshots_dir(meta_dir: &Path) -> PathBuf {
    meta_dir.join("snapshots")
}

/// The file name of the snapshot `id` (ids are made of `[0-9a-z-]`; anything else is refused,
/// since a received id names a file).
pub fn file_name(id: &str, received: bool) -> Result<String, MetaError> {
    if id.is_empty()
        || id.len() > 100
        || !id
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'-')
    {
        return Err(codec(format!("bad snapshot id {id:?}")));
    }
    Ok(if received {
        format!("recv-{id}.part")
    } else {
        format!("{id}.snap")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.snap");
        let header = SnapshotHeader {
            last_applied: None,
            last_membership: StoredMembership::default(),
        };
        let mut w = SnapshotWriter::create(&path, &header).expect("create");
        let value = vec![9u8; 100_000];
        for i in 0..50u32 {
            w.push(&i.to_be_bytes(), &value).expect("push");
        }
        let size = w.finish().expect("finish");
        let (mut r, h) = SnapshotReader::open(File::open(&path).expect("open")).expect("read");
        assert_eq!(h, header);
        let mut n = 0u32;
        while let Some(batch) = r.next_batch().expect("batch") {
            for (k, v) in batch {
                assert_eq!(k.as_slice(), n.to_be_bytes());
                assert_eq!(v.len(), value.len());
                n += 1;
            }
        }
        assert_eq!(n, 50);

        // Cut short: an error, never a smaller state.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        f.set_len(size - 10).expect("truncate");
        let (mut r, _) = SnapshotReader::open(File::open(&path).expect("open")).expect("read");
        let mut failed = false;
        loop {
            match r.next_batch() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed, "a truncated snapshot must not read as complete");
        assert!(file_name("../x", true).is_err());
        assert_eq!(
            file_name("3-120-4096", false).expect("ok"),
            "3-120-4096.snap"
        );
    }
}
