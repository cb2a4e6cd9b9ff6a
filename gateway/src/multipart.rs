//! Multipart operations: CreateMultipartUpload, UploadPart, UploadPartCopy,
//! CompleteMultipartUpload, AbortMultipartUpload, ListParts, ListMultipartUploads.

use baobab::codec::checksum::{ChecksumAlgorithm, ChecksumType as CoreChecksumType, Checksums};
use baobab::meta::{ListPartsQuery, ListUploadsQuery};
use baobab::object::{CompletePart, CompleteRequest, DataExpectations, WriteSpec};
use baobab::types::{MAX_KEYS_PER_PAGE, MAX_PARTS_PER_UPLOAD, MAX_PART_SIZE_BYTES};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use crate::checksum::{claimed_checksums, claims_with_trailers, selection, WithChecksums};
use crate::conditions::copy_source_conditions;
use crate::error::{from_object, invalid_argument};
use crate::headers::{header_fields, object_headers, timestamp, unquote, write_condition};
use crate::listing::{wants_url_encoding, Encoder};
use crate::objects::check_key;
use crate::s3::{caller, Gateway};

fn part_number(n: i32) -> S3Result<u32> {
    if n < 1 || n as usize > MAX_PARTS_PER_UPLOAD {
        return Err(invalid_argument(
            "Part number must be an integer between 1 and 10000, inclusive",
        ));
    }
    Ok(n as u32)
}

fn owner(key_id: &str) -> Owner {
    Owner {
        display_name: Some(key_id.to_string()),
        id: Some(key_id.to_string()),
    }
}

fn dto_algorithm(a: Option<ChecksumAlgorithm>) -> Option<s3s::dto::ChecksumAlgorithm> {
    a.map(|a| s3s::dto::ChecksumAlgorithm::from(a.name().to_uppercase()))
}

fn dto_type(t: Option<CoreChecksumType>) -> Option<ChecksumType> {
    t.map(|t| ChecksumType::from(t.as_str().to_string()))
}

/// `bytes=first-last` of x-amz-copy-source-range, checked against the source size.
pub(crate) fn copy_range(range: Option<&str>, size: u64) -> S3Result<std::ops::Range<u64>> {
    let Some(r) = range else {
        return Ok(0..size);
    };
    let bad = || {
        invalid_argument("The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy")
    };
    let spec = r.trim().strip_prefix("bytes=").ok_or_else(bad)?;
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let first: u64 = a.trim().parse().map_err(|_| bad())?;
    let last: u64 = b.trim().parse().map_err(|_| bad())?;
    if first > last {
        return Err(bad());
    }
    if last >= size {
        let mut e = s3_error!(InvalidRange, "The requested range is not satisfiable");
        e.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE);
        return Err(e);
    }
    Ok(first..last + 1)
}

