//! POST object: a browser-form upload (`multipart/form-data` with a signed policy) to a
//! bucket, served by the listener before s3s, because s3s reads the whole file into memory.
//!
//! The form is parsed as a stream (multer). The fields before the file are bounded
//! ([`MAX_FORM_FIELD_BYTES`] each, [`MAX_FORM_FIELDS_BYTES`] together, [`MAX_FORM_FIELDS`]);
//! fields after the file are ignored (AWS). Before any byte of the file is read, the signature
//! is verified (`post/policy.rs`), the signer's right is checked as for a PutObject, and the
//! form is checked against its policy. The file then streams into the object write path
//! PutObject uses, with the policy's content-length-range enforced as it arrives: past the
//! maximum the write stops and fails, so nothing is committed (a failed PUT's cleanup frees
//! what was written). Memory per POST: the bounded fields, one body chunk in multer and the
//! write pipeline's blocks — never the file.
//!
//! After the answer is decided, the rest of the request is read and dropped for at most
//! [`LINGER`], so a client that sends its whole body before reading (browsers, `requests`)
//! sees the answer rather than a reset; a body still coming after that gets the answer with
//! `Connection: close`.

mod body;
pub(crate) mod policy;

use std::sync::Arc;
use std::time::Duration;

use baobab::meta::ObjectHeaders;
use baobab::object::{DataExpectations, ObjectService, WriteSpec};
use baobab::types::{MAX_OBJECT_SIZE_BYTES, MAX_OBJECT_TAGS};
use bytes::Bytes;
use s3s::dto::{Metadata, Timestamp, TimestampFormat};
use s3s::path::S3Path;
use s3s::post_policy::PostPolicy;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Result};

use crate::access::{Access, Need};
use crate::auth::KeyStore;
use crate::error::{access_denied, from_object, invalid_argument};
use crate::headers::{object_headers, tags_of, HeaderFields};
use crate::objects::check_key;
use body::{FileFailure, FileStream, SharedBody};
use policy::Fields;

/// The largest value of one form field before the file (the policy is the largest in
/// practice; AWS bounds all of them together at 20 KB).
pub const MAX_FORM_FIELD_BYTES: usize = 64 * 1024;
/// The values of all form fields before the file together.
pub const MAX_FORM_FIELDS_BYTES: usize = 1024 * 1024;
/// Form fields before the file.
pub const MAX_FORM_FIELDS: usize = 256;
/// Body bytes read before the file's data starts: the fields, their part headers and
/// boundaries, and what multer reads ahead (at most one body chunk). Bounds what a form whose
/// part headers or preamble never end can make multer buffer.
const MAX_PRE_FILE_BYTES: u64 = 2 * MAX_FORM_FIELDS_BYTES as u64;
/// How long the rest of a request body is read and dropped once the answer is known (nginx's
/// `lingering_time`).
pub const LINGER: Duration = Duration::from_secs(30);

const _: () = assert!(MAX_FORM_FIELD_BYTES <= MAX_FORM_FIELDS_BYTES);
const _: () = assert!(MAX_PRE_FILE_BYTES > MAX_FORM_FIELDS_BYTES as u64);

/// The bucket a request uploads a form to, if it is a POST object: method POST, a
/// `multipart/form-data` body, a path that addresses a bucket (s3s's own test for it, so s3s
/// never sees one).
pub fn post_object_bucket<B>(req: &http::Request<B>, root_domain: Option<&str>) -> Option<String> {
    if req.method() != http::Method::POST {
        return None;
    }
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)?
        .to_str()
        .ok()?;
    match multer::parse_boundary(content_type) {
        // A form without a boundary is ours too: answered MalformedPOSTRequest.
        Ok(_) | Err(multer::Error::NoBoundary) => {}
        Err(_) => return None,
    }
    match crate::host::s3_path(req, root_domain)? {
        S3Path::Bucket { bucket } => Some(bucket.to_string()),
        _ => None,
    }
}

