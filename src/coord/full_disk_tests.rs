//! The write path against storage nodes out of space: real shard stores behind the real RPC on
//! loopback, each reading its free space from a fake file system the test sets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;

use super::{ClusterView, CoordError, Coordinator};
use crate::meta::ObjectData;
use crate::placement::NodeSlot;
use crate::rpc::cert::ClusterCa;
use crate::rpc::{serve, Identity, RpcClient, RpcHandler, RpcResponse};
use crate::shard::{FsSpace, ShardReserve, ShardRpc, ShardStore};
use crate::types::{ErasureProfile, NodeId, SiteId, VersionId};

const MIB: u64 = 1 << 20;
const RESERVE_BYTES: u64 = 64 * MIB;
const PLENTY_BYTES: u64 = 1 << 40;

struct ShardsOnly(ShardRpc);

#[async_trait::async_trait]
impl RpcHandler for ShardsOnly {
    async fn handle(&self, req: http::Request<hyper::body::Incoming>) -> RpcResponse {
        self.0.handle(req).await
    }
}

/// One storage node's shard store and its fake file system.
struct Node {
    dir: tempfile::TempDir,
    /// Free bytes the file system reports for each of the node's next space checks, then
    /// `available` for the rest.
    script: Arc<std::sync::Mutex<Vec<u64>>>,
    available: Arc<AtomicU64>,
    checks: Arc<AtomicU64>,
    /// Makes every space check fail with an I/O error (a failing disk: not a full one).
    failing: Arc<std::sync::atomic::AtomicBool>,
}

impl Node {
    fn set_full(&self, full: bool) {
        let bytes = if full { 0 } else { PLENTY_BYTES };
        self.available.store(bytes, Ordering::SeqCst);
    }

    fn shard_files(&self) -> usize {
        let shards = self.dir.path().join("shards");
        std::fs::read_dir(shards)
            .map(|dirs| {
                dirs.flatten()
                    .map(|d| std::fs::read_dir(d.path()).map_or(0, |f| f.count()))
                    .sum()
            })
            .unwrap_or(0)
    }
}

/// `n` storage nodes in `n` sites with a `k + m` coordinator over them.
async fn cluster(n: u64, k: u8, m: u8) -> (Coordinator, HashMap<NodeId, Node>) {
    let ca = ClusterCa::generate("full-disk-test").expect("cluster CA");
    let mut nodes = HashMap::new();
    let mut addrs = HashMap::new();
    for i in 1..=n {
        let dir = tempfile::tempdir().expect("tempdir");
        let available = Arc::new(AtomicU64::new(PLENTY_BYTES));
        let checks = Arc::new(AtomicU64::new(0));
        let script = Arc::new(std::sync::Mutex::new(Vec::new()));
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let probe = {
            let (available, checks, script, failing) = (
                available.clone(),
                checks.clone(),
                script.clone(),
                failing.clone(),
            );
            Arc::new(move |_: &std::path::Path| {
                checks.fetch_add(1, Ordering::SeqCst);
                if failing.load(Ordering::SeqCst) {
                    return Err(std::io::Error::other("disk failed"));
                }
                let scripted = script.lock().expect("script lock").pop();
                Ok(FsSpace {
                    total_bytes: PLENTY_BYTES,
                    available_bytes: scripted.unwrap_or(available.load(Ordering::SeqCst)),
                })
            })
        };
        let store =
            ShardStore::open_with_probe(dir.path(), ShardReserve::Bytes(RESERVE_BYTES), probe)
                .expect("open store");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        addrs.insert(
            NodeId(i),
            listener.local_addr().expect("local addr").to_string(),
        );
        let handler = Arc::new(ShardsOnly(ShardRpc::new(
            store,
            crate::shard::DEFAULT_VERIFY_BYTES_PER_SEC,
            NodeId(i),
        )));
        tokio::spawn(serve(
            listener,
            ca.tls(Identity::Node(NodeId(i))).expect("tls"),
            handler,
            std::future::pending(),
        ));
        nodes.insert(
            NodeId(i),
            Node {
                dir,
                script,
                available,
                checks,
                failing,
            },
        );
    }
    let view = ClusterView {
        nodes: (1..=n)
            .map(|i| NodeSlot {
                id: NodeId(i),
                site: SiteId(format!("site-{i}")),
                weight: 100,
            })
            .collect(),
        profile: ErasureProfile { k, m },
        block_size: MIB as u32,
    };
    let coord = Coordinator::new(
        RpcClient::new(ca.tls(Identity::Gateway).expect("tls"), addrs),
        view,
    )
    .expect("coordinator");
    (coord, nodes)
}

fn body(
    len: u64,
) -> (
    Bytes,
    impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Unpin,
) {
    let data = Bytes::from((0..len).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>());
    let chunks: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    (data, futures::stream::iter(chunks))
}

fn shard_nodes(data: &ObjectData) -> Vec<Option<NodeId>> {
    match data {
        ObjectData::Sharded { shard_nodes, .. } => shard_nodes.clone(),
        other => panic!("not sharded: {other:?}"),
    }
}

