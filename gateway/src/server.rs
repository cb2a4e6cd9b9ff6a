//! The S3 listener: hyper HTTP/1.1 connections (plain, or HTTPS through `tls.rs`) into the s3s
//! service, with graceful shutdown, within the bounds of `limits.rs` (connections, read
//! timeouts, body idle timeout, per-key rate). POST object (browser form uploads) goes to
//! `post.rs` instead of s3s, which would hold the file in memory.

use std::future::Future;
use std::time::Duration;

use baobab::coord::Coordinator;
use baobab::meta::MetaClient;
use baobab::object::ObjectService;
use baobab::rpc::trace::scope;
use hyper_util::rt::TokioIo;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::access::{Access, AccessRule};
use crate::auth::{KeyStore, SharedKeyStore};
use crate::limits::{
    BodyFault, GuardedBody, KeyRateLimiter, ListenerLimits, RateLimitedAccess, WriteTimeoutIo,
};
use crate::post::PostObjects;
use crate::s3::Gateway;
use crate::tls::S3Tls;

/// The request header section S3 accepts, in bytes (names, values and separators). Larger
/// requests get `400 RequestHeaderSectionTooLarge` (AWS's limit is 8 KB; twice that here, so a
/// client with long presigned or SSE headers is not refused for what AWS would take).
pub const MAX_HEADER_SECTION_BYTES: usize = 16 * 1024;
// hyper's own limit of 100 headers stays: raising it moves hyper's header parsing from the
// stack to a heap buffer per request (measured with 1024: 4 KiB GET A/B 0.88, 0.98 without). More than 100
// headers still closes the connection without an S3 error body.

/// What the gateway needs to serve.
pub struct GatewayConfig {
    /// The region clients sign for and GetBucketLocation reports.
    pub region: String,
    /// For virtual-hosted-style requests (`bucket.<domain>`); None: path style only.
    pub root_domain: Option<String>,
    /// Opens the sealed secrets of access keys (derived from the cluster secret).
    pub secrets_key: baobab::codec::seal::SealKey,
}

/// Serves S3 on `listener` with the default [`ListenerLimits`] until `shutdown` resolves.
pub async fn serve_s3(
    listener: TcpListener,
    cfg: GatewayConfig,
    meta: MetaClient,
    coord: Coordinator,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    serve_s3_with(
        listener,
        cfg,
        ListenerLimits::default(),
        None,
        meta,
        coord,
        shutdown,
    )
    .await
}

/// A SigV2-signed request's signature checked in constant time (`sig_v2.rs`); the error when
/// it is wrong. An unknown key is left to s3s, which answers it as it does for SigV4.
async fn check_sig_v2(
    parts: &http::request::Parts,
    signed: &crate::sig_v2::SignedV2,
    keys: &KeyStore,
    vh_bucket: Option<&str>,
) -> Option<s3s::S3Error> {
    let record = keys.record(&signed.access_key).await.ok()?;
    let sts = crate::sig_v2::string_to_sign(parts, signed, vh_bucket);
    (!crate::sig_v2::signature_matches(&record.secret, &sts, &signed.signature))
        .then(crate::sig_v2::does_not_match)
}

