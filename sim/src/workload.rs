//! The client host: a seeded workload of PUTs (new keys and overwrites, inline and
//! erasure-coded sizes), DELETEs and GETs from several concurrent workers over one object
//! service, a ledger of what was acknowledged, and the final checks once the network is whole
//! again and healing has had its time: every key reads back a value the history allows, and
//! every shard its record names is whole on its node.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use baobab::codec::checksum::Checksums;
use baobab::meta::request::CreateBucket;
use baobab::meta::{Command, ObjectData, ObjectRecord};
use baobab::object::{DataExpectations, ObjectError, ObjectService, WriteSpec};
use baobab::rpc::RpcClient;
use baobab::shard::{verify_shard, ShardCheck};
use baobab::types::{BucketId, NodeId, VersionId, INLINE_THRESHOLD_BYTES};
use bytes::Bytes;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use tokio::time::Instant;

use crate::check::{KeyHistory, Value, WriteOp};

pub const BUCKET: &str = "sim";
/// The id the workload creates [`BUCKET`] with.
pub const BUCKET_ID: BucketId = BucketId(1);
/// How long the client waits, after the workload, for every record to name all its shards:
/// past the heal worker's longest backoff (10 min), which failed attempts during the faults
/// may have reached. Idle simulated time is cheap.
pub const HEAL_DEADLINE: Duration = Duration::from_secs(11 * 60);
/// Attempts of each final read (metadata may still be electing after the last fault).
const FINAL_READ_ATTEMPTS: u32 = 10;

/// The workload's shape.
#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    pub seed: u64,
    pub workers: usize,
    pub keys: usize,
    /// Workers stop starting operations at this simulated time.
    pub until: Duration,
    /// Percent of PUTs that are erasure-coded (1–3 MiB); the rest are inline (≤ 16 KiB).
    pub large_percent: u32,
    /// Percent of operations that are PUTs, and DELETEs; the rest are GETs.
    pub put_percent: u32,
    pub delete_percent: u32,
}

/// What the client found.
#[derive(Debug, Default, Clone)]
pub struct ClientReport {
    pub violations: Vec<String>,
    pub ops_acked: u64,
    pub ops_failed: u64,
    pub reads_checked: u64,
}

/// State shared by the workers (one client task, so `Rc`).
struct Shared {
    svc: ObjectService,
    /// For the final check of shard files on their nodes.
    rpc: RpcClient,
    start: Instant,
    histories: RefCell<Vec<KeyHistory>>,
    report: RefCell<ClientReport>,
    next_op: Cell<u64>,
    leader: Rc<Cell<Option<NodeId>>>,
}

impl Shared {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn violation(&self, msg: String) {
        tracing::error!(target: "baobab_sim", "{msg}");
        self.report.borrow_mut().violations.push(msg);
    }

    fn note_leader(&self) {
        self.leader.set(self.svc.meta.cached_leader());
    }
}

fn key_name(key: usize) -> String {
    format!("key-{key:02}")
}

/// The bytes of a PUT, from its content seed (regenerated, never kept).
fn content(content_seed: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    StdRng::seed_from_u64(content_seed).fill_bytes(&mut buf);
    buf
}

/// Runs the workload, waits for healing, checks; the report is left in `out`.
pub async fn run_client(
    svc: ObjectService,
    rpc: RpcClient,
    spec: WorkloadSpec,
    leader: Rc<Cell<Option<NodeId>>>,
    out: Rc<RefCell<Option<ClientReport>>>,
) -> turmoil::Result {
    let shared = Rc::new(Shared {
        svc,
        rpc,
        start: Instant::now(),
        histories: RefCell::new(vec![KeyHistory::default(); spec.keys]),
        report: RefCell::new(ClientReport::default()),
        next_op: Cell::new(1),
        leader,
    });
    create_bucket(&shared).await?;
    let workers = (0..spec.workers).map(|w| worker(shared.clone(), spec.clone(), w));
    futures::future::join_all(workers).await;
    wait_for_healing(&shared, &spec).await;
    final_checks(&shared, &spec).await;
    *out.borrow_mut() = Some(shared.report.borrow().clone());
    Ok(())
}

