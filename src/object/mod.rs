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
use crate::meta::{
    BucketRecord, Command, CommandResult, MetaClient, ObjectRecord, Query, QueryResult,
};

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

    pub(crate) async fn read_meta(&self, q: Query) -> Result<QueryResult, ObjectError> {
        Ok(self.meta.read(q).await?)
    }

    pub(crate) async fn write_meta(&self, c: Command) -> Result<CommandResult, ObjectError> {
        Ok(self.meta.write(c).await?)
    }

    pub async fn bucket(&self, bucket: &str) -> Result<BucketRecord, ObjectError> {
        match self
            .read_meta(Query::GetBucket {
                name: bucket.to_string(),
            })
            .await?
        {
            QueryResult::Bucket(Some(b)) => Ok(b),
            QueryResult::Bucket(None) => Err(ObjectError::NoSuchBucket),
            _ => Err(ObjectError::Unexpected("GetBucket")),
        }
    }

    /// The current record of `bucket/key`.
    pub async fn head(&self, bucket: &str, key: &str) -> Result<ObjectRecord, ObjectError> {
        match self
            .read_meta(Query::GetObject {
                bucket: bucket.to_string(),
                key: key.to_string(),
            })
            .await?
        {
            QueryResult::Object(Some(r)) => Ok(r),
            QueryResult::Object(None) => Err(ObjectError::NoSuchKey),
            QueryResult::NoSuchBucket => Err(ObjectError::NoSuchBucket),
            _ => Err(ObjectError::Unexpected("GetObject")),
        }
    }

    /// Streams bytes `start..end` of `record`, the object `bucket/key`; damaged shards the
    /// read finds are queued for healing.
    pub fn read(
        &self,
        bucket: &str,
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
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<(), ObjectError> {
        match self
            .write_meta(Command::DeleteObject {
                bucket: bucket.to_string(),
                key: key.to_string(),
            })
            .await?
        {
            CommandResult::ObjectDeleted => Ok(()),
            CommandResult::NoSuchBucket => Err(ObjectError::NoSuchBucket),
            _ => Err(ObjectError::Unexpected("DeleteObject")),
        }
    }

    /// Replaces the tags of the current version of an object.
    pub async fn set_tags(
        &self,
        bucket: &str,
        key: &str,
        tags: std::collections::BTreeMap<String, String>,
    ) -> Result<(), ObjectError> {
        let record = self.head(bucket, key).await?;
        match self
            .write_meta(Command::SetObjectTags {
                bucket: bucket.to_string(),
                key: key.to_string(),
                version: record.version,
                tags,
            })
            .await?
        {
            CommandResult::Ok => Ok(()),
            CommandResult::NoSuchBucket => Err(ObjectError::NoSuchBucket),
            CommandResult::NoSuchKey => Err(ObjectError::NoSuchKey),
            // Overwritten between our read and the write: S3 would have tagged one or the
            // other; the client retries.
            CommandResult::PreconditionFailed => Err(ObjectError::Conflict),
            _ => Err(ObjectError::Unexpected("SetObjectTags")),
        }
    }
}