async fn read_back(coord: &Coordinator, version: VersionId, data: &ObjectData, size: u64) -> Bytes {
    let mut out = Vec::new();
    let mut s = coord.read(version, data, size, 0, size);
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.expect("read"));
    }
    Bytes::from(out)
}

/// A version whose k + m homes include `node`.
fn version_homed_on(coord: &Coordinator, node: NodeId, from: u128) -> VersionId {
    let n = coord.cluster.profile.n_shards();
    (from..)
        .map(VersionId)
        .find(|v| coord.cluster.placement(*v)[..n].contains(&node))
        .expect("some version is placed on every node")
}

#[tokio::test]
async fn a_full_home_moves_its_shard_to_a_fallback_and_is_then_skipped() {
    let (coord, nodes) = cluster(4, 2, 1).await;
    let version = VersionId(1);
    let order = coord.cluster.placement(version);
    let full = order[1];
    nodes[&full].set_full(true);

    let (data, stream) = body(3 * MIB + 5);
    let out = coord.write(version, stream).await.expect("write");
    assert_eq!(
        shard_nodes(&out.data),
        vec![Some(order[0]), Some(order[3]), Some(order[2])],
        "shard 1 on the fallback"
    );
    assert_eq!(read_back(&coord, version, &out.data, out.size).await, data);
    assert!(coord.full_nodes.contains(full));
    assert_eq!(nodes[&full].shard_files(), 0);

    // The next write placed on the full node does not ask it.
    let asked = nodes[&full].checks.load(Ordering::SeqCst);
    let next = version_homed_on(&coord, full, 2);
    let (_, stream) = body(2 * MIB);
    let out = coord.write(next, stream).await.expect("write");
    assert_eq!(shard_nodes(&out.data).iter().flatten().count(), 3);
    assert!(!shard_nodes(&out.data).contains(&Some(full)));
    assert_eq!(nodes[&full].checks.load(Ordering::SeqCst), asked);
}

#[tokio::test]
async fn a_shard_whose_node_fails_moves_to_a_fallback() {
    let (coord, nodes) = cluster(4, 2, 1).await;
    let version = VersionId(11);
    let order = coord.cluster.placement(version);
    let failing = order[0];
    nodes[&failing].failing.store(true, Ordering::SeqCst);
    let (data, stream) = body(3 * MIB + 5);
    let out = coord.write(version, stream).await.expect("write");
    assert_eq!(
        shard_nodes(&out.data),
        vec![Some(order[3]), Some(order[1]), Some(order[2])],
        "shard 0 on the fallback, not left missing"
    );
    assert_eq!(nodes[&failing].shard_files(), 0);
    assert!(
        !coord.full_nodes.contains(failing),
        "a failing disk is not a full one"
    );
    assert_eq!(read_back(&coord, version, &out.data, out.size).await, data);
}

#[tokio::test]
async fn without_a_fallback_a_full_node_makes_a_degraded_write() {
    let (coord, nodes) = cluster(3, 2, 1).await;
    let version = VersionId(7);
    let order = coord.cluster.placement(version);
    nodes[&order[2]].set_full(true);
    let (data, stream) = body(5 * MIB);
    let out = coord.write(version, stream).await.expect("write");
    assert_eq!(
        shard_nodes(&out.data),
        vec![Some(order[0]), Some(order[1]), None]
    );
    assert_eq!(read_back(&coord, version, &out.data, out.size).await, data);
}

#[tokio::test]
async fn fewer_than_k_nodes_with_space_is_storage_full() {
    let (coord, nodes) = cluster(3, 2, 1).await;
    let version = VersionId(9);
    let order = coord.cluster.placement(version);
    nodes[&order[0]].set_full(true);
    nodes[&order[1]].set_full(true);
    // Refused by the nodes, then by the coordinator's memory of them.
    for v in [version, VersionId(10)] {
        let (_, stream) = body(3 * MIB);
        let started = std::time::Instant::now();
        let err = coord.write(v, stream).await.expect_err("refused");
        assert!(
            matches!(err, CoordError::StorageFull { ok: 1, need: 2 }),
            "{err:?}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
    // The one shard that was written is deleted.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while nodes[&order[2]].shard_files() > 0 {
        assert!(std::time::Instant::now() < deadline, "shard left behind");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_node_filling_mid_shard_loses_only_that_shard() {
    let (coord, nodes) = cluster(4, 2, 1).await;
    let version = VersionId(11);
    let order = coord.cluster.placement(version);
    // Room for the first 3 MiB of the shard (the checks before it and at 1, 2 and 3 MiB), then
    // none: by then the gateway has sent more blocks than it keeps to resend.
    let filling = &nodes[&order[1]];
    filling.set_full(true);
    *filling.script.lock().expect("script lock") = vec![PLENTY_BYTES; 4];
    let (data, stream) = body(16 * MIB);
    let out = coord.write(version, stream).await.expect("write");
    assert_eq!(
        shard_nodes(&out.data),
        vec![Some(order[0]), None, Some(order[2])]
    );
    assert_eq!(read_back(&coord, version, &out.data, out.size).await, data);
    assert!(coord.full_nodes.contains(order[1]));
    assert_eq!(filling.shard_files(), 0, "temp file left behind");
}
