//! A metadata group member: opens the node's RocksDB, runs its Raft, and serves the Raft and
//! metadata RPCs (`/v1/raft/*`, `/v1/meta/write`, `/v1/meta/read`). Reads are answered only by the
//! leader, after `ensure_linearizable`. Does not listen itself: the node's RPC server routes
//! these paths to [`MetaNode::handle_rpc`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use openraft::error::{ClientWriteError, RaftError};
use openraft::Snapshot;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::{info, warn};

use super::error::{MetaError, MetaRpcError};
use super::join;
use super::model::{Command, CommandResult, GarbageRecord, Proposal, Query, QueryResult, Write};
use super::raft::{
    raft_config, AppendReply, ChunkReply, NetworkFactory, Raft, SnapshotChunk, VoteReply,
    PATH_APPEND, PATH_SNAPSHOT_CHUNK, PATH_VOTE,
};
use super::read_barrier::{BarrierError, ReadBarrier};
use super::store::{LogStore, MetaDb, StateMachineStore};
use crate::metrics::GroupMetrics;
use crate::rpc::{decode, encode, unix_now_ms as now_ms, Identity, RpcClient};
use crate::types::NodeId;

pub const PATH_META_WRITE: &str = "/v1/meta/write";
pub const PATH_META_READ: &str = "/v1/meta/read";

/// Where and as whom a metadata node runs.
#[derive(Debug, Clone)]
pub struct MetaConfig {
    pub node_id: NodeId,
    /// The node's metadata RocksDB directory.
    pub dir: PathBuf,
    /// Every member of the group and its RPC address ("host:port"), this node included.
    pub members: BTreeMap<NodeId, String>,
}

/// Reply to `/v1/meta/write`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(
    clippy::large_enum_variant,
    reason = "a reply is encoded at once, never stored"
)]
pub enum WriteReply {
    Ok(CommandResult),
    /// This node is not the leader; `leader` is its best guess (raw node id).
    NotLeader {
        leader: Option<u64>,
    },
    /// The write was not applied here (e.g. quorum lost, shutting down); it may be retried.
    Failed(String),
}

/// Reply to `/v1/meta/read`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(
    clippy::large_enum_variant,
    reason = "a reply is encoded at once, never stored"
)]
pub enum ReadReply {
    Ok(QueryResult),
    NotLeader { leader: Option<u64> },
    Failed(String),
}

pub struct MetaNode {
    id: NodeId,
    raft: Raft,
    /// Leadership checks shared by concurrent reads.
    reads: ReadBarrier,
    db: Arc<MetaDb>,
    writes: mpsc::Sender<PendingWrite>,
    /// The snapshot being received from the leader, if any.
    receiving: tokio::sync::Mutex<Option<Receiving>>,
}

/// A snapshot transfer in progress: the file it is written to and the next expected offset.
struct Receiving {
    snapshot_id: String,
    file: tokio::fs::File,
    next_offset: u64,
}

/// A write waiting for the group-commit loop.
type PendingWrite = (Write, oneshot::Sender<WriteReply>);

/// Writes in one group commit at most, and their inline data at most (bytes).
const MAX_BATCH_COMMANDS: usize = 256;
const MAX_BATCH_INLINE_BYTES: usize = 2 << 20;
/// Raft entries being committed at once by the group-commit loop: while they are in flight,
/// new writes queue and go into the next entry together.
const MAX_WRITES_IN_FLIGHT: usize = 2;