async fn create_bucket(shared: &Shared) -> turmoil::Result {
    let deadline = Duration::from_secs(60);
    loop {
        let cmd = Command::CreateBucket(CreateBucket {
            name: BUCKET.to_string(),
            id: BUCKET_ID,
            owner: "sim".to_string(),
            created_ms: 0,
        });
        match shared.svc.meta.write(cmd).await {
            Ok(_) => return Ok(()),
            Err(e) if shared.now() < deadline => {
                tracing::debug!(target: "baobab_sim", error = %e, "bucket not created yet");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(format!("the bucket could not be created: {e}").into()),
        }
    }
}

async fn worker(shared: Rc<Shared>, spec: WorkloadSpec, index: usize) {
    let mut rng =
        StdRng::seed_from_u64(spec.seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    while shared.now() < spec.until {
        let key = rng.random_range(0..spec.keys);
        let roll = rng.random_range(0..100u32);
        if roll < spec.put_percent {
            let large = rng.random_range(0..100) < spec.large_percent;
            let len = if large {
                rng.random_range(1024 * 1024..=3 * 1024 * 1024)
            } else {
                rng.random_range(0..=INLINE_THRESHOLD_BYTES as usize)
            };
            put(&shared, key, rng.random(), len).await;
        } else if roll < spec.put_percent + spec.delete_percent {
            delete(&shared, key).await;
        } else {
            get(&shared, key).await;
        }
        shared.note_leader();
        let think_ms = rng.random_range(0..300);
        tokio::time::sleep(Duration::from_millis(think_ms)).await;
    }
}

/// Registers a write before it is sent; returns its index in the key's history.
fn begin_write(shared: &Shared, key: usize, value: Value) -> (u64, usize) {
    let id = shared.next_op.get();
    shared.next_op.set(id + 1);
    let mut histories = shared.histories.borrow_mut();
    let writes = &mut histories[key].writes;
    writes.push(WriteOp {
        id,
        value,
        invoked: shared.now(),
        acked: None,
    });
    (id, writes.len() - 1)
}

fn end_write<T>(shared: &Shared, key: usize, slot: usize, result: Result<T, ObjectError>) {
    let now = shared.now();
    let mut report = shared.report.borrow_mut();
    match result {
        Ok(_) => {
            shared.histories.borrow_mut()[key].writes[slot].acked = Some(now);
            report.ops_acked += 1;
        }
        Err(e) => {
            tracing::debug!(target: "baobab_sim", key, error = %e, "write failed");
            report.ops_failed += 1;
        }
    }
}

async fn put(shared: &Shared, key: usize, content_seed: u64, len: usize) {
    let body = content(content_seed, len);
    let value = Value::Data {
        len: len as u64,
        hash: *blake3::hash(&body).as_bytes(),
    };
    let (id, slot) = begin_write(shared, key, value);
    tracing::debug!(target: "baobab_sim", op = id, key, len, "put");
    let body = Bytes::from(body);
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..len.div_ceil(64 * 1024))
        .map(|i| Ok(body.slice(i * 64 * 1024..((i + 1) * 64 * 1024).min(len))))
        .collect();
    let spec = WriteSpec {
        bucket: BUCKET_ID,
        key: key_name(key),
        headers: Default::default(),
        condition: None,
    };
    let expect = DataExpectations {
        content_length: Some(len as u64),
        content_md5: None,
        checksums: Default::default(),
        max_size: u64::MAX,
    };
    let result = shared
        .svc
        .put(
            spec,
            futures::stream::iter(chunks),
            expect,
            Checksums::default,
        )
        .await;
    end_write(shared, key, slot, result);
}

async fn delete(shared: &Shared, key: usize) {
    let (id, slot) = begin_write(shared, key, Value::Absent);
    tracing::debug!(target: "baobab_sim", op = id, key, "delete");
    let result = shared.svc.delete(BUCKET_ID, &key_name(key)).await;
    end_write(shared, key, slot, result);
}

/// A read's outcome: a value, or an error that says nothing about the data (unavailable).
enum Read {
    Value(Value, Option<ObjectRecord>),
    Unavailable(String),
}

async fn read(shared: &Shared, key: usize) -> Read {
    let name = key_name(key);
    let record = match shared.svc.head(BUCKET_ID, &name).await {
        Ok(r) => r,
        Err(ObjectError::NoSuchKey) => return Read::Value(Value::Absent, None),
        Err(e) => return Read::Unavailable(e.to_string()),
    };
    let mut stream = shared.svc.read(BUCKET_ID, &name, &record, 0, record.size);
    let mut hasher = blake3::Hasher::new();
    let mut len = 0u64;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(b) => {
                len += b.len() as u64;
                hasher.update(&b);
            }
            Err(e) => {
                return Read::Unavailable(format!("version {:?}: {e}", record.version));
            }
        }
    }
    let value = Value::Data {
        len,
        hash: *hasher.finalize().as_bytes(),
    };
    Read::Value(value, Some(record))
}

async fn get(shared: &Shared, key: usize) {
    let invoked = shared.now();
    let Read::Value(value, _) = read(shared, key).await else {
        return;
    };
    let answered = shared.now();
    shared.report.borrow_mut().reads_checked += 1;
    let allowed = shared.histories.borrow()[key].allowed(invoked, answered);
    if !allowed.contains(&value) {
        shared.violation(format!(
            "GET {} over {invoked:?}..{answered:?} returned {value} ({}); allowed: {}",
            key_name(key),
            shared.histories.borrow()[key].describe(&value),
            list(&allowed)
        ));
    }
}

