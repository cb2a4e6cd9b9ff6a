//! SigV2 signatures (header `Authorization: AWS <key>:<signature>` and presigned URLs with
//! `AWSAccessKeyId`/`Signature`/`Expires`), checked by the listener in constant time before
//! s3s sees the request. s3s checks them again, comparing with `!=`, which leaks how much of a
//! guess is right through its timing; here a wrong signature never reaches that comparison, so
//! the only signatures s3s compares are right ones. (Browser-form POSTs are checked in
//! `post/policy.rs`, also in constant time.)
//!
//! The string to sign is AWS's (and s3s's, which must agree with it for a signature we accept):
//! method, Content-MD5, Content-Type, Date (empty when `x-amz-date` is present) or `Expires`,
//! the `x-amz-*` headers sorted (lower-case names, values trimmed, repeated ones joined by
//! `,`), then the resource: `/<bucket>` for a virtual-hosted-style request, the path as sent,
//! and the sub-resources AWS lists, in order, with their decoded values.

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use s3s::{S3Error, S3ErrorCode};
use sha1::Sha1;

/// The query parameters that belong to a SigV2 resource, sorted as AWS sorts them.
const SUBRESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "defaultObjectAcl",
    "delete",
    "inventory",
    "lifecycle",
    "location",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "partNumber",
    "policy",
    "replication",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "select",
    "select-type",
    "storageClass",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// A SigV2-signed request: who signed it, the base64 signature, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedV2 {
    pub access_key: String,
    pub signature: String,
    presigned: bool,
}

/// The SigV2 signature of a request, if it carries one. A SigV4 request, an anonymous one, or
/// a malformed SigV2 one (left for s3s to refuse with its error) gives None.
pub fn find(headers: &http::HeaderMap, uri: &http::Uri) -> Option<SignedV2> {
    if let Some(auth) = headers.get(http::header::AUTHORIZATION) {
        let (access_key, signature) = auth.to_str().ok()?.strip_prefix("AWS ")?.split_once(':')?;
        return Some(SignedV2 {
            access_key: access_key.to_string(),
            signature: signature.to_string(),
            presigned: false,
        });
    }
    let query = uri.query()?;
    let access_key = unique_param(query, "AWSAccessKeyId")?;
    let signature = unique_param(query, "Signature")?;
    unique_param(query, "Expires")?;
    Some(SignedV2 {
        access_key,
        signature,
        presigned: true,
    })
}

/// A SigV2-signed path-style request to a bucket (`/<bucket>`, no slash after it) gets the
/// path `/<bucket>/`: AWS's resource for it, which SigV2 clients (botocore, s3cmd) sign, while
/// s3s signs the path as sent. Both route it to the same bucket.
pub fn bucket_path_as_signed(parts: &mut http::request::Parts) {
    if find(&parts.headers, &parts.uri).is_none() {
        return;
    }
    let path = parts.uri.path();
    let bucket_only = path.len() > 1 && path.starts_with('/') && !path[1..].contains('/');
    if !bucket_only {
        return;
    }
    let with_slash = match parts.uri.query() {
        Some(q) => format!("{path}/?{q}"),
        None => format!("{path}/"),
    };
    if let Ok(uri) = with_slash.parse() {
        parts.uri = uri;
    }
}

/// The decoded value of `name` when the query has it exactly once.
fn unique_param(query: &str, name: &str) -> Option<String> {
    let mut found = url::form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k == name);
    let (_, v) = found.next()?;
    found.next().is_none().then(|| v.into_owned())
}

/// The value of header `name` when the request has it exactly once (and it is UTF-8).
fn unique_header<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    let mut all = headers.get_all(name).iter();
    let v = all.next()?;
    all.next().is_none().then(|| v.to_str().ok()).flatten()
}

