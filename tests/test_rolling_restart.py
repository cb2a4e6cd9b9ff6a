"""Availability under faults (issue 10), with the multi-process cluster: a storage node restarted
after SIGKILL is back within 2 s (it follows the leader and the gateway sends it shards at once),
and a rolling restart of every storage node, 5 s apart, costs S3 clients no error and loses no
acknowledged write.

Degraded writes need healing: in a 3-node 2+1 cluster a PUT made while a node is down keeps
only k = 2 shards, so while a *second* node is down such an object is readable only if healing
rebuilt its third shard after the first node came back. The rolling restart writes such objects
on purpose during each outage and reads them during the later outages of the other nodes (the
probes, asserted with ASSERT_DEGRADED_READS); the client load leaves its own possibly degraded
objects out of its reads, so its errors say nothing about healing.
"""

import hashlib
import os
import random
import subprocess
import threading
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from conftest import MiB, LocalCluster, check_logs, free_port_block

# A restarted node must follow the leader, and get shards from the gateway, this soon after its
# process starts.
REJOIN_S = 2.0
# Spacing between the restarts of two nodes, once the first is back.
SPACING_S = 5.0
# How long a node stays down before its restart.
DOWN_S = 0.5
# A node is taken as in use by the gateway again this long after it follows the leader (the
# gateway probes a node it marked as not answering every 500 ms).
RESUME_SLACK_S = 1.0
# Objects up to this size live in their metadata record: no shards, never degraded.
INLINE_MAX = 16 * 1024
# Bounds on the load: client threads, operations per thread, pause between operations.
WORKERS = 3
MAX_OPS_PER_WORKER = 1500
PAUSE_S = 0.03
KEYS_PER_WORKER = 12
# Operations slower than this are reported.
SLOW_S = 0.5
# Bound on a PUT or GET that must not wait on a node (every coordinator timeout is >= 2 s).
WAIT_BOUND_S = 1.0
# Bound on a whole rolling restart (three nodes, each down, back, then the spacing).
ROLLING_DEADLINE_S = 60
# Objects the rolling restart writes during each outage (degraded writes).
PROBES_PER_OUTAGE = 2
# Objects written while one node was out must be readable while another is out: healing (the
# repair worker) rebuilt their missing shard within SPACING_S of the node's return. Builds
# without healing fail this (measured: every such read fails, 6 of 6); turn it off to run them.
ASSERT_DEGRADED_READS = True


def no_retry_client(cluster):
    """boto3 that never retries: every error the gateway gives reaches the test."""
    return boto3.client(
        "s3", endpoint_url=cluster.endpoint, aws_access_key_id=cluster.key,
        aws_secret_access_key=cluster.secret, region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                      connect_timeout=5, read_timeout=30))


def node_following(status, n):
    """Whether node `n` answers and names the leader the other reachable nodes name."""
    nodes = {x["id"]: x for x in status.get("nodes", [])}
    me = nodes.get(n, {})
    if not me.get("reachable") or not me.get("leader"):
        return False
    others = [x.get("leader") for i, x in nodes.items() if i != n and x.get("reachable")]
    return bool(others) and all(o == me["leader"] for o in others)


def wait_following(cluster, n, since, timeout):
    """Seconds from `since` until node `n` follows the leader; None if not within `timeout`."""
    while time.time() < since + timeout:
        if node_following(cluster.status(), n):
            return time.time() - since
        time.sleep(0.05)
    return None


