//! Multipart uploads: parts are written (erasure-coded) as they arrive, through the same write
//! protocol as a single PUT; completion is a metadata commit that makes the listed parts one
//! object — never a copy of the data. Replaced, left-out and aborted parts go into the retire
//! queue with the commit that unlinks them.

use bytes::Bytes;
use futures::Stream;
use md5::Digest as _;

use super::put::{DataExpectations, WriteSpec};
use super::{now_ms, ObjectError, ObjectService};
use crate::codec::checksum::{self, ChecksumAlgorithm, ChecksumType, Checksums};
use crate::meta::request::{
    AbortUpload, CompleteUpload, CreateUpload, GetUpload, ListParts, ListUploads, PutPart,
};
use crate::meta::{
    ListPartsQuery, ListUploadsQuery, ObjectData, ObjectRecord, PartRecord, PartsPage, Refused,
    UploadRecord, UploadsPage, WriteCondition,
};
use crate::types::{
    BucketId, VersionId, MAX_MULTIPART_OBJECT_SIZE_BYTES, MAX_PARTS_PER_UPLOAD, MIN_PART_SIZE_BYTES,
};

/// A stored part.
#[derive(Debug, Clone)]
pub struct PartWritten {
    pub etag: String,
    pub size: u64,
    pub checksums: Checksums,
    pub last_modified_ms: i64,
}

/// One part as CompleteMultipartUpload lists it.
#[derive(Debug, Clone)]
pub struct CompletePart {
    pub number: u32,
    /// Unquoted; None when the client sent none.
    pub etag: Option<String>,
    pub checksums: Checksums,
}

#[derive(Debug, Clone)]
pub struct CompleteRequest {
    pub bucket: BucketId,
    pub key: String,
    pub upload_id: String,
    pub parts: Vec<CompletePart>,
    pub condition: Option<WriteCondition>,
    /// Whole-object checksum values sent with the request (FULL_OBJECT uploads).
    pub claimed: Checksums,
}

/// A completed upload, now the object.
#[derive(Debug, Clone)]
pub struct Completed {
    pub etag: String,
    pub size: u64,
    pub checksums: Checksums,
    pub checksum_type: Option<ChecksumType>,
}

/// S3's multipart ETag: MD5 of the concatenated binary part MD5s, then `-<parts>`.
pub fn multipart_etag<'a>(part_etags: impl ExactSizeIterator<Item = &'a str>) -> String {
    let n = part_etags.len();
    let mut md5 = md5::Md5::new();
    for e in part_etags {
        md5.update(hex::decode(e).unwrap_or_default());
    }
    format!("{}-{n}", hex::encode(md5.finalize()))
}

/// The default checksum type S3 gives an algorithm named at upload creation.
fn default_type(a: ChecksumAlgorithm) -> ChecksumType {
    match a {
        ChecksumAlgorithm::Crc64Nvme => ChecksumType::FullObject,
        _ => ChecksumType::Composite,
    }
}

impl ObjectService {
    /// CreateMultipartUpload: records the upload; returns its id.
    pub async fn create_upload(
        &self,
        spec: WriteSpec,
        initiator: String,
        checksum_algorithm: Option<ChecksumAlgorithm>,
        checksum_type: Option<ChecksumType>,
    ) -> Result<UploadRecord, ObjectError> {
        if let (Some(a), Some(ChecksumType::FullObject)) = (checksum_algorithm, checksum_type) {
            if !a.supports_full_object() {
                return Err(ObjectError::InvalidArgument(format!(
                    "The FULL_OBJECT checksum type cannot be used with the {} checksum algorithm",
                    a.name().to_uppercase()
                )));
            }
        }
        if checksum_type.is_some() && checksum_algorithm.is_none() {
            return Err(ObjectError::InvalidArgument(
                "x-amz-checksum-type needs x-amz-checksum-algorithm".into(),
            ));
        }
        let upload = UploadRecord {
            upload_id: hex::encode(rand::random::<[u8; 16]>()),
            key: spec.key,
            initiated_ms: now_ms(),
            initiator,
            headers: spec.headers,
            checksum_algorithm,
            checksum_type: checksum_algorithm.map(|a| checksum_type.unwrap_or(default_type(a))),
        };
        self.send(CreateUpload {
            bucket: spec.bucket,
            upload: upload.clone(),
        })
        .await?;
        Ok(upload)
    }

