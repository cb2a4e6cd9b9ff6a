//! The metadata model: records kept in the Raft-replicated state machine, and the commands and
//! queries that act on them. Pure data; every record is versioned on disk and on the wire
//! (`#[serde(tag = "v")]`-style envelopes via the `*Versioned` enums) so later versions can
//! migrate old ones.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::request::*;
use crate::codec::shard_format::ShardDigests;
use crate::types::{BucketId, NodeId, VersionId};

/// A bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRecord {
    pub name: String,
    pub id: BucketId,
    /// The access key id that created it; it holds every right on the bucket.
    pub owner: String,
    pub created_ms: i64,
    /// Rights given to other access keys (key id → rights); never empty rights.
    #[serde(default)]
    pub grants: BTreeMap<String, BucketRights>,
    /// Bucket tags (PutBucketTagging).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// CORS rules (PutBucketCors); empty: no cross-origin access.
    #[serde(default)]
    pub cors: Vec<CorsRule>,
}

/// One CORS rule of a bucket, as S3's CORSRule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorsRule {
    pub id: Option<String>,
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age_secs: Option<i32>,
}

impl BucketRecord {
    /// What `key_id` may do here: everything for the owner, its grant otherwise.
    pub fn rights_of(&self, key_id: &str) -> BucketRights {
        if self.owner == key_id {
            return BucketRights::ALL;
        }
        self.grants.get(key_id).copied().unwrap_or_default()
    }
}

/// What an access key may do in one bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRights {
    /// Read and list objects.
    pub read: bool,
    /// Write and delete objects, multipart uploads.
    pub write: bool,
    /// Bucket settings (CORS, tags), delete the bucket, and everything above.
    pub owner: bool,
}

impl BucketRights {
    pub const ALL: BucketRights = BucketRights {
        read: true,
        write: true,
        owner: true,
    };

    pub fn any(&self) -> bool {
        self.read || self.write || self.owner
    }
}

/// The purpose label of the key that seals access-key secrets (see [`AccessKeyRecord::seal`]).
pub const ACCESS_KEY_SEAL_PURPOSE: &str = "access-key-secrets v1";

/// An access key. The secret is needed to verify SigV4, so it is stored in the replicated
/// metadata — sealed under a key derived from the cluster secret (`codec::seal`), so a
/// metadata dump alone reveals none — and never logged: `Debug` hides it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKeyRecord {
    pub key_id: String,
    pub secret: String,
    pub name: String,
    pub created_ms: i64,
    /// May create buckets. Keys stored before rights existed could, so they still can.
    #[serde(default = "yes")]
    pub allow_create_bucket: bool,
}

fn yes() -> bool {
    true
}

impl AccessKeyRecord {
    /// The record with its secret sealed (the key id is the associated data).
    pub fn seal(mut self, key: &crate::codec::seal::SealKey) -> Self {
        if !crate::codec::seal::is_sealed(&self.secret) {
            self.secret = crate::codec::seal::seal(key, &self.key_id, &self.secret, rand::random());
        }
        self
    }

    /// The plain secret (legacy unsealed records pass through).
    pub fn open_secret(
        &self,
        key: &crate::codec::seal::SealKey,
    ) -> Result<String, crate::codec::seal::SealError> {
        crate::codec::seal::open(key, &self.key_id, &self.secret)
    }
}

impl std::fmt::Debug for AccessKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKeyRecord")
            .field("key_id", &self.key_id)
            .field("name", &self.name)
            .field("created_ms", &self.created_ms)
            .field("allow_create_bucket", &self.allow_create_bucket)
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
        /// Each shard's digest, which binds its file to this record (empty in records written
        /// before digests existed).
        #[serde(default)]
        digests: ShardDigests,
    },
    /// A completed multipart upload: its parts in order, each stored under its own version id
    /// (never `Parts` again inside).
    Parts(Vec<PartRef>),
}

/// One part of a multipart object, as the object record holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRef {
    pub number: u32,
    pub version: VersionId,
    pub size: u64,
    /// Hex MD5 of the part, without quotes.
    pub etag: String,
    pub data: ObjectData,
}

impl ObjectData {
    /// Every stored piece of data: (version naming its shards, data), parts expanded.
    pub fn pieces(&self, version: VersionId) -> Vec<(VersionId, &ObjectData)> {
        match self {
            ObjectData::Parts(parts) => parts.iter().map(|p| (p.version, &p.data)).collect(),
            other => vec![(version, other)],
        }
    }

    /// Bytes held inside the record (what a Raft entry carries beyond its fixed fields).
    pub fn inline_len(&self) -> usize {
        match self {
            ObjectData::Inline(b) => b.len(),
            ObjectData::Sharded { .. } => 0,
            ObjectData::Parts(parts) => parts.iter().map(|p| p.data.inline_len()).sum(),
        }
    }
}

