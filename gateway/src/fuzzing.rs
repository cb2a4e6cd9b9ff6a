//! The gateway's own parsers of what clients send, as the fuzz targets (`fuzz/`) drive them:
//! each function takes raw input and runs the same code a request runs, with no IO and no
//! object service. Not an API: nothing in the gateway calls these.

use bytes::Bytes;
use s3s::post_policy::PostPolicy;

use crate::post::policy;

/// The boundary of the forms [`post_form`] reads (the listener takes it from Content-Type).
pub const FORM_BOUNDARY: &str = "baobabfuzz";

/// The value `now` has in every policy check here (fixed, so a run is reproducible).
const NOW_UNIX_SECS: i64 = 1_800_000_000;

/// A POST object body (`multipart/form-data` with [`FORM_BOUNDARY`]), delivered in chunks of
/// `chunk_len` bytes: the fields before the file, `${filename}`, the signer, the policy
/// (decoded, signature verified, checked against the fields), the stored headers and the
/// claimed checksums, then the file read to its end.
pub fn post_form(body: &[u8], chunk_len: usize) {
    let chunks: Vec<Result<Bytes, std::io::Error>> = body
        .chunks(chunk_len.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let mut form = multer::Multipart::new(futures::stream::iter(chunks), FORM_BOUNDARY);
    futures::executor::block_on(async {
        let Ok((mut fields, mut file)) = crate::post::read_fields(&mut form).await else {
            return;
        };
        let file_name = policy::base_file_name(file.file_name()).to_string();
        for value in fields.values_mut() {
            if value.contains("${filename}") {
                *value = value.replace("${filename}", &file_name);
            }
        }
        post_fields(&fields);
        while let Ok(Some(_)) = file.chunk().await {}
    });
}

/// What the gateway does with a form's fields once they are read.
fn post_fields(fields: &policy::Fields) {
    if let Ok(signer) = policy::signer(fields) {
        let _ = signer.access_key();
        if let Some(policy_b64) = fields.get("policy") {
            let _ = policy::verify(&signer, "fuzz-secret", policy_b64);
            if let Ok(p) = PostPolicy::from_base64(policy_b64) {
                post_policy_check(&p, fields);
            }
        }
    }
    let _ = crate::post::stored_headers(fields);
    let claimed = crate::post::claimed_checksums(fields);
    let algorithm = fields.get("x-amz-checksum-algorithm").map(String::as_str);
    let _ = crate::checksum::selection(&claimed, algorithm, &http::HeaderMap::new());
}

fn post_policy_check(p: &PostPolicy, fields: &policy::Fields) {
    let now =
        time::OffsetDateTime::from_unix_timestamp(NOW_UNIX_SECS).expect("a fixed time in range");
    let _ = policy::check(p, fields, "bucket", now);
}

/// A POST policy document (JSON, as it is after base64) checked against `fields` given as
/// `name=value` lines.
pub fn post_policy(json: &str, fields_text: &str) {
    let Ok(p) = PostPolicy::from_json(json) else {
        return;
    };
    let fields: policy::Fields = fields_text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    post_policy_check(&p, &fields);
    let _ = p.content_length_range();
}

/// `x-amz-tagging` (a URL query string of tags).
pub fn tagging_header(value: &str) {
    if let Ok(tags) = crate::headers::parse_tagging_header(value) {
        assert!(tags.len() <= baobab::types::MAX_OBJECT_TAGS);
        // URL encoding: every `%` starts two hex digits.
        for (i, _) in value.match_indices('%') {
            let escape = value.as_bytes().get(i + 1..i + 3);
            assert!(
                escape.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)),
                "{value:?} accepted with a bad escape"
            );
        }
    }
}

/// `Range` (s3s parses it, the gateway checks it against the size) and
/// `x-amz-copy-source-range` (the gateway parses it), against an object of `size` bytes.
pub fn ranges(value: &str, size: u64) {
    if let Ok(range) = s3s::dto::Range::parse(value) {
        if let Ok(Some(r)) = crate::objects::requested_range(Some(&range), size) {
            assert!(r.start <= r.end && r.end <= size, "{r:?} outside 0..{size}");
        }
    }
    if let Ok(r) = crate::multipart::copy_range(Some(value), size) {
        assert!(r.start < r.end && r.end <= size, "{r:?} outside 0..{size}");
    }
}

/// `x-amz-copy-source`.
pub fn copy_source(value: &str) {
    let _ = s3s::dto::CopySource::parse(value);
}

