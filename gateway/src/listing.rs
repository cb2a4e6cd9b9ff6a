//! Object listings: ListObjects (V1) and ListObjectsV2, with `encoding-type=url`, continuation
//! tokens and owners (V1 always; V2 with `fetch-owner`). Objects are owned by their bucket's
//! owner (buckets are the unit of ownership here, as with AWS's BucketOwnerEnforced default).

use baobab::meta::request::ListObjects;
use baobab::meta::{ListObjectsPage, ListObjectsQuery, Refused};
use baobab::types::MAX_KEYS_PER_PAGE;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use crate::error::{from_meta, no_such_bucket, unexpected};
use crate::headers::timestamp;
use crate::s3::Gateway;

/// S3's `encoding-type=url`: percent-encode everything but unreserved characters and '/'.
pub fn url_encode(s: &str) -> String {
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

/// Applies `encoding-type=url` when asked.
#[derive(Clone, Copy)]
pub struct Encoder(pub bool);

impl Encoder {
    pub fn s(&self, s: &str) -> String {
        if self.0 {
            url_encode(s)
        } else {
            s.to_string()
        }
    }
}

pub fn wants_url_encoding(e: &Option<EncodingType>) -> S3Result<bool> {
    match e {
        None => Ok(false),
        Some(e) if e.as_str() == EncodingType::URL => Ok(true),
        Some(_) => Err(s3_error!(
            InvalidArgument,
            "Invalid Encoding Method specified in Request"
        )),
    }
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

fn max_keys(m: Option<i32>) -> S3Result<usize> {
    match m {
        None => Ok(MAX_KEYS_PER_PAGE),
        Some(m) if m < 0 => Err(s3_error!(InvalidArgument, "max-keys cannot be negative")),
        Some(m) => Ok((m as usize).min(MAX_KEYS_PER_PAGE)),
    }
}

fn owner(id: &str) -> Owner {
    Owner {
        display_name: Some(id.to_string()),
        id: Some(id.to_string()),
    }
}

fn objects(page: &ListObjectsPage, enc: Encoder, owner_id: Option<&str>) -> Vec<Object> {
    page.objects
        .iter()
        .map(|o| Object {
            key: Some(enc.s(&o.key)),
            size: Some(o.size as i64),
            e_tag: Some(ETag::Strong(o.etag.clone())),
            last_modified: Some(timestamp(o.last_modified_ms)),
            storage_class: Some(ObjectStorageClass::from_static(
                ObjectStorageClass::STANDARD,
            )),
            owner: owner_id.map(owner),
            ..Default::default()
        })
        .collect()
}

fn common_prefixes(page: &ListObjectsPage, enc: Encoder) -> Vec<CommonPrefix> {
    page.common_prefixes
        .iter()
        .map(|p| CommonPrefix {
            prefix: Some(enc.s(p)),
        })
        .collect()
}

impl Gateway {
    /// One page of bucket `bucket` (NoSuchBucket if it does not exist, even for 0 keys).
    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&String>,
        start_after: Option<String>,
        max_keys: usize,
    ) -> S3Result<ListObjectsPage> {
        let q = ListObjectsQuery {
            bucket: self.bucket_id(bucket).await?,
            prefix: prefix.to_string(),
            delimiter: delimiter.cloned(),
            start_after,
            max_keys,
        };
        if max_keys == 0 {
            return Ok(ListObjectsPage::default());
        }
        match self
            .objects
            .meta
            .ask(ListObjects(q))
            .await
            .map_err(from_meta)?
        {
            Ok(page) => Ok(page),
            Err(Refused::NoSuchBucket) => Err(no_such_bucket(bucket)),
            Err(_) => Err(unexpected("ListObjects")),
        }
    }

    pub(crate) async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let enc = Encoder(wants_url_encoding(&input.encoding_type)?);
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
        let page = self
            .list_page(&input.bucket, &prefix, delimiter.as_ref(), start_after, max)
            .await?;
        let owner_id = if input.fetch_owner.unwrap_or(false) {
            Some(self.access.bucket(&input.bucket).await?.owner.clone())
        } else {
            None
        };
        let key_count = (page.objects.len() + page.common_prefixes.len()) as i32;
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(enc.s(&prefix)),
            delimiter: delimiter.map(|d| enc.s(&d)),
            max_keys: Some(max as i32),
            key_count: Some(key_count),
            continuation_token: input.continuation_token,
            next_continuation_token: if page.is_truncated {
                page.next_start_after.as_deref().map(continuation_token)
            } else {
                None
            },
            is_truncated: Some(page.is_truncated),
            start_after: input.start_after.map(|s| enc.s(&s)),
            encoding_type: input.encoding_type,
            contents: Some(objects(&page, enc, owner_id.as_deref())),
            common_prefixes: Some(common_prefixes(&page, enc)),
            ..Default::default()
        }))
    }

    pub(crate) async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let enc = Encoder(wants_url_encoding(&input.encoding_type)?);
        let max = max_keys(input.max_keys)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let page = self
            .list_page(
                &input.bucket,
                &prefix,
                delimiter.as_ref(),
                input.marker.clone().filter(|m| !m.is_empty()),
                max,
            )
            .await?;
        let owner_id = self.access.bucket(&input.bucket).await?.owner.clone();
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(enc.s(&prefix)),
            delimiter: delimiter.map(|d| enc.s(&d)),
            marker: Some(enc.s(input.marker.as_deref().unwrap_or_default())),
            max_keys: Some(max as i32),
            is_truncated: Some(page.is_truncated),
            next_marker: if page.is_truncated {
                page.next_start_after.as_deref().map(|m| enc.s(m))
            } else {
                None
            },
            encoding_type: input.encoding_type,
            contents: Some(objects(&page, enc, Some(&owner_id))),
            common_prefixes: Some(common_prefixes(&page, enc)),
            ..Default::default()
        }))
    }
}