/// What POST object needs of the gateway.
pub struct PostObjects {
    pub objects: ObjectService,
    pub access: Arc<Access>,
    pub keys: Arc<KeyStore>,
}

impl PostObjects {
    /// Answers a POST object to `bucket`: the upload's response or its S3 error (request id
    /// and CORS are added by the listener, as for every answer).
    pub async fn serve<B>(&self, bucket: &str, req: http::Request<B>) -> http::Response<s3s::Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (head, body) = req.into_parts();
        let body = SharedBody::new(body, MAX_PRE_FILE_BYTES);
        let result = self.upload(bucket, &head, body.clone()).await;
        let drained = body.drain(LINGER).await;
        let mut resp = result.unwrap_or_else(|e| {
            tracing::debug!(
                code = e.code().as_str(),
                message = e.message(),
                "POST object refused"
            );
            error_response(e)
        });
        if !drained {
            resp.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        resp
    }

    async fn upload<B>(
        &self,
        bucket: &str,
        head: &http::request::Parts,
        body: SharedBody<B>,
    ) -> S3Result<http::Response<s3s::Body>>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let boundary = head
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|ct| multer::parse_boundary(ct).ok())
            .ok_or_else(malformed)?;
        let mut form = multer::Multipart::new(body.clone(), boundary);
        let (mut fields, file) = read_fields(&mut form)
            .await
            .map_err(|e| e.into_s3(body.over_limit()))?;
        body.lift_limit();

        let file_name = policy::base_file_name(file.file_name()).to_string();
        for value in fields.values_mut() {
            if value.contains("${filename}") {
                *value = value.replace("${filename}", &file_name);
            }
        }
        let key = fields
            .get("key")
            .cloned()
            .ok_or_else(|| policy::missing_field("key"))?;

        // Who signed, their right as for PutObject, then the policy: all before the file.
        let signer = policy::signer(&fields)?;
        let Some(key_id) = signer.access_key() else {
            return Err(access_denied());
        };
        let policy_b64 = fields
            .get("policy")
            .ok_or_else(|| policy::missing_field("policy"))?;
        let record = self.keys.record(key_id).await?;
        policy::verify(&signer, &record.secret, policy_b64)?;
        let bucket_id = self.access.require(key_id, bucket, Need::Write).await?.id;
        let post_policy = PostPolicy::from_base64(policy_b64).map_err(|e| {
            S3Error::with_message(
                S3ErrorCode::InvalidPolicyDocument,
                format!("Invalid Policy: {e}"),
            )
        })?;
        let range = policy::check(
            &post_policy,
            &fields,
            bucket,
            time::OffsetDateTime::now_utc(),
        )?;
        check_key(&key)?;

        let spec = WriteSpec {
            bucket: bucket_id,
            key: key.clone(),
            headers: stored_headers(&fields)?,
            condition: None,
        };
        let claimed = claimed_checksums(&fields);
        let algorithm = fields
            .get("x-amz-checksum-algorithm")
            .or_else(|| fields.get("x-amz-sdk-checksum-algorithm"));
        let checksums = crate::checksum::selection(
            &claimed,
            algorithm.map(String::as_str),
            &http::HeaderMap::new(),
        )?;
        let expect = DataExpectations {
            content_length: None,
            content_md5: fields.get("content-md5").cloned(),
            checksums,
            max_size: range.max.min(MAX_OBJECT_SIZE_BYTES),
        };
        let (file, outcome) = FileStream::new(file, range.min);
        let out = self
            .objects
            .put(spec, file, expect, move || claimed)
            .await
            .map_err(|e| match outcome.failure() {
                Some(FileFailure::TooSmall) => s3_error!(
                    EntityTooSmall,
                    "Your proposed upload is smaller than the minimum allowed size"
                ),
                Some(FileFailure::Malformed) => malformed(),
                None => from_object(e, bucket),
            })?;
        Ok(success_response(head, bucket, &key, &out.etag, &fields))
    }
}

