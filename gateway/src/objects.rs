//! Object operations: PutObject, GetObject, HeadObject, DeleteObject(s), CopyObject, object
//! tagging, GetObjectAttributes. Each turns its S3 input into an object-service call.

use std::collections::BTreeMap;
use std::sync::Arc;

use baobab::codec::checksum::{ChecksumSelection, Checksums};
use baobab::meta::ObjectData;
use baobab::meta::{BucketRecord, ObjectRecord, PartRef};
use baobab::object::{DataExpectations, WriteSpec};
use baobab::types::{MAX_KEYS_PER_PAGE, MAX_KEY_LEN_BYTES, MAX_OBJECT_SIZE_BYTES, MAX_OBJECT_TAGS};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};
use tracing::Instrument;

use crate::access::Need;
use crate::checksum::{claimed_checksums, claims_with_trailers, selection, shown, WithChecksums};
use crate::conditions::{copy_source_conditions, read_conditions, ReadConditions};
use crate::error::{from_object, invalid_argument};
use crate::headers::{header_fields, object_headers, tag_set, tags_of, timestamp, write_condition};
use crate::s3::{caller, Gateway};

/// Keys of one DeleteObjects request deleted at once.
const DELETE_OBJECTS_CONCURRENCY: usize = 32;

pub fn check_key(key: &str) -> S3Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN_BYTES {
        return Err(s3_error!(KeyTooLongError, "Your key is too long"));
    }
    Ok(())
}

fn etag(record: &ObjectRecord) -> ETag {
    ETag::Strong(record.etag.clone())
}

/// The byte range a `Range` header asks for, or None for the whole object; `InvalidRange` (416)
/// when it is not satisfiable.
pub(crate) fn requested_range(
    range: Option<&Range>,
    size: u64,
) -> S3Result<Option<std::ops::Range<u64>>> {
    range
        .map(|r| {
            r.check(size).map_err(|_| {
                let mut e = s3_error!(InvalidRange, "The requested range is not satisfiable");
                e.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE);
                e
            })
        })
        .transpose()
}

/// The bytes of part `n` (1-based) of an object; a single-PUT object has one part.
fn part_range(record: &ObjectRecord, n: i32) -> S3Result<std::ops::Range<u64>> {
    let invalid = || {
        let mut e = s3s::S3Error::with_message(
            s3s::S3ErrorCode::Custom("InvalidPartNumber".into()),
            "The requested partnumber is not satisfiable",
        );
        e.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE);
        e
    };
    if n < 1 {
        return Err(invalid_argument(
            "Part number must be an integer between 1 and 10000, inclusive",
        ));
    }
    match &record.data {
        ObjectData::Parts(parts) => {
            let mut offset = 0u64;
            for PartRef {
                number: _, size, ..
            } in parts.iter().take(n as usize - 1)
            {
                offset += size;
            }
            let part = parts.get(n as usize - 1).ok_or_else(invalid)?;
            Ok(offset..offset + part.size)
        }
        _ if n == 1 => Ok(0..record.size),
        _ => Err(invalid()),
    }
}

fn content_range_header(r: &std::ops::Range<u64>, size: u64) -> String {
    format!("bytes {}-{}/{}", r.start, r.end.saturating_sub(1), size)
}

/// What GET and HEAD answer about a record: the range to send and its headers.
struct ReadPlan {
    start: u64,
    end: u64,
    content_range: Option<String>,
    whole: bool,
}

fn plan_read(
    record: &ObjectRecord,
    range: Option<&Range>,
    part_number: Option<i32>,
) -> S3Result<ReadPlan> {
    let size = record.size;
    let r = match (range, part_number) {
        (Some(_), Some(_)) => {
            return Err(s3_error!(
                InvalidRequest,
                "Cannot specify both Range header and partNumber query parameter"
            ))
        }
        (Some(r), None) => requested_range(Some(r), size)?,
        // A single-PUT object is its own part 1: answered whole, without Content-Range.
        (None, Some(n)) => {
            let r = part_range(record, n)?;
            record.parts_count().is_some().then_some(r)
        }
        (None, None) => None,
    };
    let (start, end) = r.clone().map_or((0, size), |r| (r.start, r.end));
    Ok(ReadPlan {
        start,
        end,
        content_range: r.map(|r| content_range_header(&r, size)),
        whole: start == 0 && end == size,
    })
}