def wait_leader(cluster, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        leader = cluster.status().get("leader")
        if leader:
            return leader
        time.sleep(0.1)
    raise AssertionError(f"no metadata leader within {timeout} s")


def shard_files(cluster, n):
    return {p for p in (cluster.dir / f"node{n}" / "shards").rglob("*") if p.is_file()}


def sha(body):
    return hashlib.sha256(body).hexdigest()


def read_sha(s3, bucket, key):
    return sha(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def stop_node(cluster, n, how):
    if how == "kill":
        cluster.kill(n)
    else:
        cluster.script("stop", str(n))  # SIGTERM, and wait for the process to exit


# --- 1. A restarted node rejoins within 2 s ---------------------------------------------------


def kill_and_restart(cluster, s3, victim, tag):
    """SIGKILLs `victim`, writes while it is down (so the gateway marks it as not answering),
    restarts it; returns the time just before its restart."""
    cluster.kill(victim)
    for i in range(3):
        s3.put_object(Bucket="rejoin", Key=f"{tag}/down{i}", Body=os.urandom(MiB + i))
    time.sleep(DOWN_S)
    started = time.time()
    cluster.restart(victim)
    return started


def check_in_use(cluster, s3, victim, started, before):
    """At `started` + REJOIN_S, with every node up, a PUT puts a shard on `victim` and GETs are
    as fast as usual. Returns (PUT seconds, GET seconds)."""
    time.sleep(max(0.0, started + REJOIN_S - time.time()))
    files = shard_files(cluster, victim)
    t = time.time()
    s3.put_object(Bucket="rejoin", Key=f"n{victim}/after", Body=os.urandom(2 * MiB + 3))
    put_s = time.time() - t
    assert shard_files(cluster, victim) - files, \
        f"a PUT {REJOIN_S} s after node {victim} restarted put no shard on it"
    t = time.time()
    for _ in range(3):
        assert s3.get_object(Bucket="rejoin", Key="before")["Body"].read() == before
    get_s = (time.time() - t) / 3
    assert put_s < WAIT_BOUND_S and get_s < WAIT_BOUND_S, f"PUT {put_s:.2f} s, GET {get_s:.2f} s"
    return put_s, get_s


def check_votes(cluster, s3, victim, leader):
    """With the third node down, metadata commits need `victim`'s acknowledgement: it really
    follows (its `status` alone shows the leader of the vote it persisted before the kill).
    Returns the seconds a PUT and a GET took."""
    third = next(n for n in (1, 2, 3) if n not in (victim, leader))
    cluster.kill(third)
    try:
        t = time.time()
        s3.put_object(Bucket="rejoin", Key=f"n{victim}/quorum", Body=b"needs the restarted node")
        assert s3.get_object(Bucket="rejoin", Key=f"n{victim}/quorum")["Body"].read() == \
            b"needs the restarted node"
        took = time.time() - t
        assert took < REJOIN_S, f"a commit needing node {victim} took {took:.2f} s"
    finally:
        cluster.restart(third)
    assert wait_following(cluster, third, time.time(), timeout=10) is not None
    return took


def test_restarted_node_rejoins_within_2s(workdir):
    """A follower, then the leader: kill -9, restart, and within 2 s of the restart the node
    follows the leader, a PUT puts a shard on it, and GETs do not wait on it."""
    cluster = LocalCluster(workdir / "rejoin", free_port_block()).start()
    try:
        s3 = no_retry_client(cluster)
        s3.create_bucket(Bucket="rejoin")
        before = os.urandom(2 * MiB + 1)
        s3.put_object(Bucket="rejoin", Key="before", Body=before)
        leader = wait_leader(cluster)
        follower = next(n for n in (1, 2, 3) if n != leader)
        for role, victim in (("follower", follower), ("leader", leader)):
            started = kill_and_restart(cluster, s3, victim, role)
            followed_in = wait_following(cluster, victim, started, timeout=10)
            assert followed_in is not None and followed_in <= REJOIN_S, \
                f"restarted {role} node {victim} followed the leader after {followed_in} s: {cluster.status()}"
            put_s, get_s = check_in_use(cluster, s3, victim, started, before)
            quorum_s = check_votes(cluster, s3, victim, wait_leader(cluster))
            print(f"{role} node {victim}: follows after {followed_in:.2f} s; PUT {put_s:.2f} s, "
                  f"GET {get_s:.2f} s; PUT + GET needing its vote {quorum_s:.2f} s")
    finally:
        cluster.stop()
    check_logs(cluster)


# --- 2. A rolling restart costs clients nothing -----------------------------------------------


class Mismatch(Exception):
    """A GET answered other bytes than the acknowledged write."""


class Outages:
    """When each node was out: from just before it was stopped until RESUME_SLACK_S after it
    followed the leader again. A PUT overlapping an outage may have kept only k shards."""

    def __init__(self):
        self.lock = threading.Lock()
        self.spans = []  # [node, start, end or None while out]

    def begin(self, node):
        with self.lock:
            self.spans.append([node, time.time(), None])
            return len(self.spans) - 1

    def end(self, i):
        with self.lock:
            self.spans[i][2] = time.time() + RESUME_SLACK_S

    def overlap(self, start, end):
        with self.lock:
            return any(s <= end and (e is None or e >= start) for _, s, e in self.spans)


class Ledger:
    """What one client thread knows it has written: key -> (SHA-256 of the acknowledged body,
    whether it may be a degraded write), or None once a DELETE was acknowledged. Keys whose
    last operation failed are uncertain."""

    def __init__(self):
        self.acked = {}
        self.uncertain = set()

    def present(self):
        return [k for k, v in self.acked.items() if v is not None and k not in self.uncertain]

    def readable(self):
        """Keys a GET may read while a node is out: deleted, or not written during an outage."""
        return [k for k, v in self.acked.items() if k not in self.uncertain and (v is None or not v[1])]


class Load:
    """A steady, bounded mix of PUT (4 KiB and 1-3 MiB), GET and DELETE from WORKERS boto3
    threads (no retries) and one aws-cli thread; every error is recorded with its time."""

    def __init__(self, cluster, bucket, outages, seed):
        self.cluster = cluster
        self.bucket = bucket
        self.outages = outages
        self.seed = seed
        self.stop = threading.Event()
        self.errors = []
        self.slow = []  # (start time, worker, op, seconds) of operations slower than SLOW_S
        self.ops = 0
        self.lock = threading.Lock()
        self.ledgers = [Ledger() for _ in range(WORKERS + 1)]
        self.threads = [threading.Thread(target=self.worker, args=(i,)) for i in range(WORKERS)]
        self.threads.append(threading.Thread(target=self.cli_worker, args=(WORKERS,)))

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self, timeout=60):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=timeout)
        assert not any(t.is_alive() for t in self.threads), "a client thread did not stop"

    def record_error(self, worker, op, key, error):
        with self.lock:
            self.errors.append((round(time.time(), 2), worker, op, key, str(error)[:300]))

    def count(self, worker, op, started):
        took = time.time() - started
        with self.lock:
            self.ops += 1
            if took > SLOW_S:
                self.slow.append((round(started, 2), worker, op, round(took, 2)))

    def worker(self, i):
        rng = random.Random(self.seed * 100 + i)
        s3 = no_retry_client(self.cluster)
        ledger = self.ledgers[i]
        for _ in range(MAX_OPS_PER_WORKER):
            if self.stop.is_set():
                return
            r = rng.random()
            present, readable = ledger.present(), ledger.readable()
            if r < 0.45 or not present:
                op, key = "put", f"w{i}/k{rng.randrange(KEYS_PER_WORKER)}"
            elif r < 0.85 and readable:
                op, key = "get", rng.choice(readable)
            else:
                op, key = "delete", rng.choice(present)
            started = time.time()
            try:
                getattr(self, op)(s3, ledger, key, rng)
            except (ClientError, BotoCoreError, Mismatch) as e:
                self.record_error(i, op, key, e)
            self.count(i, op, started)
            time.sleep(PAUSE_S)

    def put(self, s3, ledger, key, rng):
        size = 4096 if rng.random() < 0.6 else rng.randint(MiB, 3 * MiB)
        body = os.urandom(size)
        ledger.uncertain.add(key)
        started = time.time()
        s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        degraded = size > INLINE_MAX and self.outages.overlap(started, time.time())
        ledger.acked[key] = (sha(body), degraded)
        ledger.uncertain.discard(key)

    def get(self, s3, ledger, key, _rng):
        want = ledger.acked[key]
        try:
            got = read_sha(s3, self.bucket, key)
        except ClientError as e:
            if want is None and e.response["Error"]["Code"] == "NoSuchKey":
                return
            raise
        if want is None or got != want[0]:
            raise Mismatch(f"read other bytes than acknowledged ({want})")

    def delete(self, s3, ledger, key, _rng):
        ledger.uncertain.add(key)
        s3.delete_object(Bucket=self.bucket, Key=key)
        ledger.acked[key] = None
        ledger.uncertain.discard(key)

    def cli_worker(self, i):
        """aws-cli (no retries): put-object then get-object of a 1 MiB+ file, every second. The
        GET follows its PUT within about a second, before the next outage can start."""
        env = self.cluster.client_env()
        env.update(AWS_MAX_ATTEMPTS="1", AWS_RETRY_MODE="standard")
        ledger = self.ledgers[i]
        tmp = self.cluster.dir / "cli"
        tmp.mkdir(exist_ok=True)
        for n in range(200):
            if self.stop.wait(1.0):
                return
            key = f"cli/k{n % 4}"
            body = os.urandom(MiB + n)
            (tmp / "up").write_bytes(body)
            ledger.uncertain.add(key)
            started = time.time()
            for op, args in (("put", ["put-object", "--body", str(tmp / "up")]),
                             ("get", ["get-object", str(tmp / "down")])):
                p = subprocess.run(["aws", "s3api", args[0], "--bucket", self.bucket, "--key", key,
                                    *args[1:]], env=env, capture_output=True, text=True, timeout=60)
                if p.returncode != 0:
                    self.record_error("cli", op, key, p.stderr.strip())
                    break
                if op == "put":
                    ledger.acked[key] = (sha(body), self.outages.overlap(started, time.time()))
                    ledger.uncertain.discard(key)
                elif sha((tmp / "down").read_bytes()) != ledger.acked[key][0]:
                    self.record_error("cli", op, key, "read other bytes than acknowledged")
            self.count("cli", "put+get", started)