/// Group commit. openraft 0.9 turns each `client_write` into its own log append and fsync on
/// every node, so concurrent writes are gathered here into one [`Proposal`]: whatever queued
/// while earlier entries were in flight goes in the next one.
async fn group_commit_loop(
    raft: Raft,
    mut rx: mpsc::Receiver<PendingWrite>,
    metrics: GroupMetrics,
) {
    let in_flight = Arc::new(Semaphore::new(MAX_WRITES_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut inline_bytes = inline_len(&first.0);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_COMMANDS && inline_bytes < MAX_BATCH_INLINE_BYTES {
            match rx.try_recv() {
                Ok(w) => {
                    inline_bytes += inline_len(&w.0);
                    batch.push(w);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let (writes, txs): (Vec<Write>, Vec<oneshot::Sender<WriteReply>>) =
                batch.into_iter().unzip();
            let n = writes.len();
            let proposal = Proposal::Writes {
                at_ms: now_ms(),
                writes,
            };
            let started = std::time::Instant::now();
            let written = raft.client_write(proposal).await;
            let counter = match &written {
                Ok(_) => {
                    metrics.commit.observe(started.elapsed().as_secs_f64());
                    &metrics.writes_ok
                }
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                    &metrics.writes_not_leader
                }
                Err(_) => &metrics.writes_failed,
            };
            counter.inc_by(n as u64);
            match written {
                Ok(resp) if resp.data.0.len() == n => {
                    for (tx, r) in txs.into_iter().zip(resp.data.0) {
                        let _ = tx.send(WriteReply::Ok(r));
                    }
                }
                Ok(resp) => {
                    warn!(
                        expected = n,
                        got = resp.data.0.len(),
                        "a proposal answered with a different number of results"
                    );
                    for tx in txs {
                        let _ = tx.send(WriteReply::Failed("batch result mismatch".into()));
                    }
                }
                Err(e) => {
                    let reply = match e {
                        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                            WriteReply::NotLeader {
                                leader: f.leader_id,
                            }
                        }
                        e => WriteReply::Failed(e.to_string()),
                    };
                    for tx in txs {
                        let _ = tx.send(reply.clone());
                    }
                }
            }
        });
    }
}

