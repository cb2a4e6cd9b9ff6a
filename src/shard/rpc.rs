//! The shard store's RPC surface: `PUT|GET|DELETE /v1/shard/<version hex>/<shard index>`,
//! GET taking `?offset=&len=` (and `&bind=<digest hex>&size=<object size>`: only if the file
//! is the one its record names, else `412`), and
//! `GET /v1/shard/list?older_than_ms=&after=&limit=` (a page
//! of old committed shards, MessagePack, for the garbage collector), and `GET
//! /v1/shard/<version>/<index>?verify=<object size>[&bind=<digest hex>]` (the whole file
//! checked, a MessagePack [`ShardCheck`], for the scrub and healing). Only routing and status
//! mapping live here. A PUT the node has no space for is answered `507 Insufficient Storage`,
//! before its body is read when possible.

use futures::TryStreamExt;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::bound::Binding;
use super::scan::{ShardListPage, ShardName};
use super::verify::{ShardCheck, VerifyPacer};
use super::{ShardError, ShardStore};
use crate::codec::shard_format::ShardDigest;
use crate::metrics::ShardMetrics;
use crate::rpc::{encode, full_body, status_response, RpcClient, RpcError, RpcResponse};
use crate::types::{NodeId, VersionId};
use prometheus_client::metrics::counter::Counter;

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

/// The path of a read of `len` bytes at `offset` of a shard file, bound to its record when the
/// record holds the shard's digest.
pub fn shard_read_path(
    version: VersionId,
    shard_index: u8,
    offset: u64,
    len: u64,
    binding: Option<Binding>,
) -> String {
    let path = shard_path_and_query(version, shard_index, Some((offset, len)));
    match binding {
        Some(b) => format!("{path}&bind={}&size={}", b.digest, b.object_size),
        None => path,
    }
}

/// The status of a read or verification refused because the file does not match its record.
const NOT_BOUND: StatusCode = StatusCode::PRECONDITION_FAILED;

/// Whether a node refused a shard read because the file is not the one its record names.
pub fn is_not_bound(e: &RpcError) -> bool {
    matches!(e, RpcError::Status { status, .. } if *status == NOT_BOUND.as_u16())
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
    delete_at(rpc, node, shard_path_and_query(version, shard_index, None)).await
}