/// The response of GET and HEAD: the same fields in two output types.
macro_rules! object_output {
    ($ty:ident, $record:expr, $checksums:expr, $overrides:expr, { $($field:ident: $value:expr),* $(,)? }) => {{
        let record: &ObjectRecord = $record;
        let cs: Checksums = $checksums;
        let o: &ResponseOverrides = $overrides;
        $ty {
            $($field: $value,)*
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag(record)),
            last_modified: Some(timestamp(record.last_modified_ms)),
            content_type: o.content_type.clone().or_else(|| record.content_type.clone()).and_then(|c| c.parse().ok()),
            content_encoding: o.content_encoding.clone().or_else(|| record.content_encoding.clone()),
            content_disposition: o.content_disposition.clone().or_else(|| record.content_disposition.clone()),
            content_language: o.content_language.clone().or_else(|| record.content_language.clone()),
            cache_control: o.cache_control.clone().or_else(|| record.cache_control.clone()),
            expires: o.expires.clone().or_else(|| record.expires_ms.map(timestamp)),
            metadata: (!record.user_meta.is_empty()).then(|| record.user_meta.clone().into_iter().collect()),
            website_redirect_location: record.website_redirect.clone(),
            checksum_type: (!cs.is_empty()).then(|| record.checksum_type.map(|t| ChecksumType::from(t.as_str().to_string()))).flatten(),
            ..Default::default()
        }
        .with_checksums(cs)
    }};
}

/// `response-*` query overrides of GET/HEAD.
#[derive(Default)]
struct ResponseOverrides {
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    expires: Option<Timestamp>,
}

macro_rules! overrides {
    ($i:expr) => {
        ResponseOverrides {
            content_type: $i.response_content_type.as_ref().map(|c| c.to_string()),
            content_encoding: $i.response_content_encoding.clone(),
            content_disposition: $i.response_content_disposition.clone(),
            content_language: $i.response_content_language.clone(),
            cache_control: $i.response_cache_control.clone(),
            expires: $i.response_expires.clone(),
        }
    };
}

fn shown_checksums(
    mode: Option<&ChecksumMode>,
    plan: &ReadPlan,
    record: &ObjectRecord,
) -> Checksums {
    shown(mode, plan.whole, &record.checksums)
}

