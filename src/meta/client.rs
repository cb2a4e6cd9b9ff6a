//! The metadata client used by gateways and coordinators: sends commands and queries to the
//! group's leader, following leader hints and failing over between members, with backoff and an
//! overall deadline. Stateless apart from the cached leader.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::error::MetaError;
use super::model::{Command, CommandResult, Query, QueryResult, RequestId, Write};
use super::node::{ReadReply, WriteReply, PATH_META_READ, PATH_META_WRITE};
use super::request::{ReadRequest, Refused, WriteRequest};
use crate::rpc::{RpcClient, RpcError};
use crate::types::NodeId;

/// Bound on one call to one member.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on a whole `write` or `read`, retries included.
pub const OVERALL_DEADLINE: Duration = Duration::from_secs(15);
pub const BACKOFF_MIN: Duration = Duration::from_millis(20);
pub const BACKOFF_MAX: Duration = Duration::from_millis(500);

const NO_LEADER: u64 = u64::MAX;

/// Talks to the metadata group. Cheap to clone; clones share the leader cache.
#[derive(Clone)]
pub struct MetaClient {
    rpc: RpcClient,
    members: Arc<Vec<NodeId>>,
    leader: Arc<AtomicU64>,
    /// This client's random id and its next write's sequence number: every write carries a
    /// [`RequestId`], the same on each retry, so the state machine applies it once.
    client_id: u64,
    next_seq: Arc<AtomicU64>,
    /// The simulation's knob: send writes without a request id, as before exactly-once writes,
    /// so a test can show the simulation finds the double apply. Never set in production.
    #[cfg(feature = "sim-knobs")]
    without_request_ids: bool,
}

/// A member's answer, common to reads and writes.
enum Reply<T> {
    Ok(T),
    NotLeader(Option<u64>),
    Failed(String),
}

impl From<WriteReply> for Reply<CommandResult> {
    fn from(r: WriteReply) -> Self {
        match r {
            WriteReply::Ok(v) => Reply::Ok(v),
            WriteReply::NotLeader { leader } => Reply::NotLeader(leader),
            WriteReply::Failed(e) => Reply::Failed(e),
        }
    }
}

impl From<ReadReply> for Reply<QueryResult> {
    fn from(r: ReadReply) -> Self {
        match r {
            ReadReply::Ok(v) => Reply::Ok(v),
            ReadReply::NotLeader { leader } => Reply::NotLeader(leader),
            ReadReply::Failed(e) => Reply::Failed(e),
        }
    }
}

impl MetaClient {
    /// `members` must not be empty.
    pub fn new(rpc: RpcClient, members: Vec<NodeId>) -> Self {
        assert!(
            !members.is_empty(),
            "a metadata client needs at least one member"
        );
        MetaClient {
            rpc,
            members: Arc::new(members),
            leader: Arc::new(AtomicU64::new(NO_LEADER)),
            client_id: rand::random(),
            next_seq: Arc::new(AtomicU64::new(1)),
            #[cfg(feature = "sim-knobs")]
            without_request_ids: false,
        }
    }

    /// Test-only (`sim-knobs`): this client's writes carry no [`RequestId`], so a resent write
    /// is applied again — the bug exactly-once writes fixed, for the simulation to find.
    #[cfg(feature = "sim-knobs")]
    pub fn without_request_ids(mut self) -> Self {
        self.without_request_ids = true;
        self
    }

    /// The id a new write carries.
    fn write_id(&self) -> Option<RequestId> {
        #[cfg(feature = "sim-knobs")]
        if self.without_request_ids {
            return None;
        }
        Some(self.next_request_id())
    }

    /// Applies a command through the leader, exactly once however often it is resent (within
    /// the state machine's dedup window). A write that timed out may still have been applied.
    pub async fn write(&self, cmd: Command) -> Result<CommandResult, MetaError> {
        let write = Write {
            id: self.write_id(),
            cmd,
        };
        self.call::<_, WriteReply, _>(PATH_META_WRITE, &write).await
    }

    /// Sends a typed write request through the leader of its group (exactly once, as
    /// [`Self::write`]): done, or one of the refusals the request can meet.
    pub async fn send<W: WriteRequest>(&self, req: W) -> Result<Result<(), Refused>, MetaError> {
        let result = self.write(req.into()).await?;
        W::outcome(result).map_err(|other| MetaError::UnexpectedReply {
            request: W::NAME,
            reply: format!("{other:?}"),
        })
    }

