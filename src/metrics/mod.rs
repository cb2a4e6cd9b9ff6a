//! Process metrics in the Prometheus (OpenMetrics) text format, served on `/metrics` by
//! [`serve`]. One registry per process ([`global`]); each layer records through the handles
//! here, labelled by what it is (a storage node's id, an S3 operation), so `baobab dev`, which
//! runs three nodes in one process, still tells them apart.
//!
//! What is measured:
//! - the S3 gateway: requests by operation and status, their latency by operation, and every
//!   answer the listener sends by status (auth failures and POST object included);
//! - each metadata group a node holds (`group` is "0" until the ring has partitions): the
//!   latency of a Raft commit at the leader (one group-commit entry), apply lag, term, leader
//!   changes, whether this node leads, metadata writes by outcome, and reads with the
//!   leadership checks (quorum rounds) they shared;
//! - each node's shard store: operations by kind and outcome, bytes in and out, the disk's
//!   size and free space; and the process's shard-file fsync latency.

mod serve;

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub use serve::{serve, MetricsServer, CONTENT_TYPE};

use crate::types::NodeId;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpStatusLabels {
    pub op: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    pub node: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub node: u64,
    pub group: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupResultLabels {
    pub node: u64,
    pub group: u32,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardOpLabels {
    pub node: u64,
    pub op: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    pub node: u64,
    pub direction: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets from 100 µs to ~105 s (doubling).
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 21))
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    s3_requests: Family<OpStatusLabels, Counter>,
    s3_duration: HistogramFamily<OpLabels>,
    http_responses: Family<StatusLabels, Counter>,
    raft_commit: HistogramFamily<GroupLabels>,
    raft_apply_lag: Family<GroupLabels, Gauge>,
    raft_term: Family<GroupLabels, Gauge>,
    raft_leader: Family<GroupLabels, Gauge>,
    raft_leader_changes: Family<GroupLabels, Counter>,
    meta_writes: Family<GroupResultLabels, Counter>,
    meta_reads: Family<GroupLabels, Counter>,
    meta_read_checks: Family<GroupLabels, Counter>,
    shard_ops: Family<ShardOpLabels, Counter>,
    shard_bytes: Family<DirectionLabels, Counter>,
    shard_disk_total: Family<NodeLabels, Gauge>,
    shard_disk_free: Family<NodeLabels, Gauge>,
    shard_fsync: Histogram,
}

