"""The S3 request id reaches the storage nodes: every RPC a gateway makes for a request carries
the id the client got in x-amz-request-id, and the nodes log their work for it in a span that
names it (shard writes, the metadata commit, shard reads)."""

import re
import time

import pytest

from conftest import LocalCluster, free_port_block, check_logs

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def traced_cluster(workdir):
    c = LocalCluster(workdir / "traced", free_port_block(),
                     {"RUST_LOG": "info,openraft=off,s3s=off,h2=warn,hyper=warn,"
                                  "baobab::rpc::server=debug"}).start()
    yield c
    c.stop()
    check_logs(c)


def nodes_naming(cluster, request_id, timeout=10):
    """Storage nodes whose log names `request_id` in an rpc span (waits for log flushes)."""
    pattern = re.compile(rf"rpc\{{request_id={re.escape(request_id)}\b")
    deadline = time.time() + timeout
    while True:
        found = {n for n in (1, 2, 3)
                 if pattern.search((cluster.dir / f"node{n}.log").read_text(errors="replace"))}
        if len(found) == 3 or time.time() > deadline:
            return found
        time.sleep(0.2)


def test_request_ids_reach_the_nodes(traced_cluster):
    s3 = traced_cluster.client()
    s3.create_bucket(Bucket="traced")
    put = s3.put_object(Bucket="traced", Key="k", Body=b"t" * MiB)
    put_id = put["ResponseMetadata"]["RequestId"]
    assert re.fullmatch(r"[0-9A-F]{16}", put_id), put_id
    # 2+1 over three nodes: every node took a shard of the PUT.
    assert nodes_naming(traced_cluster, put_id) == {1, 2, 3}

    got = s3.get_object(Bucket="traced", Key="k")
    assert got["Body"].read() == b"t" * MiB
    get_id = got["ResponseMetadata"]["RequestId"]
    assert get_id != put_id
    # The read took two data shards (and its metadata from the leader): at least two nodes.
    assert len(nodes_naming(traced_cluster, get_id)) >= 2

    # Raft traffic between nodes serves no S3 request: its spans name none.
    for n in (1, 2, 3):
        text = (traced_cluster.dir / f"node{n}.log").read_text(errors="replace")
        assert re.search(r"rpc\{identity=node \d\}", text), f"node {n} logged no Raft rpc"
    s3.delete_object(Bucket="traced", Key="k")
    s3.delete_bucket(Bucket="traced")
