//! The RPC client: one multiplexed HTTP/2 connection to every peer, over mutual TLS, each call
//! bounded by a timeout.
//!
//! The pool is keyed by the peer's identity (`node-N.baobab.internal`), not its address: the
//! connector looks the address up when it dials, and the TLS handshake checks that whoever
//! answers holds node N's certificate. Connections are opened over TCP or, for a simulated
//! network, through any dial function ([`RpcClient::with_connector`]); TLS runs on top either
//! way.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Method, Request, Response, Uri};
use http_body_util::{combinators::BoxBody, BodyExt};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::server::full_body;
use super::tls::{server_name, Identity, RpcTls};
use super::{decode, encode, RpcError, HEADER_PROTOCOL, MAX_MESSAGE_BYTES, PROTOCOL_VERSION};
use crate::types::NodeId;

pub type RpcBody = BoxBody<Bytes, std::io::Error>;

/// Bound on opening a connection to a peer (TCP and the TLS handshake).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Calls peers by node id. Cheap to clone.
#[derive(Clone)]
pub struct RpcClient {
    addrs: Addrs,
    pool: Client<TlsConnector, RpcBody>,
}

type Addrs = Arc<RwLock<HashMap<NodeId, String>>>;

/// The pool's settings: HTTP/2 only, large windows and frames for shard streams, keep-alive
/// pings that notice a dead peer.
fn pool(connector: TlsConnector) -> Client<TlsConnector, RpcBody> {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .http2_only(true)
        .http2_initial_stream_window_size(4 * 1024 * 1024)
        .http2_initial_connection_window_size(16 * 1024 * 1024)
        .http2_max_frame_size(1024 * 1024)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .http2_keep_alive_timeout(Duration::from_secs(5));
    builder.build(connector)
}

impl RpcClient {
    /// Connects to peers over TCP (`TCP_NODELAY`), as `tls`'s identity.
    pub fn new(tls: RpcTls, addrs: HashMap<NodeId, String>) -> Self {
        let addrs: Addrs = Arc::new(RwLock::new(addrs));
        let connector = TlsConnector {
            tls,
            addrs: addrs.clone(),
            dial: Dial::Tcp,
        };
        RpcClient {
            addrs,
            pool: pool(connector),
        }
    }

    /// Connects to peers with `dial`, given a peer's address (`host:port`): a simulated
    /// network, an in-process pipe. TLS, and everything above it, is as over TCP.
    pub fn with_connector<F, Fut, Io>(tls: RpcTls, addrs: HashMap<NodeId, String>, dial: F) -> Self
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::io::Result<Io>> + Send + 'static,
        Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let addrs: Addrs = Arc::new(RwLock::new(addrs));
        let dial = Dial::Custom(Arc::new(move |addr| {
            let dialling = dial(addr);
            Box::pin(async move { Ok(RawStream::Custom(Box::new(dialling.await?))) })
                as BoxFuture<'static, std::io::Result<RawStream>>
        }));
        let connector = TlsConnector {
            tls,
            addrs: addrs.clone(),
            dial,
        };
        RpcClient {
            addrs,
            pool: pool(connector),
        }
    }

    pub fn set_addr(&self, node: NodeId, addr: String) {
        self.addrs
            .write()
            .expect("rpc address map lock poisoned")
            .insert(node, addr);
    }

    fn knows(&self, node: NodeId) -> bool {
        self.addrs
            .read()
            .expect("rpc address map lock poisoned")
            .contains_key(&node)
    }

    /// Sends one request and returns the response head once it arrives (the body may still be
    /// streaming). A non-2xx status is turned into [`RpcError::Status`]. `timeout` bounds the
    /// time to the response head.
    pub async fn request(
        &self,
        node: NodeId,
        method: Method,
        path_and_query: &str,
        body: RpcBody,
        timeout: Duration,
    ) -> Result<Response<Incoming>, RpcError> {
        if !self.knows(node) {
            return Err(RpcError::UnknownNode(node));
        }
        let mut req = Request::builder()
            .method(method)
            .uri(format!(
                "https://{}{path_and_query}",
                Identity::Node(node).dns_name()
            ))
            .header(HEADER_PROTOCOL, PROTOCOL_VERSION.to_string());
        if let Some(id) = super::trace::current() {
            req = req.header(super::trace::HEADER_REQUEST_ID, &*id);
        }
        let req = req.body(body).map_err(|e| RpcError::Codec(e.to_string()))?;
        let sent = self.pool.request(req);
        let resp = match tokio::time::timeout(timeout, sent).await {
            Err(_) => {
                return Err(RpcError::Timeout {
                    node,
                    path: path_and_query.to_string(),
                    timeout_ms: timeout.as_millis() as u64,
                })
            }
            Ok(Err(e)) => {
                return Err(RpcError::Connect {
                    node,
                    reason: format!("{e:?}"),
                })
            }
            Ok(Ok(resp)) => resp,
        };
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let message =
            match tokio::time::timeout(timeout, read_body(resp.into_body(), 64 * 1024)).await {
                Ok(Ok(b)) => String::from_utf8_lossy(&b).into_owned(),
                _ => String::new(),
            };
        Err(RpcError::Status {
            node,
            path: path_and_query.to_string(),
            status: status.as_u16(),
            message,
        })
    }

    /// A whole-message call: `req` and the answer are MessagePack; `timeout` bounds the whole call.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        node: NodeId,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, RpcError> {
        let body = full_body(encode(req)?);
        self.exchange(node, Method::POST, path, body, timeout).await
    }

    /// A GET whose MessagePack answer is decoded; the whole exchange (head and body) is bounded
    /// by `timeout`.
    pub async fn get<Resp: DeserializeOwned>(
        &self,
        node: NodeId,
        path: &str,
        timeout: Duration,
    ) -> Result<Resp, RpcError> {
        let body = full_body(Bytes::new());
        self.exchange(node, Method::GET, path, body, timeout).await
    }

    async fn exchange<Resp: DeserializeOwned>(
        &self,
        node: NodeId,
        method: Method,
        path: &str,
        body: RpcBody,
        timeout: Duration,
    ) -> Result<Resp, RpcError> {
        let work = async {
            let resp = self.request(node, method, path, body, timeout).await?;
            let bytes = read_body(resp.into_body(), MAX_MESSAGE_BYTES).await?;
            decode(&bytes)
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(RpcError::Timeout {
                node,
                path: path.to_string(),
                timeout_ms: timeout.as_millis() as u64,
            }),
        }
    }
}

