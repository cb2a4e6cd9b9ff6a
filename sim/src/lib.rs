//! Baobab's simulation: the real storage nodes (RocksDB, shard files, openraft, the retire and
//! heal workers) and the real object service, as hosts of a tokio-rs/turmoil simulation. The
//! network is turmoil's simulated TCP (the RPC's transport seam: `RpcClient::with_connector`,
//! `rpc::RpcListener`), time is simulated (every host's tokio clock is paused and advanced by
//! the simulation), and a seeded workload runs against faults drawn from the same seed:
//! partitions, held links (late and effectively duplicated requests), latency, node crashes and
//! restarts with their data kept. The checker (`check.rs`) holds every read against a
//! linearizable register per key, then, after the network is whole and healing has run,
//! reads every key back and checks that every record names all k+m shards.
//!
//! A failing seed is printed with the command that runs it again
//! (`BAOBAB_SIM_SEED=<seed> cargo nextest run --release -p baobab-sim`).
//!
//! What is NOT deterministic, so a seed reproduces the same workload and fault schedule but
//! not always the same interleaving:
//! - RocksDB's background threads, and the blocking pool (`spawn_blocking`: RocksDB writes,
//!   shard files): simulated time does not advance while one is in flight, but how long they
//!   take in real time decides which other task runs first;
//! - random ids drawn from the thread RNG inside the code under test (`VersionId::random`,
//!   hence shard placement; `MetaClient`'s client id; openraft's election timeouts);
//! - wall-clock time where the code reads it (`SystemTime`: the leader's proposal clock, the
//!   retire grace, RPC timestamps; `std::time::Instant`: the shard read leases);
//! - the disk: files are real (temp dirs), so a crash loses no unsynced data (no torn
//!   writes; turmoil's simulated fs is not wired to RocksDB or the shard store).

pub mod check;
pub mod cluster;
pub mod faults;
pub mod net;
pub mod workload;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use baobab::types::{ErasureProfile, NodeId};

use crate::cluster::{host_name, ClusterSpec};
use crate::faults::{Fault, FaultMix, Scheduled, Target};
use crate::workload::{ClientReport, WorkloadSpec};

const CLIENT: &str = "client";

/// One run's settings; `Default` is what CI runs per seed.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub nodes: u64,
    pub profile: ErasureProfile,
    pub workers: usize,
    pub keys: usize,
    /// Simulated time before the first fault (the group elects its leader).
    pub warmup: Duration,
    /// Simulated time of the workload (and of faults), after the warm-up.
    pub workload: Duration,
    pub large_percent: u32,
    /// Percent of operations that are PUTs, and DELETEs; the rest are GETs.
    pub put_percent: u32,
    pub delete_percent: u32,
    pub faults: FaultMix,
    /// The exactly-once knob: the client's writes carry no request id.
    pub without_request_ids: bool,
    /// The write-quorum knob: no heal worker, so a write accepted with fewer than k + m shards
    /// stays that way, as before the fix (nothing queued it or rebuilt it).
    pub without_healing: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            nodes: 3,
            profile: ErasureProfile { k: 2, m: 1 },
            workers: 4,
            keys: 6,
            warmup: Duration::from_secs(3),
            workload: Duration::from_secs(30),
            large_percent: 25,
            put_percent: 50,
            delete_percent: 12,
            faults: FaultMix::All,
            without_request_ids: false,
            without_healing: false,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub seed: u64,
    pub report: ClientReport,
    pub faults: Vec<Scheduled>,
    pub simulated: Duration,
    pub real: Duration,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.report.violations.is_empty()
    }

    /// A failure's message: the seed, the command that runs it again, what was violated.
    pub fn failure_message(&self) -> String {
        format!(
            "simulation seed {seed} FAILED ({n} violation(s)); reproduce with:\n  \
             BAOBAB_SIM_SEED={seed} cargo nextest run --release -p baobab-sim\n{list}\nfaults: {faults:?}",
            seed = self.seed,
            n = self.report.violations.len(),
            list = self.report.violations.join("\n"),
            faults = self.faults,
        )
    }
}

