//! Baobab's simulation: the real storage nodes (RocksDB, shard files, openraft, the retire and
//! heal workers) and the real object service, as hosts of a tokio-rs/turmoil simulation. The
//! network is turmoil's simulated TCP (the RPC's transport seam: `RpcClient::with_connector`,
//! `rpc::RpcListener`), time is simulated (every host's tokio clock is paused and advanced by
//! the simulation), and a seeded workload runs against faults drawn from the same seed:
//! partitions, held links (late and effectively duplicated requests), latency, node crashes and
//! restarts. A crash loses what a power loss may lose of the node's shard files (`disk.rs`, the
//! crash disk over the core's `fsutil::journal` seam): unsynced renames and new entries are
//! undone, unsynced data is torn. The checker (`check.rs`) holds every read against a
//! linearizable register per key, then, after the network is whole and healing has run,
//! reads every key back, checks that every record names all k+m shards, and verifies each of
//! those shards whole on its node (header, length, every block's BLAKE3).
//!
//! A failing seed is printed with the command that runs it again
//! (`BAOBAB_SIM_SEED=<seed> cargo nextest run --release -p baobab-sim`).
//!
//! What is NOT deterministic (or not modelled), so a seed reproduces the same workload and fault
//! schedule but not always the same interleaving:
//! - RocksDB's background threads, and the blocking pool (`spawn_blocking`: RocksDB writes,
//!   shard files): simulated time does not advance while one is in flight, but how long they
//!   take in real time decides which other task runs first;
//! - random ids drawn from the thread RNG inside the code under test (`VersionId::random`,
//!   hence shard placement; `MetaClient`'s client id; openraft's election timeouts);
//! - wall-clock time where the code reads it (`SystemTime`: the leader's proposal clock, the
//!   retire grace, RPC timestamps; `std::time::Instant`: the shard read leases);
//! - the disk outside the crash disk's reach: files are real (temp dirs) and only what the
//!   shard store and `fsutil` report is rewound at a crash; RocksDB does its own IO, so the
//!   metadata store keeps everything it wrote, synced or not (its WAL is not torn). Unlinks
//!   count as durable at once. Which files a crash finds unsynced depends on the interleaving
//!   above; the torn tails are drawn from the seed.

pub mod check;
pub mod cluster;
pub mod disk;
pub mod faults;
pub mod net;
pub mod workload;

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use baobab::types::{ErasureProfile, NodeId};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::cluster::{host_name, ClusterSpec};
use crate::disk::CrashDisk;
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
    /// The shard-sync knob: shard files are renamed into place without their data fsynced,
    /// so a crash tears shards the cluster counted as durable. Process-wide while the run
    /// lasts (see [`ShardSyncKnob`]).
    pub without_shard_sync: bool,
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
            without_shard_sync: false,
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

/// The shard-sync knob is a process-wide switch in the core; runs in one process (`cargo
/// test` threads) share it. A run with the knob on holds this lock exclusively, the others
/// shared, so no run sees another's knob.
static SHARD_SYNC_KNOB: RwLock<()> = RwLock::new(());

/// The knob for one run: on (the lock held exclusively; turned off again on drop) or off
/// (held shared).
struct ShardSyncKnob {
    on: bool,
    _exclusive: Option<RwLockWriteGuard<'static, ()>>,
    _shared: Option<RwLockReadGuard<'static, ()>>,
}

impl ShardSyncKnob {
    fn set(without_shard_sync: bool) -> ShardSyncKnob {
        // The lock guards no data; a run that panicked holding it changes nothing.
        if without_shard_sync {
            let guard = SHARD_SYNC_KNOB.write().unwrap_or_else(|e| e.into_inner());
            baobab::shard::set_without_shard_sync(true);
            ShardSyncKnob {
                on: true,
                _exclusive: Some(guard),
                _shared: None,
            }
        } else {
            ShardSyncKnob {
                on: false,
                _exclusive: None,
                _shared: Some(SHARD_SYNC_KNOB.read().unwrap_or_else(|e| e.into_inner())),
            }
        }
    }
}

impl Drop for ShardSyncKnob {
    fn drop(&mut self) {
        if self.on {
            baobab::shard::set_without_shard_sync(false);
        }
    }
}

/// Runs seed `seed`. Errors are failures of the harness (a host that could not start), not
/// findings; findings are in the outcome's report.
pub fn run(seed: u64, opts: &SimOptions) -> anyhow::Result<Outcome> {
    init_logging();
    let real_start = std::time::Instant::now();
    let _knob = ShardSyncKnob::set(opts.without_shard_sync);
    let disk = CrashDisk::installed()?;
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

    let data_dir = |node: NodeId| dirs.path().join(host_name(node));
    // Dropped (unregistered) before the temp dirs go.
    let _registered: Vec<_> = spec
        .members
        .keys()
        .map(|node| disk.register(data_dir(*node)))
        .collect();
    for node in spec.members.keys().copied() {
        let spec = spec.clone();
        let dir = data_dir(node);
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
            workload::run_client(svc, spec.rpc(&spec.gateway_tls), wspec, leader, report).await
        });
    }

    let mut driver = Driver {
        pending: faults.clone().into_iter().rev().collect(),
        active: None,
        leader,
        nodes: opts.nodes,
        disk,
        data_dirs: spec.members.keys().map(|n| (n.0, data_dir(*n))).collect(),
        rng: StdRng::seed_from_u64(seed ^ 0xD15C_D15C_D15C_D15C),
    };
    let mut whole = false;
    loop {
        let now = sim.elapsed();
        driver.advance(&mut sim, now)?;
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
    /// What a crash takes from a node's data dir, and where each node's dir is.
    disk: Arc<CrashDisk>,
    data_dirs: std::collections::BTreeMap<u64, PathBuf>,
    /// The torn tails' draws.
    rng: StdRng,
}

impl Driver {
    fn resolve(&self, target: Target) -> u64 {
        match target {
            Target::Node(n) => n,
            Target::Leader => self.leader.get().map_or(1, |n| n.0),
        }
    }

    fn advance(&mut self, sim: &mut turmoil::Sim<'_>, now: Duration) -> anyhow::Result<()> {
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
                Fault::Crash(_) => {
                    // Returns once the host's runtime is dropped, its blocking file IO done.
                    sim.crash(host.as_str());
                    self.rewind(node)?;
                }
            }
            self.active = Some((fault, node));
        }
        Ok(())
    }

    /// Takes from the crashed node's disk what a power loss may take.
    fn rewind(&mut self, node: u64) -> anyhow::Result<()> {
        let Some(dir) = self.data_dirs.get(&node) else {
            anyhow::bail!("no data dir for node {node}");
        };
        let rewind = self
            .disk
            .crash(dir, &mut self.rng)
            .map_err(|e| anyhow::anyhow!("rewinding node {node}'s disk: {e}"))?;
        tracing::info!(target: "baobab_sim", node, ?rewind, "crash rewound the disk");
        Ok(())
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
