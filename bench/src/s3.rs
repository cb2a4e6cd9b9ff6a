//! A minimal S3 client for load generation: path-style requests over HTTP/1.1 (plain, or HTTPS
//! trusting a given CA: `tls.rs`) with a keep-alive pool, signed with SigV4 (`UNSIGNED-PAYLOAD`, as SDKs do for streamed bodies).
//! Bodies are sent from shared `Bytes` without copies and GET bodies are counted, not kept,
//! so the client stays cheap next to the server it measures.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Why one operation failed; `kind()` is the key errors are counted by.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("HTTP {status} {code}")]
    Status { status: u16, code: String },
    #[error("connection: {0}")]
    Connect(String),
    #[error("timed out")]
    Timeout,
    #[error("response body: {0}")]
    Body(String),
    #[error("signing: {0}")]
    Sign(String),
    #[error("unexpected response: {0}")]
    Protocol(String),
}

impl OpError {
    pub fn kind(&self) -> String {
        match self {
            OpError::Status { status, code } if code.is_empty() => format!("http_{status}"),
            OpError::Status { status, code } => format!("http_{status}_{code}"),
            OpError::Connect(_) => "connect".into(),
            OpError::Timeout => "timeout".into(),
            OpError::Body(_) => "body".into(),
            OpError::Sign(_) => "sign".into(),
            OpError::Protocol(_) => "protocol".into(),
        }
    }
}

/// One endpoint, bucket and key pair.
#[derive(Clone)]
pub struct S3Client {
    http: Client<crate::tls::Connector, Full<Bytes>>,
    /// `http://host:port` or `https://host:port`, no trailing slash.
    base: String,
    host: String,
    bucket: String,
    identity: Identity,
    region: String,
    timeout: Duration,
}

/// One page of a ListObjectsV2 answer.
pub struct ListPage {
    pub keys: u64,
    pub next_token: Option<String>,
}

