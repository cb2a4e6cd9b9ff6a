//! Which addressing style a request uses: `bucket.<root domain>` is virtual-hosted style; any
//! other host (an IP, `localhost`, the root domain itself) is path style. s3s's `SingleDomain`
//! would read an IP host as a bucket name, which breaks path-style requests to `127.0.0.1`.

use s3s::host::{S3Host, VirtualHost};
use s3s::path::S3Path;
use s3s::S3Result;

pub struct RootDomain {
    domain: String,
}

impl RootDomain {
    pub fn new(domain: &str) -> Self {
        RootDomain {
            domain: domain.trim_matches('.').to_ascii_lowercase(),
        }
    }
}

/// The bucket named by a Host header under `domain`, if any.
fn bucket_of<'h>(domain: &str, host: &'h str) -> Option<&'h str> {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let bucket = name.strip_suffix(domain)?.strip_suffix('.')?;
    (!bucket.is_empty()).then_some(bucket)
}

/// The bucket a virtual-hosted-style request names in its Host header under `root_domain`,
/// lower-cased as s3s reads it; None for path style.
pub fn virtual_host_bucket(headers: &http::HeaderMap, root_domain: Option<&str>) -> Option<String> {
    let domain = root_domain?.trim_matches('.').to_ascii_lowercase();
    let host = headers
        .get(http::header::HOST)?
        .to_str()
        .ok()?
        .to_ascii_lowercase();
    bucket_of(&domain, &host).map(str::to_string)
}

/// The bucket a request addresses: from the Host header under `root_domain`, else the first
/// path segment. For the listener's own uses (CORS) before s3s routes the request.
pub fn request_bucket<B>(req: &http::Request<B>, root_domain: Option<&str>) -> Option<String> {
    if let Some(domain) = root_domain {
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_ascii_lowercase);
        let domain = domain.trim_matches('.').to_ascii_lowercase();
        if let Some(b) = host.as_deref().and_then(|h| bucket_of(&domain, h)) {
            return Some(b.to_string());
        }
    }
    let first = req.uri().path().trim_start_matches('/').split('/').next()?;
    (!first.is_empty()).then(|| first.to_string())
}

/// Where a request points, as s3s will route it: the bucket from the Host header under
/// `root_domain` (virtual-hosted style) or the first segment of the percent-decoded path. None
/// where s3s would refuse the path (bad escapes, an invalid bucket name).
pub fn s3_path<B>(req: &http::Request<B>, root_domain: Option<&str>) -> Option<S3Path> {
    let path = percent_decode_path(req.uri().path())?;
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase);
    let vh_bucket = root_domain.zip(host.as_deref()).and_then(|(domain, host)| {
        bucket_of(&domain.trim_matches('.').to_ascii_lowercase(), host).map(str::to_string)
    });
    match vh_bucket {
        Some(bucket) => s3s::path::parse_virtual_hosted_style(Some(&bucket), &path).ok(),
        None => s3s::path::parse_path_style(&path).ok(),
    }
}

/// `%XX` escapes decoded; None for a bad escape or a result that is not UTF-8 (s3s answers
/// those InvalidURI). `+` stays itself in a path.
fn percent_decode_path(path: &str) -> Option<String> {
    if !path.contains('%') {
        return Some(path.to_string());
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            // Two hex digits: `from_str_radix` alone would take a sign (`%+4`).
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl S3Host for RootDomain {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        let lower = host.to_ascii_lowercase();
        Ok(match bucket_of(&self.domain, &lower) {
            Some(bucket) => VirtualHost::new(self.domain.as_str()).with_bucket(bucket.to_string()),
            None => VirtualHost::new(self.domain.as_str()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check() {
        let cases = [
            ("photos.localhost:3900", Some("photos")),
            ("photos.localhost", Some("photos")),
            ("a.b.localhost", Some("a.b")),
            ("localhost:3900", None),
            ("127.0.0.1:3900", None),
            ("otherlocalhost", None),
            (".localhost", None),
        ];
        for (host, want) in cases {
            assert_eq!(bucket_of("localhost", host), want, "{host}");
        }
    }

    #[test]
    fn paths() {
        let req = |host: &str, path: &str| {
            http::Request::builder()
                .uri(path)
                .header(http::header::HOST, host)
                .body(())
                .expect("valid request")
        };
        let cases = [
            ("127.0.0.1:3900", "/photos", Some(S3Path::bucket("photos"))),
            ("127.0.0.1:3900", "/photos/", Some(S3Path::bucket("photos"))),
            (
                "127.0.0.1:3900",
                "/%70hotos",
                Some(S3Path::bucket("photos")),
            ),
            (
                "127.0.0.1:3900",
                "/photos/a/b",
                Some(S3Path::object("photos", "a/b")),
            ),
            ("127.0.0.1:3900", "/", Some(S3Path::root())),
            ("photos.localhost:3900", "/", Some(S3Path::bucket("photos"))),
            (
                "photos.localhost:3900",
                "/k",
                Some(S3Path::object("photos", "k")),
            ),
            ("localhost:3900", "/photos", Some(S3Path::bucket("photos"))),
            ("127.0.0.1:3900", "/%zz", None),
            // A sign is not a hex digit: a bad escape, like `%zz`.
            ("127.0.0.1:3900", "/b/%+4", None),
            ("127.0.0.1:3900", "/Bad_Bucket", None),
        ];
        for (host, path, want) in cases {
            assert_eq!(
                s3_path(&req(host, path), Some("localhost")),
                want,
                "{host}{path}"
            );
        }
    }
}
