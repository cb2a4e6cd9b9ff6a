"""Healing and scrub on a local cluster (2+1 over three nodes), checked from outside: shard files
deleted and corrupted behind the cluster's back, writes accepted while a node was down. The
repair report (`baobab repair status --json`) must say what is damaged for as long as it is,
and count a shard healed only once it is really back: the file is on its node again,
byte-identical to the shard it replaces (erasure coding is deterministic), and the data
survives the loss of another node."""

import json
import os
import subprocess
import time

import pytest
from botocore.exceptions import ClientError

from conftest import BIN, MiB, LocalCluster, check_logs, free_port_block, random_bytes

SCRUB_INTERVAL_SECS = 2


def start_cluster(workdir, name, **env):
    c = LocalCluster(workdir / name, free_port_block())
    # Read when the config files are first written, i.e. by this start.
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, str(v))
        c.start()
    return c


@pytest.fixture(scope="module")
def cluster(workdir):
    c = start_cluster(workdir, "repair")
    yield c
    c.stop()
    check_logs(c)


@pytest.fixture(scope="module")
def scrub_cluster(workdir):
    c = start_cluster(workdir, "scrub", BAOBAB_SCRUB_INTERVAL_SECS=SCRUB_INTERVAL_SECS)
    yield c
    c.stop()
    check_logs(c)