    /// The upload in progress `upload_id` for `bucket/key`.
    pub async fn upload(
        &self,
        bucket: BucketId,
        key: &str,
        upload_id: &str,
    ) -> Result<UploadRecord, ObjectError> {
        self.ask(GetUpload {
            bucket,
            key: key.to_string(),
            upload_id: upload_id.to_string(),
        })
        .await?
        .ok_or(ObjectError::NoSuchUpload)
    }

    /// UploadPart (and UploadPartCopy): stores part `number`, replacing an earlier one.
    #[allow(clippy::too_many_arguments)]
    pub async fn put_part<S, E>(
        &self,
        bucket: BucketId,
        key: &str,
        upload_id: &str,
        number: u32,
        body: S,
        mut expect: DataExpectations,
        claimed: impl FnOnce() -> Checksums,
    ) -> Result<PartWritten, ObjectError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        // Refuse before any data moves.
        let upload = self.upload(bucket, key, upload_id).await?;
        if let Some(a) = upload.checksum_algorithm {
            expect.checksums.add(a);
        }
        let w = self.write_data(body, &expect, claimed).await?;
        let last_modified_ms = now_ms();
        let part = PartRecord {
            number,
            version: w.version,
            size: w.size,
            etag: w.md5_hex.clone(),
            last_modified_ms,
            checksums: w.checksums.clone(),
            data: w.data.clone(),
        };
        let put = PutPart {
            bucket,
            key: key.to_string(),
            upload_id: upload_id.to_string(),
            part,
        };
        if let Err(refused) = self.meta.send(put).await? {
            // A definite refusal: nothing will ever name this data.
            self.coord.delete_shards_in_background(w.version, &w.data);
            return Err(refused.into());
        }
        Ok(PartWritten {
            etag: w.md5_hex,
            size: w.size,
            checksums: w.checksums,
            last_modified_ms,
        })
    }

    pub async fn list_parts(&self, q: ListPartsQuery) -> Result<PartsPage, ObjectError> {
        let page = self.ask(ListParts(q)).await?;
        if page.upload.is_none() {
            return Err(ObjectError::NoSuchUpload);
        }
        Ok(page)
    }

    pub async fn list_uploads(&self, q: ListUploadsQuery) -> Result<UploadsPage, ObjectError> {
        self.ask(ListUploads(q)).await
    }

    /// CompleteMultipartUpload: checks the listed parts against the stored ones (order, ETags,
    /// checksums, minimum size), then commits them as the object in one metadata write.
    pub async fn complete(&self, req: CompleteRequest) -> Result<Completed, ObjectError> {
        match self.complete_once(&req).await {
            Err(ObjectError::NoSuchUpload) => self.completed_before(&req).await,
            other => other,
        }
    }

    /// A resent completion (its first answer lost, or a concurrent twin won): the object the
    /// same upload became, with the same parts, answers as the completion did; anything else
    /// is NoSuchUpload.
    async fn completed_before(&self, req: &CompleteRequest) -> Result<Completed, ObjectError> {
        let record = match self.head(req.bucket, &req.key).await {
            Ok(r) => r,
            Err(ObjectError::NoSuchKey) => return Err(ObjectError::NoSuchUpload),
            Err(e) => return Err(e),
        };
        let ObjectData::Parts(parts) = &record.data else {
            return Err(ObjectError::NoSuchUpload);
        };
        let same_parts = parts.len() == req.parts.len()
            && parts.iter().zip(&req.parts).all(|(stored, listed)| {
                stored.number == listed.number
                    && listed
                        .etag
                        .as_deref()
                        .is_none_or(|e| e.eq_ignore_ascii_case(&stored.etag))
            });
        if record.completed_upload.as_deref() != Some(req.upload_id.as_str()) || !same_parts {
            return Err(ObjectError::NoSuchUpload);
        }
        Ok(Completed {
            etag: record.etag,
            size: record.size,
            checksums: record.checksums,
            checksum_type: record.checksum_type,
        })
    }

    async fn complete_once(&self, req: &CompleteRequest) -> Result<Completed, ObjectError> {
        let page = self
            .list_parts(ListPartsQuery {
                bucket: req.bucket,
                key: req.key.clone(),
                upload_id: req.upload_id.clone(),
                after: 0,
                max_parts: MAX_PARTS_PER_UPLOAD,
            })
            .await?;
        let upload = page.upload.ok_or(ObjectError::NoSuchUpload)?;
        if req.parts.is_empty() {
            return Err(ObjectError::InvalidArgument(
                "You must specify at least one part".into(),
            ));
        }
        let mut used: Vec<&PartRecord> = Vec::with_capacity(req.parts.len());
        let mut previous = 0u32;
        for listed in &req.parts {
            if listed.number <= previous {
                return Err(ObjectError::InvalidPartOrder);
            }
            previous = listed.number;
            let invalid = ObjectError::InvalidPart {
                number: listed.number,
            };
            let stored = page
                .parts
                .iter()
                .find(|p| p.number == listed.number)
                .ok_or(invalid)?;
            if listed
                .etag
                .as_deref()
                .is_some_and(|e| !e.eq_ignore_ascii_case(&stored.etag))
            {
                return Err(ObjectError::InvalidPart {
                    number: listed.number,
                });
            }
            for a in listed.checksums.algorithms() {
                if listed.checksums.get(a) != stored.checksums.get(a) {
                    return Err(ObjectError::InvalidPart {
                        number: listed.number,
                    });
                }
            }
            used.push(stored);
        }
        // Sizes only once every listed part is known to exist (S3 reports InvalidPart first).
        if let Some(small) = used
            .iter()
            .take(used.len() - 1)
            .find(|p| p.size < MIN_PART_SIZE_BYTES)
        {
            return Err(ObjectError::EntityTooSmall {
                number: small.number,
            });
        }
        let etag = multipart_etag(used.iter().map(|p| p.etag.as_str()));
        let size: u64 = used.iter().map(|p| p.size).sum();
        if size > MAX_MULTIPART_OBJECT_SIZE_BYTES {
            return Err(ObjectError::EntityTooLarge {
                limit: MAX_MULTIPART_OBJECT_SIZE_BYTES,
            });
        }
        let mut checksums = Checksums::default();
        if let (Some(a), Some(t)) = (upload.checksum_algorithm, upload.checksum_type) {
            let values: Option<Vec<&str>> = used
                .iter()
                .map(|p| p.checksums.get(a).map(String::as_str))
                .collect();
            let values = values.ok_or(ObjectError::InvalidPart {
                number: used.first().map_or(0, |p| p.number),
            })?;
            let value = match t {
                ChecksumType::Composite => checksum::composite(a, &values),
                ChecksumType::FullObject => {
                    let with_len: Vec<(&str, u64)> = values
                        .iter()
                        .zip(used.iter())
                        .map(|(v, p)| (*v, p.size))
                        .collect();
                    checksum::full_object_crc(a, &with_len)
                }
            }
            .ok_or(ObjectError::InvalidChecksum(a))?;
            if let Some(claim) = req.claimed.get(a) {
                let claim_plain = claim.split('-').next().unwrap_or(claim);
                let value_plain = value.split('-').next().unwrap_or(&value);
                if claim_plain != value_plain {
                    return Err(ObjectError::BadChecksum(a));
                }
            }
            *checksums.slot(a) = Some(value);
        }
        let mut record = ObjectRecord::new(
            VersionId::random(),
            size,
            etag.clone(),
            now_ms(),
            upload.headers.clone(),
            checksums.clone(),
            ObjectData::Inline(Vec::new()),
        );
        record.checksum_type = upload.checksum_type;
        let complete = CompleteUpload {
            bucket: req.bucket,
            key: req.key.clone(),
            upload_id: req.upload_id.clone(),
            parts: used.iter().map(|p| (p.number, p.version)).collect(),
            record,
            condition: req.condition.clone(),
        };
        match self.meta.send(complete).await? {
            Ok(()) => Ok(Completed {
                etag,
                size,
                checksums,
                checksum_type: upload.checksum_type,
            }),
            Err(Refused::PartsChanged) => Err(ObjectError::InvalidPart {
                number: used.first().map_or(0, |p| p.number),
            }),
            Err(refused) => Err(refused.into()),
        }
    }

    /// AbortMultipartUpload: removes the upload and frees its parts.
    pub async fn abort(
        &self,
        bucket: BucketId,
        key: &str,
        upload_id: &str,
    ) -> Result<(), ObjectError> {
        self.send(AbortUpload {
            bucket,
            key: key.to_string(),
            upload_id: upload_id.to_string(),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_etag_matches_s3() {
        // md5("a") and md5("b"), concatenated binary, md5 again, "-2".
        let a = hex::encode(md5::Md5::digest(b"a"));
        let b = hex::encode(md5::Md5::digest(b"b"));
        let mut raw = hex::decode(&a).expect("hex");
        raw.extend(hex::decode(&b).expect("hex"));
        let expected = format!("{}-2", hex::encode(md5::Md5::digest(&raw)));
        assert_eq!(
            multipart_etag([a.as_str(), b.as_str()].into_iter()),
            expected
        );
    }
}