pub use super::repair::{
    HealOwner, HealRecord, HealReport, HealResult, RepairReport, RepairStats, ScrubCounts,
    ScrubPage, ScrubPass, ScrubState, ShardDamage,
};
pub use crate::codec::checksum::{ChecksumAlgorithm, ChecksumType, Checksums};

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
    /// How a multipart object's checksum was formed; None for single PUTs.
    #[serde(default)]
    pub checksum_type: Option<ChecksumType>,
    /// Object tags (`x-amz-tagging`, PutObjectTagging).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// `x-amz-website-redirect-location`.
    #[serde(default)]
    pub website_redirect: Option<String>,
    /// The multipart upload this object was completed from: a client that resends its
    /// CompleteMultipartUpload (its first answer lost) gets the completed object again.
    #[serde(default)]
    pub completed_upload: Option<String>,
}

impl ObjectRecord {
    /// The number of parts of a multipart object; None for single PUTs.
    pub fn parts_count(&self) -> Option<usize> {
        match &self.data {
            ObjectData::Parts(p) => Some(p.len()),
            _ => None,
        }
    }

    /// A record for data written with `headers`.
    pub fn new(
        version: VersionId,
        size: u64,
        etag: String,
        last_modified_ms: i64,
        headers: ObjectHeaders,
        checksums: Checksums,
        data: ObjectData,
    ) -> Self {
        ObjectRecord {
            version,
            size,
            etag,
            last_modified_ms,
            content_type: headers.content_type,
            content_encoding: headers.content_encoding,
            content_disposition: headers.content_disposition,
            content_language: headers.content_language,
            cache_control: headers.cache_control,
            expires_ms: headers.expires_ms,
            user_meta: headers.user_meta,
            checksums,
            data,
            checksum_type: None,
            tags: headers.tags,
            website_redirect: headers.website_redirect,
            completed_upload: None,
        }
    }

    /// The headers stored with the object (what CopyObject's COPY directive keeps).
    pub fn headers(&self) -> ObjectHeaders {
        ObjectHeaders {
            content_type: self.content_type.clone(),
            content_encoding: self.content_encoding.clone(),
            content_disposition: self.content_disposition.clone(),
            content_language: self.content_language.clone(),
            cache_control: self.cache_control.clone(),
            expires_ms: self.expires_ms,
            user_meta: self.user_meta.clone(),
            tags: self.tags.clone(),
            website_redirect: self.website_redirect.clone(),
        }
    }
}

/// What a client sets on an object besides its bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectHeaders {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
    pub expires_ms: Option<i64>,
    pub user_meta: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub website_redirect: Option<String>,
}

/// An upload in progress (CreateMultipartUpload until Complete or Abort).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub upload_id: String,
    pub key: String,
    pub initiated_ms: i64,
    /// The access key that created it.
    pub initiator: String,
    pub headers: ObjectHeaders,
    /// The checksum algorithm named at creation; parts must carry it.
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
    pub checksum_type: Option<ChecksumType>,
}

/// One uploaded part of an upload in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub number: u32,
    pub version: VersionId,
    pub size: u64,
    pub etag: String,
    pub last_modified_ms: i64,
    pub checksums: Checksums,
    pub data: ObjectData,
}

/// A condition a write holds on the current object (conditional writes, atomic in the state
/// machine).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteCondition {
    /// `If-None-Match: *`: only if no object exists under the key.
    IfNoneMatchAny,
    /// `If-Match: <etag>`: only if the current object has this ETag (unquoted).
    IfMatch(String),
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
            checksum_type: None,
            tags: BTreeMap::new(),
            website_redirect: None,
            completed_upload: None,
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

/// A state-changing command, replicated through Raft and applied in log order: the envelope
/// of the typed write requests ([`super::request`], which say what each does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    CreateBucket(CreateBucket),
    DeleteBucket(DeleteBucket),
    CreateAccessKey(CreateAccessKey),
    DeleteAccessKey(DeleteAccessKey),
    SetKeyCreateBucket(SetKeyCreateBucket),
    SetBucketGrant(SetBucketGrant),
    SetBucketTags(SetBucketTags),
    SetBucketCors(SetBucketCors),
    SealBucket(SealBucket),
    PutObject(PutObject),
    DeleteObject(DeleteObject),
    SetObjectTags(SetObjectTags),
    CreateUpload(CreateUpload),
    PutPart(PutPart),
    CompleteUpload(CompleteUpload),
    AbortUpload(AbortUpload),
    RetireProgress(RetireProgress),
    QueueHeal(QueueHeal),
    HealProgress(HealProgress),
    ScrubProgress(ScrubProgress),
}