def repair_status(cluster):
    out = subprocess.run(
        [BIN, "repair", "status", "--json", "--config", str(cluster.admin_config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def shard_files(cluster):
    """{(version, index): (node, path)} of every committed shard file."""
    out = {}
    for n in (1, 2, 3):
        root = cluster.dir / f"node{n}" / "shards"
        for p in root.rglob("*.[0-9]"):
            version, index = p.name.split(".")
            out[(version, int(index))] = (n, p)
    return out


def put_and_find_shards(cluster, s3, bucket, key, body):
    """PUTs an object; its version id and {index: (node, path)} of its shard files."""
    before = set(shard_files(cluster))
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    new = {k: v for k, v in shard_files(cluster).items() if k not in before}
    versions = {v for v, _ in new}
    assert len(versions) == 1, new
    version = versions.pop()
    shards = {i: where for (v, i), where in new.items() if v == version}
    assert sorted(shards) == [0, 1, 2], f"not written whole: {shards}"
    return version, shards


def wait_for(what, check, timeout):
    deadline = time.time() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.time() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.5)


def wait_status(cluster, what, holds, timeout):
    """The first repair report for which `holds(report)` is true, polled until `timeout`."""
    return wait_for(what, lambda: (lambda s: s if holds(s) else None)(repair_status(cluster)), timeout)


def wait_one_shard_healed(cluster, base):
    """Waits for the repair report to count a heal since `base`: exactly one shard, nothing
    left queued."""
    st = wait_status(
        cluster,
        "the heal reported",
        lambda s: s["healed"]["shards"] > base["healed"]["shards"],
        30,
    )
    assert st["healed"]["shards"] - base["healed"]["shards"] == 1, st
    assert st["queue"]["pieces"] == 0, st


def restart(cluster, n):
    """Starts storage node n again and waits until every node answers and a leader is known."""
    cluster.restart(n)

    def all_up():
        st = cluster.status()
        return st.get("leader") and all(node["reachable"] for node in st["nodes"])

    wait_for(f"node {n} back", all_up, 30)
    # The gateway marked the node as not answering while it was down and probes it every
    # 500 ms: until then its writes leave it out (degraded writes).
    time.sleep(1.5)


def test_a_write_accepted_while_a_node_was_down_gets_its_redundancy_back(cluster):
    s3 = cluster.client()
    s3.create_bucket(Bucket="degraded")
    base = repair_status(cluster)
    cluster.kill(3)
    bodies = {f"k{i}": random_bytes(2 * MiB + i) for i in range(3)}
    try:
        for key, body in bodies.items():
            s3.put_object(Bucket="degraded", Key=key, Body=body)
        # Written with two shards: the report names each as a piece with a shard never placed,
        # and nothing was healed (node 3 is the only node left for the third shard).
        time.sleep(3)
        st = repair_status(cluster)
        assert st["queue"]["pieces"] == 3, st
        assert st["queue"]["unplaced"] == 3, st
        assert st["healed"]["shards"] == base["healed"]["shards"], st
        assert all(p["shards"][0]["damage"] == "unplaced" for p in st["pending"]), st
    finally:
        restart(cluster, 3)
    st = wait_status(
        cluster,
        "the three degraded writes healed",
        lambda s: s["queue"]["pieces"] == 0,
        90,
    )
    assert st["healed"]["shards"] - base["healed"]["shards"] == 3, st
    # The third shards are on node 3 now: with node 1 gone, every object still reads back.
    cluster.kill(1)
    try:
        fresh = cluster.client()
        for key, body in bodies.items():
            assert fresh.get_object(Bucket="degraded", Key=key)["Body"].read() == body, key
    finally:
        restart(cluster, 1)


def test_a_read_that_meets_a_missing_shard_queues_it_and_it_is_rebuilt(cluster):
    s3 = cluster.client()
    s3.create_bucket(Bucket="reads")
    body = random_bytes(3 * MiB)
    _, shards = put_and_find_shards(cluster, s3, "reads", "obj", body)
    base = repair_status(cluster)
    # A data shard: the read needs it, finds it gone, reconstructs from parity and reports it.
    node, path = shards[0]
    original = path.read_bytes()
    path.unlink()
    assert s3.get_object(Bucket="reads", Key="obj")["Body"].read() == body
    wait_for("the shard rebuilt", lambda: path.exists(), 30)
    wait_one_shard_healed(cluster, base)
    assert path.read_bytes() == original, "the rebuilt shard differs from the lost one"


def test_a_shard_swapped_for_another_consistent_one_is_detected_and_rebuilt(cluster):
    """A shard file replaced on disk by another valid shard of the same size, its header
    rewritten to name the shard it replaces: every check a file can make of itself passes
    (header, length, each block's BLAKE3). The digest the object record holds for the shard
    finds it out; the GET answers the right bytes from the other shards and the shard is
    rebuilt."""
    s3 = cluster.client()
    s3.create_bucket(Bucket="swapped")
    a, b = os.urandom(3 * MiB), os.urandom(3 * MiB)
    version_a, shards_a = put_and_find_shards(cluster, s3, "swapped", "a", a)
    _, shards_b = put_and_find_shards(cluster, s3, "swapped", "b", b)
    base = repair_status(cluster)
    # A data shard, so the GET needs it.
    path = shards_a[0][1]
    original = path.read_bytes()
    forged = bytearray(shards_b[0][1].read_bytes())
    # Header: magic (8), format (2), k, m, shard index, reserved, block size (4), version id
    # (u128 little-endian) at 18..34.
    forged[18:34] = int(version_a, 16).to_bytes(16, "little")
    assert len(forged) == len(original) and bytes(forged) != original
    path.write_bytes(bytes(forged))

    assert s3.get_object(Bucket="swapped", Key="a")["Body"].read() == a
    wait_for("the swapped shard rebuilt", lambda: path.read_bytes() == original, 30)
    wait_one_shard_healed(cluster, base)
    assert s3.get_object(Bucket="swapped", Key="a")["Body"].read() == a
    assert s3.get_object(Bucket="swapped", Key="b")["Body"].read() == b
    # The node said why it refused the file.
    logs = (cluster.dir / f"node{shards_a[0][0]}.log").read_text()
    assert "does not match its object record" in logs


def test_scrub_finds_deleted_and_corrupted_shards_and_the_report_holds_until_rebuilt(scrub_cluster):
    cluster = scrub_cluster
    s3 = cluster.client()
    s3.create_bucket(Bucket="scrub")
    bodies = {"a": random_bytes(3 * MiB), "b": random_bytes(5 * MiB + 3)}
    found = {key: put_and_find_shards(cluster, s3, "scrub", key, body)[1] for key, body in bodies.items()}
    # Damage two shards on node 2: one file deleted, one with a flipped byte mid-file. Node 1
    # goes down too, so only one intact shard is left of each: nothing can be rebuilt yet.
    victims = []
    for key in ("a", "b"):
        index = next(i for i, (n, _) in found[key].items() if n == 2)
        victims.append(found[key][index][1])
    originals = [p.read_bytes() for p in victims]
    victims[0].unlink()
    corrupted = bytearray(originals[1])
    corrupted[len(corrupted) // 2] ^= 0xFF
    victims[1].write_bytes(bytes(corrupted))
    cluster.kill(1)
    try:
        st = wait_status(
            cluster,
            "the scrub reports one missing and one corrupt shard",
            lambda s: (s["queue"]["shards_missing"], s["queue"]["shards_corrupt"]) == (1, 1),
            60,
        )
        base_healed = st["healed"]["shards"]
        # For as long as they cannot be rebuilt, the report keeps saying so.
        time.sleep(3 * SCRUB_INTERVAL_SECS)
        st = repair_status(cluster)
        assert (st["queue"]["shards_missing"], st["queue"]["shards_corrupt"]) == (1, 1), st
        assert st["healed"]["shards"] == base_healed, st
        assert not victims[0].exists()
        assert victims[1].read_bytes() == bytes(corrupted)
        assert any(p["attempts"] > 0 and p["last_error"] for p in st["pending"]), st
    finally:
        restart(cluster, 1)
    st = wait_status(
        cluster,
        "both shards rebuilt",
        lambda s: s["queue"]["pieces"] == 0,
        90,
    )
    assert st["healed"]["shards"] - base_healed == 2, st
    assert [p.read_bytes() for p in victims] == originals, "rebuilt shards differ from the originals"
    # Later passes verify every shard of both objects (2 x 3 shards) and find nothing bad.
    st = wait_status(
        cluster,
        "a clean scrub pass",
        lambda s: (s["scrub"]["last_pass"] or {}).get("shards_bad") == 0
        and s["scrub"]["last_pass"]["shards_verified"] == 6,
        60,
    )
    assert st["scrub"]["last_pass"]["bytes_verified"] > 4 * MiB, st
    for key, body in bodies.items():
        assert s3.get_object(Bucket="scrub", Key=key)["Body"].read() == body, key


def test_an_object_that_cannot_be_read_gets_a_clean_error_not_a_cut_body(cluster):
    # Two of the three shards gone: no k intact shards anywhere, nothing can rebuild them. The
    # GET must fail before its first byte (an S3 error with a body), not answer 200 and cut the
    # body short; the object stays queued for healing while it exists.
    cluster.allow_errors("data path unavailable")
    s3 = cluster.client()
    s3.create_bucket(Bucket="unreadable")
    _, shards = put_and_find_shards(cluster, s3, "unreadable", "gone", random_bytes(2 * MiB))
    for i in (0, 1):
        shards[i][1].unlink()
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="unreadable", Key="gone")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503, e.value.response
    assert e.value.response["Error"]["Code"] == "SlowDown", e.value.response
    assert e.value.response["ResponseMetadata"]["RequestId"], e.value.response
    st = wait_status(
        cluster,
        "the damage queued",
        lambda s: s["queue"]["shards_missing"] >= 1,
        30,
    )
    assert st["healed"]["shards"] == repair_status(cluster)["healed"]["shards"]
    # Deleting the object ends its queue entry (the heal worker finds no record holding it).
    s3.delete_object(Bucket="unreadable", Key="gone")
    wait_for(
        "the entry dropped",
        lambda: repair_status(cluster)["queue"]["pieces"] == 0,
        60,
    )