/// The process's metrics (created on first use).
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("baobab");
        let m = Metrics {
            s3_requests: Family::default(),
            s3_duration: Family::new_with_constructor(latency_histogram),
            http_responses: Family::default(),
            raft_commit: Family::new_with_constructor(latency_histogram),
            raft_apply_lag: Family::default(),
            raft_term: Family::default(),
            raft_leader: Family::default(),
            raft_leader_changes: Family::default(),
            meta_writes: Family::default(),
            meta_reads: Family::default(),
            meta_read_checks: Family::default(),
            shard_ops: Family::default(),
            shard_bytes: Family::default(),
            shard_disk_total: Family::default(),
            shard_disk_free: Family::default(),
            shard_fsync: latency_histogram(),
            registry: Registry::default(),
        };
        registry.register(
            "s3_requests",
            "S3 requests served, by operation and HTTP status",
            m.s3_requests.clone(),
        );
        registry.register(
            "s3_request_duration_seconds",
            "Time to answer an S3 request (to the head of the answer), by operation",
            m.s3_duration.clone(),
        );
        registry.register(
            "s3_http_responses",
            "Every answer of the S3 listener, by HTTP status (authentication failures included)",
            m.http_responses.clone(),
        );
        registry.register(
            "raft_commit_duration_seconds",
            "Time for the leader to commit and apply one metadata log entry (a group commit)",
            m.raft_commit.clone(),
        );
        registry.register(
            "raft_apply_lag_entries",
            "Log entries this replica holds but has not applied yet",
            m.raft_apply_lag.clone(),
        );
        registry.register(
            "raft_term",
            "The replica's current Raft term",
            m.raft_term.clone(),
        );
        registry.register(
            "raft_is_leader",
            "1 while this replica leads its group",
            m.raft_leader.clone(),
        );
        registry.register(
            "raft_leader_changes",
            "Times this replica saw its group's leader change",
            m.raft_leader_changes.clone(),
        );
        registry.register(
            "meta_writes",
            "Metadata writes proposed by this replica as leader, by outcome",
            m.meta_writes.clone(),
        );
        registry.register(
            "meta_reads",
            "Linearizable metadata reads served by this replica as leader",
            m.meta_reads.clone(),
        );
        registry.register(
            "meta_read_checks",
            "Leadership checks (quorum rounds) run for reads; concurrent reads share one",
            m.meta_read_checks.clone(),
        );
        registry.register(
            "shard_ops",
            "Shard store operations served, by kind and outcome",
            m.shard_ops.clone(),
        );
        registry.register(
            "shard_bytes",
            "Shard bytes written to (in) and read from (out) the store",
            m.shard_bytes.clone(),
        );
        registry.register(
            "shard_disk_size_bytes",
            "Size of the file system holding the shard store",
            m.shard_disk_total.clone(),
        );
        registry.register(
            "shard_disk_free_bytes",
            "Free space on the file system holding the shard store",
            m.shard_disk_free.clone(),
        );
        registry.register(
            "shard_fsync_duration_seconds",
            "Time to make one shard file's data durable (fdatasync)",
            m.shard_fsync.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// One S3 operation answered with `status` after `took`.
    pub fn s3_request(&self, op: &'static str, status: u16, took: Duration) {
        self.s3_requests
            .get_or_create(&OpStatusLabels { op, status })
            .inc();
        self.s3_duration
            .get_or_create(&OpLabels { op })
            .observe(took.as_secs_f64());
    }

    /// One answer of the S3 listener.
    pub fn http_response(&self, status: u16) {
        self.http_responses
            .get_or_create(&StatusLabels { status })
            .inc();
    }

    /// The handles of one metadata group's replica on `node`.
    pub fn group(&self, node: NodeId, group: u32) -> GroupMetrics {
        let l = GroupLabels {
            node: node.0,
            group,
        };
        let writes = |result| {
            self.meta_writes
                .get_or_create(&GroupResultLabels {
                    node: node.0,
                    group,
                    result,
                })
                .clone()
        };
        GroupMetrics {
            commit: self.raft_commit.get_or_create(&l).clone(),
            apply_lag: self.raft_apply_lag.get_or_create(&l).clone(),
            term: self.raft_term.get_or_create(&l).clone(),
            leader: self.raft_leader.get_or_create(&l).clone(),
            leader_changes: self.raft_leader_changes.get_or_create(&l).clone(),
            reads: self.meta_reads.get_or_create(&l).clone(),
            read_checks: self.meta_read_checks.get_or_create(&l).clone(),
            writes_ok: writes("ok"),
            writes_not_leader: writes("not_leader"),
            writes_failed: writes("failed"),
        }
    }

    /// The handles of one node's shard store.
    pub fn shards(&self, node: NodeId) -> ShardMetrics {
        let op = |op, result| {
            self.shard_ops
                .get_or_create(&ShardOpLabels {
                    node: node.0,
                    op,
                    result,
                })
                .clone()
        };
        let bytes = |direction| {
            self.shard_bytes
                .get_or_create(&DirectionLabels {
                    node: node.0,
                    direction,
                })
                .clone()
        };
        let l = NodeLabels { node: node.0 };
        ShardMetrics {
            put_ok: op("put", "ok"),
            put_error: op("put", "error"),
            get_ok: op("get", "ok"),
            get_error: op("get", "error"),
            delete_ok: op("delete", "ok"),
            delete_error: op("delete", "error"),
            verify_ok: op("verify", "ok"),
            verify_error: op("verify", "error"),
            bytes_in: bytes("in"),
            bytes_out: bytes("out"),
            disk_total: self.shard_disk_total.get_or_create(&l).clone(),
            disk_free: self.shard_disk_free.get_or_create(&l).clone(),
        }
    }

    /// One shard file's fdatasync took `took`.
    pub fn shard_fsync(&self, took: Duration) {
        self.shard_fsync.observe(took.as_secs_f64());
    }
}

/// A metadata replica's handles (cheap clones of shared cells).
#[derive(Clone)]
pub struct GroupMetrics {
    pub commit: Histogram,
    pub apply_lag: Gauge,
    pub term: Gauge,
    pub leader: Gauge,
    pub leader_changes: Counter,
    pub reads: Counter,
    pub read_checks: Counter,
    pub writes_ok: Counter,
    pub writes_not_leader: Counter,
    pub writes_failed: Counter,
}

/// A shard store's handles.
#[derive(Clone)]
pub struct ShardMetrics {
    pub put_ok: Counter,
    pub put_error: Counter,
    pub get_ok: Counter,
    pub get_error: Counter,
    pub delete_ok: Counter,
    pub delete_error: Counter,
    pub verify_ok: Counter,
    pub verify_error: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub disk_total: Gauge,
    pub disk_free: Gauge,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_exposed_with_its_labels() {
        let m = Metrics::new();
        m.s3_request("PutObject", 200, Duration::from_millis(3));
        m.http_response(403);
        let g = m.group(NodeId(2), 0);
        g.commit.observe(0.004);
        g.leader.set(1);
        let s = m.shards(NodeId(2));
        s.put_ok.inc();
        s.bytes_in.inc_by(4096);
        m.shard_fsync(Duration::from_millis(1));
        let text = m.encode();
        for line in [
            "baobab_s3_requests_total{op=\"PutObject\",status=\"200\"} 1",
            "baobab_s3_http_responses_total{status=\"403\"} 1",
            "baobab_raft_is_leader{node=\"2\",group=\"0\"} 1",
            "baobab_shard_ops_total{node=\"2\",op=\"put\",result=\"ok\"} 1",
            "baobab_shard_bytes_total{node=\"2\",direction=\"in\"} 4096",
            "baobab_shard_fsync_duration_seconds_count 1",
            "baobab_raft_commit_duration_seconds_count{node=\"2\",group=\"0\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