fn malformed() -> S3Error {
    s3_error!(
        MalformedPOSTRequest,
        "The body of your POST request is not well-formed multipart/form-data."
    )
}

/// Why the form before the file could not be read.
#[derive(Debug)]
pub(crate) enum FormError {
    Malformed,
    TooLarge,
    NoFile,
    DuplicateField(String),
}

impl FormError {
    /// The S3 error; `body_over_limit`: the body passed [`MAX_PRE_FILE_BYTES`] before the file.
    fn into_s3(self, body_over_limit: bool) -> S3Error {
        match self {
            _ if body_over_limit => too_large(),
            FormError::TooLarge => too_large(),
            FormError::Malformed => malformed(),
            FormError::NoFile => s3_error!(
                IncorrectNumberOfFilesInPostRequest,
                "POST requires exactly one file upload per request."
            ),
            FormError::DuplicateField(name) => {
                invalid_argument(format!("The form field '{name}' is given more than once."))
            }
        }
    }
}

fn too_large() -> S3Error {
    s3_error!(
        MaxPostPreDataLengthExceededError,
        "Your POST request fields preceding the upload file were too large."
    )
}

/// Reads the fields before the one named `file` and returns them with the file field, whose
/// data is not read yet.
pub(crate) async fn read_fields(
    form: &mut multer::Multipart<'static>,
) -> Result<(Fields, multer::Field<'static>), FormError> {
    let mut fields = Fields::new();
    let mut total_bytes = 0usize;
    loop {
        let Some(mut field) = form.next_field().await.map_err(|_| FormError::Malformed)? else {
            return Err(FormError::NoFile);
        };
        let name = field
            .name()
            .ok_or(FormError::Malformed)?
            .to_ascii_lowercase();
        if name == "file" {
            return Ok((fields, field));
        }
        if fields.len() >= MAX_FORM_FIELDS {
            return Err(FormError::TooLarge);
        }
        let mut value = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(|_| FormError::Malformed)? {
            if value.len() + chunk.len() > MAX_FORM_FIELD_BYTES
                || total_bytes + value.len() + chunk.len() > MAX_FORM_FIELDS_BYTES
            {
                return Err(FormError::TooLarge);
            }
            value.extend_from_slice(&chunk);
        }
        total_bytes += value.len();
        let value = String::from_utf8(value).map_err(|_| FormError::Malformed)?;
        if fields.contains_key(&name) {
            return Err(FormError::DuplicateField(name));
        }
        fields.insert(name, value);
    }
}

/// Content-Type … Expires, user metadata (`x-amz-meta-*`), the website redirect and tags
/// (`tagging`, an XML Tagging document as AWS takes it in a form) from the fields, with the
/// limits PutObject applies.
pub(crate) fn stored_headers(fields: &Fields) -> S3Result<ObjectHeaders> {
    let get = |name: &str| fields.get(name).cloned();
    let metadata: Metadata = fields
        .iter()
        .filter_map(|(name, value)| {
            let key = name.strip_prefix("x-amz-meta-")?;
            (!key.is_empty()).then(|| (key.to_string(), value.clone()))
        })
        .collect();
    let expires = get("expires")
        .map(|e| Timestamp::parse(TimestampFormat::HttpDate, &e))
        .transpose()
        .map_err(|_| invalid_argument("Expires must be an HTTP date"))?;
    let mut headers = object_headers(HeaderFields {
        content_type: get("content-type"),
        content_encoding: get("content-encoding"),
        content_disposition: get("content-disposition"),
        content_language: get("content-language"),
        cache_control: get("cache-control"),
        expires,
        metadata: (!metadata.is_empty()).then_some(metadata),
        tagging: None,
        website_redirect: get("x-amz-website-redirect-location"),
    })?;
    if let Some(xml) = fields.get("tagging") {
        let mut d = s3s::xml::Deserializer::new(xml.as_bytes());
        let tagging: s3s::dto::Tagging =
            s3s::xml::Deserialize::deserialize(&mut d).map_err(|_| {
                s3_error!(
                    MalformedXML,
                    "The tagging field is not a valid Tagging document"
                )
            })?;
        headers.tags = tags_of(tagging.tag_set, MAX_OBJECT_TAGS)?;
    }
    Ok(headers)
}

