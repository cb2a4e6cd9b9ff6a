//! Typed metadata requests: each write and read is its own type, with the group it goes to
//! ([`Route`]: the control group, or the partition of one bucket's records) and what it can
//! answer. [`Command`] and [`Query`] are only their envelopes on the wire and in the Raft log;
//! callers send these types through [`super::MetaClient::send`] / [`super::MetaClient::ask`]
//! and get a typed answer, or a [`Refused`] from the few refusals the request can meet.
//!
//! Object-level requests name their bucket by [`BucketId`], never by name: the state machine
//! of a bucket's partition does not hold bucket records (the control group does), and a
//! bucket deleted and created again under the same name is another bucket. A deleted bucket's
//! id is sealed in its partition ([`SealBucket`]), so a write authorised against the old
//! bucket cannot land.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::model::{
    AccessKeyRecord, BucketRecord, BucketRights, Command, CommandResult, CorsRule, GarbageId,
    GarbageRecord, HealOwner, HealReport, HealResult, ListObjectsPage, ListObjectsQuery,
    ListPartsQuery, ListUploadsQuery, ObjectRecord, PartRecord, PartsPage, Query, QueryResult,
    RepairReport, ScrubPage, UploadRecord, UploadsPage, WriteCondition,
};
use crate::types::{BucketId, VersionId};

/// The group a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The control group: buckets, access keys, the cluster map.
    Control,
    /// The partition holding this bucket's objects and uploads ([`partition_of`]).
    Bucket(BucketId),
    /// The group whose background queue the request reports on (a worker runs per group and
    /// reports to its own).
    Own,
}

/// The partition of a bucket's records among `partitions` (fixed at cluster creation).
/// Bucket ids are random, so a multiplicative hash spreads them evenly; stable forever, since
/// records are stored by it.
pub fn partition_of(bucket: BucketId, partitions: u32) -> u32 {
    let h = bucket.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((u128::from(h) * u128::from(partitions.max(1))) >> 64) as u32
}

/// Why a request was refused: the state it met, not a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no such bucket")]
    NoSuchBucket,
    #[error("the bucket exists and belongs to this owner")]
    BucketAlreadyOwnedByYou,
    #[error("the bucket exists and belongs to another owner")]
    BucketAlreadyExists,
    #[error("the bucket is not empty")]
    BucketNotEmpty,
    #[error("no such key")]
    NoSuchKey,
    #[error("no such upload")]
    NoSuchUpload,
    #[error("the condition does not hold")]
    PreconditionFailed,
    #[error("a listed part was replaced or removed")]
    PartsChanged,
    #[error("no such access key")]
    NoSuchAccessKey,
    #[error("the access key exists")]
    AccessKeyExists,
}

impl Refused {
    fn of(r: &CommandResult) -> Option<Refused> {
        Some(match r {
            CommandResult::NoSuchBucket => Refused::NoSuchBucket,
            CommandResult::BucketAlreadyOwnedByYou => Refused::BucketAlreadyOwnedByYou,
            CommandResult::BucketAlreadyExists => Refused::BucketAlreadyExists,
            CommandResult::BucketNotEmpty => Refused::BucketNotEmpty,
            CommandResult::NoSuchKey => Refused::NoSuchKey,
            CommandResult::NoSuchUpload => Refused::NoSuchUpload,
            CommandResult::PreconditionFailed => Refused::PreconditionFailed,
            CommandResult::PartsChanged => Refused::PartsChanged,
            CommandResult::NoSuchAccessKey => Refused::NoSuchAccessKey,
            CommandResult::AccessKeyExists => Refused::AccessKeyExists,
            _ => return None,
        })
    }
}

/// A state-changing request.
pub trait WriteRequest: Into<Command> {
    /// For logs and errors.
    const NAME: &'static str;
    /// The result that means it was done.
    const DONE: CommandResult;
    /// The refusals it can meet; any other result is a protocol error.
    const REFUSALS: &'static [Refused];
    fn route(&self) -> Route;

    /// The typed outcome of `result`; `Err(result)` if this request cannot answer that.
    fn outcome(result: CommandResult) -> Result<Result<(), Refused>, CommandResult> {
        if result == Self::DONE {
            return Ok(Ok(()));
        }
        match Refused::of(&result) {
            Some(r) if Self::REFUSALS.contains(&r) => Ok(Err(r)),
            _ => Err(result),
        }
    }
}

