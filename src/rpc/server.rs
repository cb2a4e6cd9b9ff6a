//! The RPC server: accepts mutual-TLS connections (HTTP/2, and HTTP/1.1 for simple tools),
//! refuses peers without a cluster certificate at the handshake, requests that speak another
//! protocol version, and Raft or membership requests from anything but a storage node; hands
//! the rest to one handler.

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
use tracing::Instrument;
use tracing::{debug, warn};

use super::tls::{identity_of, Identity, RpcTls, HANDSHAKE_TIMEOUT};
use super::{HEADER_PROTOCOL, PROTOCOL_VERSION};

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

/// The peer of a request, as its certificate names it (in the request's extensions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub Identity);

/// Path prefixes only storage nodes may call: Raft's messages and group membership. A gateway's
/// or an admin tool's certificate cannot vote, append entries or add a member.
const NODE_ONLY_PATHS: &[&str] = &["/v1/raft/", "/v1/meta/rejoin", "/v1/meta/probe"];

/// Whether `peer` may send this request; the refusal otherwise.
fn admit(peer: Identity, req: &Request<Incoming>) -> Result<(), Box<RpcResponse>> {
    let version = req
        .headers()
        .get(HEADER_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok());
    if version != Some(PROTOCOL_VERSION) {
        return Err(Box::new(status_response(
            StatusCode::UPGRADE_REQUIRED,
            format!("protocol version {version:?} not spoken; this node speaks {PROTOCOL_VERSION}"),
        )));
    }
    let path = req.uri().path();
    if !matches!(peer, Identity::Node(_)) && NODE_ONLY_PATHS.iter().any(|p| path.starts_with(p)) {
        return Err(Box::new(status_response(
            StatusCode::FORBIDDEN,
            format!("{peer} may not call {path}"),
        )));
    }
    Ok(())
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
    tls: RpcTls,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()> + Send,
) {
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
        // The configuration loaded last (certificates reload on SIGHUP).
        let acceptor = tls.acceptor();
        let handler = handler.clone();
        let mut alive = alive_rx.clone();
        tokio::spawn(async move {
            // The handshake is bounded: a peer that connects and says nothing holds no task.
            let stream =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        warn!(%peer, error = %e, "rpc connection refused at the TLS handshake");
                        return;
                    }
                    Err(_) => {
                        warn!(%peer, "rpc connection refused: TLS handshake timed out");
                        return;
                    }
                };
            let identity = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(identity_of);
            let Some(identity) = identity else {
                warn!(%peer, "rpc connection refused: the client certificate names no cluster identity");
                return;
            };
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                let handler = handler.clone();
                // Requests made for an S3 request carry its id, at info level so the node's
                // warnings about them name it; the rest (Raft, background work) at debug.
                let span = match super::trace::received(req.headers()) {
                    Some(id) => tracing::info_span!("rpc", request_id = %id, %identity),
                    None => tracing::debug_span!("rpc", %identity),
                };
                async move {
                    debug!(path = %req.uri().path(), "rpc request");
                    let resp = match admit(identity, &req) {
                        Ok(()) => {
                            req.extensions_mut().insert(Peer(identity));
                            handler.handle(req).await
                        }
                        Err(refusal) => {
                            warn!(%peer, %identity, path = %req.uri().path(), "rpc request refused");
                            *refusal
                        }
                    };
                    Ok::<_, std::convert::Infallible>(resp)
                }
                .instrument(span)
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
