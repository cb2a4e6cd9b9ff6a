//! Linearizable reads share leadership checks (a batched read index). A read is linearizable
//! once a check that *started after the read arrived* confirms this node still leads (a
//! heartbeat round to a quorum, openraft's `ensure_linearizable`) and the state machine has
//! applied up to the commit index it returned. So reads that arrive while a check is running
//! wait for the next one, and one check serves every read that arrived before it started:
//! under concurrency a metadata read costs a fraction of a quorum round instead of one each.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openraft::error::{CheckIsLeaderError, RaftError};
use tokio::sync::oneshot;

use super::raft::Raft;
use crate::metrics::GroupMetrics;

/// Why a read could not be confirmed (cloned to every read of the batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BarrierError {
    /// Another node leads (if known).
    NotLeader(Option<u64>),
    Failed(String),
}

type Waiter = oneshot::Sender<Result<(), BarrierError>>;

#[derive(Default)]
struct State {
    /// A check is running (its driver task takes the next batch when it ends).
    running: bool,
    /// Reads that arrived since the running check started.
    waiting: Vec<Waiter>,
}

/// Shares leadership checks between concurrent reads of one replica.
#[derive(Clone)]
pub struct ReadBarrier {
    raft: Raft,
    state: Arc<Mutex<State>>,
    /// Leadership checks run (for tests; the metrics count them too).
    checks: Arc<AtomicU64>,
    metrics: GroupMetrics,
}

impl ReadBarrier {
    pub fn new(raft: Raft, metrics: GroupMetrics) -> Self {
        ReadBarrier {
            raft,
            state: Arc::new(Mutex::new(State::default())),
            checks: Arc::new(AtomicU64::new(0)),
            metrics,
        }
    }

    /// Leadership checks run so far.
    #[cfg(test)]
    pub fn checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }

    /// Returns once a leadership check that started after this call confirmed this node leads
    /// and the state machine caught up with it.
    pub async fn wait(&self) -> Result<(), BarrierError> {
        self.metrics.reads.inc();
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut st = self.state.lock().expect("read barrier lock");
            st.waiting.push(tx);
            !std::mem::replace(&mut st.running, true)
        };
        if start {
            tokio::spawn(self.clone().drive());
        }
        rx.await
            .unwrap_or_else(|_| Err(BarrierError::Failed("read barrier dropped".into())))
    }

    /// Runs checks while reads wait: each takes the reads queued before it starts.
    async fn drive(self) {
        loop {
            let batch = {
                let mut st = self.state.lock().expect("read barrier lock");
                if st.waiting.is_empty() {
                    st.running = false;
                    return;
                }
                std::mem::take(&mut st.waiting)
            };
            self.checks.fetch_add(1, Ordering::Relaxed);
            self.metrics.read_checks.inc();
            let result = match self.raft.ensure_linearizable().await {
                Ok(_) => Ok(()),
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                    Err(BarrierError::NotLeader(f.leader_id))
                }
                Err(e) => Err(BarrierError::Failed(e.to_string())),
            };
            for w in batch {
                let _ = w.send(result.clone());
            }
        }
    }
}
