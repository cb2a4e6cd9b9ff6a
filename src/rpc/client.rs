//! The RPC client: one multiplexed HTTP/2 connection pool to every peer, each call signed and
//! bounded by a timeout.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{combinators::BoxBody, BodyExt};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::{de::DeserializeOwned, Serialize};

use super::auth::{unix_now_secs, ClusterSecret};
use super::server::full_body;
use super::{
    decode, encode, RpcError, HEADER_AUTH, HEADER_PROTOCOL, HEADER_TIMESTAMP, MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
};
use crate::types::NodeId;

pub type RpcBody = BoxBody<Bytes, std::io::Error>;

/// Calls peers by node id. Cheap to clone.
#[derive(Clone)]
pub struct RpcClient {
    secret: ClusterSecret,
    addrs: Arc<RwLock<HashMap<NodeId, String>>>,
    client: Client<HttpConnector, RpcBody>,
}

impl RpcClient {
    pub fn new(secret: ClusterSecret, addrs: HashMap<NodeId, String>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let client = Client::builder(TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .http2_only(true)
            .http2_initial_stream_window_size(4 * 1024 * 1024)
            .http2_initial_connection_window_size(16 * 1024 * 1024)
            .http2_max_frame_size(1024 * 1024)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .http2_keep_alive_timeout(Duration::from_secs(5))
            .build(connector);
        RpcClient {
            secret,
            addrs: Arc::new(RwLock::new(addrs)),
            client,
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
        let resp = match tokio::time::timeout(timeout, self.client.request(req)).await {
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
        let work = async {
            let resp = self
                .request(node, Method::POST, path, body, timeout)
                .await?;
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
