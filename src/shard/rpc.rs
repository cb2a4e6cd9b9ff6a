//! The shard store's RPC surface: `PUT|GET|DELETE /v1/shard/<version hex>/<shard index>`,
//! GET taking `?offset=&len=`. Only routing and status mapping live here. A PUT the node has no
//! space for is answered `507 Insufficient Storage`, before its body is read when possible.

use futures::TryStreamExt;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::{ShardError, ShardStore};
use crate::rpc::{full_body, status_response, RpcClient, RpcError, RpcResponse};
use crate::types::{NodeId, VersionId};

/// Largest range one shard GET may ask for.
pub const MAX_SHARD_READ_BYTES: u64 = 256 * 1024 * 1024;

pub fn shard_path_and_query(
    version: VersionId,
    shard_index: u8,
    range: Option<(u64, u64)>,
) -> String {
    match range {
        Some((offset, len)) => {
            format!("/v1/shard/{version}/{shard_index}?offset={offset}&len={len}")
        }
        None => format!("/v1/shard/{version}/{shard_index}"),
    }
}

/// The status of a shard PUT refused for lack of space.
const DISK_FULL: StatusCode = StatusCode::INSUFFICIENT_STORAGE;

/// Whether a node refused a shard for lack of space.
pub fn is_disk_full(e: &RpcError) -> bool {
    matches!(e, RpcError::Status { status, .. } if *status == DISK_FULL.as_u16())
}

/// Timeout of one shard delete.
pub const SHARD_DELETE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Deletes one shard on `node` (a missing shard counts as deleted).
pub async fn delete_shard(
    rpc: &RpcClient,
    node: NodeId,
    version: VersionId,
    shard_index: u8,
) -> Result<(), RpcError> {
    let path = shard_path_and_query(version, shard_index, None);
    let body = full_body(bytes::Bytes::new());
    match rpc
        .request(node, Method::DELETE, &path, body, SHARD_DELETE_TIMEOUT)
        .await
    {
        Ok(_) => Ok(()),
        Err(RpcError::Status { status: 404, .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

pub struct ShardRpc {
    pub store: ShardStore,
}

fn parse_name(path: &str) -> Option<(VersionId, u8)> {
    let rest = path.strip_prefix("/v1/shard/")?;
    let (v, i) = rest.split_once('/')?;
    if v.len() != 32 {
        return None;
    }
    Some((
        VersionId(u128::from_str_radix(v, 16).ok()?),
        i.parse().ok()?,
    ))
}

fn parse_range(query: Option<&str>) -> Option<(u64, u64)> {
    let mut offset = None;
    let mut len = None;
    for pair in query?.split('&') {
        match pair.split_once('=')? {
            ("offset", v) => offset = v.parse().ok(),
            ("len", v) => len = v.parse().ok(),
            _ => {}
        }
    }
    Some((offset?, len?))
}

fn error_response(e: ShardError) -> RpcResponse {
    let status = match e {
        ShardError::NotFound => StatusCode::NOT_FOUND,
        ShardError::BadHeader(_) | ShardError::HeaderMismatch | ShardError::Body(_) => {
            StatusCode::BAD_REQUEST
        }
        ShardError::DiskFull(_) => DISK_FULL,
        ShardError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(error = %e, "shard store failed");
    }
    if status == DISK_FULL {
        // Expected when the node fills; the gateway then skips this node for a while.
        tracing::warn!(error = %e, "shard refused");
    }
    status_response(status, e.to_string())
}

impl ShardRpc {
    pub async fn handle(&self, req: Request<Incoming>) -> RpcResponse {
        let Some((version, idx)) = parse_name(req.uri().path()) else {
            return status_response(StatusCode::NOT_FOUND, "no such shard path");
        };
        match *req.method() {
            Method::PUT => {
                let body = req
                    .into_body()
                    .into_data_stream()
                    .map_err(|e| e.to_string());
                match self.store.write(version, idx, Box::pin(body)).await {
                    Ok(n) => status_response(StatusCode::OK, n.to_string()),
                    Err(e) => error_response(e),
                }
            }
            Method::GET => {
                let Some((offset, len)) = parse_range(req.uri().query()) else {
                    return status_response(StatusCode::BAD_REQUEST, "offset and len required");
                };
                if len > MAX_SHARD_READ_BYTES {
                    return status_response(StatusCode::BAD_REQUEST, "range too large");
                }
                match self.store.read(version, idx, offset, len).await {
                    Ok(b) => {
                        let mut resp = http::Response::new(full_body(b));
                        *resp.status_mut() = StatusCode::OK;
                        resp
                    }
                    Err(e) => error_response(e),
                }
            }
            Method::DELETE => match self.store.delete(version, idx).await {
                Ok(()) => status_response(StatusCode::OK, ""),
                Err(e) => error_response(e),
            },
            _ => status_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        }
    }
}