/// Serves S3 on `listener` until `shutdown` resolves, then drains connections (10 s at most).
///
/// At most `limits.max_connections` connections are served at once; past it the listener stops
/// accepting, so new connections wait in the kernel's listen backlog (and, when it is full,
/// their SYNs are dropped and retried by the client's TCP) until a connection closes. Waiting
/// rather than closing at once: connections free up within the header read timeout (an idle
/// keep-alive connection is closed by the same timer), so a client that waits is served a few
/// seconds later instead of failing, and a flood of connections costs no accept-and-close work.
/// Existing connections are served as before.
///
/// With `tls`, every connection is HTTPS (no plain HTTP on the same port); the handshake must
/// finish within the header read timeout, and holds its connection slot meanwhile.
pub async fn serve_s3_with(
    listener: TcpListener,
    cfg: GatewayConfig,
    limits: ListenerLimits,
    tls: Option<std::sync::Arc<S3Tls>>,
    meta: MetaClient,
    coord: Coordinator,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let keys = KeyStore::new(meta.clone(), cfg.secrets_key.clone());
    let v2_keys = keys.clone();
    let access = Access::new(meta.clone(), keys.clone());
    let objects = ObjectService::new(meta, coord);
    let post = std::sync::Arc::new(PostObjects {
        objects: objects.clone(),
        access: access.clone(),
        keys: keys.clone(),
    });
    let gateway = Gateway {
        objects,
        access: access.clone(),
        region: cfg.region.clone(),
    };
    let service = {
        let mut b = S3ServiceBuilder::new(gateway);
        b.set_auth(SharedKeyStore(keys));
        b.set_access(RateLimitedAccess {
            inner: AccessRule(access.clone()),
            limiter: limits
                .requests_per_sec_per_key
                .map(|r| std::sync::Arc::new(KeyRateLimiter::new(r))),
        });
        let mut config = s3s::config::S3Config::default();
        // s3s never serves a POST object (the listener sends them to `post.rs`), but it still
        // parses the fields of other multipart/form-data POSTs before refusing them: bound those
        // as ours are, and let it hold no file, should one ever reach it.
        config.post_object_max_file_size = 0;
        config.form_max_field_size = crate::post::MAX_FORM_FIELD_BYTES;
        config.form_max_fields_size = crate::post::MAX_FORM_FIELDS_BYTES;
        config.form_max_parts = crate::post::MAX_FORM_FIELDS + 1;
        config.xml_max_body_size = crate::limits::MAX_XML_BODY_BYTES;
        b.set_config(std::sync::Arc::new(s3s::config::StaticConfigProvider::new(
            std::sync::Arc::new(config),
        )));
        if let Some(domain) = &cfg.root_domain {
            b.set_host(crate::host::RootDomain::new(domain));
        }
        b.build()
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(crate::limits::MAX_READ_BUF_BYTES);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let connections = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut warned_full: Option<std::time::Instant> = None;
    let body_idle = limits.body_idle_timeout;
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = connections.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        if connections.available_permits() == 0
            && warned_full.is_none_or(|t| t.elapsed() > Duration::from_secs(60))
        {
            tracing::warn!(
                max_connections = limits.max_connections,
                "s3 connection limit reached; new connections wait in the listen backlog"
            );
            warned_full = Some(std::time::Instant::now());
        }
        let (socket, _peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "s3 accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = socket.set_nodelay(true);
        let service = service.clone();
        let access = access.clone();
        let post = post.clone();
        let v2_keys = v2_keys.clone();
        let root_domain = cfg.root_domain.clone();
        let traced = hyper::service::service_fn(
            move |req: http::Request<hyper::body::Incoming>| {
                let service = service.clone();
                let access = access.clone();
                let post = post.clone();
                let v2_keys = v2_keys.clone();
                // SigV2 requests: the signature, and the virtual-hosted bucket it signs.
                let sig_v2 = crate::sig_v2::find(req.headers(), req.uri()).map(|signed| {
                    let vh =
                        crate::host::virtual_host_bucket(req.headers(), root_domain.as_deref());
                    (signed, vh)
                });
                let post_bucket = crate::post::post_object_bucket(&req, root_domain.as_deref());
                // Cross-origin requests: the bucket and origin, for the CORS rules.
                let origin = req
                    .headers()
                    .get(http::header::ORIGIN)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let cors_bucket = origin
                    .as_ref()
                    .and_then(|_| crate::host::request_bucket(&req, root_domain.as_deref()));
                let method = req.method().clone();
                let request_id = format!("{:016X}", rand::random::<u64>());
                let span = tracing::info_span!("s3", request_id = %request_id, method = %req.method(), path = %req.uri().path());
                let close_after = expects_continue_without_body(&req);
                let is_head = req.method() == http::Method::HEAD;
                let mut req = req;
                amz_date_from_date_header(req.headers_mut());
                let aws_chunked = is_aws_chunked(req.headers());
                let (parts, body) = req.into_parts();
                let (body, body_watch) = GuardedBody::new(body, body_idle, aws_chunked);
                let req = http::Request::from_parts(parts, body);
                async move {
                    let started = std::time::Instant::now();
                    if header_section_len(req.headers()) > MAX_HEADER_SECTION_BYTES {
                        let resp = header_section_too_large(&request_id);
                        baobab::metrics::global().http_response(resp.status().as_u16());
                        return Ok(resp);
                    }
                    let (mut parts, body) = req.into_parts();
                    if let Some((_, None)) = &sig_v2 {
                        crate::sig_v2::bucket_path_as_signed(&mut parts);
                    }
                    let refusal =
                        match crate::sig_limits::check(&parts, std::time::SystemTime::now()) {
                            Some(e) => Some(e),
                            None => match &sig_v2 {
                                Some((signed, vh)) => {
                                    check_sig_v2(&parts, signed, &v2_keys, vh.as_deref()).await
                                }
                                None => None,
                            },
                        };
                    if let Some(e) = refusal {
                        let mut resp = s3_error_response(e);
                        if let Ok(v) = http::HeaderValue::from_str(&request_id) {
                            resp.headers_mut().insert("x-amz-request-id", v);
                        }
                        add_request_id_to_error_body(&mut resp, &request_id);
                        baobab::metrics::global().http_response(resp.status().as_u16());
                        return Ok(resp);
                    }
                    let req = http::Request::from_parts(parts, body);
                    if method == http::Method::OPTIONS {
                        let mut resp =
                            crate::cors::preflight(&access, cors_bucket, req.headers()).await;
                        if let Ok(v) = http::HeaderValue::from_str(&request_id) {
                            resp.headers_mut().insert("x-amz-request-id", v);
                        }
                        baobab::metrics::global().http_response(resp.status().as_u16());
                        return Ok(resp);
                    }
                    // Every RPC made for this request carries its id to the nodes.
                    let rid: std::sync::Arc<str> = request_id.as_str().into();
                    let mut resp = match &post_bucket {
                        Some(bucket) => scope(rid, post.serve(bucket, req)).await,
                        None => {
                            scope(rid, service.call(req.map(s3s::Body::http_body_unsync))).await?
                        }
                    };
                    // The body failed by our limits: whatever s3s or the write path made of
                    // the failed body, the client is told why. The write path dropped its
                    // shard streams already; the rest of the body is not read, so the
                    // connection closes.
                    if let Some(fault) = body_watch.fault() {
                        let e = match fault {
                            BodyFault::IdleTimeout => crate::error::request_timeout(),
                            BodyFault::ChunkTooLarge => {
                                crate::error::chunk_too_large(crate::limits::MAX_AWS_CHUNK_BYTES)
                            }
                        };
                        tracing::debug!(?fault, "request body refused");
                        resp = s3_error_response(e);
                        resp.headers_mut().insert(
                            http::header::CONNECTION,
                            http::HeaderValue::from_static("close"),
                        );
                    }
                    if let (Some(origin), Some(bucket)) = (&origin, &cors_bucket) {
                        crate::cors::decorate(&access, bucket, origin, method.as_str(), &mut resp)
                            .await;
                    }
                    // s3s answers HEAD with 200 whatever the output; S3 says 206 for a range or
                    // a part, as GET does.
                    if is_head
                        && resp.status() == http::StatusCode::OK
                        && resp.headers().contains_key(http::header::CONTENT_RANGE)
                    {
                        *resp.status_mut() = http::StatusCode::PARTIAL_CONTENT;
                    }
                    if close_after {
                        resp.headers_mut().insert(
                            http::header::CONNECTION,
                            http::HeaderValue::from_static("close"),
                        );
                    }
                    if let Ok(v) = http::HeaderValue::from_str(&request_id) {
                        resp.headers_mut().insert("x-amz-request-id", v);
                    }
                    if resp.status().is_client_error() || resp.status().is_server_error() {
                        add_request_id_to_error_body(&mut resp, &request_id);
                    }
                    tracing::debug!(
                        status = resp.status().as_u16(),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "s3 request"
                    );
                    baobab::metrics::global().http_response(resp.status().as_u16());
                    Ok::<_, s3s::HttpError>(resp)
                }
                .instrument(span)
            },
        );
        let io = WriteTimeoutIo::new(socket, body_idle);
        match &tls {
            None => {
                let conn = graceful.watch(http.serve_connection(TokioIo::new(io), traced));
                tokio::spawn(async move {
                    let _ = conn.await;
                    drop(permit);
                });
            }
            Some(tls) => {
                let acceptor = tls.acceptor();
                let http = http.clone();
                let watcher = graceful.watcher();
                let handshake_timeout = limits.header_read_timeout;
                tokio::spawn(async move {
                    let stream =
                        match tokio::time::timeout(handshake_timeout, acceptor.accept(io)).await {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, "s3 TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!("s3 TLS handshake timed out");
                                return;
                            }
                        };
                    let conn = watcher.watch(http.serve_connection(TokioIo::new(stream), traced));
                    let _ = conn.await;
                    drop(permit);
                });
            }
        }
    }
    tokio::select! {
        () = graceful.shutdown() => {},
        () = tokio::time::sleep(Duration::from_secs(10)) => tracing::warn!("s3 connections still open after 10 s; closing"),
    }
    Ok(())
}

