//! How a member with an empty metadata store enters the group. Two cases look alike on disk:
//! a brand-new cluster (every member empty: they initialize the group together, each with the
//! same membership) and a member that lost its metadata directory while the group lives on.
//! The second must never initialize: it would come back as a voter without the log entries and
//! the vote it had acknowledged, so a committed entry could lose its majority and a term could
//! get two leaders. It asks the leader to take it out of the voters, catch it up as a learner
//! and make it a voter again.
//!
//! What tells them apart is a marker beside the metadata directory (`<meta dir>.joined`),
//! written once the member is in a group: present with an empty store, the store was lost.
//!
//! The rule: ask every other member (`/v1/meta/probe`). Any member already in a group → a
//! member that lost its store rejoins; a new member (no marker) waits for the leader's
//! replication, since it is in the configured membership. A majority of the members (this one
//! included) empty → initialize. Otherwise wait and ask again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::raft::{Raft, RaftNodeId};
use crate::rpc::RpcClient;
use crate::types::NodeId;

pub const PATH_META_PROBE: &str = "/v1/meta/probe";
pub const PATH_META_REJOIN: &str = "/v1/meta/rejoin";

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const RETRY_EVERY: Duration = Duration::from_millis(500);
/// Bound on a rejoining member's wait to catch up (it starts over after).
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(300);
/// Bound on one rejoin step (a membership change) at the leader.
const REJOIN_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Reply to `/v1/meta/probe`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeReply {
    /// This member has a membership (it initialized or joined the group).
    pub in_group: bool,
}

/// Request to `/v1/meta/rejoin`: a step of re-adding the member that lost its store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RejoinRequest {
    pub node: u64,
    pub addr: String,
    pub step: RejoinStep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejoinStep {
    /// Out of the voters, kept as a learner: the leader answers with its last log index, which
    /// the member must have applied before it asks for the next step.
    Demote,
    /// A voter again.
    Promote,
}

/// Reply to `/v1/meta/rejoin`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RejoinReply {
    Done { leader_last_log_index: u64 },
    NotLeader { leader: Option<u64> },
    Failed(String),
}

/// Whether `raft` has a membership of its own.
pub fn in_group(raft: &Raft) -> bool {
    raft.metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .next()
        .is_some()
}

/// The marker of a member that has been in a group: `<meta dir>.joined`.
pub fn marker_path(meta_dir: &Path) -> PathBuf {
    let mut name = meta_dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".joined");
    meta_dir.with_file_name(name)
}

/// Writes the marker once this member is in a group (at once if it already is).
pub async fn remember_joined(raft: Raft, marker: PathBuf, me: NodeId) {
    let joined = raft
        .wait(None)
        .metrics(
            |m| {
                m.membership_config
                    .membership()
                    .voter_ids()
                    .next()
                    .is_some()
            },
            "in a group",
        )
        .await;
    if joined.is_err() || marker.exists() {
        return;
    }
    if let Err(e) =
        crate::fsutil::write_durable(&marker, b"this member has joined its metadata group\n").await
    {
        warn!(node = %me, error = %e, path = %marker.display(), "could not write the metadata member marker");
    }
}