/// Follows the replica's Raft metrics into [`GroupMetrics`] (term, leadership and its
/// changes, apply lag) until Raft shuts down.
async fn watch_raft_metrics(raft: Raft, metrics: GroupMetrics) {
    let mut rx = raft.metrics();
    let mut leader = None;
    loop {
        {
            let m = rx.borrow_and_update();
            if m.current_leader != leader {
                if leader.is_some() || m.current_leader.is_some() {
                    metrics.leader_changes.inc();
                }
                leader = m.current_leader;
            }
            metrics.term.set(m.current_term as i64);
            metrics
                .leader
                .set(i64::from(m.current_leader == Some(m.id)));
            let applied = m.last_applied.map_or(0, |l| l.index);
            let lag = m.last_log_index.unwrap_or(0).saturating_sub(applied);
            metrics.apply_lag.set(lag as i64);
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

fn inline_len(write: &Write) -> usize {
    match &write.cmd {
        Command::PutObject(c) => c.record.data.inline_len(),
        Command::PutPart(c) => c.part.data.inline_len(),
        _ => 0,
    }
}

impl MetaNode {
    /// Opens the database and starts Raft. On an empty store, a background task initializes
    /// the group with all `members` when they are all new, or rejoins it as a learner when the
    /// group exists (see [`join`]).
    pub async fn open(cfg: MetaConfig, rpc: RpcClient) -> Result<Arc<MetaNode>, MetaError> {
        if !cfg.members.contains_key(&cfg.node_id) {
            return Err(MetaError::Raft(format!(
                "node {} is not among the members {:?}",
                cfg.node_id, cfg.members
            )));
        }
        for (id, addr) in &cfg.members {
            rpc.set_addr(*id, addr.clone());
        }
        let db = MetaDb::open(&cfg.dir)?;
        let fresh = db.is_fresh()?;
        let config = Arc::new(
            raft_config()
                .validate()
                .map_err(|e| MetaError::Raft(e.to_string()))?,
        );
        let raft = Raft::new(
            cfg.node_id.0,
            config,
            NetworkFactory { rpc: rpc.clone() },
            LogStore::new(db.clone()),
            StateMachineStore::open(db.clone())?,
        )
        .await
        .map_err(|e| MetaError::Raft(e.to_string()))?;
        info!(node = %cfg.node_id, fresh, dir = %cfg.dir.display(), "metadata raft started");
        let marker = join::marker_path(&cfg.dir);
        let was_member = marker.exists();
        tokio::spawn(join::remember_joined(raft.clone(), marker, cfg.node_id));
        if fresh {
            // A new cluster, or a member that lost its store: `join` tells them apart.
            tokio::spawn(join::join_or_initialize(
                raft.clone(),
                rpc,
                cfg.node_id,
                cfg.members.clone(),
                was_member,
            ));
        }
        spawn_leader_logger(cfg.node_id, &raft);
        let (writes, rx) = mpsc::channel(4 * MAX_BATCH_COMMANDS);
        let metrics = crate::metrics::global().group(cfg.node_id, 0);
        tokio::spawn(watch_raft_metrics(raft.clone(), metrics.clone()));
        tokio::spawn(group_commit_loop(raft.clone(), rx, metrics.clone()));
        Ok(Arc::new(MetaNode {
            id: cfg.node_id,
            reads: ReadBarrier::new(raft.clone(), metrics),
            raft,
            db,
            writes,
            receiving: tokio::sync::Mutex::new(None),
        }))
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Serves one Raft or metadata RPC from `peer` (the identity in its certificate).
    pub async fn handle_rpc(
        &self,
        peer: Identity,
        path: &str,
        body: Bytes,
    ) -> Result<Bytes, MetaRpcError> {
        fn bad(e: impl std::fmt::Display) -> MetaRpcError {
            MetaRpcError::bad_request(e.to_string())
        }
        let reply = match path {
            PATH_APPEND => {
                let reply: AppendReply =
                    self.raft.append_entries(decode(&body).map_err(bad)?).await;
                encode(&reply)
            }
            PATH_VOTE => {
                let reply: VoteReply = self.raft.vote(decode(&body).map_err(bad)?).await;
                encode(&reply)
            }
            PATH_SNAPSHOT_CHUNK => encode(&self.receive_chunk(decode(&body).map_err(bad)?).await),
            PATH_META_WRITE => encode(&self.write(decode(&body).map_err(bad)?).await),
            PATH_META_READ => encode(&self.read(&decode(&body).map_err(bad)?).await),
            join::PATH_META_PROBE => encode(&join::ProbeReply {
                in_group: join::in_group(&self.raft),
            }),
            join::PATH_META_REJOIN => {
                let req: join::RejoinRequest = decode(&body).map_err(bad)?;
                // A node re-adds only itself: node 2's certificate cannot demote node 3.
                if peer != Identity::Node(NodeId(req.node)) {
                    return Err(MetaRpcError::forbidden(format!(
                        "{peer} may not rejoin node {}",
                        req.node
                    )));
                }
                encode(&join::handle_rejoin(&self.raft, req).await)
            }
            _ => {
                return Err(MetaRpcError::not_found(format!(
                    "no metadata rpc at {path}"
                )))
            }
        };
        reply.map_err(|e| MetaRpcError::internal(e.to_string()))
    }

    /// Appends one chunk of a snapshot the leader streams; installs it after the last.
    async fn receive_chunk(&self, chunk: SnapshotChunk) -> ChunkReply {
        use tokio::io::AsyncWriteExt;
        let path = match self.db.received_snapshot_path(&chunk.meta.snapshot_id) {
            Ok(p) => p,
            Err(e) => return ChunkReply::Restart(e.to_string()),
        };
        let mut receiving = self.receiving.lock().await;
        if chunk.offset == 0 {
            match tokio::fs::File::create(&path).await {
                Ok(file) => {
                    *receiving = Some(Receiving {
                        snapshot_id: chunk.meta.snapshot_id.clone(),
                        file,
                        next_offset: 0,
                    })
                }
                Err(e) => return ChunkReply::Restart(e.to_string()),
            }
        }
        let Some(r) = receiving.as_mut() else {
            return ChunkReply::Restart("no snapshot transfer in progress".into());
        };
        if r.snapshot_id != chunk.meta.snapshot_id || r.next_offset != chunk.offset {
            return ChunkReply::Restart(format!("expected {} at {}", r.snapshot_id, r.next_offset));
        }
        if let Err(e) = r.file.write_all(&chunk.data).await {
            *receiving = None;
            return ChunkReply::Restart(e.to_string());
        }
        r.next_offset += chunk.data.len() as u64;
        if !chunk.done {
            return ChunkReply::Continue;
        }
        let synced = r.file.sync_all().await;
        *receiving = None;
        drop(receiving);
        if let Err(e) = synced {
            return ChunkReply::Restart(e.to_string());
        }
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) => return ChunkReply::Restart(e.to_string()),
        };
        info!(node = %self.id, snapshot_id = %chunk.meta.snapshot_id, bytes = chunk.offset + chunk.data.len() as u64, "metadata snapshot received");
        let snapshot = Snapshot {
            meta: chunk.meta,
            snapshot: Box::new(file),
        };
        ChunkReply::Installed(self.raft.install_full_snapshot(chunk.vote, snapshot).await)
    }

    /// Replicates and applies one write if this node leads (group-committed with the writes
    /// that arrive meanwhile). A write whose id was applied before answers that result again.
    pub async fn write(&self, write: Write) -> WriteReply {
        let (tx, rx) = oneshot::channel();
        if self.writes.send((write, tx)).await.is_err() {
            return WriteReply::Failed("metadata node is shutting down".into());
        }
        rx.await
            .unwrap_or_else(|_| WriteReply::Failed("metadata write was dropped".into()))
    }

    /// Answers a query linearizably if this node leads.
    pub async fn read(&self, q: &Query) -> ReadReply {
        match self.reads.wait().await {
            Ok(()) => {}
            Err(BarrierError::NotLeader(leader)) => return ReadReply::NotLeader { leader },
            Err(BarrierError::Failed(e)) => return ReadReply::Failed(e),
        }
        match self.db.query(q) {
            Ok(r) => ReadReply::Ok(r),
            Err(e) => {
                warn!(node = %self.id, error = %e, "metadata read failed");
                ReadReply::Failed(e.to_string())
            }
        }
    }

    /// Leader, term and last applied index, for logs.
    pub fn metrics_summary(&self) -> String {
        let m = self.raft.metrics().borrow().clone();
        format!(
            "node={} state={:?} term={} leader={:?} last_applied={:?}",
            self.id,
            m.state,
            m.current_term,
            m.current_leader,
            m.last_applied.map(|l| l.index)
        )
    }

    /// The leader this node knows of, if any.
    pub fn current_leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader.map(NodeId)
    }

    /// The fatal error that stopped this node's Raft, if one did (shown by `baobab status`).
    pub fn fatal_error(&self) -> Option<String> {
        match &self.raft.metrics().borrow().running_state {
            Ok(()) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    /// Whether this node believes it leads (without a quorum round: for background workers,
    /// whose writes are refused anyway if it does not).
    pub fn is_leader(&self) -> bool {
        self.current_leader() == Some(self.id)
    }

    /// The oldest retire-queue entries retired at or before `before_ms`, from the local state
    /// machine (on the leader: everything committed up to its last apply).
    pub fn due_garbage(
        &self,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<GarbageRecord>, MetaError> {
        self.db.due_garbage(before_ms, limit)
    }

    /// The repair-queue entries due at `now_ms` in this replica's state (the heal worker reads
    /// them on the leader; a stale entry only costs a check).
    pub fn due_heals(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<super::repair::HealRecord>, MetaError> {
        self.db.read_state(|s| super::repair::due(s, now_ms, limit))
    }

    /// The piece `version` as the record at `owner` holds it in this replica's state.
    pub fn piece(
        &self,
        owner: &[u8],
        version: crate::types::VersionId,
    ) -> Result<Option<super::repair::Piece>, MetaError> {
        self.db
            .read_state(|s| super::repair::piece(s, owner, version))
    }

    /// The erasure-coded pieces of up to `limit` records after `after` in this replica's state,
    /// and where the walk stands (see [`super::repair::walk`]).
    #[allow(clippy::type_complexity)]
    pub fn walk_pieces(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<super::repair::WalkedPiece>, Option<Vec<u8>>), MetaError> {
        self.db.read_state(|s| super::repair::walk(s, after, limit))
    }

    /// The repair totals in this replica's state (where the scrub stands); the queue is not
    /// read.
    pub fn repair_stats(&self) -> Result<super::repair::RepairStats, MetaError> {
        self.db.read_state(super::repair::stats)
    }

    /// How many entries this replica's retire queue holds.
    pub fn garbage_queued(&self) -> Result<usize, MetaError> {
        self.db.garbage_queued()
    }

    /// Which of `candidates` a committed record references (an object, a part of an upload in
    /// progress, the retire queue), read once this node has confirmed it leads and applied
    /// everything committed before the call. For the garbage collector of shard files.
    pub async fn referenced_versions(
        &self,
        candidates: std::collections::HashSet<crate::types::VersionId>,
    ) -> Result<std::collections::HashSet<crate::types::VersionId>, MetaError> {
        self.raft
            .ensure_linearizable()
            .await
            .map_err(|e| MetaError::Raft(e.to_string()))?;
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.referenced_versions(&candidates))
            .await
            .map_err(|e| MetaError::Storage(e.to_string()))?
    }

    /// Stops Raft; later RPCs are answered with errors.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            warn!(node = %self.id, error = %e, "metadata raft shutdown failed");
        }
        info!(node = %self.id, "metadata raft stopped");
    }
}

/// Logs leader changes until Raft stops (its metrics channel then closes).
fn spawn_leader_logger(node: NodeId, raft: &Raft) {
    let mut metrics = raft.metrics();
    tokio::spawn(async move {
        let mut leader = None;
        loop {
            let (current, term) = {
                let m = metrics.borrow_and_update();
                if let Err(fatal) = &m.running_state {
                    // The default log filter keeps openraft's own (noisy) logs off: its fatal
                    // errors (a failed log or state machine write) surface here, once.
                    if !matches!(fatal, openraft::error::Fatal::Stopped) {
                        tracing::error!(%node, error = %fatal, "metadata raft stopped on a fatal error");
                    }
                    return;
                }
                (m.current_leader, m.current_term)
            };
            if current != leader {
                info!(%node, leader = ?current, term, "raft leader changed");
                leader = current;
            }
            if metrics.changed().await.is_err() {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use http::{Request, Response, StatusCode};
    use hyper::body::Incoming;

    use super::*;
    use crate::meta::model::{ListObjectsQuery, ObjectData, ObjectRecord};
    use crate::meta::request::*;
    use crate::meta::MetaClient;
    use crate::rpc::cert::ClusterCa;
    use crate::rpc::{
        full_body, read_body, serve, status_response, Peer, RpcHandler, RpcResponse,
        MAX_MESSAGE_BYTES,
    };
    use crate::types::BucketId;

    struct Handler(Arc<MetaNode>);

    #[async_trait::async_trait]
    impl RpcHandler for Handler {
        async fn handle(&self, req: Request<Incoming>) -> RpcResponse {
            let path = req.uri().path().to_string();
            let Some(Peer(peer)) = req.extensions().get::<Peer>().copied() else {
                return status_response(StatusCode::FORBIDDEN, "no peer identity");
            };
            let body = match read_body(req.into_body(), MAX_MESSAGE_BYTES).await {
                Ok(b) => b,
                Err(e) => return status_response(StatusCode::BAD_REQUEST, e.to_string()),
            };
            match self.0.handle_rpc(peer, &path, body).await {
                Ok(b) => Response::new(full_body(b)),
                Err(e) => status_response(
                    StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    e.message,
                ),
            }
        }
    }

    fn object(n: u64) -> ObjectRecord {
        ObjectRecord::for_tests(n as u128, n, format!("{n:032x}"), vec![7; n as usize])
    }

    async fn list_all(client: &MetaClient) -> Vec<String> {
        let q = ListObjectsQuery {
            bucket: BucketId(42),
            prefix: String::new(),
            delimiter: None,
            start_after: None,
            max_keys: 1000,
        };
        match client
            .read(Query::ListObjects(ListObjects(q)))
            .await
            .expect("list")
        {
            QueryResult::Objects(p) => p.objects.into_iter().map(|o| o.key).collect(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_nodes_survive_losing_the_leader() {
        let ca = ClusterCa::generate("meta-test").expect("cluster CA");
        let mut listeners = Vec::new();
        let mut addrs = HashMap::new();
        for i in 1..=3u64 {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            addrs.insert(NodeId(i), l.local_addr().expect("addr").to_string());
            listeners.push((NodeId(i), l));
        }
        let members: BTreeMap<NodeId, String> =
            addrs.iter().map(|(k, v)| (*k, v.clone())).collect();
        let dirs: Vec<_> = (0..3)
            .map(|_| tempfile::tempdir().expect("tempdir"))
            .collect();
        let mut nodes = Vec::new();
        let mut stops = Vec::new();
        for ((id, listener), dir) in listeners.into_iter().zip(&dirs) {
            let (node, stop_tx) =
                start_member(id, &dir.path().join("meta"), listener, &members, &ca).await;
            nodes.push(node);
            stops.push(Some(stop_tx));
        }
        let client = MetaClient::new(
            RpcClient::new(ca.tls(Identity::Gateway).expect("tls"), addrs.clone()),
            members.keys().copied().collect(),
        );

        let create = Command::CreateBucket(CreateBucket {
            name: "photos".into(),
            id: BucketId(42),
            owner: "alice".into(),
            created_ms: 1,
        });
        assert_eq!(
            client.write(create.clone()).await.expect("create"),
            CommandResult::BucketCreated
        );
        assert_eq!(
            client.write(create).await.expect("create again"),
            CommandResult::BucketAlreadyOwnedByYou
        );

        // Concurrent reads on the leader share leadership checks (a batched read index), and
        // each sees the bucket created before it.
        let leader = nodes
            .iter()
            .find(|n| n.current_leader() == Some(n.id))
            .expect("a leader")
            .clone();
        let checks_before = leader.reads.checks();
        let get = Query::GetBucket(GetBucket {
            name: "photos".into(),
        });
        let answers = futures::future::join_all((0..64).map(|_| leader.read(&get))).await;
        for a in answers {
            assert!(
                matches!(a, ReadReply::Ok(QueryResult::Bucket(Some(_)))),
                "{a:?}"
            );
        }
        let checks = leader.reads.checks() - checks_before;
        assert!(
            (1..=2).contains(&checks),
            "64 concurrent reads took {checks} leadership checks"
        );

        // Concurrent writes (openraft batches them into shared appends).
        let puts = (0..20u64).map(|i| {
            let client = client.clone();
            async move {
                let cmd = Command::PutObject(PutObject {
                    bucket: BucketId(42),
                    key: format!("img/{i:02}"),
                    record: object(i),
                    condition: None,
                });
                client.write(cmd).await
            }
        });
        for r in futures::future::join_all(puts).await {
            assert_eq!(r.expect("put"), CommandResult::ObjectPut);
        }
        assert_eq!(list_all(&client).await.len(), 20);

        // A write whose reply was "lost", then a newer write to the same key; the lost one is
        // resent after the failover below (to the new leader).
        let v1 = Write {
            id: Some(client.next_request_id()),
            cmd: Command::PutObject(PutObject {
                bucket: BucketId(42),
                key: "twice".into(),
                record: object(1),
                condition: None,
            }),
        };
        assert_eq!(
            client.write_as(&v1).await.expect("v1"),
            CommandResult::ObjectPut
        );
        let v2 = Command::PutObject(PutObject {
            bucket: BucketId(42),
            key: "twice".into(),
            record: object(2),
            condition: None,
        });
        assert_eq!(
            client.write(v2).await.expect("v2"),
            CommandResult::ObjectPut
        );

        let leader = client.cached_leader().expect("a leader answered");
        let leader_pos = nodes
            .iter()
            .position(|n| n.id() == leader)
            .expect("leader is a member");
        nodes[leader_pos].shutdown().await;
        if let Some(stop) = stops[leader_pos].take() {
            let _ = stop.send(());
        }

        let started = std::time::Instant::now();
        let cmd = Command::PutObject(PutObject {
            bucket: BucketId(42),
            key: "after-failover".into(),
            record: object(3),
            condition: None,
        });
        assert_eq!(
            client.write(cmd).await.expect("write after failover"),
            CommandResult::ObjectPut
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "failover took {:?}",
            started.elapsed()
        );
        let new_leader = client.cached_leader().expect("new leader");
        assert_ne!(new_leader, leader);
        assert_eq!(
            client.write_as(&v1).await.expect("v1 resent"),
            CommandResult::ObjectPut,
            "the resent write gets its first answer"
        );
        let twice = client
            .read(Query::GetObject(GetObject {
                bucket: BucketId(42),
                key: "twice".into(),
            }))
            .await
            .expect("get");
        assert_eq!(
            twice,
            QueryResult::Object(Some(object(2))),
            "the resent write was not applied again"
        );

        let keys = list_all(&client).await;
        assert_eq!(keys.len(), 22);
        assert!(keys.iter().any(|k| k == "img/19"));
        let got = client
            .read(Query::GetObject(GetObject {
                bucket: BucketId(42),
                key: "img/05".into(),
            }))
            .await
            .expect("get");
        assert_eq!(got, QueryResult::Object(Some(object(5))));
        for (i, n) in nodes.iter().enumerate() {
            if i != leader_pos {
                n.shutdown().await;
            }
        }
    }

    /// Starts a member serving on `listener`; the sender stops its server.
    async fn start_member(
        id: NodeId,
        dir: &std::path::Path,
        listener: tokio::net::TcpListener,
        members: &BTreeMap<NodeId, String>,
        ca: &ClusterCa,
    ) -> (Arc<MetaNode>, tokio::sync::oneshot::Sender<()>) {
        let tls = ca.tls(Identity::Node(id)).expect("tls");
        let addrs: HashMap<NodeId, String> = members.iter().map(|(k, v)| (*k, v.clone())).collect();
        let cfg = MetaConfig {
            node_id: id,
            dir: dir.to_path_buf(),
            members: members.clone(),
        };
        let node = MetaNode::open(cfg, RpcClient::new(tls.clone(), addrs))
            .await
            .expect("open");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(
            listener,
            tls,
            Arc::new(Handler(node.clone())),
            async move {
                let _ = stop_rx.await;
            },
        ));
        (node, stop_tx)
    }

    fn voters(node: &MetaNode) -> Vec<u64> {
        node.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect()
    }

    /// A member whose metadata directory is wiped comes back through a membership change (out
    /// of the voters, caught up as a learner, a voter again), never by initializing a group of
    /// its own; it ends with every record.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_member_that_lost_its_store_rejoins_as_a_learner_first() {
        wipe_and_rejoin(50, 0, false).await;
    }

    /// The same through a snapshot of more than 256 MiB (the log is purged first): it is built
    /// once, streamed in chunks far below the RPC message limit, and installed in batches.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wiped_member_rejoins_through_a_large_snapshot() {
        wipe_and_rejoin(264, 1 << 20, true).await;
    }

    /// Writes `records` objects of `inline_bytes` each (plus their number), wipes a follower's
    /// metadata, restarts it, and checks that it rejoins and holds every record.
    async fn wipe_and_rejoin(records: u64, inline_bytes: usize, purge_log: bool) {
        let ca = ClusterCa::generate("meta-test").expect("cluster CA");
        let mut listeners = Vec::new();
        let mut members = BTreeMap::new();
        for i in 1..=3u64 {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            members.insert(NodeId(i), l.local_addr().expect("addr").to_string());
            listeners.push((NodeId(i), l));
        }
        let dirs: Vec<_> = (0..3)
            .map(|_| tempfile::tempdir().expect("tempdir"))
            .collect();
        let mut nodes = Vec::new();
        let mut stops = Vec::new();
        for ((id, listener), dir) in listeners.into_iter().zip(&dirs) {
            let (node, stop) =
                start_member(id, &dir.path().join("meta"), listener, &members, &ca).await;
            nodes.push(node);
            stops.push(stop);
        }
        let addrs: HashMap<NodeId, String> = members.iter().map(|(k, v)| (*k, v.clone())).collect();
        let client = MetaClient::new(
            RpcClient::new(ca.tls(Identity::Gateway).expect("tls"), addrs),
            members.keys().copied().collect(),
        );
        client
            .write(Command::CreateBucket(CreateBucket {
                name: "photos".into(),
                id: BucketId(42),
                owner: "alice".into(),
                created_ms: 1,
            }))
            .await
            .expect("create");
        let record_of = |i: u64| {
            let mut r = object(i);
            if inline_bytes > 0 {
                r.data = ObjectData::Inline(vec![(i % 251) as u8; inline_bytes]);
            }
            r
        };
        use futures::StreamExt;
        let puts = futures::stream::iter(0..records).map(|i| {
            let client = client.clone();
            let cmd = Command::PutObject(PutObject {
                bucket: BucketId(42),
                key: format!("k{i:04}"),
                record: record_of(i),
                condition: None,
            });
            async move { client.write(cmd).await }
        });
        let results: Vec<_> = puts.buffer_unordered(8).collect().await;
        for r in results {
            assert_eq!(r.expect("put"), CommandResult::ObjectPut);
        }
        // Wipe a member that does not lead.
        let leader = client.cached_leader().expect("leader");
        let victim = (1..=3u64)
            .map(NodeId)
            .find(|n| *n != leader)
            .expect("a follower");
        let pos = (victim.0 - 1) as usize;
        let leader_node = nodes[(leader.0 - 1) as usize].clone();
        if purge_log {
            // Every member snapshots and drops its log: a member starting empty can only be
            // caught up with a snapshot.
            // What each has applied before it is asked: the snapshot covers at least that
            // (entries applied meanwhile may or may not be in it).
            let mut targets = Vec::new();
            for n in &nodes {
                targets.push(n.raft.metrics().borrow().last_applied.map(|l| l.index));
                n.raft.trigger().snapshot().await.expect("trigger snapshot");
            }
            for (n, target) in nodes.iter().zip(targets) {
                n.raft
                    .wait(Some(Duration::from_secs(60)))
                    .metrics(|m| m.snapshot.map(|l| l.index) >= target, "snapshot built")
                    .await
                    .expect("snapshot built");
                if let Some(index) = target {
                    n.raft.trigger().purge_log(index).await.expect("purge");
                }
            }
        }
        let builds_before = leader_node.db.snapshot_builds();
        let membership_before = leader_node
            .raft
            .metrics()
            .borrow()
            .membership_config
            .log_id()
            .map(|l| l.index);
        let old = nodes.remove(pos);
        old.shutdown().await;
        let _ = stops.remove(pos).send(());
        // Gone as a process exit would be: its database closed before the directory goes.
        let old_db = Arc::downgrade(&old.db);
        drop(old);
        for _ in 0..100 {
            if old_db.upgrade().is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            old_db.upgrade().is_none(),
            "the stopped member's database is still open"
        );
        let wiped = dirs[pos].path().join("meta");
        std::fs::remove_dir_all(&wiped).expect("wipe the member's metadata");
        assert!(join::marker_path(&wiped).exists(), "the member had joined");
        let mut listener = None;
        for _ in 0..50 {
            match tokio::net::TcpListener::bind(&members[&victim]).await {
                Ok(l) => {
                    listener = Some(l);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let listener = listener.expect("rebind the wiped member's address");
        let (back, _stop) = start_member(victim, &wiped, listener, &members, &ca).await;

        // It is demoted, caught up, and promoted again by the leader.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let m = leader_node.raft.metrics().borrow().clone();
            let changed = m.membership_config.log_id().map(|l| l.index) > membership_before;
            if changed && voters(&leader_node).contains(&victim.0) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the wiped member was not re-added: voters {:?}, membership at {:?}",
                voters(&leader_node),
                m.membership_config.log_id()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // And holds every record.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let last = records - 1;
        loop {
            let q = Query::GetObject(GetObject {
                bucket: BucketId(42),
                key: format!("k{last:04}"),
            });
            if back.db.query(&q).expect("query") == QueryResult::Object(Some(record_of(last))) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the member did not catch up: {:?}",
                back.raft.metrics().borrow().clone()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if purge_log {
            let q = Query::GetObject(GetObject {
                bucket: BucketId(42),
                key: "k0000".into(),
            });
            assert_eq!(
                back.db.query(&q).expect("query"),
                QueryResult::Object(Some(record_of(0)))
            );
            assert!(
                back.raft.metrics().borrow().snapshot.is_some(),
                "the member was caught up from the log, not a snapshot"
            );
            // The leader sent the snapshot it had: at most one more build, never one per try.
            assert!(
                leader_node.db.snapshot_builds() <= builds_before + 1,
                "the leader built {} snapshots while the member rejoined",
                leader_node.db.snapshot_builds() - builds_before
            );
        }
        back.shutdown().await;
        for n in &nodes {
            n.shutdown().await;
        }
    }
}