/// An S3 error as its HTTP response (s3s renders the XML body).
fn s3_error_response(e: s3s::S3Error) -> http::Response<s3s::Body> {
    let status = e.status_code();
    e.to_http_response().unwrap_or_else(|_| {
        let mut r = http::Response::new(s3s::Body::empty());
        *r.status_mut() = status.unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        r
    })
}

/// Signed or unsigned aws-chunked bodies (`STREAMING-…` payloads), whose chunk sizes
/// [`GuardedBody`] bounds.
fn is_aws_chunked(headers: &http::HeaderMap) -> bool {
    headers
        .get("x-amz-content-sha256")
        .is_some_and(|v| v.as_bytes().starts_with(b"STREAMING-"))
}

/// botocore (boto3, aws-cli) sends `Expect: 100-continue` even on empty PUTs; hyper answers
/// those with the final response and no `100 Continue`, which leaves botocore's pooled connection
/// with a stale status line: its next request on it stalls for the whole read timeout (60 s)
/// (boto/botocore#3755). Closing such a connection after the response avoids the poisoned reuse.
fn expects_continue_without_body<B>(req: &http::Request<B>) -> bool {
    let expects = req
        .headers()
        .get(http::header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    let empty = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "0");
    expects && empty
}

fn header_section_len(headers: &http::HeaderMap) -> usize {
    headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum()
}