/// Runs on a member whose store was empty at start, until it initialized the group with the
/// others, rejoined it (`was_member`: its marker says it had been in it), or found it exists.
pub async fn join_or_initialize(
    raft: Raft,
    rpc: RpcClient,
    me: NodeId,
    members: BTreeMap<NodeId, String>,
    was_member: bool,
) {
    let majority = members.len() / 2 + 1;
    let mut rounds = 0u64;
    loop {
        let mut empty = 1; // this member
        let mut existing = false;
        for id in members.keys().filter(|id| **id != me) {
            match rpc
                .call::<(), ProbeReply>(*id, PATH_META_PROBE, &(), PROBE_TIMEOUT)
                .await
            {
                Ok(ProbeReply { in_group: true }) => existing = true,
                Ok(ProbeReply { in_group: false }) => empty += 1,
                Err(_) => {}
            }
        }
        if existing && !was_member {
            info!(node = %me, "the metadata group exists: joining through the leader's replication");
            return;
        }
        if existing {
            warn!(node = %me, "metadata store is empty but the group exists: rejoining as a learner, never initializing");
            rejoin(&raft, &rpc, me, &members).await;
            return;
        }
        if empty >= majority {
            let voters: BTreeMap<RaftNodeId, BasicNode> = members
                .iter()
                .map(|(id, addr)| (id.0, BasicNode::new(addr)))
                .collect();
            match raft.initialize(voters).await {
                Ok(()) => info!(node = %me, "metadata group initialized"),
                Err(RaftError::APIError(InitializeError::NotAllowed(e))) => {
                    info!(node = %me, reason = %e, "metadata group already initialized")
                }
                Err(e) => warn!(node = %me, error = %e, "metadata group initialization failed"),
            }
            return;
        }
        rounds += 1;
        if rounds % 20 == 1 {
            info!(node = %me, empty, majority, "waiting for a majority of metadata members to start");
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

/// Re-adds this member: demoted to learner, caught up, promoted. Retries until done.
async fn rejoin(raft: &Raft, rpc: &RpcClient, me: NodeId, members: &BTreeMap<NodeId, String>) {
    loop {
        let Some(index) = rejoin_step(rpc, me, members, RejoinStep::Demote).await else {
            continue;
        };
        info!(node = %me, index, "demoted to learner; catching up");
        let caught_up = raft
            .wait(Some(CATCH_UP_TIMEOUT))
            .metrics(
                |m| m.last_applied.map(|l| l.index) >= Some(index),
                "catch up with the leader",
            )
            .await;
        if let Err(e) = caught_up {
            warn!(node = %me, error = %e, "did not catch up in time; retrying");
            continue;
        }
        if rejoin_step(rpc, me, members, RejoinStep::Promote)
            .await
            .is_some()
        {
            info!(node = %me, "metadata replica rejoined the group as a voter");
            return;
        }
    }
}

/// Sends one rejoin step to the leader (following hints); the leader's last log index once
/// done, None after a failure (already waited).
async fn rejoin_step(
    rpc: &RpcClient,
    me: NodeId,
    members: &BTreeMap<NodeId, String>,
    step: RejoinStep,
) -> Option<u64> {
    let req = RejoinRequest {
        node: me.0,
        addr: members.get(&me).cloned().unwrap_or_default(),
        step,
    };
    let others: Vec<NodeId> = members.keys().copied().filter(|id| *id != me).collect();
    let mut target = *others.first()?;
    for attempt in 0..(4 * others.len()) {
        match rpc
            .call::<_, RejoinReply>(target, PATH_META_REJOIN, &req, REJOIN_CALL_TIMEOUT)
            .await
        {
            Ok(RejoinReply::Done {
                leader_last_log_index,
            }) => return Some(leader_last_log_index),
            Ok(RejoinReply::NotLeader {
                leader: Some(leader),
            }) if leader != me.0 && leader != target.0 => {
                target = NodeId(leader);
                continue;
            }
            Ok(RejoinReply::Failed(e)) => {
                warn!(node = %me, ?step, error = %e, "rejoin step refused")
            }
            _ => {}
        }
        target = others[(attempt + 1) % others.len()];
        tokio::time::sleep(RETRY_EVERY).await;
    }
    None
}

/// On the leader: one step of re-adding `req.node` (idempotent: a repeated step is a no-op).
pub async fn handle_rejoin(raft: &Raft, req: RejoinRequest) -> RejoinReply {
    let (leader, me) = {
        let m = raft.metrics().borrow().clone();
        (m.current_leader, m.id)
    };
    if leader != Some(me) {
        return RejoinReply::NotLeader { leader };
    }
    let id = req.node;
    let voters: BTreeSet<RaftNodeId> = raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    let change = match req.step {
        RejoinStep::Demote if voters.contains(&id) => {
            info!(
                node = id,
                "a member lost its metadata: a learner until it catches up"
            );
            Some(ChangeMembers::RemoveVoters(BTreeSet::from([id])))
        }
        RejoinStep::Promote if !voters.contains(&id) => {
            info!(node = id, "the member caught up: a voter again");
            Some(ChangeMembers::AddVoterIds(BTreeSet::from([id])))
        }
        _ => None,
    };
    if let Some(change) = change {
        // `retain`: a removed voter stays a learner and keeps receiving the log.
        match raft.change_membership(change, true).await {
            Ok(_) => {}
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                return RejoinReply::NotLeader {
                    leader: f.leader_id,
                }
            }
            Err(e) => return RejoinReply::Failed(e.to_string()),
        }
    }
    let leader_last_log_index = raft.metrics().borrow().last_log_index.unwrap_or(0);
    RejoinReply::Done {
        leader_last_log_index,
    }
}