class Probes:
    """Objects the rolling restart writes during each outage (degraded writes) and reads during
    the later outages of other nodes."""

    def __init__(self, cluster, bucket):
        self.s3 = no_retry_client(cluster)
        self.bucket = bucket
        self.written = {}  # key -> (node that was out, SHA-256)
        self.reads = 0
        self.failed = []

    def write(self, out):
        for i in range(PROBES_PER_OUTAGE):
            body = os.urandom(MiB + 512 * 1024 + i)
            key = f"probe/n{out}/{i}"
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
            self.written[key] = (out, sha(body))

    def read_others(self, out):
        for key, (written_while, want) in list(self.written.items()):
            if written_while == out:
                continue
            self.reads += 1
            try:
                assert read_sha(self.s3, self.bucket, key) == want, key
            except (ClientError, BotoCoreError) as e:
                self.failed.append((key, f"node {out} out", str(e)[:200]))


def rolling_restart(cluster, how, outages, probes):
    """Stops and restarts nodes 1, 2, 3 in turn, each back (following the leader) before the
    next waits SPACING_S. While a node is out, writes the probes and reads the older ones.
    Returns what happened, per node."""
    deadline = time.time() + ROLLING_DEADLINE_S
    events = []
    for n in (1, 2, 3):
        leader = cluster.status().get("leader")
        span = outages.begin(n)
        stop_node(cluster, n, how)
        out_at = time.time()
        probes.write(n)
        probes.read_others(n)
        time.sleep(max(0.0, out_at + DOWN_S - time.time()))
        started = time.time()
        cluster.restart(n)
        back_in = wait_following(cluster, n, started, timeout=max(1.0, deadline - time.time()))
        assert back_in is not None, f"node {n} did not follow the leader again: {cluster.status()}"
        outages.end(span)
        events.append({"node": n, "was_leader": n == leader, "out_s": round(started - out_at, 2),
                       "back_in_s": round(back_in, 2)})
        time.sleep(SPACING_S)
    return events