/// The string a SigV2 signature signs.
pub fn string_to_sign(
    parts: &http::request::Parts,
    signed: &SignedV2,
    virtual_host_bucket: Option<&str>,
) -> String {
    let h = &parts.headers;
    let mut s = String::with_capacity(256);
    s.push_str(parts.method.as_str());
    s.push('\n');
    s.push_str(unique_header(h, "content-md5").unwrap_or_default());
    s.push('\n');
    s.push_str(unique_header(h, "content-type").unwrap_or_default());
    s.push('\n');
    if signed.presigned {
        let expires = parts.uri.query().and_then(|q| unique_param(q, "Expires"));
        s.push_str(expires.as_deref().unwrap_or_default());
    } else if unique_header(h, "x-amz-date").is_none() {
        s.push_str(unique_header(h, "date").unwrap_or_default());
    }
    s.push('\n');

    let mut amz: Vec<&str> = h
        .keys()
        .map(|k| k.as_str())
        .filter(|k| k.starts_with("x-amz-"))
        .collect();
    amz.sort_unstable();
    for name in amz {
        // Values that are not UTF-8 are left out, as s3s leaves them out.
        let values: Vec<&str> = h
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .collect();
        if values.is_empty() {
            continue;
        }
        s.push_str(name);
        s.push(':');
        s.push_str(&values.join(","));
        s.push('\n');
    }

    if let Some(bucket) = virtual_host_bucket {
        s.push('/');
        s.push_str(bucket);
    }
    s.push_str(parts.uri.path());
    let query = parts.uri.query().unwrap_or_default();
    let mut first = true;
    for name in SUBRESOURCES {
        if let Some(v) = unique_param(query, name) {
            s.push(if first { '?' } else { '&' });
            first = false;
            s.push_str(name);
            if !v.is_empty() {
                s.push('=');
                s.push_str(&v);
            }
        }
    }
    s
}

/// Whether `signature` (base64) is the HMAC-SHA1 of `string_to_sign` under `secret`, compared
/// in constant time.
pub fn signature_matches(secret: &str, string_to_sign: &str, signature: &str) -> bool {
    let Ok(claimed) = base64::engine::general_purpose::STANDARD.decode(signature) else {
        return false;
    };
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(string_to_sign.as_bytes());
    mac.verify_slice(&claimed).is_ok()
}

