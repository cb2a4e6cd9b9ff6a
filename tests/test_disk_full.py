"""A storage node whose disk fills: node 2 of the multi-process cluster keeps its data on a small
tmpfs. It refuses shards before its metadata reserve is reached, the gateway skips it (degraded
writes; 507 XMinioStorageFull when fewer than k nodes have space), metadata keeps committing
through node 2 (so the cluster keeps its majority when another node dies), and once objects are
deleted and retired node 2 takes shards again. Needs root (mount); skipped otherwise."""

import os
import subprocess
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import (BIN, LOCAL_CLUSTER, RETIRED_DATA_GRACE_SECS, MiB, LocalCluster, check_logs,
                      free_port_block, random_bytes)

FS_BYTES = 320 * MiB
RESERVE_BYTES = 64 * MiB
OBJECT_BYTES = 16 * MiB
# No request may take longer than this: a full node must never make a client wait.
REQUEST_BOUND_SECS = 15
# How long the gateway skips a node that refused a shard (coord::FULL_NODE_SKIP).
FULL_NODE_SKIP_SECS = 10


class SmallDiskCluster(LocalCluster):
    """The local cluster with node 2's data directory on `node2_dir` and a small reserve."""

    def __init__(self, directory, port, node2_dir):
        super().__init__(directory, port)
        self.node2_dir = Path(node2_dir)

    def script(self, *args, check=True):
        env = dict(os.environ, BAOBAB_BIN=BIN,
                   BAOBAB_RETIRED_DATA_GRACE_SECS=str(RETIRED_DATA_GRACE_SECS),
                   BAOBAB_NODE2_DATA_DIR=str(self.node2_dir),
                   BAOBAB_SHARD_RESERVE_BYTES=str(RESERVE_BYTES))
        return subprocess.run([LOCAL_CLUSTER, args[0], str(self.dir), *args[1:]], env=env,
                              check=check, capture_output=True, text=True, timeout=120)

    def node2_free_bytes(self):
        st = os.statvfs(self.node2_dir)
        return st.f_bavail * st.f_frsize

    def node2_shard_files(self):
        root = self.node2_dir / "shards"
        return sum(1 for p in root.rglob("*") if p.is_file() and not p.name.endswith(".tmp"))

    def node2_refusals(self):
        log = self.dir / "node2.log"
        return log.read_text(errors="replace").count("shard refused") if log.exists() else 0


def mount_tmpfs(path, size):
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)


@pytest.fixture
def cluster(workdir):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small file system for one node's data")
    mnt = workdir / "disk-full-mnt"
    mounted = mount_tmpfs(mnt, FS_BYTES)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        c = SmallDiskCluster(workdir / "disk-full", free_port_block(), mnt / "node2").start()
        try:
            yield c
        finally:
            c.stop()
        check_logs(c)
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
        if os.path.ismount(mnt):
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def client(cluster):
    """One attempt per request, each bounded: a hang fails the test instead of retrying."""
    return boto3.client(
        "s3", endpoint_url=cluster.endpoint, aws_access_key_id=cluster.key,
        aws_secret_access_key=cluster.secret, region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                      connect_timeout=5, read_timeout=REQUEST_BOUND_SECS))


def timed_put(s3, bucket, key, body):
    """PUT; returns None or the S3 error code. Fails if it took too long."""
    started = time.time()
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        code = None
    except ClientError as e:
        code = e.response["Error"]["Code"]
        assert code == "XMinioStorageFull", e.response
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 507
    elapsed = time.time() - started
    assert elapsed < REQUEST_BOUND_SECS, f"PUT {key} took {elapsed:.1f} s"
    return code


def node_status(cluster, node_id):
    return next(n for n in cluster.status()["nodes"] if n["id"] == node_id)


def wait_until(what, check, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout} s: {what}")


def test_full_node_refuses_shards_and_keeps_metadata(cluster):
    s3 = client(cluster)
    s3.create_bucket(Bucket="big")
    body = random_bytes(OBJECT_BYTES)

    # Fill node 2 (it holds a third of each object: 8 MiB) until it refuses shards; each PUT
    # either succeeds (degraded once node 2 is full) or is refused fast with 507.
    big = []
    for i in range(FS_BYTES // (OBJECT_BYTES // 2) + 4):
        key = f"fill/{i}"
        if timed_put(s3, "big", key, body) is None:
            big.append(key)
        if cluster.node2_refusals() > 0:
            break
    assert cluster.node2_refusals() > 0, "node 2 never refused a shard"
    # Later writes skip node 2 without a new refusal and still succeed (k shards).
    for i in range(3):
        key = f"after/{i}"
        assert timed_put(s3, "big", key, body) is None
        big.append(key)
    free = cluster.node2_free_bytes()
    assert free >= RESERVE_BYTES // 2, f"shards ate into the reserve: {free} bytes free"
    assert s3.get_object(Bucket="big", Key=big[-1])["Body"].read() == body

    # Metadata keeps committing on node 2: inline PUTs and bucket creation.
    s3.create_bucket(Bucket="meta-after-full")
    for i in range(20):
        s3.put_object(Bucket="meta-after-full", Key=f"small/{i}", Body=bytes([i]) * 1024)
    assert s3.get_object(Bucket="meta-after-full", Key="small/7")["Body"].read() == bytes([7]) * 1024
    status = cluster.status()
    leader = status["leader"]
    node2 = node_status(cluster, 2)
    assert node2["reachable"] and node2["leader"] == leader and "raft_fatal" not in node2, status

    # Node 2 is needed for a majority once another follower dies: metadata still commits; big
    # PUTs, with one node left that has space, fail fast with 507.
    victim = next(n for n in (1, 3) if n != leader)
    cluster.kill(victim)
    try:
        started = time.time()
        s3.put_object(Bucket="meta-after-full", Key="small/while-down", Body=b"x" * 1024)
        assert time.time() - started < REQUEST_BOUND_SECS
        assert timed_put(s3, "big", "refused", body) == "XMinioStorageFull"
    finally:
        cluster.restart(victim)
    wait_until(f"node {victim} answers", lambda: node_status(cluster, victim)["reachable"], 30)
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket="big", Key="refused")
    assert missing.value.response["Error"]["Code"] in ("404", "NoSuchKey")

    # Deleted objects are retired after the grace; node 2 then takes shards again.
    for key in big:
        s3.delete_object(Bucket="big", Key=key)
    wait_until("node 2's space is freed",
               lambda: cluster.node2_free_bytes() > RESERVE_BYTES + 2 * OBJECT_BYTES, 30)
    shards_before = cluster.node2_shard_files()
    stored_again = False
    deadline = time.time() + FULL_NODE_SKIP_SECS + 10
    i = 0
    while time.time() < deadline and not stored_again:
        assert timed_put(s3, "big", f"again/{i}", body) is None
        i += 1
        stored_again = cluster.node2_shard_files() > shards_before
        time.sleep(0.5)
    assert stored_again, "node 2 took no shard after space was freed"
    status = cluster.status()
    assert all(n["reachable"] and "raft_fatal" not in n for n in status["nodes"]), status
