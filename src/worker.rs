//! The one framework of a storage node's background workers — the retire queue
//! ([`crate::retire`]), the garbage collector ([`crate::gc`]), healing and scrub
//! ([`crate::repair`]). Each is a [`Worker`] whose [`Worker::round`] does one bounded unit of
//! work; [`run`] drives it:
//! - only while this node leads the metadata group (so one node in the cluster does each job,
//!   and a new leader takes over without coordination), telling the worker when leadership is
//!   lost so it forgets in-memory cursors;
//! - a round every `every`, and the next one at once while a round reports that more work is
//!   waiting (a backlog drains without waiting for ticks);
//! - a failed round is logged and retried at the next tick;
//! - cancellation: the task is aborted or dropped, between or inside rounds — every round is
//!   written to be safe to cut anywhere (its effects are idempotent Raft commands).
//!
//! Durable queues and progress live in the state machine (the node's RocksDB, replicated):
//! the retire queue, the repair queue and the scrub's cursor. Rate limits are the workers' own
//! (the garbage collector's delete pacing, the storage nodes' verification budget), and so is
//! status (`baobab repair status`, the collector's round summaries in the log).

use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use crate::meta::MetaNode;

/// What a round left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// Nothing more to do now: wait for the next tick.
    Idle,
    /// More work is waiting: run the next round at once.
    More,
}

/// A background job of the metadata leader's storage node.
#[async_trait::async_trait]
pub trait Worker: Send {
    /// For logs.
    fn name(&self) -> &'static str;
    /// One bounded unit of work.
    async fn round(&mut self, meta: &MetaNode) -> Result<Round, String>;
    /// This node stopped leading: forget whatever only the leader's view made valid.
    fn lost_leadership(&mut self) {}
}

/// Runs `worker` until the task is dropped or aborted: see the module documentation. The first
/// round comes after `first_after`.
pub async fn run<W: Worker>(
    meta: Arc<MetaNode>,
    mut worker: W,
    every: Duration,
    first_after: Duration,
) {
    let every = every.max(MIN_TICK);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + first_after, every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading = false;
    loop {
        ticker.tick().await;
        loop {
            if !meta.is_leader() {
                if leading {
                    worker.lost_leadership();
                    leading = false;
                }
                break;
            }
            leading = true;
            match worker.round(&meta).await {
                Ok(Round::More) => tokio::task::yield_now().await,
                Ok(Round::Idle) => break,
                Err(e) => {
                    warn!(worker = worker.name(), error = %e, "background round failed; retrying at the next tick");
                    break;
                }
            }
        }
    }
}

/// The shortest interval between ticks (a zero interval would spin).
const MIN_TICK: Duration = Duration::from_millis(100);