/// `400 RequestHeaderSectionTooLarge`, as AWS answers; the connection is closed, since the
/// request's body (if any) is not read.
fn header_section_too_large(request_id: &str) -> http::Response<s3s::Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>RequestHeaderSectionTooLarge</Code><Message>Your request header section exceeds the maximum allowed size.</Message><RequestId>{request_id}</RequestId></Error>"
    );
    let mut resp = http::Response::new(s3s::Body::from(body));
    *resp.status_mut() = http::StatusCode::BAD_REQUEST;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    h.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    if let Ok(v) = http::HeaderValue::from_str(request_id) {
        h.insert("x-amz-request-id", v);
    }
    resp
}

/// S3 error bodies carry `<RequestId>`, equal to the `x-amz-request-id` header. s3s renders
/// error bodies before we see them, so the id goes in here (error bodies are small, in memory).
fn add_request_id_to_error_body(resp: &mut http::Response<s3s::Body>, request_id: &str) {
    let Some(body) = resp.body().bytes() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return;
    };
    if !text.contains("<Error>") || text.contains("<RequestId>") {
        return;
    }
    let Some(at) = text.rfind("</Error>") else {
        return;
    };
    let new = format!(
        "{}<RequestId>{request_id}</RequestId>{}",
        &text[..at],
        &text[at..]
    );
    let len = new.len();
    *resp.body_mut() = s3s::Body::from(new);
    if let Ok(v) = http::HeaderValue::from_str(&len.to_string()) {
        resp.headers_mut().insert(http::header::CONTENT_LENGTH, v);
    }
}

/// SigV4 allows the request time in `Date` instead of `x-amz-date` (the string to sign then
/// holds it in ISO 8601 basic form); s3s reads only `x-amz-date`, so the time is copied there.
/// An unsigned header changes nothing in the canonical request.
fn amz_date_from_date_header(headers: &mut http::HeaderMap) {
    let is_v4 = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256"));
    if !is_v4 || headers.contains_key("x-amz-date") {
        return;
    }
    let Some(date) = headers
        .get(http::header::DATE)
        .and_then(|v| v.to_str().ok())
    else {
        return;
    };
    let format = time::format_description::well_known::Rfc2822;
    let Ok(t) = time::OffsetDateTime::parse(date, &format) else {
        return;
    };
    let t = t.to_offset(time::UtcOffset::UTC);
    let amz = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if let Ok(v) = http::HeaderValue::from_str(&amz) {
        headers.insert("x-amz-date", v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_header_becomes_amz_date_for_sigv4() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=x"),
        );
        h.insert(
            http::header::DATE,
            http::HeaderValue::from_static("Sun, 29 Nov 2026 06:18:29 GMT"),
        );
        amz_date_from_date_header(&mut h);
        assert_eq!(
            h.get("x-amz-date").map(|v| v.to_str().ok()),
            Some(Some("20261129T061829Z"))
        );
        // An existing x-amz-date wins; SigV2 requests are left alone.
        let mut h2 = http::HeaderMap::new();
        h2.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_static("AWS key:sig"),
        );
        h2.insert(
            http::header::DATE,
            http::HeaderValue::from_static("Sun, 29 Nov 2026 06:18:29 GMT"),
        );
        amz_date_from_date_header(&mut h2);
        assert!(h2.get("x-amz-date").is_none());
    }
}
