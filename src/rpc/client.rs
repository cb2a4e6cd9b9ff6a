//! The RPC client: one multiplexed HTTP/2 connection pool to every peer, each call signed and
//! bounded by a timeout.
//!
//! Connections are opened over TCP ([`HttpConnector`]) or, for a simulated network, through
//! any connect function ([`RpcClient::with_connector`]). The TCP path is a concrete type with
//! no indirection; a custom connector costs one allocation per connection and a dynamic call
//! per poll of its stream, never a copy.

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
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::legacy::{Builder, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};

use super::auth::{unix_now_secs, ClusterSecret};
use super::server::full_body;
use super::{
    decode, encode, RpcError, HEADER_AUTH, HEADER_PROTOCOL, HEADER_TIMESTAMP, MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
};
use crate::types::NodeId;

pub type RpcBody = BoxBody<Bytes, std::io::Error>;

/// Bound on opening a connection to a peer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Calls peers by node id. Cheap to clone.
#[derive(Clone)]
pub struct RpcClient {
    secret: ClusterSecret,
    addrs: Arc<RwLock<HashMap<NodeId, String>>>,
    transport: Transport,
}

/// The connection pool, over TCP or over a custom connector.
#[derive(Clone)]
enum Transport {
    Tcp(Client<HttpConnector, RpcBody>),
    Custom(Client<BoxConnector, RpcBody>),
}

/// Both transports' pool settings: HTTP/2 only, large windows and frames for shard streams,
/// keep-alive pings that notice a dead peer.
fn pool_builder() -> Builder {
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
    builder
}

impl RpcClient {
    /// Connects to peers over TCP (`TCP_NODELAY`, [`CONNECT_TIMEOUT`]).
    pub fn new(secret: ClusterSecret, addrs: HashMap<NodeId, String>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        RpcClient {
            secret,
            addrs: Arc::new(RwLock::new(addrs)),
            transport: Transport::Tcp(pool_builder().build(connector)),
        }
    }

    /// Connects to peers with `connect`, given the `http://host:port` URI of a peer (a
    /// simulated network, an in-process pipe). The call is bounded by [`CONNECT_TIMEOUT`] here;
    /// everything above the byte stream is as over TCP.
    pub fn with_connector<F, Fut, Io>(
        secret: ClusterSecret,
        addrs: HashMap<NodeId, String>,
        connect: F,
    ) -> Self
    where
        F: Fn(Uri) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::io::Result<Io>> + Send + 'static,
        Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let connector = BoxConnector(Arc::new(move |uri| {
            let connecting = connect(uri);
            Box::pin(async move {
                match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
                    Ok(Ok(io)) => Ok(BoxedStream(TokioIo::new(Box::new(io) as Box<dyn RpcIo>))),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "connect timed out",
                    )),
                }
            }) as BoxFuture<'static, std::io::Result<BoxedStream>>
        }));
        RpcClient {
            secret,
            addrs: Arc::new(RwLock::new(addrs)),
            transport: Transport::Custom(pool_builder().build(connector)),
        }
    }

    pub fn set_addr(&self, node: NodeId, addr: String) {
        self.addrs
            .write()
            .expect("rpc address map lock poisoned")
            .insert(node, addr);
    }

    fn addr(&self, node: NodeId) -> Result<String, RpcError> {
        self.addrs
            .read()
            .expect("rpc address map lock poisoned")
            .get(&node)
            .cloned()
            .ok_or(RpcError::UnknownNode(node))
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
        let addr = self.addr(node)?;
        let ts = unix_now_secs();
        let tag = self.secret.sign(method.as_str(), path_and_query, ts);
        let req = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path_and_query}"))
            .header(HEADER_PROTOCOL, PROTOCOL_VERSION.to_string())
            .header(HEADER_TIMESTAMP, ts.to_string())
            .header(HEADER_AUTH, tag)
            .body(body)
            .map_err(|e| RpcError::Codec(e.to_string()))?;
        let sent = match &self.transport {
            Transport::Tcp(client) => client.request(req),
            Transport::Custom(client) => client.request(req),
        };
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

/// A byte stream a custom connector opened.
trait RpcIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> RpcIo for T {}

/// A connection from a custom connector, as hyper's pool wants it.
struct BoxedStream(TokioIo<Box<dyn RpcIo>>);

impl Connection for BoxedStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for BoxedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for BoxedStream {
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

type ConnectFn = dyn Fn(Uri) -> BoxFuture<'static, std::io::Result<BoxedStream>> + Send + Sync;

/// A custom connect function as the `tower::Service<Uri>` hyper's pool calls.
#[derive(Clone)]
struct BoxConnector(Arc<ConnectFn>);

impl tower_service::Service<Uri> for BoxConnector {
    type Response = BoxedStream;
    type Error = std::io::Error;
    type Future = BoxFuture<'static, std::io::Result<BoxedStream>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        (self.0)(uri)
    }
}
