//! The RPC server: accepts HTTP/2 (and HTTP/1.1) connections, refuses requests that are not
//! authenticated or speak another protocol version, and hands the rest to one handler.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use super::auth::ClusterSecret;
use super::{HEADER_AUTH, HEADER_PROTOCOL, HEADER_TIMESTAMP, PROTOCOL_VERSION};

pub type RpcResponse = Response<BoxBody<Bytes, std::io::Error>>;

/// Serves authenticated RPC requests.
#[async_trait::async_trait]
pub trait RpcHandler: Send + Sync + 'static {
    async fn handle(&self, req: Request<Incoming>) -> RpcResponse;
}

pub fn full_body(b: impl Into<Bytes>) -> BoxBody<Bytes, std::io::Error> {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

pub fn status_response(status: StatusCode, message: impl Into<String>) -> RpcResponse {
    let mut resp = Response::new(full_body(message.into()));
    *resp.status_mut() = status;
    resp
}

fn authenticate(secret: &ClusterSecret, req: &Request<Incoming>) -> Result<(), Box<RpcResponse>> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let version = header(HEADER_PROTOCOL).and_then(|v| v.parse::<u32>().ok());
    if version != Some(PROTOCOL_VERSION) {
        return Err(Box::new(status_response(
            StatusCode::UPGRADE_REQUIRED,
            format!("protocol version {version:?} not spoken; this node speaks {PROTOCOL_VERSION}"),
        )));
    }
    let ts = header(HEADER_TIMESTAMP).and_then(|v| v.parse::<u64>().ok());
    let tag = header(HEADER_AUTH);
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    match (ts, tag) {
        (Some(ts), Some(tag)) if secret.verify(req.method().as_str(), path, ts, tag) => Ok(()),
        _ => Err(Box::new(status_response(
            StatusCode::UNAUTHORIZED,
            "not authenticated",
        ))),
    }
}

/// Where the server accepts connections: a TCP listener, or a simulated network's.
pub trait RpcListener: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// The next connection and its peer's address.
    fn accept(&mut self) -> impl Future<Output = std::io::Result<(Self::Io, SocketAddr)>> + Send;
}

impl RpcListener for TcpListener {
    type Io = TcpStream;

    async fn accept(&mut self) -> std::io::Result<(TcpStream, SocketAddr)> {
        let (stream, peer) = TcpListener::accept(self).await?;
        let _ = stream.set_nodelay(true);
        Ok((stream, peer))
    }
}

/// Accepts connections on `listener` until `shutdown` resolves; then (or when this future is
/// dropped) every open connection is closed at once, as a process exit would.
pub async fn serve<L: RpcListener, H: RpcHandler>(
    mut listener: L,
    secret: ClusterSecret,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let secret = Arc::new(secret);
    // Dropped when this function returns or is aborted: the connections see it and close.
    let (_alive, alive_rx) = tokio::sync::watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer): (L::Io, SocketAddr) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "rpc accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let secret = secret.clone();
        let handler = handler.clone();
        let mut alive = alive_rx.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let secret = secret.clone();
                let handler = handler.clone();
                async move {
                    let resp = match authenticate(&secret, &req) {
                        Ok(()) => handler.handle(req).await,
                        Err(refusal) => {
                            warn!(%peer, path = %req.uri().path(), "rpc request refused");
                            *refusal
                        }
                    };
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http2()
                .timer(hyper_util::rt::TokioTimer::new())
                .initial_stream_window_size(4 * 1024 * 1024)
                .initial_connection_window_size(16 * 1024 * 1024)
                .max_frame_size(1024 * 1024);
            tokio::select! {
                served = builder.serve_connection(TokioIo::new(stream), service) => {
                    if let Err(e) = served {
                        debug!(%peer, error = %e, "rpc connection ended");
                    }
                }
                _ = alive.changed() => debug!(%peer, "rpc server stopped; connection closed"),
            }
        });
    }
}