pub(crate) fn claimed_checksums(fields: &Fields) -> baobab::codec::checksum::Checksums {
    let get = |name: &str| fields.get(name).cloned();
    baobab::codec::checksum::Checksums {
        crc32: get("x-amz-checksum-crc32"),
        crc32c: get("x-amz-checksum-crc32c"),
        crc64nvme: get("x-amz-checksum-crc64nvme"),
        sha1: get("x-amz-checksum-sha1"),
        sha256: get("x-amz-checksum-sha256"),
    }
}

/// The answer to a stored upload, as AWS gives it: a 303 to `success_action_redirect` (or
/// the older `redirect`) with bucket, key and ETag in the query when it is a URL; else
/// `success_action_status` 200 (empty), 201 (a PostResponse document) or 204 (the default,
/// also for any other value).
fn success_response(
    head: &http::request::Parts,
    bucket: &str,
    key: &str,
    etag: &str,
    fields: &Fields,
) -> http::Response<s3s::Body> {
    let etag = format!("\"{etag}\"");
    let location = object_url(head, key);
    let redirect = fields
        .get("success_action_redirect")
        .or_else(|| fields.get("redirect"))
        .and_then(|u| url::Url::parse(u).ok());
    let (status, body, location) = if let Some(mut url) = redirect {
        url.query_pairs_mut()
            .append_pair("bucket", bucket)
            .append_pair("key", key)
            .append_pair("etag", &etag);
        (http::StatusCode::SEE_OTHER, None, url.to_string())
    } else {
        match fields.get("success_action_status").map(String::as_str) {
            Some("200") => (http::StatusCode::OK, None, location),
            Some("201") => {
                let doc = s3s::dto::PostResponse {
                    location: &location,
                    bucket,
                    key,
                    etag: &etag,
                };
                let mut xml = Vec::with_capacity(256);
                let mut ser = s3s::xml::Serializer::new(&mut xml);
                let written = ser
                    .decl()
                    .and_then(|()| s3s::xml::Serialize::serialize(&doc, &mut ser));
                match written {
                    Ok(()) => (http::StatusCode::CREATED, Some(xml), location),
                    Err(e) => {
                        tracing::warn!(error = %e, "PostResponse not rendered; answering 204");
                        (http::StatusCode::NO_CONTENT, None, location)
                    }
                }
            }
            _ => (http::StatusCode::NO_CONTENT, None, location),
        }
    };
    let mut resp = http::Response::new(body.map_or_else(s3s::Body::empty, s3s::Body::from));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    if status == http::StatusCode::CREATED {
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/xml"),
        );
    }
    if let Ok(v) = http::HeaderValue::from_str(&etag) {
        h.insert(http::header::ETAG, v);
    }
    if let Ok(v) = http::HeaderValue::from_str(&location) {
        h.insert(http::header::LOCATION, v);
    }
    resp
}

/// The new object's URL as the client addressed the bucket (path or virtual-hosted style).
fn object_url(head: &http::request::Parts, key: &str) -> String {
    let header = |name: &str| head.headers.get(name).and_then(|v| v.to_str().ok());
    let scheme = match header("x-forwarded-proto") {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    let host = header("host").unwrap_or("localhost");
    let base = head.uri.path().trim_end_matches('/');
    let mut encoded = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                encoded.push(b as char)
            }
            _ => encoded.push_str(&format!("%{b:02X}")),
        }
    }
    format!("{scheme}://{host}{base}/{encoded}")
}

