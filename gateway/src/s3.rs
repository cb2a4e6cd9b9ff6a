//! The S3 operations, on top of the metadata client and the object coordinator. Request parsing,
//! SigV4 and XML are s3s's; this file decides what each operation does.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use baobab::coord::Coordinator;
use baobab::meta::{
    Checksums, Command, CommandResult, ListObjectsPage, ListObjectsQuery, MetaClient, ObjectRecord,
    Query, QueryResult,
};
use baobab::types::{BucketId, VersionId, MAX_KEYS_PER_PAGE, MAX_KEY_LEN_BYTES};
use bytes::Bytes;
use futures::{SinkExt, StreamExt, TryStreamExt};
use md5::Digest;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result, S3};
use tracing::Instrument;

use crate::checksum::RequestedChecksums;
use crate::error::{from_coord, from_meta, no_such_bucket, no_such_key, unexpected};

pub struct Gateway {
    pub meta: MetaClient,
    pub coord: Coordinator,
    pub region: String,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
}

fn timestamp_ms(t: &Timestamp) -> i64 {
    let odt: time::OffsetDateTime = t.clone().into();
    (odt.unix_timestamp_nanos() / 1_000_000) as i64
}

fn owner_of<T>(req: &S3Request<T>) -> S3Result<String> {
    req.credentials
        .as_ref()
        .map(|c| c.access_key.clone())
        .ok_or_else(|| s3_error!(AccessDenied))
}

fn etag(record: &ObjectRecord) -> ETag {
    ETag::Strong(record.etag.clone())
}

/// S3's `encoding-type=url`: percent-encode everything but unreserved characters and '/'.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn continuation_token(after: &str) -> String {
    hex::encode(after.as_bytes())
}

fn parse_continuation_token(token: &str) -> S3Result<String> {
    hex::decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The continuation token provided is incorrect"
            )
        })
}

fn check_key(key: &str) -> S3Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN_BYTES {
        return Err(s3_error!(KeyTooLongError, "Your key is too long"));
    }
    Ok(())
}

impl Gateway {
    async fn read(&self, q: Query) -> S3Result<QueryResult> {
        self.meta.read(q).await.map_err(from_meta)
    }

    async fn write(&self, c: Command) -> S3Result<CommandResult> {
        self.meta.write(c).await.map_err(from_meta)
    }

    async fn require_bucket(&self, bucket: &str) -> S3Result<()> {
        match self
            .read(Query::GetBucket {
                name: bucket.to_string(),
            })
            .await?
        {
            QueryResult::Bucket(Some(_)) => Ok(()),
            QueryResult::Bucket(None) => Err(no_such_bucket(bucket)),
            _ => Err(unexpected("GetBucket")),
        }
    }

    async fn get_record(&self, bucket: &str, key: &str) -> S3Result<ObjectRecord> {
        match self
            .read(Query::GetObject {
                bucket: bucket.to_string(),
                key: key.to_string(),
            })
            .await?
        {
            QueryResult::Object(Some(r)) => Ok(r),
            QueryResult::Object(None) => Err(no_such_key()),
            QueryResult::NoSuchBucket => Err(no_such_bucket(bucket)),
            _ => Err(unexpected("GetObject")),
        }
    }

    async fn list_page(&self, q: ListObjectsQuery) -> S3Result<ListObjectsPage> {
        let bucket = q.bucket.clone();
        match self.read(Query::ListObjects(q)).await? {
            QueryResult::Objects(page) => Ok(page),
            QueryResult::NoSuchBucket => Err(no_such_bucket(&bucket)),
            _ => Err(unexpected("ListObjects")),
        }
    }

    /// Deletes one object; the removed version's shards are collected in the background.
    async fn delete_one(&self, bucket: &str, key: &str) -> S3Result<()> {
        match self
            .write(Command::DeleteObject {
                bucket: bucket.to_string(),
                key: key.to_string(),
            })
            .await?
        {
            CommandResult::ObjectDeleted { removed } => {
                if let Some(old) = removed {
                    self.coord.retire_shards(old.version, &old.data);
                }
                Ok(())
            }
            CommandResult::NoSuchBucket => Err(no_such_bucket(bucket)),
            _ => Err(unexpected("DeleteObject")),
        }
    }
}

