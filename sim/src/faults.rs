//! The fault schedule, drawn from the seed before the run: what happens to the network and the
//! storage nodes, when, and for how long. Faults do not overlap (one at a time), so the cluster
//! keeps a metadata majority and k shard homes most of the time; what they test is that no
//! acknowledged write is lost and no read is wrong, not availability under every combination.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Whom a fault hits: a storage node by index (1-based), or whichever node the client last
/// saw as the metadata leader (resolved when the fault starts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Node(u64),
    Leader,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The node cannot reach anyone (storage nodes and client).
    Isolate(Target),
    /// The client cannot reach the node.
    PartitionFromClient(Target),
    /// Messages between client and node are held, then delivered at once: late replies, a
    /// request the client gave up on arriving after its retry.
    HoldClientLink(Target),
    /// The node's messages to the client are lost (requests still arrive): a write is applied
    /// but its reply never comes, so the client resends it once the link heals.
    LoseReplies(Target),
    /// Messages to and from the node take up to this long.
    Latency(Target, Duration),
    /// The node's process dies (its data dir stays); it restarts when the fault ends.
    Crash(Target),
}

/// Which faults a run draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMix {
    /// Every kind.
    All,
    /// Only lost replies from the leader to the client: every write in the window is applied,
    /// unacknowledged and resent after later writes (the exactly-once seed's workload).
    LostReplies,
    /// Only crashes (and restarts), of any node: the crash disk's seed's workload.
    Crashes,
}

#[derive(Debug, Clone)]
pub struct Scheduled {
    pub start: Duration,
    pub end: Duration,
    pub fault: Fault,
}

/// Faults from `from` until `until`, drawn from `seed`.
pub fn schedule(
    seed: u64,
    mix: FaultMix,
    n_nodes: u64,
    from: Duration,
    until: Duration,
) -> Vec<Scheduled> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xFA17_FA17_FA17_FA17);
    let mut out = Vec::new();
    let mut at = from + Duration::from_millis(rng.random_range(0..2000));
    while at < until {
        let target = if rng.random_bool(0.5) {
            Target::Leader
        } else {
            Target::Node(rng.random_range(1..=n_nodes))
        };
        let kind = match mix {
            FaultMix::All => rng.random_range(0..6u32),
            FaultMix::LostReplies => 5,
            FaultMix::Crashes => 4,
        };
        let target = match mix {
            FaultMix::All => target,
            FaultMix::LostReplies => Target::Leader,
            FaultMix::Crashes => target,
        };
        let (fault, secs) = match kind {
            0 => (Fault::Isolate(target), rng.random_range(1..8)),
            1 => (Fault::PartitionFromClient(target), rng.random_range(1..8)),
            2 => (Fault::HoldClientLink(target), rng.random_range(4..12)),
            3 => {
                let max = Duration::from_millis(rng.random_range(50..2000));
                (Fault::Latency(target, max), rng.random_range(2..10))
            }
            4 => (Fault::Crash(target), rng.random_range(1..10)),
            // Shorter than the metadata client's 15 s deadline, so the resent writes land.
            _ => (Fault::LoseReplies(target), rng.random_range(2..10)),
        };
        let end = (at + Duration::from_millis(secs * 1000 + rng.random_range(0..1000))).min(until);
        out.push(Scheduled {
            start: at,
            end,
            fault,
        });
        at = end + Duration::from_millis(rng.random_range(500..4000));
    }
    out
}