impl S3Client {
    /// `ca_file`: the CA certificates (PEM) an `https://` endpoint's certificate must chain to.
    #[allow(clippy::too_many_arguments)] // reason: one flat constructor for the CLI's flags
    pub fn new(
        endpoint: &str,
        bucket: &str,
        access_key: &str,
        secret_key: &str,
        region: &str,
        pool: usize,
        timeout: Duration,
        ca_file: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        let uri: Uri = endpoint.parse()?;
        let scheme = match uri.scheme_str() {
            Some(s @ ("http" | "https")) => s,
            _ => anyhow::bail!("endpoint must be http://host:port or https://host:port"),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow::anyhow!("endpoint {endpoint} has no host"))?;
        let tls = match (scheme, ca_file) {
            ("https", Some(ca)) => Some(crate::tls::client_config(ca)?),
            ("https", None) => anyhow::bail!("an https:// endpoint needs --ca-file"),
            _ => None,
        };
        let connector = crate::tls::Connector::new(tls);
        let http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(pool.max(1))
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(S3Client {
            http,
            base: format!("{scheme}://{authority}"),
            host: authority.to_string(),
            bucket: bucket.to_string(),
            identity: Credentials::new(access_key, secret_key, None, None, "baobab-bench").into(),
            region: region.to_string(),
            timeout,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.base
    }

    fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, OpError> {
        let uri = format!("{}{}", self.base, path_and_query);
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| OpError::Sign(e.to_string()))?
            .into();
        let signable = SignableRequest::new(
            method.as_str(),
            uri.as_str(),
            std::iter::once(("host", self.host.as_str())),
            SignableBody::UnsignedPayload,
        )
        .map_err(|e| OpError::Sign(e.to_string()))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| OpError::Sign(e.to_string()))?
            .into_parts();
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::HOST, &self.host)
            .body(Full::new(body))
            .map_err(|e| OpError::Sign(e.to_string()))?;
        instructions.apply_to_request_http1x(&mut req);
        Ok(req)
    }

    /// Sends a request; returns the status and the body (read whole when `keep_body`, else
    /// only counted). Non-2xx answers become [`OpError::Status`] with the S3 error code.
    async fn send(
        &self,
        req: Request<Full<Bytes>>,
        keep_body: bool,
    ) -> Result<(StatusCode, http::HeaderMap, Bytes, u64), OpError> {
        let fut = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| OpError::Connect(e.to_string()))?;
            let (parts, mut body) = resp.into_parts();
            let keep = keep_body || !parts.status.is_success();
            let mut kept = Vec::new();
            let mut n: u64 = 0;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| OpError::Body(e.to_string()))?;
                if let Some(data) = frame.data_ref() {
                    n += data.len() as u64;
                    if keep {
                        kept.extend_from_slice(data);
                    }
                }
            }
            Ok((parts.status, parts.headers, Bytes::from(kept), n))
        };
        let (status, headers, body, n) = tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| OpError::Timeout)??;
        if !status.is_success() {
            let code = xml_tag(&body, "Code").unwrap_or_default();
            return Err(OpError::Status {
                status: status.as_u16(),
                code,
            });
        }
        Ok((status, headers, body, n))
    }

    fn object_path(&self, key: &str) -> String {
        format!("/{}/{}", self.bucket, encode_path(key))
    }

    /// Creates the bucket; an existing bucket owned by us is fine.
    pub async fn ensure_bucket(&self) -> Result<(), OpError> {
        let req = self.request(Method::PUT, &format!("/{}", self.bucket), Bytes::new())?;
        match self.send(req, false).await {
            Ok(_) => Ok(()),
            Err(OpError::Status { code, .. }) if code == "BucketAlreadyOwnedByYou" => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn put(&self, key: &str, body: Bytes) -> Result<(), OpError> {
        let req = self.request(Method::PUT, &self.object_path(key), body)?;
        self.send(req, false).await.map(|_| ())
    }

    /// Returns the number of body bytes received.
    pub async fn get(&self, key: &str) -> Result<u64, OpError> {
        let req = self.request(Method::GET, &self.object_path(key), Bytes::new())?;
        self.send(req, false).await.map(|(_, _, _, n)| n)
    }

    pub async fn delete(&self, key: &str) -> Result<(), OpError> {
        let req = self.request(Method::DELETE, &self.object_path(key), Bytes::new())?;
        self.send(req, false).await.map(|_| ())
    }

    /// One ListObjectsV2 page.
    pub async fn list_page(
        &self,
        prefix: &str,
        max_keys: u32,
        token: Option<&str>,
    ) -> Result<ListPage, OpError> {
        let mut q = format!(
            "/{}?list-type=2&max-keys={max_keys}&prefix={}",
            self.bucket,
            encode_query(prefix)
        );
        if let Some(t) = token {
            q.push_str("&continuation-token=");
            q.push_str(&encode_query(t));
        }
        let req = self.request(Method::GET, &q, Bytes::new())?;
        let (_, _, body, _) = self.send(req, true).await?;
        let keys = count_tag(&body, "Key");
        let truncated = xml_tag(&body, "IsTruncated").as_deref() == Some("true");
        let next_token = if truncated {
            Some(xml_tag(&body, "NextContinuationToken").ok_or_else(|| {
                OpError::Protocol("truncated listing without NextContinuationToken".into())
            })?)
        } else {
            None
        };
        Ok(ListPage { keys, next_token })
    }

    /// A whole multipart upload: create, `parts` uploaded in order, complete.
    pub async fn multipart(&self, key: &str, parts: &[Bytes]) -> Result<(), OpError> {
        let path = self.object_path(key);
        let req = self.request(Method::POST, &format!("{path}?uploads"), Bytes::new())?;
        let (_, _, body, _) = self.send(req, true).await?;
        let upload_id = xml_tag(&body, "UploadId")
            .ok_or_else(|| OpError::Protocol("CreateMultipartUpload without UploadId".into()))?;
        let upload_q = encode_query(&upload_id);
        let mut complete = String::from("<CompleteMultipartUpload>");
        for (i, part) in parts.iter().enumerate() {
            let n = i + 1;
            let req = self.request(
                Method::PUT,
                &format!("{path}?partNumber={n}&uploadId={upload_q}"),
                part.clone(),
            )?;
            let result = self.send(req, false).await;
            let (_, headers, _, _) = match result {
                Ok(r) => r,
                Err(e) => {
                    self.abort_multipart(&path, &upload_q).await;
                    return Err(e);
                }
            };
            let etag = headers
                .get(http::header::ETAG)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            complete.push_str(&format!(
                "<Part><PartNumber>{n}</PartNumber><ETag>{}</ETag></Part>",
                xml_escape(etag)
            ));
        }
        complete.push_str("</CompleteMultipartUpload>");
        let req = self.request(
            Method::POST,
            &format!("{path}?uploadId={upload_q}"),
            Bytes::from(complete),
        )?;
        let (_, _, body, _) = self.send(req, true).await?;
        // S3 may answer 200 with an <Error> body when completion fails late.
        if let Some(code) = xml_tag(&body, "Code") {
            return Err(OpError::Status { status: 200, code });
        }
        Ok(())
    }

    async fn abort_multipart(&self, path: &str, upload_q: &str) {
        if let Ok(req) = self.request(
            Method::DELETE,
            &format!("{path}?uploadId={upload_q}"),
            Bytes::new(),
        ) {
            let _ = self.send(req, false).await;
        }
    }
}

/// Percent-encodes a key for the path: unreserved characters and '/' stay.
fn encode_path(s: &str) -> String {
    encode(s, true)
}

/// Percent-encodes a query value (everything but unreserved characters).
fn encode_query(s: &str) -> String {
    encode(s, false)
}

fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn xml_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The text of the first `<tag>…</tag>` in an XML body, unescaped.
pub fn xml_tag(body: &[u8], tag: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&close)?;
    Some(xml_unescape(&text[start..end]))
}

/// How many `<tag>` elements an XML body has.
pub fn count_tag(body: &[u8], tag: &str) -> u64 {
    let open = format!("<{tag}>");
    let open = open.as_bytes();
    body.windows(open.len()).filter(|w| *w == open).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_helpers() {
        let body = b"<R><IsTruncated>true</IsTruncated><Contents><Key>a&amp;b</Key></Contents><Contents><Key>c</Key></Contents><NextContinuationToken>x+y=</NextContinuationToken></R>";
        assert_eq!(count_tag(body, "Key"), 2);
        assert_eq!(xml_tag(body, "Key").as_deref(), Some("a&b"));
        assert_eq!(
            xml_tag(body, "NextContinuationToken").as_deref(),
            Some("x+y=")
        );
        assert_eq!(xml_tag(body, "Missing"), None);
    }

    #[test]
    fn encoding() {
        assert_eq!(encode_path("bench/obj 1+2"), "bench/obj%201%2B2");
        assert_eq!(encode_query("a/b=c"), "a%2Fb%3Dc");
    }
}
