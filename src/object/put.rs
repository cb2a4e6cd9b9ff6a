//! The write protocol shared by every operation that stores bytes: stream → hash (MD5 and the
//! requested checksums, each byte once) → erasure-coded shards at the write quorum → verify
//! the client's claims → (the caller) commit the record (the state machine queues what it
//! replaced for the retire worker).

use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use md5::Digest as _;

use super::{now_ms, ObjectError, ObjectService};
use crate::codec::checksum::{self, ChecksumSelection, Checksums};
use crate::meta::request::PutObject;
use crate::meta::{ObjectData, ObjectHeaders, ObjectRecord, WriteCondition};
use crate::types::{BucketId, VersionId};

/// What the client claimed about a body, checked before anything is committed.
#[derive(Debug, Clone, Default)]
pub struct DataExpectations {
    /// `Content-Length` (the decoded length for aws-chunked bodies).
    pub content_length: Option<u64>,
    /// `Content-MD5`, base64 as sent.
    pub content_md5: Option<String>,
    /// Checksums to compute (and verify where the client sent a value).
    pub checksums: ChecksumSelection,
    /// Largest body accepted.
    pub max_size: u64,
}

/// Where and how a new object is written.
#[derive(Debug, Clone)]
pub struct WriteSpec {
    pub bucket: BucketId,
    pub key: String,
    pub headers: ObjectHeaders,
    pub condition: Option<WriteCondition>,
}

/// A committed object.
#[derive(Debug, Clone)]
pub struct PutOutcome {
    pub version: VersionId,
    pub size: u64,
    /// Unquoted.
    pub etag: String,
    pub checksums: Checksums,
    pub last_modified_ms: i64,
}

/// Bytes stored as shards (or inline) and verified, not yet referenced by any record.
pub(crate) struct Written {
    pub version: VersionId,
    pub size: u64,
    pub md5_hex: String,
    pub checksums: Checksums,
    pub data: ObjectData,
}

fn decode_md5(b64: &str) -> Result<Vec<u8>, ObjectError> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()
        .filter(|d| d.len() == 16)
        .ok_or(ObjectError::InvalidDigest)
}

/// Checks claimed values against computed ones; returns the computed selection to store.
fn verify_checksums(
    selection: &ChecksumSelection,
    claimed: &Checksums,
    computed: &Checksums,
) -> Result<Checksums, ObjectError> {
    let mut stored = Checksums::default();
    for a in selection.iter() {
        if let Some(claim) = claimed.get(a) {
            if checksum::decode(a, claim).is_none() {
                return Err(ObjectError::InvalidChecksum(a));
            }
            if Some(claim) != computed.get(a) {
                return Err(ObjectError::BadChecksum(a));
            }
        }
        *stored.slot(a) = computed.get(a).cloned();
    }
    Ok(stored)
}

impl ObjectService {
    /// Stores `body` as a new version's data and verifies it against `expect` and the values
    /// `claimed` returns once the body has ended (headers, or trailers of an aws-chunked body).
    /// On any failure the data is deleted before returning.
    pub(crate) async fn write_data<S, E>(
        &self,
        body: S,
        expect: &DataExpectations,
        claimed: impl FnOnce() -> Checksums,
    ) -> Result<Written, ObjectError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        if let Some(len) = expect.content_length {
            if len > expect.max_size {
                return Err(ObjectError::EntityTooLarge {
                    limit: expect.max_size,
                });
            }
        }
        let content_md5 = expect.content_md5.as_deref().map(decode_md5).transpose()?;
        let version = VersionId::random();
        let mut md5 = md5::Md5::new();
        let mut hasher = expect.checksums.hasher();
        let max = expect.max_size;
        let mut seen = 0u64;
        let stream = body.map_err(|e| e.to_string()).and_then(|b: Bytes| {
            seen += b.len() as u64;
            let r = if seen > max {
                Err(format!("body larger than {max} bytes"))
            } else {
                md5.update(&b);
                hasher.update(&b);
                Ok(b)
            };
            futures::future::ready(r)
        });
        let outcome = match self.coord.write(version, stream).await {
            Ok(o) => o,
            Err(crate::coord::CoordError::Body(msg)) if seen > max => {
                tracing::debug!(%msg, "body over the size limit");
                return Err(ObjectError::EntityTooLarge { limit: max });
            }
            Err(e) => return Err(e.into()),
        };
        let md5_bytes = md5.finalize();
        let computed = hasher.finalize();
        let verified = (|| {
            if let Some(claimed) = &content_md5 {
                if claimed.as_slice() != md5_bytes.as_slice() {
                    return Err(ObjectError::BadDigest);
                }
            }
            if let Some(len) = expect.content_length {
                if len != outcome.size {
                    return Err(ObjectError::IncompleteBody);
                }
            }
            verify_checksums(&expect.checksums, &claimed(), &computed)
        })();
        match verified {
            Ok(checksums) => Ok(Written {
                version,
                size: outcome.size,
                md5_hex: hex::encode(md5_bytes),
                checksums,
                data: outcome.data,
            }),
            Err(e) => {
                self.coord
                    .delete_shards_in_background(version, &outcome.data);
                Err(e)
            }
        }
    }

    /// PutObject (and CopyObject): writes, verifies and commits a whole object.
    pub async fn put<S, E>(
        &self,
        spec: WriteSpec,
        body: S,
        expect: DataExpectations,
        claimed: impl FnOnce() -> Checksums,
    ) -> Result<PutOutcome, ObjectError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let w = self.write_data(body, &expect, claimed).await?;
        let last_modified_ms = now_ms();
        let record = ObjectRecord::new(
            w.version,
            w.size,
            w.md5_hex.clone(),
            last_modified_ms,
            spec.headers,
            w.checksums.clone(),
            w.data,
        );
        let outcome = PutOutcome {
            version: w.version,
            size: w.size,
            etag: w.md5_hex,
            checksums: w.checksums,
            last_modified_ms,
        };
        self.commit_object(spec.bucket, &spec.key, record, spec.condition)
            .await?;
        Ok(outcome)
    }

    /// Commits a record whose data is written (the state machine queues the data it replaced
    /// for retirement); frees its own data when the commit was definitely refused.
    pub(crate) async fn commit_object(
        &self,
        bucket: BucketId,
        key: &str,
        record: ObjectRecord,
        condition: Option<WriteCondition>,
    ) -> Result<(), ObjectError> {
        let (version, data) = (record.version, record.data.clone());
        let put = PutObject {
            bucket,
            key: key.to_string(),
            record,
            condition,
        };
        match self.meta.send(put).await? {
            Ok(()) => Ok(()),
            Err(refused) => {
                // A definite refusal: nothing will ever name this data.
                self.coord.delete_shards_in_background(version, &data);
                Err(refused.into())
            }
        }
    }
}
