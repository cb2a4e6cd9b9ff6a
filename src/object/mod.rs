//! The object service: every S3 operation that stores object data goes through one write
//! protocol here — stream the body through MD5 and the requested checksums into the
//! coordinator (erasure-coded shards, write quorum), verify what the client claimed, commit the
//! record through Raft, which queues what the commit unlinked for the retire worker. Single PUT, UploadPart,
//! CopyObject, UploadPartCopy and CompleteMultipartUpload all use it; the gateway only turns S3
//! requests into these calls and [`ObjectError`]s into S3 errors.
//!
//! Consistency: an object (or part) becomes visible only with its committed record, after its
//! shards met the write quorum and every claimed digest matched. Data that failed a check or
//! a definite refusal (no bucket, no upload, a condition) is deleted at once; when the commit's
//! outcome is unknown (metadata unavailable) the shards stay, as garbage at worst.

mod damage;
mod error;
mod multipart;
mod put;

pub(crate) use crate::rpc::unix_now_ms as now_ms;

pub use damage::DamageReporter;
pub use error::ObjectError;
pub use multipart::{CompletePart, CompleteRequest, Completed, PartWritten};
pub use put::{DataExpectations, PutOutcome, WriteSpec};

use futures::stream::BoxStream;

use crate::coord::{CoordError, Coordinator};
use crate::meta::request::{DeleteObject, GetObject, SetObjectTags};
use crate::meta::{MetaClient, ObjectRecord, ReadRequest, WriteRequest};
use crate::types::BucketId;

/// Object reads and writes over the metadata ring and the data path.
#[derive(Clone)]
pub struct ObjectService {
    pub meta: MetaClient,
    pub coord: Coordinator,
    /// Where reads report the damaged shards they find (queued for healing).
    damage: DamageReporter,
}

impl ObjectService {
    /// The service; starts its damage reporter on the current tokio runtime.
    pub fn new(meta: MetaClient, coord: Coordinator) -> Self {
        let damage = DamageReporter::start(meta.clone());
        ObjectService {
            meta,
            coord,
            damage,
        }
    }

    /// Sends a typed metadata write; a refusal becomes its [`ObjectError`].
    pub(crate) async fn send<W: WriteRequest>(&self, req: W) -> Result<(), ObjectError> {
        Ok(self.meta.send(req).await??)
    }

    /// Asks a typed metadata read; a refusal becomes its [`ObjectError`].
    pub(crate) async fn ask<R: ReadRequest>(&self, req: R) -> Result<R::Reply, ObjectError> {
        Ok(self.meta.ask(req).await??)
    }

    /// The current record of `key` in bucket `bucket`.
    pub async fn head(&self, bucket: BucketId, key: &str) -> Result<ObjectRecord, ObjectError> {
        self.ask(GetObject {
            bucket,
            key: key.to_string(),
        })
        .await?
        .ok_or(ObjectError::NoSuchKey)
    }

    /// Streams bytes `start..end` of `record`, the object `key` of bucket `bucket`; damaged
    /// shards the read finds are queued for healing.
    pub fn read(
        &self,
        bucket: BucketId,
        key: &str,
        record: &ObjectRecord,
        start: u64,
        end: u64,
    ) -> BoxStream<'static, Result<bytes::Bytes, CoordError>> {
        self.coord.read_reporting(
            record.version,
            &record.data,
            record.size,
            start,
            end,
            Some(self.damage.hook(bucket, key)),
        )
    }

    /// Deletes one object; the retire worker frees its data after the grace. Deleting a
    /// missing key succeeds (as S3).
    pub async fn delete(&self, bucket: BucketId, key: &str) -> Result<(), ObjectError> {
        self.send(DeleteObject {
            bucket,
            key: key.to_string(),
        })
        .await
    }

    /// Replaces the tags of the current version of an object.
    pub async fn set_tags(
        &self,
        bucket: BucketId,
        key: &str,
        tags: std::collections::BTreeMap<String, String>,
    ) -> Result<(), ObjectError> {
        let record = self.head(bucket, key).await?;
        let set = SetObjectTags {
            bucket,
            key: key.to_string(),
            version: record.version,
            tags,
        };
        match self.send(set).await {
            // Overwritten between our read and the write: S3 would have tagged one or the
            // other; the client retries.
            Err(ObjectError::PreconditionFailed) => Err(ObjectError::Conflict),
            other => other,
        }
    }
}