/// An S3 error as the gateway renders every error (s3s's XML; the listener adds the request
/// id).
fn error_response(e: S3Error) -> http::Response<s3s::Body> {
    e.to_http_response().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "an error response could not be rendered");
        let mut resp = http::Response::new(s3s::Body::empty());
        *resp.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        resp
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    type TestBody = StreamBody<
        futures::stream::Iter<
            std::vec::IntoIter<Result<hyper::body::Frame<Bytes>, std::io::Error>>,
        >,
    >;

    /// A body delivered in `chunk`-byte pieces.
    fn body(data: &[u8], chunk: usize) -> TestBody {
        let frames: Vec<_> = data
            .chunks(chunk.max(1))
            .map(|c| Ok(hyper::body::Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        StreamBody::new(futures::stream::iter(frames))
    }

    fn form(parts: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in parts {
            out.extend_from_slice(b"--B\r\nContent-Disposition: form-data; name=\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\"");
            if *name == "file" {
                out.extend_from_slice(b"; filename=\"dir/f.txt\"");
            }
            out.extend_from_slice(b"\r\n\r\n");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"--B--\r\n");
        out
    }

    async fn read(data: &[u8]) -> (Result<(Fields, Vec<u8>), String>, SharedBody<TestBody>) {
        let body = SharedBody::new(body(data, 1000), MAX_PRE_FILE_BYTES);
        let mut multipart = multer::Multipart::new(body.clone(), "B");
        let result = match read_fields(&mut multipart).await {
            Ok((fields, mut file)) => {
                body.lift_limit();
                let mut bytes = Vec::new();
                while let Some(c) = file.chunk().await.expect("file data") {
                    bytes.extend_from_slice(&c);
                }
                Ok((fields, bytes))
            }
            Err(e) => Err(e.into_s3(body.over_limit()).code().as_str().to_string()),
        };
        (result, body)
    }

    #[tokio::test]
    async fn fields_before_the_file_and_the_file() {
        let big = vec![b'x'; 300_000];
        let data = form(&[
            ("Key", b"k/${filename}"),
            ("x-amz-meta-a", b"1"),
            ("file", &big),
            ("after", b"ignored"),
        ]);
        let (result, body) = read(&data).await;
        let (fields, file) = result.expect("form read");
        assert_eq!(fields.get("key").map(String::as_str), Some("k/${filename}"));
        assert_eq!(fields.get("x-amz-meta-a").map(String::as_str), Some("1"));
        assert!(!fields.contains_key("after"));
        assert_eq!(file.len(), big.len());
        assert!(body.drain(Duration::from_secs(1)).await);
    }

    #[tokio::test]
    async fn bounded_fields() {
        let check = |parts: Vec<(String, Vec<u8>)>, want: &'static str| async move {
            let parts: Vec<(&str, &[u8])> = parts
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_slice()))
                .collect();
            let (result, _) = read(&form(&parts)).await;
            assert_eq!(result.err().as_deref(), Some(want));
        };
        let too_large = "MaxPostPreDataLengthExceededError";
        // One field over its bound.
        check(
            vec![
                ("policy".into(), vec![b'p'; MAX_FORM_FIELD_BYTES + 1]),
                ("file".into(), b"x".to_vec()),
            ],
            too_large,
        )
        .await;
        // All fields over theirs.
        let many: Vec<(String, Vec<u8>)> = (0..20)
            .map(|i| (format!("x-amz-meta-{i}"), vec![b'v'; 60_000]))
            .collect();
        check(many, too_large).await;
        // Too many fields.
        let many: Vec<(String, Vec<u8>)> = (0..=MAX_FORM_FIELDS)
            .map(|i| (format!("f{i}"), b"v".to_vec()))
            .collect();
        check(many, too_large).await;
        // No file.
        check(
            vec![("key".into(), b"k".to_vec())],
            "IncorrectNumberOfFilesInPostRequest",
        )
        .await;
        // The same field twice.
        check(
            vec![
                ("key".into(), b"a".to_vec()),
                ("KEY".into(), b"b".to_vec()),
                ("file".into(), b"x".to_vec()),
            ],
            "InvalidArgument",
        )
        .await;
    }

    #[tokio::test]
    async fn a_preamble_that_never_ends_is_bounded() {
        // No boundary at all: multer would buffer until it finds one.
        let data = vec![b'z'; 3 * MAX_PRE_FILE_BYTES as usize];
        let (result, _) = read(&data).await;
        assert_eq!(
            result.err().as_deref(),
            Some("MaxPostPreDataLengthExceededError")
        );
        // Part headers that never end.
        let mut data = b"--B\r\nContent-Disposition: form-data; name=\"key\"\r\nX-Pad: ".to_vec();
        data.resize(3 * MAX_PRE_FILE_BYTES as usize, b'z');
        let (result, _) = read(&data).await;
        assert_eq!(
            result.err().as_deref(),
            Some("MaxPostPreDataLengthExceededError")
        );
    }

    #[tokio::test]
    async fn file_size_below_the_minimum_fails_the_stream() {
        use futures::StreamExt;
        let data = form(&[("key", b"k"), ("file", b"abc")]);
        let body = SharedBody::new(body(&data, 7), MAX_PRE_FILE_BYTES);
        let mut multipart = multer::Multipart::new(body.clone(), "B");
        let (_, field) = read_fields(&mut multipart).await.expect("form read");
        let (mut file, outcome) = FileStream::new(field, 4);
        let mut got = Vec::new();
        let mut failed = false;
        while let Some(item) = file.next().await {
            match item {
                Ok(c) => got.extend_from_slice(&c),
                Err(_) => failed = true,
            }
        }
        assert_eq!(got, b"abc");
        assert!(failed);
        assert_eq!(outcome.failure(), Some(FileFailure::TooSmall));
    }

    #[test]
    fn detection() {
        let req = |method: &str, ct: Option<&str>, path: &str| {
            let mut b = http::Request::builder()
                .method(method)
                .uri(path)
                .header(http::header::HOST, "127.0.0.1:3900");
            if let Some(ct) = ct {
                b = b.header(http::header::CONTENT_TYPE, ct);
            }
            b.body(()).expect("valid request")
        };
        let form = Some("multipart/form-data; boundary=x");
        assert_eq!(
            post_object_bucket(&req("POST", form, "/bkt"), None),
            Some("bkt".into())
        );
        assert_eq!(
            post_object_bucket(&req("POST", form, "/bkt/"), None),
            Some("bkt".into())
        );
        assert_eq!(
            post_object_bucket(&req("POST", Some("Multipart/Form-Data"), "/bkt"), None),
            Some("bkt".into())
        );
        assert_eq!(post_object_bucket(&req("POST", form, "/bkt/k"), None), None);
        assert_eq!(post_object_bucket(&req("POST", form, "/"), None), None);
        assert_eq!(post_object_bucket(&req("PUT", form, "/bkt"), None), None);
        assert_eq!(
            post_object_bucket(&req("POST", Some("application/xml"), "/bkt?delete"), None),
            None
        );
        assert_eq!(post_object_bucket(&req("POST", None, "/bkt"), None), None);
    }

    #[test]
    fn object_urls() {
        let head = |host: &str, path: &str| {
            http::Request::builder()
                .uri(path)
                .header(http::header::HOST, host)
                .body(())
                .expect("valid request")
                .into_parts()
                .0
        };
        assert_eq!(
            object_url(&head("127.0.0.1:3900", "/b"), "a b/c+d"),
            "http://127.0.0.1:3900/b/a%20b/c%2Bd"
        );
        assert_eq!(
            object_url(&head("b.localhost", "/"), "k"),
            "http://b.localhost/k"
        );
    }
}
