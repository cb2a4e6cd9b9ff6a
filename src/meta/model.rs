//! The metadata model: records kept in the Raft-replicated state machine, and the commands and
//! queries that act on them. Pure data; every record is versioned on disk and on the wire
//! (`#[serde(tag = "v")]`-style envelopes via the `*Versioned` enums) so later versions can
//! migrate old ones.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::{BucketId, NodeId, VersionId};

/// A bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRecord {
    pub name: String,
    pub id: BucketId,
    /// The access key id that created it.
    pub owner: String,
    pub created_ms: i64,
}

/// An access key. The secret is stored in the replicated metadata (it is needed to verify
/// SigV4) and must never be logged: `Debug` hides it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKeyRecord {
    pub key_id: String,
    pub secret: String,
    pub name: String,
    pub created_ms: i64,
}

impl std::fmt::Debug for AccessKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKeyRecord")
            .field("key_id", &self.key_id)
            .field("name", &self.name)
            .field("created_ms", &self.created_ms)
            .finish_non_exhaustive()
    }
}

/// Where an object's bytes are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectData {
    /// Small objects: the bytes themselves.
    Inline(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Erasure-coded: block `b` of the object is encoded into `k + m` shard blocks; shard `i` of
    /// every block is stored in one shard file on `shard_nodes[i]` (None: not written, to heal).
    Sharded {
        k: u8,
        m: u8,
        block_size: u32,
        shard_nodes: Vec<Option<NodeId>>,
    },
}

/// Checksums a client asked for at PUT, base64 as S3 shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksums {
    pub crc32: Option<String>,
    pub crc32c: Option<String>,
    pub crc64nvme: Option<String>,
    pub sha1: Option<String>,
    pub sha256: Option<String>,
}

/// One object (its current version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub version: VersionId,
    pub size: u64,
    /// The S3 ETag without quotes (hex MD5 for single PUTs).
    pub etag: String,
    pub last_modified_ms: i64,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
    /// The `Expires` header, unix milliseconds.
    pub expires_ms: Option<i64>,
    /// `x-amz-meta-*` headers, names lower-case without the prefix.
    pub user_meta: BTreeMap<String, String>,
    pub checksums: Checksums,
    pub data: ObjectData,
}

#[cfg(test)]
impl ObjectRecord {
    /// A record with what tests vary; every optional header empty.
    pub(crate) fn for_tests(version: u128, size: u64, etag: String, data: Vec<u8>) -> Self {
        ObjectRecord {
            version: crate::types::VersionId(version),
            size,
            etag,
            last_modified_ms: 1,
            content_type: None,
            content_encoding: None,
            content_disposition: None,
            content_language: None,
            cache_control: None,
            expires_ms: None,
            user_meta: BTreeMap::new(),
            checksums: Checksums::default(),
            data: ObjectData::Inline(data),
        }
    }
}

/// What a listing shows of an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectSummary {
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub last_modified_ms: i64,
}

/// A state-changing command, replicated through Raft and applied in log order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    CreateBucket {
        name: String,
        id: BucketId,
        owner: String,
        created_ms: i64,
    },
    DeleteBucket {
        name: String,
    },
    PutObject {
        bucket: String,
        key: String,
        record: ObjectRecord,
    },
    DeleteObject {
        bucket: String,
        key: String,
    },
    /// Creates the key unless a key with this id exists.
    CreateAccessKey {
        record: AccessKeyRecord,
    },
    /// Group commit: commands from concurrent clients in one Raft entry (one log fsync per
    /// node), applied in order, each seeing the changes of those before it. Never nested.
    Batch(Vec<Command>),
}

/// The outcome of applying a [`Command`]. Deterministic in (state, command).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    Ok,
    BucketCreated,
    /// The bucket exists and belongs to the same owner.
    BucketAlreadyOwnedByYou,
    /// The bucket exists and belongs to another owner.
    BucketAlreadyExists,
    NoSuchBucket,
    BucketNotEmpty,
    /// The object was stored; the record it replaced, if any (its shards are garbage now).
    ObjectPut {
        replaced: Option<ObjectRecord>,
    },
    /// The object is gone; the record removed, if there was one.
    ObjectDeleted {
        removed: Option<ObjectRecord>,
    },
    AccessKeyCreated,
    AccessKeyExists,
    /// The results of a [`Command::Batch`], one per command, in order.
    Batch(Vec<CommandResult>),
}

/// A read, answered linearizably by the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    GetBucket { name: String },
    ListBuckets,
    GetObject { bucket: String, key: String },
    ListObjects(ListObjectsQuery),
    GetAccessKey { key_id: String },
    ListAccessKeys,
}

/// A listing page request: keys in byte order, strictly after `start_after`, starting with
/// `prefix`, grouped at the first `delimiter` after the prefix into common prefixes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListObjectsQuery {
    pub bucket: String,
    pub prefix: String,
    pub delimiter: Option<String>,
    pub start_after: Option<String>,
    pub max_keys: usize,
}

/// One listing page. Objects and common prefixes together are at most `max_keys` entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListObjectsPage {
    pub objects: Vec<ObjectSummary>,
    pub common_prefixes: Vec<String>,
    pub is_truncated: bool,
    /// The last key or common prefix returned: the next page starts after it.
    pub next_start_after: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueryResult {
    Bucket(Option<BucketRecord>),
    Buckets(Vec<BucketRecord>),
    /// None: no such object. `Err(NoSuchBucket)` is `BucketMissing`.
    Object(Option<ObjectRecord>),
    Objects(ListObjectsPage),
    AccessKey(Option<AccessKeyRecord>),
    AccessKeys(Vec<AccessKeyRecord>),
    /// The query named a bucket that does not exist.
    NoSuchBucket,
}