def verify(cluster, load, probes):
    """With every node up, every acknowledged write reads back as acknowledged and every
    acknowledged DELETE is gone. Returns the number of keys checked."""
    s3 = cluster.client(read_timeout=60)
    expected = {k: v[1] for k, v in probes.written.items()}
    for ledger in load.ledgers:
        expected.update({k: v and v[0] for k, v in ledger.acked.items() if k not in ledger.uncertain})
    for key, want in expected.items():
        try:
            got = read_sha(s3, load.bucket, key)
        except ClientError as e:
            assert want is None and e.response["Error"]["Code"] == "NoSuchKey", (key, e)
            got = None
        assert got == want, f"{key}: acknowledged {want}, reads back {got}"
    return len(expected)


@pytest.mark.parametrize("how", ["kill", "term"])
def test_rolling_restart_zero_client_errors(workdir, how):
    """SIGKILL (or SIGTERM) and restart nodes 1, 2, 3 in turn, 5 s apart, under a steady client
    load without retries: no client error, and everything acknowledged reads back."""
    cluster = LocalCluster(workdir / f"rolling-{how}", free_port_block()).start()
    # The gateway logs a GET it cannot finish; expected only for the degraded probes.
    cluster.allow_errors(r"path=/rolling/probe/\S*\}: object read failed")
    try:
        cluster.client().create_bucket(Bucket="rolling")
        wait_leader(cluster)
        outages = Outages()
        probes = Probes(cluster, "rolling")
        load = Load(cluster, "rolling", outages, seed=1 if how == "kill" else 2)
        load.start()
        try:
            time.sleep(2)
            events = rolling_restart(cluster, how, outages, probes)
        finally:
            load.finish()
        for n in (1, 2, 3):
            assert wait_following(cluster, n, time.time(), timeout=10) is not None
        checked = verify(cluster, load, probes)
        print(f"rolling restart ({how}): {events}; {load.ops} operations, {len(load.errors)} errors, "
              f"{checked} keys verified; degraded reads: {len(probes.failed)} of {probes.reads} failed")
        for e in load.errors + probes.failed:
            print("   error", e)
        for e in load.slow:
            print("   slow", e)
        assert load.ops > 100, load.ops
        assert not load.errors, f"{len(load.errors)} client errors during a rolling restart ({how}): " \
                                f"{load.errors[:10]}; restarts: {events}"
        if ASSERT_DEGRADED_READS:
            assert not probes.failed, probes.failed
    finally:
        cluster.stop()
    check_logs(cluster)