/// An XML body of an operation we serve, deserialised as s3s does (a whole document, nothing
/// after it), then what the gateway does with it: `kind` picks the document.
pub fn xml_body(kind: u8, xml: &[u8]) {
    match kind % 6 {
        0 => {
            let _ = de::<s3s::dto::CompletedMultipartUpload>(xml);
        }
        1 => {
            let _ = de::<s3s::dto::Delete>(xml);
        }
        2 => {
            if let Some(t) = de::<s3s::dto::Tagging>(xml) {
                let _ = crate::headers::tags_of(t.tag_set, 50);
            }
        }
        3 => {
            if let Some(c) = de::<s3s::dto::CORSConfiguration>(xml) {
                cors_rules(c);
            }
        }
        4 => {
            let _ = de::<s3s::dto::CreateBucketConfiguration>(xml);
        }
        _ => {
            let _ = de::<s3s::dto::AccessControlPolicy>(xml);
        }
    }
}

fn de<T: for<'x> s3s::xml::Deserialize<'x>>(xml: &[u8]) -> Option<T> {
    let mut d = s3s::xml::Deserializer::new(xml);
    let v = T::deserialize(&mut d).ok()?;
    d.expect_eof().ok()?;
    Some(v)
}

/// A CORS configuration's rules matched against a preflight, as the listener does.
fn cors_rules(c: s3s::dto::CORSConfiguration) {
    let rules: Vec<baobab::meta::CorsRule> = c
        .cors_rules
        .into_iter()
        .map(|r| baobab::meta::CorsRule {
            allowed_origins: r.allowed_origins,
            allowed_methods: r.allowed_methods,
            allowed_headers: r.allowed_headers.unwrap_or_default(),
            expose_headers: r.expose_headers.unwrap_or_default(),
            max_age_secs: r.max_age_seconds,
            id: r.id,
        })
        .collect();
    for r in &rules {
        let origin = r.allowed_origins.first().map_or("", String::as_str);
        let headers = crate::cors::requested_headers(r.allowed_headers.first().map(String::as_str));
        let _ = crate::cors::find_rule(&rules, origin, "GET", &headers);
    }
}

/// A CORS preflight: `Origin`, the method and `Access-Control-Request-Headers` against
/// `patterns` (one origin and one header pattern per rule).
pub fn cors_preflight(origin: &str, method: &str, headers: &str, patterns: &[&str]) {
    let rules: Vec<baobab::meta::CorsRule> = patterns
        .chunks(2)
        .map(|p| baobab::meta::CorsRule {
            allowed_origins: vec![p[0].to_string()],
            allowed_methods: vec!["GET".into(), "PUT".into()],
            allowed_headers: p.get(1).map(|h| vec![h.to_string()]).unwrap_or_default(),
            ..Default::default()
        })
        .collect();
    let requested = crate::cors::requested_headers(Some(headers));
    if let Some(rule) = crate::cors::find_rule(&rules, origin, method, &requested) {
        let _ = crate::cors::response_headers(rule, origin, Some(&requested));
    }
}

/// A request head (method, URI, headers as `name: value` lines): the bucket and key it
/// addresses (path or virtual-hosted style), whether it is a POST object, and what the
/// listener checks of its signature before s3s (presigned URL expiry, SigV2 `Date`).
pub fn request_head(method: &str, uri: &str, header_lines: &str) {
    let Ok(method) = http::Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let mut builder = http::Request::builder().method(method).uri(uri);
    for line in header_lines.lines() {
        if let Some((n, v)) = line.split_once(':') {
            builder = builder.header(n.trim(), v.trim());
        }
    }
    let Ok(req) = builder.body(()) else {
        return;
    };
    for domain in [None, Some("s3.example.com")] {
        let _ = crate::host::request_bucket(&req, domain);
        let _ = crate::host::s3_path(&req, domain);
        let _ = crate::post::post_object_bucket(&req, domain);
    }
    let (parts, ()) = req.into_parts();
    let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(NOW_UNIX_SECS as u64);
    let _ = crate::sig_limits::check(&parts, now);
}

/// A checksum algorithm name and a claimed value, as a header, a trailer or a part's stored
/// value: parsed, decoded, combined the ways CompleteMultipartUpload combines parts.
pub fn checksum_value(name: &str, value: &str, part_len: u64) {
    use baobab::codec::checksum::{self, ChecksumAlgorithm};
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(name) {
        headers.insert("x-amz-trailer", v);
    }
    let _ = crate::checksum::selection(&Default::default(), Some(name), &headers);
    for a in ChecksumAlgorithm::ALL {
        let _ = checksum::decode(a, value);
        let _ = checksum::composite(a, &[value, value]);
        let _ = checksum::full_object_crc(a, &[(value, part_len), (value, part_len)]);
    }
}