/// The error a request whose SigV2 signature is wrong gets (AWS's).
pub fn does_not_match() -> S3Error {
    S3Error::with_message(
        S3ErrorCode::SignatureDoesNotMatch,
        "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request").into_parts().0
    }

    /// AWS's documented examples (Signing and authenticating REST requests, SigV2), key
    /// `AKIAIOSFODNN7EXAMPLE`, secret `wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY`.
    #[test]
    fn aws_examples() {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        // Object GET, virtual-hosted style.
        let p = parts(
            "GET",
            "/photos/puppy.jpg",
            &[
                ("date", "Tue, 27 Mar 2007 19:36:42 +0000"),
                (
                    "authorization",
                    "AWS AKIAIOSFODNN7EXAMPLE:qgk2+6Sv9/oM7G3qLEjTH1a1l1g=",
                ),
            ],
        );
        let signed = find(&p.headers, &p.uri).expect("signed");
        assert_eq!(signed.access_key, "AKIAIOSFODNN7EXAMPLE");
        let sts = string_to_sign(&p, &signed, Some("awsexamplebucket1"));
        assert_eq!(
            sts,
            "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/awsexamplebucket1/photos/puppy.jpg"
        );
        assert!(signature_matches(secret, &sts, &signed.signature));
        assert!(!signature_matches(
            secret,
            &sts,
            "qgk2+6Sv9/oM7G3qLEjTH1a1l1h="
        ));
        assert!(!signature_matches(secret, &sts, "not base64!"));
        assert!(!signature_matches(
            "another secret",
            &sts,
            &signed.signature
        ));

        // Upload: Content-Type, Content-MD5 absent, x-amz-* headers sorted and joined.
        let p = parts(
            "PUT",
            "/db-backup.dat.gz",
            &[
                ("date", "Tue, 27 Mar 2007 21:06:08 +0000"),
                ("x-amz-meta-reviewedby", "joe@example.com"),
                ("x-amz-meta-reviewedby", "jane@example.com"),
                ("x-amz-meta-filechecksum", "0x02661779"),
                ("x-amz-meta-checksumalgorithm", "crc32"),
                ("content-type", "application/x-download"),
                ("content-md5", "4gJE4saaMU4BqNR0kLY+lw=="),
                ("x-amz-acl", "public-read"),
                (
                    "authorization",
                    "AWS AKIAIOSFODNN7EXAMPLE:jtBQa0Aq+DkULFI8qrpwIjGEx0E=",
                ),
            ],
        );
        let signed = find(&p.headers, &p.uri).expect("signed");
        let sts = string_to_sign(&p, &signed, Some("static.example.com"));
        assert_eq!(
            sts,
            "PUT\n4gJE4saaMU4BqNR0kLY+lw==\napplication/x-download\nTue, 27 Mar 2007 21:06:08 +0000\nx-amz-acl:public-read\nx-amz-meta-checksumalgorithm:crc32\nx-amz-meta-filechecksum:0x02661779\nx-amz-meta-reviewedby:joe@example.com,jane@example.com\n/static.example.com/db-backup.dat.gz"
        );
        assert!(signature_matches(secret, &sts, &signed.signature));

        // List with a sub-resource-free query (prefix, max-keys are not signed).
        let p = parts(
            "GET",
            "/?prefix=photos&max-keys=50&marker=puppy",
            &[
                ("date", "Tue, 27 Mar 2007 19:42:41 +0000"),
                (
                    "authorization",
                    "AWS AKIAIOSFODNN7EXAMPLE:m0WP8eCtspQl5Ahe6L1SozdX9YA=",
                ),
            ],
        );
        let signed = find(&p.headers, &p.uri).expect("signed");
        let sts = string_to_sign(&p, &signed, Some("awsexamplebucket1"));
        assert_eq!(
            sts,
            "GET\n\n\nTue, 27 Mar 2007 19:42:41 +0000\n/awsexamplebucket1/"
        );
        assert!(signature_matches(secret, &sts, &signed.signature));

        // Sub-resources: sorted, valueless ones bare, values decoded; x-amz-date empties Date.
        let p = parts(
            "GET",
            "/b/k?uploadId=u%2B1&acl&response-content-type=text%2Fplain",
            &[
                ("date", "ignored"),
                ("x-amz-date", "Tue, 27 Mar 2007 19:42:41 +0000"),
                ("authorization", "AWS K:sig"),
            ],
        );
        let signed = find(&p.headers, &p.uri).expect("signed");
        assert_eq!(
            string_to_sign(&p, &signed, None),
            "GET\n\n\n\nx-amz-date:Tue, 27 Mar 2007 19:42:41 +0000\n/b/k?acl&response-content-type=text/plain&uploadId=u+1"
        );
    }

    #[test]
    fn a_path_style_bucket_request_is_signed_with_a_slash() {
        let mut p = parts(
            "GET",
            "/bkt?list-type=2&prefix=v2%2F",
            &[
                ("date", "Sun, 29 Nov 2026 18:01:00 GMT"),
                ("authorization", "AWS AK:pwRrzW0dbJNROH3SyI89K4LkqkI="),
            ],
        );
        bucket_path_as_signed(&mut p);
        assert_eq!(p.uri, "/bkt/?list-type=2&prefix=v2%2F");
        let signed = find(&p.headers, &p.uri).expect("signed");
        // What botocore signed (HmacV1Auth, secret "S").
        let sts = string_to_sign(&p, &signed, None);
        assert!(signature_matches("S", &sts, &signed.signature), "{sts}");
        // Objects, the root, and unsigned or SigV4 requests keep their path.
        for (uri, auth) in [
            ("/bkt/key", "AWS AK:x"),
            ("/", "AWS AK:x"),
            ("/bkt", "AWS4-HMAC-SHA256 Credential=AK/x"),
        ] {
            let mut p = parts("GET", uri, &[("authorization", auth)]);
            bucket_path_as_signed(&mut p);
            assert_eq!(p.uri, uri);
        }
    }

    #[test]
    fn presigned_urls_sign_expires() {
        let p = parts(
            "GET",
            "/b/k?AWSAccessKeyId=K&Signature=abc%3D&Expires=1175139620",
            &[],
        );
        let signed = find(&p.headers, &p.uri).expect("presigned");
        assert_eq!(
            (signed.access_key.as_str(), signed.signature.as_str()),
            ("K", "abc=")
        );
        assert_eq!(
            string_to_sign(&p, &signed, None),
            "GET\n\n\n1175139620\n/b/k"
        );
        // Not SigV2: SigV4, anonymous, or an incomplete presigned URL.
        for (uri, headers) in [
            (
                "/b/k",
                vec![("authorization", "AWS4-HMAC-SHA256 Credential=K/x")],
            ),
            ("/b/k", vec![]),
            ("/b/k?AWSAccessKeyId=K&Signature=x", vec![]),
            (
                "/b/k?AWSAccessKeyId=K&Signature=x&Signature=y&Expires=1",
                vec![],
            ),
        ] {
            let p = parts("GET", uri, &headers);
            assert_eq!(find(&p.headers, &p.uri), None, "{uri} {headers:?}");
        }
    }
}
