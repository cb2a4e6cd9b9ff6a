//! Identifiers, units and limits shared by every layer. Pure data: no IO here.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A storage node's id, unique in the cluster and never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// A site (failure domain: a datacenter).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SiteId(pub String);

impl fmt::Display for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A bucket's internal id: random at creation, so a bucket deleted and created again under the
/// same name never sees the old bucket's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BucketId(pub u64);

/// One version of one object: names its shards on disk and seeds its placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VersionId(pub u128);

impl VersionId {
    pub fn random() -> Self {
        VersionId(rand::random())
    }
}

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// Objects up to this size live inside their metadata record (one Raft write, no shards).
pub const INLINE_THRESHOLD_BYTES: u64 = 16 * 1024;
/// Objects are cut into blocks of this size before erasure coding.
pub const DEFAULT_BLOCK_SIZE_BYTES: u32 = 1024 * 1024;
/// The largest object a single PUT accepts (as S3).
pub const MAX_OBJECT_SIZE_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// Parts of one multipart upload at most, numbered 1..=this (as S3).
pub const MAX_PARTS_PER_UPLOAD: usize = 10_000;
/// Every part of a multipart object but the last must be at least this large (as S3).
pub const MIN_PART_SIZE_BYTES: u64 = 5 * 1024 * 1024;
/// The largest part (as S3).
pub const MAX_PART_SIZE_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// The largest object, multipart (as S3).
pub const MAX_MULTIPART_OBJECT_SIZE_BYTES: u64 = 5 * 1024 * 1024 * 1024 * 1024;
/// User metadata (`x-amz-meta-*` names and values) at most, in bytes (as S3).
pub const MAX_USER_META_BYTES: usize = 2 * 1024;
/// Tags per object at most, and their key and value lengths (as S3).
pub const MAX_OBJECT_TAGS: usize = 10;
pub const MAX_TAG_KEY_LEN: usize = 128;
pub const MAX_TAG_VALUE_LEN: usize = 256;
/// Keys per listing page at most (as S3).
pub const MAX_KEYS_PER_PAGE: usize = 1000;
/// The longest object key accepted, in bytes (as S3).
pub const MAX_KEY_LEN_BYTES: usize = 1024;
/// Blocks fetched per shard read request on the GET path; bounds gateway memory per GET to
/// `READ_WINDOW_BLOCKS * block size` (plus one window of read-ahead).
pub const READ_WINDOW_BLOCKS: u64 = 8;

const _: () = assert!(INLINE_THRESHOLD_BYTES < DEFAULT_BLOCK_SIZE_BYTES as u64);
const _: () =
    assert!(MIN_PART_SIZE_BYTES * (MAX_PARTS_PER_UPLOAD as u64) <= MAX_MULTIPART_OBJECT_SIZE_BYTES);

/// An erasure profile: k data shards and m parity shards per block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureProfile {
    pub k: u8,
    pub m: u8,
}

impl ErasureProfile {
    pub fn n_shards(&self) -> usize {
        self.k as usize + self.m as usize
    }
}