fn object_summary_to_dto(o: &baobab::meta::ObjectSummary, encode: bool) -> Object {
    Object {
        key: Some(if encode {
            url_encode(&o.key)
        } else {
            o.key.clone()
        }),
        size: Some(o.size as i64),
        e_tag: Some(ETag::Strong(o.etag.clone())),
        last_modified: Some(timestamp(o.last_modified_ms)),
        storage_class: Some(ObjectStorageClass::from_static(
            ObjectStorageClass::STANDARD,
        )),
        ..Default::default()
    }
}

fn wants_url_encoding(e: &Option<EncodingType>) -> S3Result<bool> {
    match e {
        None => Ok(false),
        Some(e) if e.as_str() == EncodingType::URL => Ok(true),
        Some(_) => Err(s3_error!(
            InvalidArgument,
            "Invalid Encoding Method specified in Request"
        )),
    }
}

fn max_keys(m: Option<i32>) -> S3Result<usize> {
    match m {
        None => Ok(MAX_KEYS_PER_PAGE),
        Some(m) if m < 0 => Err(s3_error!(InvalidArgument, "max-keys cannot be negative")),
        Some(m) => Ok((m as usize).min(MAX_KEYS_PER_PAGE)),
    }
}

/// The byte range a `Range` header asks for, or None for the whole object; `InvalidRange` (416)
/// when it is not satisfiable.
fn requested_range(range: Option<&Range>, size: u64) -> S3Result<Option<std::ops::Range<u64>>> {
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

fn content_range_header(r: &std::ops::Range<u64>, size: u64) -> String {
    format!("bytes {}-{}/{}", r.start, r.end.saturating_sub(1), size)
}

/// Stored checksums are shown when asked for, and only for the whole object (as S3).
fn returned_checksums(
    mode: Option<&ChecksumMode>,
    whole: bool,
    record: &ObjectRecord,
) -> Checksums {
    let enabled = mode.is_some_and(|m| m.as_str() == ChecksumMode::ENABLED);
    if enabled && whole {
        record.checksums.clone()
    } else {
        Checksums::default()
    }
}

/// The response of GET and HEAD: the same fields in two output types.
macro_rules! object_output {
    ($ty:ident, $record:expr, $checksums:expr, { $($field:ident: $value:expr),* $(,)? }) => {{
        let record: &ObjectRecord = $record;
        let cs: Checksums = $checksums;
        $ty {
            $($field: $value,)*
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag(record)),
            last_modified: Some(timestamp(record.last_modified_ms)),
            content_type: record.content_type.as_deref().and_then(|c| c.parse().ok()),
            content_encoding: record.content_encoding.clone(),
            content_disposition: record.content_disposition.clone(),
            content_language: record.content_language.clone(),
            cache_control: record.cache_control.clone(),
            expires: record.expires_ms.map(timestamp),
            metadata: (!record.user_meta.is_empty()).then(|| record.user_meta.clone().into_iter().collect()),
            checksum_crc32: cs.crc32,
            checksum_crc32c: cs.crc32c,
            checksum_crc64nvme: cs.crc64nvme,
            checksum_sha1: cs.sha1,
            checksum_sha256: cs.sha256,
            ..Default::default()
        }
    }};
}