/// Reads a whole body, refusing more than `limit` bytes.
pub async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, RpcError> {
    let limited = http_body_util::Limited::new(body, limit);
    limited
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| RpcError::Body(e.to_string()))
}

/// A byte stream a custom dial function opened.
trait RpcIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> RpcIo for T {}

/// The byte stream under TLS: TCP (no indirection), or a custom dial's.
enum RawStream {
    Tcp(TcpStream),
    Custom(Box<dyn RpcIo>),
}

impl AsyncRead for RawStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            RawStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            RawStream::Custom(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for RawStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            RawStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            RawStream::Custom(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            RawStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            RawStream::Custom(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            RawStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            RawStream::Custom(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            RawStream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            RawStream::Custom(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            RawStream::Tcp(s) => s.is_write_vectored(),
            RawStream::Custom(s) => s.is_write_vectored(),
        }
    }
}

/// A TLS connection to a peer, as hyper's pool wants it.
struct RpcStream(TokioIo<tokio_rustls::client::TlsStream<RawStream>>);

impl Connection for RpcStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for RpcStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for RpcStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
}

type DialFn = dyn Fn(String) -> BoxFuture<'static, std::io::Result<RawStream>> + Send + Sync;

/// How a connection's bytes travel.
#[derive(Clone)]
enum Dial {
    Tcp,
    Custom(Arc<DialFn>),
}

/// Dials the node a URI names (`https://node-N.baobab.internal/...`) at its current address
/// and runs the TLS handshake against node N's name, all within [`CONNECT_TIMEOUT`].
#[derive(Clone)]
struct TlsConnector {
    tls: RpcTls,
    addrs: Addrs,
    dial: Dial,
}

impl TlsConnector {
    async fn connect(self, uri: Uri) -> std::io::Result<RpcStream> {
        let node = match uri.host().and_then(Identity::from_dns_name) {
            Some(Identity::Node(node)) => node,
            _ => {
                return Err(std::io::Error::other(format!(
                    "{uri} names no storage node"
                )))
            }
        };
        let addr = self
            .addrs
            .read()
            .expect("rpc address map lock poisoned")
            .get(&node)
            .cloned()
            .ok_or_else(|| std::io::Error::other(format!("no address for node {}", node.0)))?;
        let raw = match &self.dial {
            Dial::Tcp => {
                let s = TcpStream::connect(addr).await?;
                let _ = s.set_nodelay(true);
                RawStream::Tcp(s)
            }
            Dial::Custom(dial) => dial(addr).await?,
        };
        let name = server_name(node).map_err(std::io::Error::other)?;
        let tls = self.tls.connector().connect(name, raw).await?;
        Ok(RpcStream(TokioIo::new(tls)))
    }
}

impl tower_service::Service<Uri> for TlsConnector {
    type Response = RpcStream;
    type Error = std::io::Error;
    type Future = BoxFuture<'static, std::io::Result<RpcStream>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.clone().connect(uri);
        Box::pin(async move {
            match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
                Ok(r) => r,
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                )),
            }
        })
    }
}