/// A read, answered linearizably by its group's leader.
pub trait ReadRequest: Into<Query> {
    const NAME: &'static str;
    type Reply;
    fn route(&self) -> Route;
    /// The typed answer of `result`; `Err(result)` if this request cannot answer that.
    fn reply(result: QueryResult) -> Result<Result<Self::Reply, Refused>, Box<QueryResult>>;
}

macro_rules! write_request {
    ($name:ident, done: $done:ident, refusals: [$($refused:ident),*], route: |$s:ident| $route:expr) => {
        impl WriteRequest for $name {
            const NAME: &'static str = stringify!($name);
            const DONE: CommandResult = CommandResult::$done;
            const REFUSALS: &'static [Refused] = &[$(Refused::$refused),*];
            fn route(&self) -> Route {
                let $s = self;
                $route
            }
        }
        impl From<$name> for Command {
            fn from(r: $name) -> Command {
                Command::$name(r)
            }
        }
    };
}

// ---- control group: buckets and access keys ----

/// Creates a bucket unless one of this name exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateBucket {
    pub name: String,
    pub id: BucketId,
    pub owner: String,
    pub created_ms: i64,
}
write_request!(CreateBucket, done: BucketCreated,
    refusals: [BucketAlreadyOwnedByYou, BucketAlreadyExists], route: |_r| Route::Control);

/// Removes the bucket record `name` if it is still bucket `id` (not one created again under
/// the name). The second step of deleting a bucket, after [`SealBucket`] in its partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteBucket {
    pub name: String,
    pub id: BucketId,
}
write_request!(DeleteBucket, done: Ok, refusals: [NoSuchBucket], route: |_r| Route::Control);

/// Creates the key unless a key with this id exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateAccessKey {
    pub record: AccessKeyRecord,
}
write_request!(CreateAccessKey, done: AccessKeyCreated, refusals: [AccessKeyExists],
    route: |_r| Route::Control);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteAccessKey {
    pub key_id: String,
}
write_request!(DeleteAccessKey, done: Ok, refusals: [NoSuchAccessKey], route: |_r| Route::Control);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetKeyCreateBucket {
    pub key_id: String,
    pub allow: bool,
}
write_request!(SetKeyCreateBucket, done: Ok, refusals: [NoSuchAccessKey],
    route: |_r| Route::Control);

/// Sets `key_id`'s rights on a bucket (all false: removes its grant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetBucketGrant {
    pub bucket: String,
    pub key_id: String,
    pub rights: BucketRights,
}
write_request!(SetBucketGrant, done: Ok, refusals: [NoSuchBucket, NoSuchAccessKey],
    route: |_r| Route::Control);

/// Replaces a bucket's tags (empty: none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetBucketTags {
    pub bucket: String,
    pub tags: BTreeMap<String, String>,
}
write_request!(SetBucketTags, done: Ok, refusals: [NoSuchBucket], route: |_r| Route::Control);

/// Replaces a bucket's CORS rules (empty: none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetBucketCors {
    pub bucket: String,
    pub rules: Vec<CorsRule>,
}
write_request!(SetBucketCors, done: Ok, refusals: [NoSuchBucket], route: |_r| Route::Control);

// ---- a bucket's partition: objects and uploads ----

/// Marks bucket `bucket` deleted in its partition if it holds no object and no upload in
/// progress: every later request naming it is refused with NoSuchBucket. Idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealBucket {
    pub bucket: BucketId,
}
write_request!(SealBucket, done: Ok, refusals: [BucketNotEmpty],
    route: |r| Route::Bucket(r.bucket));

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutObject {
    pub bucket: BucketId,
    pub key: String,
    pub record: ObjectRecord,
    #[serde(default)]
    pub condition: Option<WriteCondition>,
}
write_request!(PutObject, done: ObjectPut, refusals: [NoSuchBucket, PreconditionFailed, NoSuchKey],
    route: |r| Route::Bucket(r.bucket));

/// Deletes an object; deleting a missing key is done too (as S3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteObject {
    pub bucket: BucketId,
    pub key: String,
}
write_request!(DeleteObject, done: ObjectDeleted, refusals: [NoSuchBucket],
    route: |r| Route::Bucket(r.bucket));

/// Replaces an object's tags, if its current version is `version` (else PreconditionFailed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetObjectTags {
    pub bucket: BucketId,
    pub key: String,
    pub version: VersionId,
    pub tags: BTreeMap<String, String>,
}
write_request!(SetObjectTags, done: Ok, refusals: [NoSuchBucket, NoSuchKey, PreconditionFailed],
    route: |r| Route::Bucket(r.bucket));

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateUpload {
    pub bucket: BucketId,
    pub upload: UploadRecord,
}
write_request!(CreateUpload, done: Ok, refusals: [NoSuchBucket], route: |r| Route::Bucket(r.bucket));