#[async_trait::async_trait]
impl S3 for Gateway {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn list_buckets(
        &self,
        _req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let QueryResult::Buckets(buckets) = self.read(Query::ListBuckets).await? else {
            return Err(unexpected("ListBuckets"));
        };
        let buckets = buckets
            .into_iter()
            .map(|b| Bucket {
                name: Some(b.name),
                creation_date: Some(timestamp(b.created_ms)),
                bucket_region: Some(self.region.clone()),
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(Owner {
                display_name: Some("baobab".into()),
                id: Some("baobab".into()),
            }),
            ..Default::default()
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(bucket = %req.input.bucket))]
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let owner = owner_of(&req)?;
        let name = req.input.bucket.clone();
        let cmd = Command::CreateBucket {
            name: name.clone(),
            id: BucketId(rand::random()),
            owner,
            created_ms: now_ms(),
        };
        match self.write(cmd).await? {
            CommandResult::BucketCreated => {
                tracing::info!(bucket = %name, "bucket created");
                Ok(S3Response::new(CreateBucketOutput {
                    location: Some(format!("/{name}")),
                }))
            }
            CommandResult::BucketAlreadyOwnedByYou => Err(s3_error!(
                BucketAlreadyOwnedByYou,
                "Your previous request to create the named bucket succeeded and you already own it."
            )),
            CommandResult::BucketAlreadyExists => Err(s3_error!(BucketAlreadyExists)),
            _ => Err(unexpected("CreateBucket")),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(bucket = %req.input.bucket))]
    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.require_bucket(&req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some(self.region.clone()),
            ..Default::default()
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(bucket = %req.input.bucket))]
    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.require_bucket(&req.input.bucket).await?;
        // As AWS: us-east-1 is reported as an empty location constraint.
        let location = (self.region != "us-east-1")
            .then(|| BucketLocationConstraint::from(self.region.clone()));
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint: location,
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(bucket = %req.input.bucket))]
    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let name = req.input.bucket.clone();
        match self
            .write(Command::DeleteBucket { name: name.clone() })
            .await?
        {
            CommandResult::Ok => {
                tracing::info!(bucket = %name, "bucket deleted");
                Ok(S3Response::new(DeleteBucketOutput {}))
            }
            CommandResult::NoSuchBucket => Err(no_such_bucket(&name)),
            CommandResult::BucketNotEmpty => Err(s3_error!(
                BucketNotEmpty,
                "The bucket you tried to delete is not empty"
            )),
            _ => Err(unexpected("DeleteBucket")),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(bucket = %req.input.bucket, key = %req.input.key))]
    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        check_key(&req.input.key)?;
        let requested = RequestedChecksums::from_request(&req)?;
        let trailing = req.trailing_headers.clone();
        let input = req.input;
        let mut input = input;
        let Some(body) = input.body.take() else {
            return Err(s3_error!(IncompleteBody));
        };
        if let Some(len) = input.content_length {
            if len as u64 > baobab::types::MAX_OBJECT_SIZE_BYTES {
                return Err(s3_error!(EntityTooLarge));
            }
        }
        self.require_bucket(&input.bucket).await?;

        let version = VersionId::random();
        let mut md5 = md5::Md5::new();
        let mut hasher = requested.hasher();
        let stream = body.inspect_ok(|b: &Bytes| {
            md5.update(b);
            hasher.update(b);
        });
        let outcome = self
            .coord
            .write(version, stream)
            .await
            .map_err(from_coord)?;
        let md5_hex = hex::encode(md5.finalize());
        let computed = hasher.finalize();

        // Verify what the client claimed, before anything becomes visible.
        let verified = (|| -> S3Result<Checksums> {
            if let Some(content_md5) = &input.content_md5 {
                let claimed = base64_decode(content_md5).ok_or_else(|| s3_error!(InvalidDigest))?;
                if hex::encode(claimed) != md5_hex {
                    return Err(s3_error!(
                        BadDigest,
                        "The Content-MD5 you specified did not match what we received."
                    ));
                }
            }
            if let Some(len) = input.content_length {
                if len as u64 != outcome.size {
                    return Err(s3_error!(
                        IncompleteBody,
                        "The request body is shorter or longer than Content-Length"
                    ));
                }
            }
            requested.verify(
                &input_checksums(&input_checksum_fields(&input)),
                trailing.as_ref(),
                &computed,
            )
        })();
        let checksums = match verified {
            Ok(c) => c,
            Err(e) => {
                self.coord
                    .delete_shards_in_background(version, &outcome.data);
                return Err(e);
            }
        };

        let record = ObjectRecord {
            version,
            size: outcome.size,
            etag: md5_hex.clone(),
            last_modified_ms: now_ms(),
            content_type: input.content_type.map(|c| c.to_string()),
            content_encoding: input.content_encoding,
            content_disposition: input.content_disposition,
            content_language: input.content_language,
            cache_control: input.cache_control,
            expires_ms: input.expires.as_ref().map(timestamp_ms),
            user_meta: input
                .metadata
                .map(|m| m.into_iter().collect::<BTreeMap<_, _>>())
                .unwrap_or_default(),
            checksums: checksums.clone(),
            data: outcome.data,
        };
        let data_for_cleanup = record.data.clone();
        let committed = self
            .write(Command::PutObject {
                bucket: input.bucket.clone(),
                key: input.key.clone(),
                record,
            })
            .await;
        match committed {
            Ok(CommandResult::ObjectPut { replaced }) => {
                if let Some(old) = replaced {
                    if old.version != version {
                        self.coord.retire_shards(old.version, &old.data);
                    }
                }
            }
            Ok(CommandResult::NoSuchBucket) => {
                self.coord
                    .delete_shards_in_background(version, &data_for_cleanup);
                return Err(no_such_bucket(&input.bucket));
            }
            Ok(_) => return Err(unexpected("PutObject")),
            // The commit may or may not have happened: keep the shards (garbage at worst).
            Err(e) => return Err(e),
        }
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(md5_hex)),
            checksum_crc32: checksums.crc32,
            checksum_crc32c: checksums.crc32c,
            checksum_crc64nvme: checksums.crc64nvme,
            checksum_sha1: checksums.sha1,
            checksum_sha256: checksums.sha256,
            ..Default::default()
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(bucket = %req.input.bucket, key = %req.input.key))]
    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let record = self.get_record(&input.bucket, &input.key).await?;
        let size = record.size;
        let range = requested_range(input.range.as_ref(), size)?;
        let (start, end) = range.clone().map_or((0, size), |r| (r.start, r.end));
        let content_range = range.map(|r| content_range_header(&r, size));
        let whole = content_range.is_none();
        let stream = self
            .coord
            .read(record.version, &record.data, size, start, end);
        let (mut tx, rx) =
            futures::channel::mpsc::channel::<Result<Bytes, baobab::coord::CoordError>>(4);
        tokio::spawn(
            async move {
                let mut stream = std::pin::pin!(stream);
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
        );
        let cs = returned_checksums(input.checksum_mode.as_ref(), whole, &record);
        let output = object_output!(GetObjectOutput, &record, cs, {
            body: Some(StreamingBlob::wrap(rx)),
            content_length: Some((end - start) as i64),
            content_range: content_range.clone(),
        });
        let mut resp = S3Response::new(output);
        if content_range.is_some() {
            resp.status = Some(http::StatusCode::PARTIAL_CONTENT);
        }
        Ok(resp)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(bucket = %req.input.bucket, key = %req.input.key))]
    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let record = self.get_record(&input.bucket, &input.key).await?;
        let range = requested_range(input.range.as_ref(), record.size)?;
        let partial = range.is_some();
        let cs = returned_checksums(input.checksum_mode.as_ref(), !partial, &record);
        let output = object_output!(HeadObjectOutput, &record, cs, {
            content_length: Some(range.as_ref().map_or(record.size, |r| r.end - r.start) as i64),
            content_range: range.map(|r| content_range_header(&r, record.size)),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
        });
        let mut resp = S3Response::new(output);
        if partial {
            resp.status = Some(http::StatusCode::PARTIAL_CONTENT);
        }
        Ok(resp)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(bucket = %req.input.bucket, key = %req.input.key))]
    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.delete_one(&req.input.bucket, &req.input.key).await?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(bucket = %req.input.bucket))]
    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        if input.delete.objects.len() > MAX_KEYS_PER_PAGE {
            return Err(s3_error!(MalformedXML, "The XML you provided was not well-formed or did not validate against our published schema"));
        }
        self.require_bucket(&input.bucket).await?;
        let quiet = input.delete.quiet.unwrap_or(false);
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for obj in input.delete.objects {
            match self.delete_one(&input.bucket, &obj.key).await {
                Ok(()) => {
                    if !quiet {
                        deleted.push(DeletedObject {
                            key: Some(obj.key),
                            ..Default::default()
                        });
                    }
                }
                Err(e) => errors.push(Error {
                    code: Some(e.code().as_str().to_string()),
                    key: Some(obj.key),
                    message: e.message().map(str::to_string),
                    version_id: None,
                }),
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(bucket = %req.input.bucket))]
    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let encode = wants_url_encoding(&input.encoding_type)?;
        let max = max_keys(input.max_keys)?;
        let from_token = input
            .continuation_token
            .as_deref()
            .map(parse_continuation_token)
            .transpose()?;
        let start_after = match (from_token, input.start_after.clone()) {
            (Some(t), Some(s)) => Some(t.max(s)),
            (t, s) => t.or(s),
        };
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let page = if max == 0 {
            self.require_bucket(&input.bucket).await?;
            ListObjectsPage::default()
        } else {
            self.list_page(ListObjectsQuery {
                bucket: input.bucket.clone(),
                prefix: prefix.clone(),
                delimiter: delimiter.clone(),
                start_after,
                max_keys: max,
            })
            .await?
        };
        let enc = |s: String| if encode { url_encode(&s) } else { s };
        let key_count = (page.objects.len() + page.common_prefixes.len()) as i32;
        let output = ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(enc(prefix)),
            delimiter: delimiter.map(enc),
            max_keys: Some(max as i32),
            key_count: Some(key_count),
            continuation_token: input.continuation_token,
            next_continuation_token: if page.is_truncated {
                page.next_start_after.as_deref().map(continuation_token)
            } else {
                None
            },
            is_truncated: Some(page.is_truncated),
            start_after: input.start_after.map(enc),
            encoding_type: input.encoding_type,
            contents: Some(
                page.objects
                    .iter()
                    .map(|o| object_summary_to_dto(o, encode))
                    .collect(),
            ),
            common_prefixes: Some(
                page.common_prefixes
                    .into_iter()
                    .map(|p| CommonPrefix {
                        prefix: Some(enc(p)),
                    })
                    .collect(),
            ),
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(bucket = %req.input.bucket))]
    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let encode = wants_url_encoding(&input.encoding_type)?;
        let max = max_keys(input.max_keys)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let page = if max == 0 {
            self.require_bucket(&input.bucket).await?;
            ListObjectsPage::default()
        } else {
            self.list_page(ListObjectsQuery {
                bucket: input.bucket.clone(),
                prefix: prefix.clone(),
                delimiter: delimiter.clone(),
                start_after: input.marker.clone().filter(|m| !m.is_empty()),
                max_keys: max,
            })
            .await?
        };
        let enc = |s: String| if encode { url_encode(&s) } else { s };
        let output = ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(enc(prefix)),
            delimiter: delimiter.map(enc),
            marker: Some(enc(input.marker.unwrap_or_default())),
            max_keys: Some(max as i32),
            is_truncated: Some(page.is_truncated),
            next_marker: if page.is_truncated {
                page.next_start_after.map(enc)
            } else {
                None
            },
            encoding_type: input.encoding_type,
            contents: Some(
                page.objects
                    .iter()
                    .map(|o| object_summary_to_dto(o, encode))
                    .collect(),
            ),
            common_prefixes: Some(
                page.common_prefixes
                    .into_iter()
                    .map(|p| CommonPrefix {
                        prefix: Some(enc(p)),
                    })
                    .collect(),
            ),
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }
}

/// The checksum values a client sent as headers.
fn input_checksum_fields(input: &PutObjectInput) -> [Option<String>; 5] {
    [
        input.checksum_crc32.clone(),
        input.checksum_crc32c.clone(),
        input.checksum_crc64nvme.clone(),
        input.checksum_sha1.clone(),
        input.checksum_sha256.clone(),
    ]
}

fn input_checksums(fields: &[Option<String>; 5]) -> Checksums {
    let [crc32, crc32c, crc64nvme, sha1, sha256] = fields.clone();
    Checksums {
        crc32,
        crc32c,
        crc64nvme,
        sha1,
        sha256,
    }
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}
