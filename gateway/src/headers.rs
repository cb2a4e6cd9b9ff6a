//! Object headers from requests: the stored ones (Content-Type … Expires, user metadata, tags,
//! website redirect) with S3's limits, timestamps, ETag conditions, and `x-amz-tagging`.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use baobab::meta::{ObjectHeaders, WriteCondition};
use baobab::types::{MAX_OBJECT_TAGS, MAX_TAG_KEY_LEN, MAX_TAG_VALUE_LEN, MAX_USER_META_BYTES};
use s3s::dto::{ETagCondition, Metadata, Timestamp};
use s3s::{s3_error, S3Error, S3ErrorCode, S3Result};

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
}

pub fn timestamp_ms(t: &Timestamp) -> i64 {
    let odt: time::OffsetDateTime = t.clone().into();
    (odt.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The fields every object-creating input has, in one place.
pub struct HeaderFields {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
    pub expires: Option<Timestamp>,
    pub metadata: Option<Metadata>,
    pub tagging: Option<String>,
    pub website_redirect: Option<String>,
}

/// Builds [`HeaderFields`] from an s3s input with the standard field names.
macro_rules! header_fields {
    ($i:expr) => {
        crate::headers::HeaderFields {
            content_type: $i.content_type.as_ref().map(|c| c.to_string()),
            content_encoding: $i.content_encoding.clone(),
            content_disposition: $i.content_disposition.clone(),
            content_language: $i.content_language.clone(),
            cache_control: $i.cache_control.clone(),
            expires: $i.expires.clone(),
            metadata: $i.metadata.clone(),
            tagging: $i.tagging.clone(),
            website_redirect: $i.website_redirect_location.clone(),
        }
    };
}
pub(crate) use header_fields;

/// Validated headers to store. `MetadataTooLarge` past 2 KiB of user metadata, `InvalidTag`
/// for bad tags.
pub fn object_headers(f: HeaderFields) -> S3Result<ObjectHeaders> {
    let user_meta: BTreeMap<String, String> = f
        .metadata
        .map(|m| m.into_iter().collect())
        .unwrap_or_default();
    check_user_meta(&user_meta)?;
    let tags = match f.tagging.as_deref() {
        Some(t) => parse_tagging_header(t)?,
        None => BTreeMap::new(),
    };
    Ok(ObjectHeaders {
        content_type: f.content_type,
        content_encoding: f.content_encoding,
        content_disposition: f.content_disposition,
        content_language: f.content_language,
        cache_control: f.cache_control,
        expires_ms: f.expires.as_ref().map(timestamp_ms),
        user_meta,
        tags,
        website_redirect: f.website_redirect,
    })
}

pub fn check_user_meta(meta: &BTreeMap<String, String>) -> S3Result<()> {
    let size: usize = meta.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_USER_META_BYTES {
        return Err(s3_error!(
            MetadataTooLarge,
            "Your metadata headers exceed the maximum allowed metadata size."
        ));
    }
    Ok(())
}

/// `x-amz-tagging`: a URL query string `k1=v1&k2=v2`.
pub fn parse_tagging_header(s: &str) -> S3Result<BTreeMap<String, String>> {
    let mut tags = BTreeMap::new();
    for pair in s.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(k).ok_or_else(|| s3_error!(InvalidTag, "The tag is malformed"))?;
        let v = percent_decode(v).ok_or_else(|| s3_error!(InvalidTag, "The tag is malformed"))?;
        if tags.insert(k, v).is_some() {
            return Err(s3_error!(
                InvalidTag,
                "Cannot provide multiple Tags with the same key"
            ));
        }
    }
    check_tags(&tags, MAX_OBJECT_TAGS)?;
    Ok(tags)
}

/// A TagSet (PutObjectTagging, PutBucketTagging) as a map: duplicate keys are `InvalidTag`,
/// and the tags are checked against `max` and S3's key and value lengths.
pub fn tags_of(set: Vec<s3s::dto::Tag>, max: usize) -> S3Result<BTreeMap<String, String>> {
    let mut tags = BTreeMap::new();
    for t in set {
        if tags
            .insert(t.key.unwrap_or_default(), t.value.unwrap_or_default())
            .is_some()
        {
            return Err(s3_error!(
                InvalidTag,
                "Cannot provide multiple Tags with the same key"
            ));
        }
    }
    check_tags(&tags, max)?;
    Ok(tags)
}

/// A map of tags as an S3 TagSet.
pub fn tag_set(tags: BTreeMap<String, String>) -> Vec<s3s::dto::Tag> {
    tags.into_iter()
        .map(|(k, v)| s3s::dto::Tag {
            key: Some(k),
            value: Some(v),
        })
        .collect()
}

/// At most `max` tags (objects: 400 BadRequest, as S3; buckets: InvalidTag), each with a
/// valid key and value.
pub fn check_tags(tags: &BTreeMap<String, String>, max: usize) -> S3Result<()> {
    if tags.len() > max {
        let mut e = if max == MAX_OBJECT_TAGS {
            S3Error::with_message(
                S3ErrorCode::Custom("BadRequest".into()),
                "Object tags cannot be greater than 10",
            )
        } else {
            S3Error::with_message(
                S3ErrorCode::InvalidTag,
                format!("Tag count cannot be greater than {max}"),
            )
        };
        e.set_status_code(http::StatusCode::BAD_REQUEST);
        return Err(e);
    }
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > MAX_TAG_KEY_LEN {
            return Err(s3_error!(
                InvalidTag,
                "The TagKey you have provided is invalid"
            ));
        }
        if v.chars().count() > MAX_TAG_VALUE_LEN {
            return Err(s3_error!(
                InvalidTag,
                "The TagValue you have provided is invalid"
            ));
        }
    }
    Ok(())
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                // Two hex digits: `from_str_radix` alone would take a sign (`%+4`).
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// An ETag as a client sent it, without quotes.
pub fn unquote(s: &str) -> &str {
    let s = s.trim();
    let s = s.strip_prefix("W/").unwrap_or(s);
    s.trim_matches('"')
}

/// A conditional write from `If-None-Match` / `If-Match` (S3 accepts only `*` for the first).
pub fn write_condition(
    if_none_match: Option<&ETagCondition>,
    if_match: Option<&ETagCondition>,
) -> S3Result<Option<WriteCondition>> {
    match (if_none_match, if_match) {
        (Some(_), Some(_)) => Err(s3_error!(
            NotImplemented,
            "If-Match and If-None-Match together are not supported on writes"
        )),
        (Some(c), None) if c.is_any() => Ok(Some(WriteCondition::IfNoneMatchAny)),
        (Some(_), None) => Err(s3_error!(
            NotImplemented,
            "If-None-Match on writes accepts only '*'"
        )),
        (None, Some(c)) => match c.as_etag() {
            Some(e) => Ok(Some(WriteCondition::IfMatch(
                unquote(e.value()).to_string(),
            ))),
            // If-Match: * — any existing object: holds unless the key is missing.
            None => Ok(None),
        },
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagging_header() {
        let t = parse_tagging_header("a=1&b%20c=d%2Fe&empty=").expect("valid");
        assert_eq!(t.get("b c").map(String::as_str), Some("d/e"));
        assert_eq!(t.get("empty").map(String::as_str), Some(""));
        assert!(parse_tagging_header("a=1&a=2").is_err());
        assert!(parse_tagging_header("%zz=1").is_err());
        // Found by the `s3_bodies` fuzz target: a sign passed for a hex digit.
        assert!(parse_tagging_header("%+4=1").is_err());
        assert!(parse_tagging_header("k=%-1").is_err());
        let many: String = (0..11).map(|i| format!("k{i}=v&")).collect();
        assert!(parse_tagging_header(&many).is_err());
    }

    #[test]
    fn user_meta_limit() {
        let mut m = BTreeMap::new();
        m.insert("k".to_string(), "v".repeat(2000));
        assert!(check_user_meta(&m).is_ok());
        m.insert("k2".to_string(), "v".repeat(100));
        assert!(check_user_meta(&m).is_err());
    }

    #[test]
    fn unquoting() {
        assert_eq!(unquote("\"abc\""), "abc");
        assert_eq!(unquote("W/\"abc\""), "abc");
        assert_eq!(unquote("abc"), "abc");
    }
}