fn list(values: &[Value]) -> String {
    values
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The shards a record does not name (a degraded write not healed yet).
fn missing_shards(record: &ObjectRecord) -> usize {
    match &record.data {
        ObjectData::Sharded { shard_nodes, .. } => {
            shard_nodes.iter().filter(|n| n.is_none()).count()
        }
        _ => 0,
    }
}

/// Waits until every key's record names all its shards (or the deadline passes).
async fn wait_for_healing(shared: &Shared, spec: &WorkloadSpec) {
    let deadline = shared.now() + HEAL_DEADLINE;
    while shared.now() < deadline {
        let mut healed = true;
        for key in 0..spec.keys {
            match shared.svc.head(BUCKET_ID, &key_name(key)).await {
                Ok(record) if missing_shards(&record) > 0 => healed = false,
                Ok(_) | Err(ObjectError::NoSuchKey) => {}
                Err(_) => healed = false,
            }
        }
        if healed {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn final_checks(shared: &Shared, spec: &WorkloadSpec) {
    let end = Duration::MAX;
    for key in 0..spec.keys {
        let mut last_error = String::new();
        let mut outcome = None;
        for _ in 0..FINAL_READ_ATTEMPTS {
            match read(shared, key).await {
                Read::Value(v, record) => {
                    outcome = Some((v, record));
                    break;
                }
                Read::Unavailable(e) => last_error = e,
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let Some((value, record)) = outcome else {
            shared.violation(format!(
                "{} cannot be read after the faults ended and healing ran: {last_error}",
                key_name(key)
            ));
            continue;
        };
        shared.report.borrow_mut().reads_checked += 1;
        let allowed = shared.histories.borrow()[key].allowed(end, end);
        if !allowed.contains(&value) {
            shared.violation(format!(
                "{} holds {value} ({}) at the end; allowed: {}",
                key_name(key),
                shared.histories.borrow()[key].describe(&value),
                list(&allowed)
            ));
        }
        if let Some(record) = record {
            let missing = missing_shards(&record);
            if missing > 0 {
                shared.violation(format!(
                    "{} (version {:?}) still misses {missing} shard(s) {:?} after healing",
                    key_name(key),
                    record.version,
                    HEAL_DEADLINE
                ));
            }
            check_shard_files(shared, key, &record).await;
        }
    }
}

/// One shard a record names: (the version naming its file, the piece's size, index, node, the
/// digest the record holds for it).
type ShardHome = (
    VersionId,
    u64,
    u8,
    NodeId,
    Option<baobab::codec::shard_format::ShardDigest>,
);

/// Every shard `record` names, parts expanded.
fn shard_homes(record: &ObjectRecord) -> Vec<ShardHome> {
    let pieces: Vec<(VersionId, u64, &ObjectData)> = match &record.data {
        ObjectData::Parts(parts) => parts.iter().map(|p| (p.version, p.size, &p.data)).collect(),
        data => vec![(record.version, record.size, data)],
    };
    let mut homes = Vec::new();
    for (version, size, data) in pieces {
        if let ObjectData::Sharded {
            shard_nodes,
            digests,
            ..
        } = data
        {
            for (i, node) in shard_nodes.iter().enumerate() {
                if let Some(node) = node {
                    homes.push((version, size, i as u8, *node, digests.get(i)));
                }
            }
        }
    }
    homes
}

/// Every shard the final record names must be on its node and whole (the node's own
/// verification: header, length, every block's BLAKE3). A committed shard that a crash tore
/// or lost, and that healing did not rebuild, is a violation.
async fn check_shard_files(shared: &Shared, key: usize, record: &ObjectRecord) {
    for (version, size, index, node, digest) in shard_homes(record) {
        let mut outcome = Err(String::new());
        for _ in 0..FINAL_READ_ATTEMPTS {
            match verify_shard(&shared.rpc, node, version, index, size, digest).await {
                Ok(check) => {
                    outcome = Ok(check);
                    break;
                }
                Err(e) => outcome = Err(e.to_string()),
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let problem = match outcome {
            Ok(ShardCheck::Intact { .. }) => continue,
            Ok(ShardCheck::Missing) => "is missing".to_string(),
            Ok(ShardCheck::Corrupt { reason }) => format!("is corrupt ({reason})"),
            Err(e) => format!("could not be verified: {e}"),
        };
        shared.violation(format!(
            "{} (version {version:?}): shard {index} on node {} {problem} after healing",
            key_name(key),
            node.0
        ));
    }
}