impl Gateway {
    pub(crate) async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let key_id = caller(&req)?;
        let input = req.input;
        check_key(&input.key)?;
        let algorithm = match input.checksum_algorithm.as_ref() {
            Some(a) => Some(
                ChecksumAlgorithm::parse(a.as_str())
                    .ok_or_else(|| s3_error!(InvalidRequest, "Checksum algorithm not supported"))?,
            ),
            None => None,
        };
        let checksum_type = match input.checksum_type.as_ref() {
            Some(t) => Some(
                CoreChecksumType::parse(t.as_str())
                    .ok_or_else(|| invalid_argument("Invalid x-amz-checksum-type"))?,
            ),
            None => None,
        };
        let spec = WriteSpec {
            bucket: self.bucket_id(&input.bucket).await?,
            key: input.key.clone(),
            headers: object_headers(header_fields!(input))?,
            condition: None,
        };
        let upload = self
            .objects
            .create_upload(spec, key_id, algorithm, checksum_type)
            .await
            .map_err(|e| from_object(e, &input.bucket))?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload.upload_id),
            checksum_algorithm: dto_algorithm(upload.checksum_algorithm),
            checksum_type: dto_type(upload.checksum_type),
            ..Default::default()
        }))
    }

    pub(crate) async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let number = part_number(req.input.part_number)?;
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
        let expect = DataExpectations {
            content_length: input.content_length.map(|l| l.max(0) as u64),
            content_md5: input.content_md5.clone(),
            checksums: sel,
            max_size: MAX_PART_SIZE_BYTES,
        };
        let part = self
            .objects
            .put_part(
                self.bucket_id(&input.bucket).await?,
                &input.key,
                &input.upload_id,
                number,
                body,
                expect,
                claims,
            )
            .await
            .map_err(|e| from_object(e, &input.bucket))?;
        Ok(S3Response::new(
            UploadPartOutput {
                e_tag: Some(ETag::Strong(part.etag)),
                ..Default::default()
            }
            .with_checksums(part.checksums),
        ))
    }

    pub(crate) async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let key_id = caller(&req)?;
        let input = req.input;
        let number = part_number(input.part_number)?;
        // The upload must exist before any data moves.
        self.objects
            .upload(
                self.bucket_id(&input.bucket).await?,
                &input.key,
                &input.upload_id,
            )
            .await
            .map_err(|e| from_object(e, &input.bucket))?;
        let (src_bucket, src_key, record) = self
            .copy_source(&key_id, &input.copy_source, copy_source_conditions!(input))
            .await?;
        let range = copy_range(input.copy_source_range.as_deref(), record.size)?;
        if range.end - range.start > MAX_PART_SIZE_BYTES {
            return Err(s3_error!(
                EntityTooLarge,
                "Your proposed upload exceeds the maximum allowed object size."
            ));
        }
        let expect = DataExpectations {
            content_length: Some(range.end - range.start),
            content_md5: None,
            checksums: Default::default(),
            max_size: MAX_PART_SIZE_BYTES,
        };
        let body = self
            .objects
            .read(src_bucket.id, &src_key, &record, range.start, range.end);
        let part = self
            .objects
            .put_part(
                self.bucket_id(&input.bucket).await?,
                &input.key,
                &input.upload_id,
                number,
                body,
                expect,
                Checksums::default,
            )
            .await
            .map_err(|e| from_object(e, &input.bucket))?;
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(
                CopyPartResult {
                    e_tag: Some(ETag::Strong(part.etag)),
                    last_modified: Some(timestamp(part.last_modified_ms)),
                    ..Default::default()
                }
                .with_checksums(part.checksums),
            ),
            ..Default::default()
        }))
    }

    pub(crate) async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let listed = input
            .multipart_upload
            .as_ref()
            .and_then(|m| m.parts.as_ref())
            .filter(|p| !p.is_empty())
            .ok_or_else(|| s3_error!(MalformedXML, "The XML you provided was not well-formed or did not validate against our published schema"))?;
        if listed.len() > MAX_PARTS_PER_UPLOAD {
            return Err(s3_error!(MalformedXML, "Too many parts"));
        }
        let mut parts = Vec::with_capacity(listed.len());
        for p in listed {
            let number = p
                .part_number
                .ok_or_else(|| s3_error!(MalformedXML, "A part has no PartNumber"))?;
            parts.push(CompletePart {
                number: part_number(number)?,
                etag: p.e_tag.as_ref().map(|e| unquote(e.value()).to_string()),
                checksums: claimed_checksums!(p),
            });
        }
        let request = CompleteRequest {
            bucket: self.bucket_id(&input.bucket).await?,
            key: input.key.clone(),
            upload_id: input.upload_id.clone(),
            parts,
            condition: write_condition(input.if_none_match.as_ref(), input.if_match.as_ref())?,
            claimed: claimed_checksums!(input),
        };
        let done = self
            .objects
            .complete(request)
            .await
            .map_err(|e| from_object(e, &input.bucket))?;
        Ok(S3Response::new(
            CompleteMultipartUploadOutput {
                bucket: Some(input.bucket.clone()),
                key: Some(input.key.clone()),
                location: Some(format!("/{}/{}", input.bucket, input.key)),
                e_tag: Some(ETag::Strong(done.etag)),
                checksum_type: dto_type(done.checksum_type),
                ..Default::default()
            }
            .with_checksums(done.checksums),
        ))
    }

    pub(crate) async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        self.objects
            .abort(
                self.bucket_id(&input.bucket).await?,
                &input.key,
                &input.upload_id,
            )
            .await
            .map_err(|e| from_object(e, &input.bucket))?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    pub(crate) async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let max = match input.max_parts {
            Some(m) if m < 0 => return Err(invalid_argument("max-parts cannot be negative")),
            Some(m) => (m as usize).min(MAX_KEYS_PER_PAGE),
            None => MAX_KEYS_PER_PAGE,
        };
        let marker = input.part_number_marker.unwrap_or(0).max(0) as u32;
        let page = self
            .objects
            .list_parts(ListPartsQuery {
                bucket: self.bucket_id(&input.bucket).await?,
                key: input.key.clone(),
                upload_id: input.upload_id.clone(),
                after: marker,
                max_parts: max,
            })
            .await
            .map_err(|e| from_object(e, &input.bucket))?;
        let upload = page.upload.as_ref();
        let parts: Vec<Part> = page
            .parts
            .iter()
            .map(|p| {
                Part {
                    part_number: Some(p.number as i32),
                    e_tag: Some(ETag::Strong(p.etag.clone())),
                    size: Some(p.size as i64),
                    last_modified: Some(timestamp(p.last_modified_ms)),
                    ..Default::default()
                }
                .with_checksums(p.checksums.clone())
            })
            .collect();
        let initiator = upload.map(|u| u.initiator.clone()).unwrap_or_default();
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            part_number_marker: Some(marker as i32),
            next_part_number_marker: page
                .is_truncated
                .then(|| page.parts.last().map(|p| p.number as i32))
                .flatten(),
            max_parts: Some(max as i32),
            is_truncated: Some(page.is_truncated),
            parts: Some(parts),
            initiator: Some(Initiator {
                display_name: Some(initiator.clone()),
                id: Some(initiator.clone()),
            }),
            owner: Some(owner(&initiator)),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            checksum_algorithm: dto_algorithm(upload.and_then(|u| u.checksum_algorithm)),
            checksum_type: dto_type(upload.and_then(|u| u.checksum_type)),
            ..Default::default()
        }))
    }

    pub(crate) async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        let enc = Encoder(wants_url_encoding(&input.encoding_type)?);
        let max = match input.max_uploads {
            Some(m) if m < 0 => return Err(invalid_argument("max-uploads cannot be negative")),
            Some(m) => (m as usize).min(MAX_KEYS_PER_PAGE),
            None => MAX_KEYS_PER_PAGE,
        };
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let page = self
            .objects
            .list_uploads(ListUploadsQuery {
                bucket: self.bucket_id(&input.bucket).await?,
                prefix: prefix.clone(),
                delimiter: delimiter.clone(),
                key_marker: input.key_marker.clone(),
                upload_id_marker: input.upload_id_marker.clone(),
                max_uploads: max,
            })
            .await
            .map_err(|e| from_object(e, &input.bucket))?;
        let uploads = page
            .uploads
            .iter()
            .map(|u| MultipartUpload {
                key: Some(enc.s(&u.key)),
                upload_id: Some(u.upload_id.clone()),
                initiated: Some(timestamp(u.initiated_ms)),
                initiator: Some(Initiator {
                    display_name: Some(u.initiator.clone()),
                    id: Some(u.initiator.clone()),
                }),
                owner: Some(owner(&u.initiator)),
                storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                checksum_algorithm: dto_algorithm(u.checksum_algorithm),
                checksum_type: dto_type(u.checksum_type),
            })
            .collect();
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: Some(enc.s(&prefix)),
            delimiter: delimiter.map(|d| enc.s(&d)),
            key_marker: Some(enc.s(input.key_marker.as_deref().unwrap_or(""))),
            upload_id_marker: Some(input.upload_id_marker.unwrap_or_default()),
            next_key_marker: page
                .is_truncated
                .then(|| page.next_key_marker.as_deref().map(|k| enc.s(k)))
                .flatten(),
            next_upload_id_marker: page
                .is_truncated
                .then_some(page.next_upload_id_marker)
                .flatten(),
            max_uploads: Some(max as i32),
            is_truncated: Some(page.is_truncated),
            uploads: Some(uploads),
            common_prefixes: Some(
                page.common_prefixes
                    .iter()
                    .map(|p| CommonPrefix {
                        prefix: Some(enc.s(p)),
                    })
                    .collect(),
            ),
            encoding_type: input.encoding_type,
            request_charged: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_ranges() {
        assert_eq!(copy_range(None, 10).ok(), Some(0..10));
        assert_eq!(copy_range(Some("bytes=0-4"), 10).ok(), Some(0..5));
        assert_eq!(copy_range(Some("bytes=9-9"), 10).ok(), Some(9..10));
        assert!(copy_range(Some("bytes=5-10"), 10).is_err());
        assert!(copy_range(Some("bytes=5-4"), 10).is_err());
        assert!(copy_range(Some("bytes=-4"), 10).is_err());
        assert!(copy_range(Some("items=0-1"), 10).is_err());
    }
}
