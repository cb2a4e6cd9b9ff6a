//! The Raft wiring: openraft's type configuration, its tuning, and its network over our internal
//! RPC (`/v1/raft/append`, `/v1/raft/vote`, `/v1/raft/snapshot`, MessagePack bodies). Knows
//! nothing of the state machine's contents.

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
        SnapshotData = tokio::fs::File,
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
pub const PATH_SNAPSHOT_CHUNK: &str = "/v1/raft/snapshot/chunk";

/// Bound on one append-entries or vote call (openraft's own ttl for appends is the heartbeat
/// interval, too tight for a batch that waits on a follower's fsync on a loaded disk).
pub const APPEND_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on sending one snapshot chunk.
pub const SNAPSHOT_CHUNK_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on the last chunk, which the follower answers once it installed the snapshot.
pub const SNAPSHOT_INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
/// Bytes of snapshot file per chunk (well under the RPC message limit).
pub const SNAPSHOT_CHUNK_BYTES: usize = 8 << 20;
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
        install_snapshot_timeout: SNAPSHOT_CHUNK_TIMEOUT.as_millis() as u64,
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
/// The follower's answer once it installed a snapshot.
pub type SnapshotReply = Result<SnapshotResponse<RaftNodeId>, Fatal<RaftNodeId>>;

/// Body of `/v1/raft/snapshot/chunk`: the snapshot file is sent in order, chunk by chunk; the
/// follower appends each to a file and installs it after the last (`done`).
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotChunk {
    pub vote: Vote<RaftNodeId>,
    pub meta: SnapshotMeta<RaftNodeId, BasicNode>,
    /// Where `data` starts in the file; 0 starts a new transfer.
    pub offset: u64,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    pub done: bool,
}

/// Reply to `/v1/raft/snapshot/chunk`.
#[derive(Debug, Serialize, Deserialize)]
pub enum ChunkReply {
    /// Appended; send the next.
    Continue,
    /// The last chunk: the install's outcome.
    Installed(SnapshotReply),
    /// The follower lost the transfer (restart, another transfer, a write error): start over.
    Restart(String),
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

    /// Streams the snapshot file in chunks (never whole in memory, never one huge message).
    async fn full_snapshot(
        &mut self,
        vote: Vote<RaftNodeId>,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl std::future::Future<Output = ReplicationClosed> + openraft::OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<RaftNodeId>, StreamingError<TypeConfig, Fatal<RaftNodeId>>> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let io_error = |e: std::io::Error| StreamingError::Network(NetworkError::new(&e));
        let net_error = |e: RpcError| match &e {
            RpcError::Connect { .. } | RpcError::UnknownNode(_) => {
                StreamingError::Unreachable(Unreachable::new(&e))
            }
            _ => StreamingError::Network(NetworkError::new(&e)),
        };
        tokio::pin!(cancel);
        let mut file = snapshot.snapshot;
        file.seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(io_error)?;
        let mut offset = 0u64;
        loop {
            let mut data = vec![0u8; SNAPSHOT_CHUNK_BYTES];
            let mut n = 0;
            while n < data.len() {
                let got = file.read(&mut data[n..]).await.map_err(io_error)?;
                if got == 0 {
                    break;
                }
                n += got;
            }
            data.truncate(n);
            let done = n < SNAPSHOT_CHUNK_BYTES;
            let chunk = SnapshotChunk {
                vote,
                meta: snapshot.meta.clone(),
                offset,
                data,
                done,
            };
            let timeout = if done {
                SNAPSHOT_INSTALL_TIMEOUT
            } else {
                SNAPSHOT_CHUNK_TIMEOUT
            };
            let reply: ChunkReply = tokio::select! {
                closed = &mut cancel => return Err(StreamingError::Closed(closed)),
                r = self.call(PATH_SNAPSHOT_CHUNK, &chunk, timeout) => r.map_err(net_error)?,
            };
            match reply {
                ChunkReply::Continue if !done => offset += n as u64,
                ChunkReply::Installed(r) if done => {
                    return r
                        .map_err(|e| StreamingError::RemoteError(RemoteError::new(self.target, e)))
                }
                other => {
                    let e =
                        std::io::Error::other(format!("snapshot transfer restarted: {other:?}"));
                    return Err(StreamingError::Network(NetworkError::new(&e)));
                }
            }
        }
    }
}