/// Names one client write across its retries: the writing client's random id and the write's
/// sequence number there. The state machine remembers the result of every write it applied
/// for [`DEDUP_WINDOW_MS`], and answers a retry with it instead of applying the write again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestId {
    pub client: u64,
    pub seq: u64,
}

/// How long the state machine remembers an applied write's result (by the proposing leaders'
/// clocks). A client resends one write for at most `client::OVERALL_DEADLINE` (15 s), and a
/// copy proposed by a deposed leader is committed within an election or never; the rest is
/// margin for clock differences between successive leaders. Every write's record lives this
/// long (about 100 bytes each): at 3,000 writes/s, 2 minutes is ~36 MB of state.
pub const DEDUP_WINDOW_MS: i64 = 2 * 60 * 1000;

/// One client write as the group commit receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Write {
    /// None only for writes that are idempotent by themselves (the retire worker's).
    pub id: Option<RequestId>,
    pub cmd: Command,
}

/// What one Raft log entry carries (the Raft `D` type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Proposal {
    /// Group commit: writes from concurrent clients in one entry (one log fsync per node),
    /// applied in order, each seeing the changes of those before it. `at_ms` is the proposing
    /// leader's clock: the state machine's only notion of time (dedup expiry, retire queue).
    Writes { at_ms: i64, writes: Vec<Write> },
}

/// The results of one [`Proposal`], one per write, in order (the Raft `R` type).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalResult(pub Vec<CommandResult>);

/// Names one entry of the retire queue: when the data was unlinked and its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GarbageId {
    pub retired_ms: i64,
    pub version: VersionId,
}

/// Erasure-coded data that a committed overwrite, delete, abort or completion unlinked: its
/// shards are deleted by the retire worker once no GET can still be streaming them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GarbageRecord {
    pub id: GarbageId,
    /// Where each shard is (None: never written).
    pub shard_nodes: Vec<Option<NodeId>>,
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
    /// The object was stored (the data it replaced is in the retire queue).
    ObjectPut,
    /// The object is gone (its data is in the retire queue), or there was none.
    ObjectDeleted,
    AccessKeyCreated,
    AccessKeyExists,
    NoSuchAccessKey,
    /// A conditional write's condition did not hold.
    PreconditionFailed,
    /// `If-Match` on a key with no object.
    NoSuchKey,
    NoSuchUpload,
    /// A part listed in a completion was replaced or removed meanwhile.
    PartsChanged,
    /// The part was stored (a part it replaced is in the retire queue).
    PartPut,
    /// The upload became the object (the object it replaced and the parts the completion left
    /// out are in the retire queue).
    UploadCompleted,
    /// The upload is gone (its parts are in the retire queue).
    UploadAborted,
}

/// A read, answered linearizably by the leader: the envelope of the typed read requests
/// ([`super::request`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    GetBucket(GetBucket),
    ListBuckets(ListBuckets),
    GetAccessKey(GetAccessKey),
    ListAccessKeys(ListAccessKeys),
    GetObject(GetObject),
    ListObjects(ListObjects),
    GetUpload(GetUpload),
    ListParts(ListParts),
    ListUploads(ListUploads),
    RepairStatus(RepairStatus),
}

/// Parts of one upload with numbers above `after`, at most `max_parts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListPartsQuery {
    pub bucket: BucketId,
    pub key: String,
    pub upload_id: String,
    pub after: u32,
    pub max_parts: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartsPage {
    pub upload: Option<UploadRecord>,
    pub parts: Vec<PartRecord>,
    pub is_truncated: bool,
}

/// Uploads in progress in key order, then upload id order; after (key_marker,
/// upload_id_marker) as ListMultipartUploads defines it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListUploadsQuery {
    pub bucket: BucketId,
    pub prefix: String,
    pub delimiter: Option<String>,
    pub key_marker: Option<String>,
    pub upload_id_marker: Option<String>,
    pub max_uploads: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadsPage {
    pub uploads: Vec<UploadRecord>,
    pub common_prefixes: Vec<String>,
    pub is_truncated: bool,
    pub next_key_marker: Option<String>,
    pub next_upload_id_marker: Option<String>,
}

/// A listing page request: keys in byte order, strictly after `start_after`, starting with
/// `prefix`, grouped at the first `delimiter` after the prefix into common prefixes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListObjectsQuery {
    pub bucket: BucketId,
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
    Upload(Option<UploadRecord>),
    Parts(PartsPage),
    Uploads(UploadsPage),
    Repair(RepairReport),
    /// The query named a bucket that does not exist.
    NoSuchBucket,
}