/// Deletes one shard on `node` unless it was read within `idle` (then `Ok(false)`: a GET is
/// still streaming it; see [`super::leases`]).
pub async fn delete_shard_if_idle(
    rpc: &RpcClient,
    node: NodeId,
    version: VersionId,
    shard_index: u8,
    idle: std::time::Duration,
) -> Result<bool, RpcError> {
    let path = format!(
        "{}?idle_ms={}",
        shard_path_and_query(version, shard_index, None),
        idle.as_millis()
    );
    match delete_at(rpc, node, path).await {
        Ok(()) => Ok(true),
        Err(RpcError::Status { status: 409, .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

async fn delete_at(rpc: &RpcClient, node: NodeId, path: String) -> Result<(), RpcError> {
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

/// The path of the listing of old shards.
const PATH_LIST: &str = "/v1/shard/list";
/// Timeout of one listing page (the node stats up to `MAX_LIST_PAGE_EXAMINED` files).
pub const SHARD_LIST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// One page of `node`'s committed shards older than `older_than`, after `after` (see
/// [`ShardStore::list_old`]). The age is measured by the node's own clock.
pub async fn list_old_shards(
    rpc: &RpcClient,
    node: NodeId,
    older_than: std::time::Duration,
    after: Option<ShardName>,
    limit: usize,
) -> Result<ShardListPage, RpcError> {
    let mut path = format!(
        "{PATH_LIST}?older_than_ms={}&limit={limit}",
        older_than.as_millis()
    );
    if let Some(a) = after {
        path.push_str(&format!("&after={a}"));
    }
    rpc.get(node, &path, SHARD_LIST_TIMEOUT).await
}

/// A listing request: (minimum age, cursor, page size).
fn parse_list(query: Option<&str>) -> Option<(std::time::Duration, Option<ShardName>, usize)> {
    let mut older_than_ms = None;
    let mut after = None;
    let mut limit = None;
    for pair in query?.split('&') {
        match pair.split_once('=')? {
            ("older_than_ms", v) => older_than_ms = Some(v.parse().ok()?),
            ("after", v) => after = Some(ShardName::parse(v)?),
            ("limit", v) => limit = Some(v.parse().ok()?),
            _ => {}
        }
    }
    Some((
        std::time::Duration::from_millis(older_than_ms?),
        after,
        limit?,
    ))
}

pub struct ShardRpc {
    pub store: ShardStore,
    /// The read budget of whole-shard verifications on this node.
    pub pacer: std::sync::Arc<VerifyPacer>,
    metrics: ShardMetrics,
}

/// Checks shard `shard_index` of `version` (an object or part of `object_size` bytes) whole on
/// `node`: header, length, every block's BLAKE3, and the file's digest when the record holds
/// one (see [`ShardStore::verify`]). The node paces the reads, so the timeout grows with the
/// shard.
pub async fn verify_shard(
    rpc: &RpcClient,
    node: NodeId,
    version: VersionId,
    shard_index: u8,
    object_size: u64,
    digest: Option<ShardDigest>,
) -> Result<ShardCheck, RpcError> {
    let mut path = format!(
        "{}?verify={object_size}",
        shard_path_and_query(version, shard_index, None)
    );
    if let Some(d) = digest {
        path.push_str(&format!("&bind={d}"));
    }
    // 30 s, plus the shard's share of the object at 2 MiB/s (the pacing budget is shared).
    let timeout = std::time::Duration::from_secs(30 + object_size / (2 * 1024 * 1024));
    rpc.get(node, &path, timeout).await
}

/// The value of `name` in a query string.
fn param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|p| match p.split_once('=') {
        Some((k, v)) if k == name => Some(v),
        _ => None,
    })
}

/// The object size a verification request names (`?verify=<size>`).
fn parse_verify(query: Option<&str>) -> Option<u64> {
    param(query, "verify").and_then(|v| v.parse().ok())
}

/// The digest a request binds the shard to (`bind=<hex>`): `Ok(None)` without one, `Err` when
/// it is not a digest.
fn parse_bind(query: Option<&str>) -> Result<Option<ShardDigest>, ()> {
    match param(query, "bind") {
        None => Ok(None),
        Some(hex) => ShardDigest::from_hex(hex).map(Some).ok_or(()),
    }
}

fn parse_name(path: &str) -> Option<(VersionId, u8)> {
    let rest = path.strip_prefix("/v1/shard/")?;
    let (v, i) = rest.split_once('/')?;
    // Hex digits only: `from_str_radix` would take a sign.
    if v.len() != 32 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((
        VersionId(u128::from_str_radix(v, 16).ok()?),
        i.parse().ok()?,
    ))
}

fn parse_range(query: Option<&str>) -> Option<(u64, u64)> {
    Some((
        param(query, "offset")?.parse().ok()?,
        param(query, "len")?.parse().ok()?,
    ))
}

fn error_response(e: ShardError) -> RpcResponse {
    let status = match e {
        ShardError::NotFound => StatusCode::NOT_FOUND,
        ShardError::BadHeader(_) | ShardError::HeaderMismatch | ShardError::Body(_) => {
            StatusCode::BAD_REQUEST
        }
        ShardError::NotBound => NOT_BOUND,
        ShardError::DiskFull(_) => DISK_FULL,
        ShardError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(error = %e, "shard store failed");
    }
    if status == NOT_BOUND {
        tracing::warn!("shard file does not match its object record (replaced on disk?); the reader rebuilds it from the other shards");
    }
    if status == DISK_FULL {
        // Expected when the node fills; the gateway then skips this node for a while.
        tracing::warn!(error = %e, "shard refused");
    }
    status_response(status, e.to_string())
}

impl ShardRpc {
    /// Serves `store`, node `node`'s, verifying shards at most at `verify_bytes_per_sec`.
    pub fn new(store: ShardStore, verify_bytes_per_sec: u64, node: NodeId) -> Self {
        let rpc = ShardRpc {
            store,
            pacer: std::sync::Arc::new(VerifyPacer::new(verify_bytes_per_sec)),
            metrics: crate::metrics::global().shards(node),
        };
        rpc.measure_disk();
        rpc
    }

    /// Puts the shard disk's size and free space into the metrics (from the store's last space
    /// check: no extra `statvfs` on the write path).
    fn measure_disk(&self) {
        if let Ok(space) = self.store.space() {
            self.metrics.disk_total.set(space.total_bytes as i64);
            self.metrics.disk_free.set(space.available_bytes as i64);
        }
    }

    /// Counts one operation's outcome (`ok` or `error`).
    fn count<T, E>(ok: &Counter, error: &Counter, r: &Result<T, E>) {
        match r {
            Ok(_) => ok.inc(),
            Err(_) => error.inc(),
        };
    }

    pub async fn handle(&self, req: Request<Incoming>) -> RpcResponse {
        if req.uri().path() == PATH_LIST {
            return self.list(&req).await;
        }
        let Some((version, idx)) = parse_name(req.uri().path()) else {
            return status_response(StatusCode::NOT_FOUND, "no such shard path");
        };
        let Ok(digest) = parse_bind(req.uri().query()) else {
            return status_response(StatusCode::BAD_REQUEST, "bind is not a shard digest");
        };
        match *req.method() {
            Method::PUT => {
                let body = req
                    .into_body()
                    .into_data_stream()
                    .map_err(|e| e.to_string());
                let written = self.store.write(version, idx, Box::pin(body)).await;
                let m = &self.metrics;
                Self::count(&m.put_ok, &m.put_error, &written);
                self.measure_disk();
                match written {
                    Ok(n) => {
                        m.bytes_in.inc_by(n);
                        status_response(StatusCode::OK, n.to_string())
                    }
                    Err(e) => error_response(e),
                }
            }
            Method::GET if parse_verify(req.uri().query()).is_some() => {
                let size = parse_verify(req.uri().query()).unwrap_or(0);
                let verified = self
                    .store
                    .verify(version, idx, size, digest, &self.pacer)
                    .await;
                let m = &self.metrics;
                Self::count(&m.verify_ok, &m.verify_error, &verified);
                let check = match verified {
                    Ok(check) => check,
                    Err(e) => return error_response(e),
                };
                match encode(&check) {
                    Ok(body) => http::Response::new(full_body(body)),
                    Err(e) => status_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                }
            }
            Method::GET => {
                let Some((offset, len)) = parse_range(req.uri().query()) else {
                    return status_response(StatusCode::BAD_REQUEST, "offset and len required");
                };
                if len > MAX_SHARD_READ_BYTES {
                    return status_response(StatusCode::BAD_REQUEST, "range too large");
                }
                let binding = match (digest, param(req.uri().query(), "size")) {
                    (None, _) => None,
                    (Some(digest), Some(size)) => match size.parse() {
                        Ok(object_size) => Some(Binding {
                            digest,
                            object_size,
                        }),
                        Err(_) => {
                            return status_response(StatusCode::BAD_REQUEST, "size is not a number")
                        }
                    },
                    (Some(_), None) => {
                        return status_response(StatusCode::BAD_REQUEST, "bind needs size")
                    }
                };
                let read = self.store.read(version, idx, offset, len, binding).await;
                let m = &self.metrics;
                Self::count(&m.get_ok, &m.get_error, &read);
                match read {
                    Ok(b) => {
                        m.bytes_out.inc_by(b.len() as u64);
                        let mut resp = http::Response::new(full_body(b));
                        *resp.status_mut() = StatusCode::OK;
                        resp
                    }
                    Err(e) => error_response(e),
                }
            }
            Method::DELETE => {
                let idle = req.uri().query().and_then(|q| {
                    q.split('&')
                        .find_map(|p| p.strip_prefix("idle_ms="))
                        .and_then(|v| v.parse::<u64>().ok())
                });
                if let Some(ms) = idle {
                    let within = std::time::Duration::from_millis(ms);
                    if self.store.leases.read_within(version, idx, within) {
                        return status_response(StatusCode::CONFLICT, "shard is being read");
                    }
                }
                let deleted = self.store.delete(version, idx).await;
                let m = &self.metrics;
                Self::count(&m.delete_ok, &m.delete_error, &deleted);
                self.measure_disk();
                match deleted {
                    Ok(()) => status_response(StatusCode::OK, ""),
                    Err(e) => error_response(e),
                }
            }
            _ => status_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        }
    }

    async fn list(&self, req: &Request<Incoming>) -> RpcResponse {
        if req.method() != Method::GET {
            return status_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        }
        let Some((older_than, after, limit)) = parse_list(req.uri().query()) else {
            return status_response(
                StatusCode::BAD_REQUEST,
                "older_than_ms and limit required; after as <version>.<shard index>",
            );
        };
        let page = match self.store.list_old(older_than, after, limit).await {
            Ok(page) => page,
            Err(e) => return error_response(e.into()),
        };
        match encode(&page) {
            Ok(body) => http::Response::new(full_body(body)),
            Err(e) => status_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}