/// Stores a part (replacing a part with the same number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutPart {
    pub bucket: BucketId,
    pub key: String,
    pub upload_id: String,
    pub part: PartRecord,
}
write_request!(PutPart, done: PartPut, refusals: [NoSuchBucket, NoSuchUpload],
    route: |r| Route::Bucket(r.bucket));

/// Makes the listed parts (number, version) the object; PartsChanged if any of them was
/// replaced or is gone, so the caller's checks on them still hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompleteUpload {
    pub bucket: BucketId,
    pub key: String,
    pub upload_id: String,
    pub parts: Vec<(u32, VersionId)>,
    /// The record to store; its `data` is filled in from the stored parts.
    pub record: ObjectRecord,
    pub condition: Option<WriteCondition>,
}
write_request!(CompleteUpload, done: UploadCompleted,
    refusals: [NoSuchBucket, NoSuchUpload, PartsChanged, PreconditionFailed, NoSuchKey],
    route: |r| Route::Bucket(r.bucket));

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortUpload {
    pub bucket: BucketId,
    pub key: String,
    pub upload_id: String,
}
write_request!(AbortUpload, done: UploadAborted, refusals: [NoSuchBucket, NoSuchUpload],
    route: |r| Route::Bucket(r.bucket));

// ---- a group's background queues (workers report to their own group) ----

/// The retire worker's progress: forgets the queue entries whose shards are all deleted, and
/// puts back those with shards left (under their new `retired_ms`, so they wait one more
/// grace), each only if its old entry is still queued (idempotent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetireProgress {
    pub done: Vec<GarbageId>,
    pub retry: Vec<(GarbageId, GarbageRecord)>,
}
write_request!(RetireProgress, done: Ok, refusals: [], route: |_r| Route::Own);

/// Queues damaged shards for healing (a read or the scrub found them); findings about data no
/// record holds any more are dropped. Idempotent. A gateway's findings name objects of one
/// bucket and go to its partition; a worker's name records of its own group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueHeal {
    pub reports: Vec<HealReport>,
}
write_request!(QueueHeal, done: Ok, refusals: [], route: |r| {
    match r.reports.first().map(|f| &f.owner) {
        Some(HealOwner::Object { bucket, .. }) => Route::Bucket(*bucket),
        _ => Route::Own,
    }
});

/// The heal worker's result for one queued piece (idempotent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealProgress {
    pub version: VersionId,
    pub result: HealResult,
}
write_request!(HealProgress, done: Ok, refusals: [], route: |_r| Route::Own);

/// The scrub worker's progress over one page of records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubProgress {
    pub page: ScrubPage,
}
write_request!(ScrubProgress, done: Ok, refusals: [], route: |_r| Route::Own);

// ---- reads ----

macro_rules! read_request {
    ($name:ident -> $reply:ty, route: |$s:ident| $route:expr,
     reply: { $($pat:pat => $val:expr),* $(,)? }) => {
        impl ReadRequest for $name {
            const NAME: &'static str = stringify!($name);
            type Reply = $reply;
            fn route(&self) -> Route {
                let $s = self;
                $route
            }
            fn reply(result: QueryResult) -> Result<Result<$reply, Refused>, Box<QueryResult>> {
                match result {
                    $($pat => Ok($val),)*
                    other => Err(Box::new(other)),
                }
            }
        }
        impl From<$name> for Query {
            fn from(r: $name) -> Query {
                Query::$name(r)
            }
        }
    };
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetBucket {
    pub name: String,
}
read_request!(GetBucket -> Option<BucketRecord>, route: |_r| Route::Control,
    reply: { QueryResult::Bucket(b) => Ok(b) });

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListBuckets;
read_request!(ListBuckets -> Vec<BucketRecord>, route: |_r| Route::Control,
    reply: { QueryResult::Buckets(b) => Ok(b) });

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetAccessKey {
    pub key_id: String,
}
read_request!(GetAccessKey -> Option<AccessKeyRecord>, route: |_r| Route::Control,
    reply: { QueryResult::AccessKey(k) => Ok(k) });

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListAccessKeys;
read_request!(ListAccessKeys -> Vec<AccessKeyRecord>, route: |_r| Route::Control,
    reply: { QueryResult::AccessKeys(k) => Ok(k) });

/// The current record of an object (None: no such key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetObject {
    pub bucket: BucketId,
    pub key: String,
}
read_request!(GetObject -> Option<ObjectRecord>, route: |r| Route::Bucket(r.bucket),
reply: {
    QueryResult::Object(o) => Ok(o),
    QueryResult::NoSuchBucket => Err(Refused::NoSuchBucket),
});

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListObjects(pub ListObjectsQuery);
read_request!(ListObjects -> ListObjectsPage, route: |r| Route::Bucket(r.0.bucket),
reply: {
    QueryResult::Objects(p) => Ok(p),
    QueryResult::NoSuchBucket => Err(Refused::NoSuchBucket),
});