/// Installs a log subscriber once, if `RUST_LOG` asks for one.
fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// Runs seed `seed`. Errors are failures of the harness (a host that could not start), not
/// findings; findings are in the outcome's report.
pub fn run(seed: u64, opts: &SimOptions) -> anyhow::Result<Outcome> {
    init_logging();
    let real_start = std::time::Instant::now();
    let dirs = tempfile::tempdir()?;
    let mut spec = ClusterSpec::new(opts.nodes, opts.profile);
    spec.heal = !opts.without_healing;
    let until = opts.warmup + opts.workload;
    let faults = faults::schedule(seed, opts.faults, opts.nodes, opts.warmup, until);

    let mut sim = turmoil::Builder::new()
        .simulation_duration(until + workload::HEAL_DEADLINE + Duration::from_secs(120))
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(5))
        .tcp_capacity(4096)
        .rng_seed(seed)
        .build();

    for node in spec.members.keys().copied() {
        let spec = spec.clone();
        let dir = dirs.path().join(host_name(node));
        sim.host(host_name(node), move || {
            let spec = spec.clone();
            let dir = dir.clone();
            async move { spec.run_node(node, dir).await }
        });
    }

    let leader = Rc::new(Cell::new(None::<NodeId>));
    let report = Rc::new(RefCell::new(None));
    {
        let spec = spec.clone();
        let wspec = WorkloadSpec {
            seed,
            workers: opts.workers,
            keys: opts.keys,
            until,
            large_percent: opts.large_percent,
            put_percent: opts.put_percent,
            delete_percent: opts.delete_percent,
        };
        let (leader, report) = (leader.clone(), report.clone());
        let without_ids = opts.without_request_ids;
        sim.client(CLIENT, async move {
            let svc = spec.object_service(without_ids);
            workload::run_client(svc, wspec, leader, report).await
        });
    }

    let mut driver = Driver {
        pending: faults.clone().into_iter().rev().collect(),
        active: None,
        leader,
        nodes: opts.nodes,
    };
    let mut whole = false;
    loop {
        let now = sim.elapsed();
        driver.advance(&mut sim, now);
        if now >= until && !whole {
            driver.end_all(&mut sim);
            whole = true;
        }
        if sim
            .step()
            .map_err(|e| anyhow::anyhow!("simulation error: {e}"))?
        {
            break;
        }
    }
    let simulated = sim.elapsed();
    drop(sim);
    let report = report
        .borrow_mut()
        .take()
        .ok_or_else(|| anyhow::anyhow!("the client finished without a report"))?;
    Ok(Outcome {
        seed,
        report,
        faults,
        simulated,
        real: real_start.elapsed(),
    })
}

/// Applies the schedule to the simulation as its time passes.
struct Driver {
    /// Faults not started yet, the next one last.
    pending: Vec<Scheduled>,
    /// The fault in force, with the node it hit.
    active: Option<(Scheduled, u64)>,
    leader: Rc<Cell<Option<NodeId>>>,
    nodes: u64,
}

impl Driver {
    fn resolve(&self, target: Target) -> u64 {
        match target {
            Target::Node(n) => n,
            Target::Leader => self.leader.get().map_or(1, |n| n.0),
        }
    }

    fn advance(&mut self, sim: &mut turmoil::Sim<'_>, now: Duration) {
        if let Some((fault, _)) = &self.active {
            if now >= fault.end {
                self.end_active(sim);
            }
        }
        if self.active.is_none() && self.pending.last().is_some_and(|f| now >= f.start) {
            let fault = self.pending.pop().expect("checked above");
            let node = self.resolve(target_of(&fault.fault));
            let host = host_name(NodeId(node));
            tracing::info!(target: "baobab_sim", ?now, ?fault, node, "fault starts");
            match fault.fault {
                Fault::Isolate(_) => {
                    for other in self.others(node) {
                        sim.partition(host.as_str(), other.as_str());
                    }
                }
                Fault::PartitionFromClient(_) => sim.partition(CLIENT, host.as_str()),
                Fault::HoldClientLink(_) => sim.hold(CLIENT, host.as_str()),
                Fault::LoseReplies(_) => sim.partition_oneway(host.as_str(), CLIENT),
                Fault::Latency(_, max) => {
                    for other in self.others(node) {
                        sim.set_link_max_message_latency(host.as_str(), other.as_str(), max);
                    }
                }
                Fault::Crash(_) => sim.crash(host.as_str()),
            }
            self.active = Some((fault, node));
        }
    }

    /// Every other host's name, the client included.
    fn others(&self, node: u64) -> Vec<String> {
        (1..=self.nodes)
            .filter(|n| *n != node)
            .map(|n| host_name(NodeId(n)))
            .chain(std::iter::once(CLIENT.to_string()))
            .collect()
    }

    fn end_active(&mut self, sim: &mut turmoil::Sim<'_>) {
        let Some((fault, node)) = self.active.take() else {
            return;
        };
        let host = host_name(NodeId(node));
        tracing::info!(target: "baobab_sim", now = ?sim.elapsed(), ?fault, node, "fault ends");
        match fault.fault {
            Fault::Isolate(_) => {
                for other in self.others(node) {
                    sim.repair(host.as_str(), other.as_str());
                }
            }
            Fault::PartitionFromClient(_) => sim.repair(CLIENT, host.as_str()),
            Fault::HoldClientLink(_) => sim.release(CLIENT, host.as_str()),
            Fault::LoseReplies(_) => sim.repair_oneway(host.as_str(), CLIENT),
            Fault::Latency(..) => {
                for other in self.others(node) {
                    sim.set_link_max_message_latency(
                        host.as_str(),
                        other.as_str(),
                        Duration::from_millis(5),
                    );
                }
            }
            Fault::Crash(_) => sim.bounce(host.as_str()),
        }
    }

    /// The workload is over: the fault in force ends and no other starts.
    fn end_all(&mut self, sim: &mut turmoil::Sim<'_>) {
        self.end_active(sim);
        self.pending.clear();
    }
}

fn target_of(fault: &Fault) -> Target {
    match *fault {
        Fault::Isolate(t)
        | Fault::PartitionFromClient(t)
        | Fault::HoldClientLink(t)
        | Fault::LoseReplies(t)
        | Fault::Latency(t, _)
        | Fault::Crash(t) => t,
    }
}
