//! The Raft wiring: openraft's type configuration, its tuning, and its network over our internal
//! RPC (`/v1/raft/append`, `/v1/raft/vote`, `/v1/raft/snapshot`, MessagePack bodies). Knows
//! nothing of the state machine's contents.

use std::io::Cursor;
use std::time::Duration;

use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Snapshot, SnapshotMeta, Vote};
use serde::{Deserialize, Serialize};

use super::model::{Proposal, ProposalResult};
use crate::rpc::{RpcClient, RpcError};
use crate::types::NodeId;

openraft::declare_raft_types!(
    /// The metadata group's Raft types.
    pub TypeConfig:
        D = Proposal,
        R = ProposalResult,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type RaftNodeId = u64;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<RaftNodeId>;
pub type StoredMembership = openraft::StoredMembership<RaftNodeId, BasicNode>;
pub type StorageError = openraft::StorageError<RaftNodeId>;

pub const PATH_APPEND: &str = "/v1/raft/append";
pub const PATH_VOTE: &str = "/v1/raft/vote";
pub const PATH_SNAPSHOT: &str = "/v1/raft/snapshot";

/// Bound on one append-entries or vote call (openraft's own ttl for appends is the heartbeat
/// interval, too tight for a batch that waits on a follower's fsync on a loaded disk).
pub const APPEND_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on sending a whole snapshot.
pub const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(30);
pub const HEARTBEAT_INTERVAL_MS: u64 = 150;
pub const ELECTION_TIMEOUT_MIN_MS: u64 = 600;
pub const ELECTION_TIMEOUT_MAX_MS: u64 = 1200;
/// Build a snapshot (and allow purging the log) after this many applied entries.
pub const SNAPSHOT_EVERY_N_LOGS: u64 = 10_000;
/// Log entries kept behind a snapshot, so a briefly lagging follower catches up from the log.
pub const LOGS_KEPT_BEHIND_SNAPSHOT: u64 = 1000;

const _: () = assert!(HEARTBEAT_INTERVAL_MS * 3 <= ELECTION_TIMEOUT_MIN_MS);
const _: () = assert!(ELECTION_TIMEOUT_MIN_MS < ELECTION_TIMEOUT_MAX_MS);
const _: () = assert!(LOGS_KEPT_BEHIND_SNAPSHOT < SNAPSHOT_EVERY_N_LOGS);

/// Raft tuning for loopback and LAN.
pub fn raft_config() -> openraft::Config {
    openraft::Config {
        cluster_name: "baobab-meta".to_string(),
        heartbeat_interval: HEARTBEAT_INTERVAL_MS,
        election_timeout_min: ELECTION_TIMEOUT_MIN_MS,
        election_timeout_max: ELECTION_TIMEOUT_MAX_MS,
        install_snapshot_timeout: SNAPSHOT_TIMEOUT.as_millis() as u64,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(SNAPSHOT_EVERY_N_LOGS),
        max_in_snapshot_log_to_keep: LOGS_KEPT_BEHIND_SNAPSHOT,
        purge_batch_size: 256,
        ..Default::default()
    }
}

/// Reply to `/v1/raft/append`.
pub type AppendReply = Result<AppendEntriesResponse<RaftNodeId>, RaftError<RaftNodeId>>;
/// Reply to `/v1/raft/vote`.
pub type VoteReply = Result<VoteResponse<RaftNodeId>, RaftError<RaftNodeId>>;
/// Reply to `/v1/raft/snapshot`.
pub type SnapshotReply = Result<SnapshotResponse<RaftNodeId>, Fatal<RaftNodeId>>;

/// Body of `/v1/raft/snapshot`: a whole snapshot in one message (the state is small for now; a
/// streamed transfer replaces this when it is not).
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotRequest {
    pub vote: Vote<RaftNodeId>,
    pub meta: SnapshotMeta<RaftNodeId, BasicNode>,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// Makes one [`Network`] per peer; all share the RPC client.
pub struct NetworkFactory {
    pub rpc: RpcClient,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Network;

    async fn new_client(&mut self, target: RaftNodeId, node: &BasicNode) -> Network {
        // Membership is the source of truth for where a member listens.
        self.rpc.set_addr(NodeId(target), node.addr.clone());
        Network {
            rpc: self.rpc.clone(),
            target,
        }
    }
}

pub struct Network {
    rpc: RpcClient,
    target: RaftNodeId,
}

/// Connection failures back off (the peer is down); everything else retries at once.
fn rpc_error<E: std::error::Error>(e: RpcError) -> RPCError<RaftNodeId, BasicNode, E> {
    match &e {
        RpcError::Connect { .. } | RpcError::UnknownNode(_) => {
            RPCError::Unreachable(Unreachable::new(&e))
        }
        _ => RPCError::Network(NetworkError::new(&e)),
    }
}

impl Network {
    async fn call<Req: Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, RpcError> {
        self.rpc.call(NodeId(self.target), path, req, timeout).await
    }
}

impl RaftNetwork<TypeConfig> for Network {
    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        AppendEntriesResponse<RaftNodeId>,
        RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId>>,
    > {
        let reply: AppendReply = self
            .call(PATH_APPEND, &req, APPEND_TIMEOUT)
            .await
            .map_err(rpc_error)?;
        reply.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        req: VoteRequest<RaftNodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<RaftNodeId>, RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId>>>
    {
        let reply: VoteReply = self
            .call(PATH_VOTE, &req, APPEND_TIMEOUT)
            .await
            .map_err(rpc_error)?;
        reply.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    /// Chunked transfer is not used: [`Self::full_snapshot`] sends the whole snapshot.
    async fn install_snapshot(
        &mut self,
        _req: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<RaftNodeId>,
        RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId, InstallSnapshotError>>,
    > {
        let e = std::io::Error::other(
            "chunked snapshot transfer is not supported; full_snapshot is used",
        );
        Err(RPCError::Network(NetworkError::new(&e)))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<RaftNodeId>,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl std::future::Future<Output = ReplicationClosed> + openraft::OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<RaftNodeId>, StreamingError<TypeConfig, Fatal<RaftNodeId>>> {
        let req = SnapshotRequest {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot.into_inner(),
        };
        let reply: SnapshotReply = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            r = self.call(PATH_SNAPSHOT, &req, SNAPSHOT_TIMEOUT) => r.map_err(|e| match &e {
                RpcError::Connect { .. } | RpcError::UnknownNode(_) => StreamingError::Unreachable(Unreachable::new(&e)),
                _ => StreamingError::Network(NetworkError::new(&e)),
            })?,
        };
        reply.map_err(|e| StreamingError::RemoteError(RemoteError::new(self.target, e)))
    }
}