/// An upload in progress (None: no such upload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetUpload {
    pub bucket: BucketId,
    pub key: String,
    pub upload_id: String,
}
read_request!(GetUpload -> Option<UploadRecord>, route: |r| Route::Bucket(r.bucket),
reply: {
    QueryResult::Upload(u) => Ok(u),
    QueryResult::NoSuchBucket => Err(Refused::NoSuchBucket),
});

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListParts(pub ListPartsQuery);
read_request!(ListParts -> PartsPage, route: |r| Route::Bucket(r.0.bucket),
reply: {
    QueryResult::Parts(p) => Ok(p),
    QueryResult::NoSuchBucket => Err(Refused::NoSuchBucket),
});

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListUploads(pub ListUploadsQuery);
read_request!(ListUploads -> UploadsPage, route: |r| Route::Bucket(r.0.bucket),
reply: {
    QueryResult::Uploads(p) => Ok(p),
    QueryResult::NoSuchBucket => Err(Refused::NoSuchBucket),
});

/// The repair queue and what healing and scrubbing verified (`baobab repair status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairStatus;
read_request!(RepairStatus -> RepairReport, route: |_r| Route::Own,
    reply: { QueryResult::Repair(r) => Ok(r) });

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_accepts_only_its_own_outcomes() {
        assert_eq!(PutObject::outcome(CommandResult::ObjectPut), Ok(Ok(())));
        assert_eq!(
            PutObject::outcome(CommandResult::PreconditionFailed),
            Ok(Err(Refused::PreconditionFailed))
        );
        // A result another request has is a protocol error, not a refusal.
        assert_eq!(
            PutObject::outcome(CommandResult::UploadAborted),
            Err(CommandResult::UploadAborted)
        );
        assert_eq!(
            PutObject::outcome(CommandResult::BucketNotEmpty),
            Err(CommandResult::BucketNotEmpty)
        );
        assert_eq!(
            SealBucket::outcome(CommandResult::BucketNotEmpty),
            Ok(Err(Refused::BucketNotEmpty))
        );
    }

    #[test]
    fn a_read_accepts_only_its_own_answers() {
        assert_eq!(GetObject::reply(QueryResult::Object(None)), Ok(Ok(None)));
        assert_eq!(
            GetObject::reply(QueryResult::NoSuchBucket),
            Ok(Err(Refused::NoSuchBucket))
        );
        assert_eq!(
            GetBucket::reply(QueryResult::NoSuchBucket),
            Err(Box::new(QueryResult::NoSuchBucket))
        );
    }

    #[test]
    fn object_requests_route_to_their_bucket_and_bucket_records_to_control() {
        let b = BucketId(7);
        assert_eq!(
            DeleteObject {
                bucket: b,
                key: "k".into()
            }
            .route(),
            Route::Bucket(b)
        );
        assert_eq!(SealBucket { bucket: b }.route(), Route::Bucket(b));
        assert_eq!(
            DeleteBucket {
                name: "n".into(),
                id: b
            }
            .route(),
            Route::Control
        );
        assert_eq!(GetBucket { name: "n".into() }.route(), Route::Control);
    }

    #[test]
    fn partitions_spread_random_bucket_ids_evenly() {
        let p = 64u32;
        let mut counts = vec![0u32; p as usize];
        let n = 64_000u64;
        for i in 0..n {
            // Bucket ids are random; a fixed-seed sequence stands in for them.
            let id = BucketId(i.wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ (i << 17));
            let part = partition_of(id, p);
            assert!(part < p);
            counts[part as usize] += 1;
        }
        let mean = (n / u64::from(p)) as f64;
        for c in counts {
            assert!((f64::from(c) - mean).abs() < mean * 0.15, "{c} vs {mean}");
        }
        assert_eq!(partition_of(BucketId(123), 1), 0);
        assert_eq!(partition_of(BucketId(123), 0), 0);
    }
}
