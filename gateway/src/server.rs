//! The S3 listener: hyper HTTP/1.1 and HTTP/2 connections into the s3s service, with graceful
//! shutdown.

use std::future::Future;
use std::time::Duration;

use baobab::coord::Coordinator;
use baobab::meta::MetaClient;
use hyper_util::rt::TokioIo;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::auth::{KeyStore, SignedOnly};
use crate::s3::Gateway;

/// What the gateway needs to serve.
pub struct GatewayConfig {
    /// The region clients sign for and GetBucketLocation reports.
    pub region: String,
    /// For virtual-hosted-style requests (`bucket.<domain>`); None: path style only.
    pub root_domain: Option<String>,
}

/// Serves S3 on `listener` until `shutdown` resolves, then drains connections (10 s at most).
pub async fn serve_s3(
    listener: TcpListener,
    cfg: GatewayConfig,
    meta: MetaClient,
    coord: Coordinator,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let gateway = Gateway {
        meta: meta.clone(),
        coord,
        region: cfg.region.clone(),
    };
    let service = {
        let mut b = S3ServiceBuilder::new(gateway);
        b.set_auth(KeyStore::new(meta));
        b.set_access(SignedOnly);
        if let Some(domain) = &cfg.root_domain {
            b.set_host(crate::host::RootDomain::new(domain));
        }
        b.build()
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .keep_alive(true);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
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
        let traced = hyper::service::service_fn(
            move |req: http::Request<hyper::body::Incoming>| {
                let service = service.clone();
                let request_id = format!("{:016X}", rand::random::<u64>());
                let span = tracing::info_span!("s3", request_id = %request_id, method = %req.method(), path = %req.uri().path());
                let close_after = expects_continue_without_body(&req);
                async move {
                    let started = std::time::Instant::now();
                    let mut resp = hyper::service::Service::call(&service, req).await?;
                    if close_after {
                        resp.headers_mut().insert(
                            http::header::CONNECTION,
                            http::HeaderValue::from_static("close"),
                        );
                    }
                    if let Ok(v) = http::HeaderValue::from_str(&request_id) {
                        resp.headers_mut().insert("x-amz-request-id", v);
                    }
                    tracing::debug!(
                        status = resp.status().as_u16(),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "s3 request"
                    );
                    Ok::<_, s3s::HttpError>(resp)
                }
                .instrument(span)
            },
        );
        let conn = http.serve_connection(TokioIo::new(socket), traced);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {},
        () = tokio::time::sleep(Duration::from_secs(10)) => tracing::warn!("s3 connections still open after 10 s; closing"),
    }
    Ok(())
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