    /// Answers a typed read request through the leader of its group.
    pub async fn ask<R: ReadRequest>(
        &self,
        req: R,
    ) -> Result<Result<R::Reply, Refused>, MetaError> {
        let result = self.read(req.into()).await?;
        R::reply(result).map_err(|other| MetaError::UnexpectedReply {
            request: R::NAME,
            reply: format!("{other:?}"),
        })
    }

    /// Sends `write` as it is (its id included): how a retry looks to the group.
    pub async fn write_as(&self, write: &Write) -> Result<CommandResult, MetaError> {
        self.call::<_, WriteReply, _>(PATH_META_WRITE, write).await
    }

    /// A fresh id for a write of this client.
    pub fn next_request_id(&self) -> RequestId {
        RequestId {
            client: self.client_id,
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Answers a query linearizably through the leader.
    pub async fn read(&self, q: Query) -> Result<QueryResult, MetaError> {
        self.call::<_, ReadReply, _>(PATH_META_READ, &q).await
    }

    /// The leader this client last reached, if any.
    pub fn cached_leader(&self) -> Option<NodeId> {
        match self.leader.load(Ordering::Relaxed) {
            NO_LEADER => None,
            id => Some(NodeId(id)),
        }
    }

    fn next_member(&self, after: NodeId) -> NodeId {
        let i = self
            .members
            .iter()
            .position(|m| *m == after)
            .map_or(0, |i| i + 1);
        self.members[i % self.members.len()]
    }

    async fn call<Req, R, T>(&self, path: &str, req: &Req) -> Result<T, MetaError>
    where
        Req: Serialize,
        R: DeserializeOwned + Into<Reply<T>>,
    {
        let started = Instant::now();
        let deadline = started + OVERALL_DEADLINE;
        let mut target = self.cached_leader().unwrap_or(self.members[0]);
        let mut backoff = BACKOFF_MIN;
        let mut followed_hint = false;
        loop {
            let timeout = CALL_TIMEOUT.min(deadline.saturating_duration_since(Instant::now()));
            let last_error = match self
                .rpc
                .call::<Req, R>(target, path, req, timeout)
                .await
                .map(Into::into)
            {
                Ok(Reply::Ok(v)) => {
                    self.leader.store(target.0, Ordering::Relaxed);
                    return Ok(v);
                }
                Ok(Reply::NotLeader(Some(hint))) if hint != target.0 && !followed_hint => {
                    // Follow a fresh hint at once; a second hint in a row waits (an election may
                    // be under way and hints may be stale).
                    debug!(from = %target, to = hint, path, "following metadata leader hint");
                    target = NodeId(hint);
                    followed_hint = true;
                    continue;
                }
                Ok(Reply::NotLeader(hint)) => {
                    let hinted = hint.map(NodeId).filter(|h| *h != target);
                    target = hinted.unwrap_or_else(|| self.next_member(target));
                    format!("no leader known (hint {hint:?})")
                }
                Ok(Reply::Failed(e)) => {
                    target = self.next_member(target);
                    e
                }
                Err(e) if is_fatal(&e) => return Err(MetaError::Rpc(e.to_string())),
                Err(e) => {
                    debug!(node = %target, error = %e, path, "metadata member unreachable");
                    target = self.next_member(target);
                    e.to_string()
                }
            };
            followed_hint = false;
            self.leader.store(NO_LEADER, Ordering::Relaxed);
            if Instant::now() + backoff >= deadline {
                let waited_ms = started.elapsed().as_millis() as u64;
                warn!(path, waited_ms, error = %last_error, "metadata unavailable");
                return Err(MetaError::Unavailable {
                    waited_ms,
                    last_error,
                });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

/// Errors no other member can fix: the request itself is bad.
fn is_fatal(e: &RpcError) -> bool {
    match e {
        RpcError::Codec(_) => true,
        RpcError::Status { status, .. } => (400..500).contains(status) && *status != 404,
        RpcError::UnknownNode(_)
        | RpcError::Connect { .. }
        | RpcError::Timeout { .. }
        | RpcError::Body(_) => false,
    }
}