impl Gateway {
    pub(crate) async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        check_key(&req.input.key)?;
        let claimed = claimed_checksums!(req.input);
        let algorithm = req
            .input
            .checksum_algorithm
            .as_ref()
            .map(|a| a.as_str().to_string());
        let sel = selection(&claimed, algorithm.as_deref(), &req.headers)?;
        let claims = claims_with_trailers(claimed, req.trailing_headers.clone());
        let mut input = req.input;
        let Some(body) = input.body.take() else {
            return Err(s3_error!(IncompleteBody));
        };
        let spec = WriteSpec {
            bucket: self.bucket_id(&input.bucket).await?,
            key: input.key.clone(),
            headers: object_headers(header_fields!(input))?,
            condition: write_condition(input.if_none_match.as_ref(), input.if_match.as_ref())?,
        };
        let expect = DataExpectations {
            content_length: input.content_length.map(|l| l.max(0) as u64),
            content_md5: input.content_md5.clone(),
            checksums: sel,
            max_size: MAX_OBJECT_SIZE_BYTES,
        };
        let out = self
            .objects
            .put(spec, body, expect, claims)
            .await
            .map_err(|e| from_object(e, &input.bucket))?;
        Ok(S3Response::new(
            PutObjectOutput {
                e_tag: Some(ETag::Strong(out.etag)),
                ..Default::default()
            }
            .with_checksums(out.checksums),
        ))
    }

    /// What GET and HEAD share: the record, its conditions (304/412), the range to answer.
    async fn resolve_read(
        &self,
        bucket: &str,
        key: &str,
        conditions: ReadConditions<'_>,
        range: Option<&Range>,
        part_number: Option<i32>,
    ) -> S3Result<(ObjectRecord, ReadPlan)> {
        let record = self
            .objects
            .head(self.bucket_id(bucket).await?, key)
            .await
            .map_err(|e| from_object(e, bucket))?;
        conditions.check_read(&record)?;
        let plan = plan_read(&record, range, part_number)?;
        Ok((record, plan))
    }

    pub(crate) async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let (record, plan) = self
            .resolve_read(
                &input.bucket,
                &input.key,
                read_conditions!(input),
                input.range.as_ref(),
                input.part_number,
            )
            .await?;
        let bucket = self.bucket_id(&input.bucket).await?;
        let mut stream = self
            .objects
            .read(bucket, &input.key, &record, plan.start, plan.end);
        // The first window is read before the answer's head: an object that cannot be read
        // (too few intact shards reachable) gets a clean S3 error, not a 200 cut short.
        let first = match stream.next().await {
            Some(Err(e)) => return Err(crate::error::from_coord(e)),
            first => first,
        };
        let (mut tx, rx) =
            futures::channel::mpsc::channel::<Result<Bytes, baobab::coord::CoordError>>(4);
        tokio::spawn(baobab::rpc::trace::carry(
            async move {
                let mut stream = std::pin::pin!(futures::stream::iter(first).chain(stream));
                while let Some(item) = stream.next().await {
                    let failed = item.is_err();
                    if let Err(e) = &item {
                        tracing::error!(error = %e, "object read failed mid-stream");
                    }
                    if tx.send(item).await.is_err() || failed {
                        break;
                    }
                }
            }
            .instrument(tracing::Span::current()),
        ));
        let cs = shown_checksums(input.checksum_mode.as_ref(), &plan, &record);
        let output = object_output!(GetObjectOutput, &record, cs, &overrides!(input), {
            body: Some(StreamingBlob::wrap(rx)),
            content_length: Some((plan.end - plan.start) as i64),
            content_range: plan.content_range.clone(),
            tag_count: (!record.tags.is_empty()).then_some(record.tags.len() as i32),
            parts_count: input.part_number.and(record.parts_count()).map(|n| n as i32),
        });
        // s3s answers 206 when the output has a Content-Range.
        Ok(S3Response::new(output))
    }

    pub(crate) async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let (record, plan) = self
            .resolve_read(
                &input.bucket,
                &input.key,
                read_conditions!(input),
                input.range.as_ref(),
                input.part_number,
            )
            .await?;
        let cs = shown_checksums(input.checksum_mode.as_ref(), &plan, &record);
        let output = object_output!(HeadObjectOutput, &record, cs, &overrides!(input), {
            content_length: Some((plan.end - plan.start) as i64),
            content_range: plan.content_range.clone(),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            parts_count: input.part_number.and(record.parts_count()).map(|n| n as i32),
        });
        // 206 for a range or part: set by the listener (s3s derives HEAD's status itself).
        Ok(S3Response::new(output))
    }

    pub(crate) async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let bucket = &req.input.bucket;
        self.objects
            .delete(self.bucket_id(bucket).await?, &req.input.key)
            .await
            .map_err(|e| from_object(e, bucket))?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    pub(crate) async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        if input.delete.objects.len() > MAX_KEYS_PER_PAGE {
            return Err(s3_error!(MalformedXML, "The XML you provided was not well-formed or did not validate against our published schema"));
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        let bucket = input.bucket.as_str();
        let id = self.bucket_id(bucket).await?;
        // Deletes in parallel (each is its own metadata command, group-committed together);
        // answers in request order.
        let outcomes: Vec<_> = futures::stream::iter(input.delete.objects)
            .map(|obj| async move {
                let r = self.objects.delete(id, &obj.key).await;
                (obj.key, r)
            })
            .buffered(DELETE_OBJECTS_CONCURRENCY)
            .collect()
            .await;
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for (key, r) in outcomes {
            match r {
                Ok(()) if quiet => {}
                Ok(()) => deleted.push(DeletedObject {
                    key: Some(key),
                    ..Default::default()
                }),
                Err(e) => {
                    let e = from_object(e, bucket);
                    errors.push(Error {
                        code: Some(e.code().as_str().to_string()),
                        key: Some(key),
                        message: e.message().map(str::to_string),
                        version_id: None,
                    })
                }
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }

    /// The record a copy reads from, after the caller's read right and the copy-source
    /// conditions are checked.
    pub(crate) async fn copy_source(
        &self,
        key_id: &str,
        source: &CopySource,
        conditions: ReadConditions<'_>,
    ) -> S3Result<(Arc<BucketRecord>, String, ObjectRecord)> {
        let CopySource::Bucket {
            bucket,
            key,
            version_id,
        } = source
        else {
            return Err(s3_error!(
                NotImplemented,
                "Access point copy sources are not supported"
            ));
        };
        if version_id.as_deref().is_some_and(|v| v != "null") {
            return Err(s3_error!(
                NoSuchVersion,
                "The specified version does not exist."
            ));
        }
        let bucket = self.access.require(key_id, bucket, Need::Read).await?;
        let record = self
            .objects
            .head(bucket.id, key)
            .await
            .map_err(|e| from_object(e, &bucket.name))?;
        conditions.check_copy_source(&record)?;
        Ok((bucket, key.to_string(), record))
    }

    pub(crate) async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let key_id = caller(&req)?;
        let input = req.input;
        check_key(&input.key)?;
        let (src_bucket, src_key, record) = self
            .copy_source(&key_id, &input.copy_source, copy_source_conditions!(input))
            .await?;
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        let replace_tags = input
            .tagging_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == TaggingDirective::REPLACE);
        if src_bucket.name == input.bucket && src_key == input.key && !replace && !replace_tags {
            return Err(s3_error!(InvalidRequest, "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."));
        }
        if record.size > MAX_OBJECT_SIZE_BYTES {
            return Err(s3_error!(InvalidRequest, "The specified copy source is larger than the maximum allowable size for a copy source: 5368709120"));
        }
        let mut headers = if replace {
            object_headers(header_fields!(input))?
        } else {
            record.headers()
        };
        if replace_tags {
            headers.tags = object_headers(header_fields!(input))?.tags;
        } else {
            headers.tags = record.tags.clone();
        }
        let mut sel = ChecksumSelection::default();
        match input.checksum_algorithm.as_ref() {
            Some(a) => {
                let a = baobab::codec::checksum::ChecksumAlgorithm::parse(a.as_str())
                    .ok_or_else(|| s3_error!(InvalidRequest, "Checksum algorithm not supported"))?;
                sel.add(a);
            }
            None => record.checksums.algorithms().for_each(|a| sel.add(a)),
        }
        let spec = WriteSpec {
            bucket: self.bucket_id(&input.bucket).await?,
            key: input.key.clone(),
            headers,
            condition: None,
        };
        let expect = DataExpectations {
            content_length: Some(record.size),
            content_md5: None,
            checksums: sel,
            max_size: MAX_OBJECT_SIZE_BYTES,
        };
        let body = self
            .objects
            .read(src_bucket.id, &src_key, &record, 0, record.size);
        let out = self
            .objects
            .put(spec, body, expect, Checksums::default)
            .await
            .map_err(|e| from_object(e, &input.bucket))?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(
                CopyObjectResult {
                    e_tag: Some(ETag::Strong(out.etag)),
                    last_modified: Some(timestamp(out.last_modified_ms)),
                    ..Default::default()
                }
                .with_checksums(out.checksums),
            ),
            ..Default::default()
        }))
    }

    pub(crate) async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let input = req.input;
        let record = self
            .objects
            .head(self.bucket_id(&input.bucket).await?, &input.key)
            .await
            .map_err(|e| from_object(e, &input.bucket))?;
        Ok(S3Response::new(GetObjectTaggingOutput {
            tag_set: tag_set(record.tags),
            version_id: None,
        }))
    }

    pub(crate) async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        let input = req.input;
        let tags = tags_of(input.tagging.tag_set, MAX_OBJECT_TAGS)?;
        self.objects
            .set_tags(self.bucket_id(&input.bucket).await?, &input.key, tags)
            .await
            .map_err(|e| from_object(e, &input.bucket))?;
        Ok(S3Response::new(PutObjectTaggingOutput::default()))
    }

    pub(crate) async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        let input = req.input;
        self.objects
            .set_tags(
                self.bucket_id(&input.bucket).await?,
                &input.key,
                BTreeMap::new(),
            )
            .await
            .map_err(|e| from_object(e, &input.bucket))?;
        Ok(S3Response::new(DeleteObjectTaggingOutput::default()))
    }

    pub(crate) async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        let input = req.input;
        let record = self
            .objects
            .head(self.bucket_id(&input.bucket).await?, &input.key)
            .await
            .map_err(|e| from_object(e, &input.bucket))?;
        let wants = |name: &str| {
            input
                .object_attributes
                .iter()
                .any(|a| a.as_str().eq_ignore_ascii_case(name))
        };
        let cs = &record.checksums;
        let checksum = (wants("Checksum") && !cs.is_empty()).then(|| {
            Checksum {
                checksum_type: Some(ChecksumType::from(
                    record
                        .checksum_type
                        .map_or("FULL_OBJECT", |t| t.as_str())
                        .to_string(),
                )),
                ..Default::default()
            }
            .with_checksums(cs.clone())
        });
        let object_parts = match (&record.data, wants("ObjectParts")) {
            (ObjectData::Parts(parts), true) => {
                let marker = input.part_number_marker.unwrap_or(0).max(0) as u32;
                let max = input.max_parts.unwrap_or(1000).clamp(0, 1000) as usize;
                let after: Vec<&PartRef> = parts.iter().filter(|p| p.number > marker).collect();
                let page: Vec<&PartRef> = after.iter().take(max).copied().collect();
                let truncated = after.len() > page.len();
                Some(GetObjectAttributesParts {
                    is_truncated: Some(truncated),
                    max_parts: Some(max as i32),
                    next_part_number_marker: page.last().map(|p| p.number as i32),
                    part_number_marker: Some(marker as i32),
                    total_parts_count: Some(parts.len() as i32),
                    parts: Some(
                        page.iter()
                            .map(|p| ObjectPart {
                                part_number: Some(p.number as i32),
                                size: Some(p.size as i64),
                                ..Default::default()
                            })
                            .collect(),
                    ),
                })
            }
            _ => None,
        };
        Ok(S3Response::new(GetObjectAttributesOutput {
            checksum,
            e_tag: wants("ETag").then(|| etag(&record)),
            last_modified: Some(timestamp(record.last_modified_ms)),
            object_parts,
            object_size: wants("ObjectSize").then_some(record.size as i64),
            storage_class: wants("StorageClass")
                .then(|| StorageClass::from_static(StorageClass::STANDARD)),
            ..Default::default()
        }))
    }
}
