"""Erasure coding is real: a 2+1 object's shards are spread over the three nodes (about half the
object on each), a flipped byte in a shard is detected, logged and repaired on read, and small
objects stay inline."""

from pathlib import Path

import pytest

from conftest import MiB, LocalCluster, check_logs, free_port_block, random_bytes


@pytest.fixture(scope="module")
def cluster(workdir):
    c = LocalCluster(workdir / "erasure", free_port_block()).start()
    yield c
    c.stop()
    check_logs(c)


def shard_files(cluster):
    files = {}
    for n in (1, 2, 3):
        root = cluster.dir / f"node{n}" / "shards"
        files[n] = {p: p.stat().st_size for p in root.rglob("*") if p.is_file()} if root.exists() else {}
    return files


def test_100mib_object_is_spread_as_shards(cluster):
    s3 = cluster.client()
    s3.create_bucket(Bucket="ecbig")
    before = shard_files(cluster)
    data = random_bytes(100 * MiB)
    s3.put_object(Bucket="ecbig", Key="big", Body=data)
    after = shard_files(cluster)
    for n in (1, 2, 3):
        new = {p: size for p, size in after[n].items() if p not in before[n]}
        total = sum(new.values())
        assert len(new) == 1, f"node {n}: {new}"
        assert 45 * MiB <= total <= 60 * MiB, f"node {n} holds {total / MiB:.1f} MiB of shards"

    # Flip one byte of the data of block 50 (the middle of the object) in the new file of data
    # shard 0 (files are named `<version>.<shard index>`; a GET reads data shards, parity only
    # when it must, so a flipped parity byte is found by scrubbing, not by reads). Layout, 2+1
    # and 1 MiB blocks: a 64-byte header, then per block 512 KiB of shard and its 32-byte
    # BLAKE3. (A flipped hash byte would make the file's hashes differ from the digest its
    # record holds: the node refuses the whole file, which is rebuilt the same way.)
    new_files = [p for n in (1, 2, 3) for p in after[n] if p not in before[n]]
    target = next(p for p in new_files if p.suffix == ".0")
    with open(target, "r+b") as f:
        f.seek(64 + 50 * (MiB // 2 + 32) + 1000)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0xFF]))
    assert s3.get_object(Bucket="ecbig", Key="big")["Body"].read() == data
    log = (cluster.dir / "gateway.log").read_text()
    assert "corrupt" in log

    # A range inside the corrupt block is rebuilt too.
    mid = len(data) // 2
    got = s3.get_object(Bucket="ecbig", Key="big", Range=f"bytes={mid - 1000}-{mid + 1000}")["Body"].read()
    assert got == data[mid - 1000 : mid + 1001]

    s3.delete_object(Bucket="ecbig", Key="big")


def test_small_objects_are_inline(cluster):
    s3 = cluster.client()
    s3.create_bucket(Bucket="inline")
    before = shard_files(cluster)
    s3.put_object(Bucket="inline", Key="small", Body=random_bytes(10 * 1024))
    after = shard_files(cluster)
    for n in (1, 2, 3):
        assert not set(after[n]) - set(before[n]), f"node {n} got shard files for an inline object"


def test_overwrite_and_delete_free_shards(cluster):
    import time

    s3 = cluster.client()
    s3.create_bucket(Bucket="gcbucket")
    before = shard_files(cluster)
    s3.put_object(Bucket="gcbucket", Key="k", Body=random_bytes(4 * MiB))
    s3.put_object(Bucket="gcbucket", Key="k", Body=random_bytes(2 * MiB))
    s3.delete_object(Bucket="gcbucket", Key="k")
    # Retired shards are kept RETIRED_DATA_GRACE_SECS for reads in flight, then removed.
    deadline = time.time() + 20
    while time.time() < deadline:
        after = shard_files(cluster)
        if all(set(after[n]) <= set(before[n]) for n in (1, 2, 3)):
            break
        time.sleep(0.2)
    for n in (1, 2, 3):
        leftover = set(after[n]) - set(before[n])
        assert not leftover, f"node {n} kept {leftover}"


def test_retired_data_is_freed_after_a_restart(cluster):
    """The data an overwrite unlinks is queued for retirement in the metadata itself: stopping
    every process within the grace period (a retire timer held in memory would be lost) still
    frees it after the restart, and only it."""
    import time

    s3 = cluster.client()
    s3.create_bucket(Bucket="retire-restart")
    before = shard_files(cluster)
    s3.put_object(Bucket="retire-restart", Key="k", Body=random_bytes(4 * MiB))
    first = shard_files(cluster)
    v1 = {n: set(first[n]) - set(before[n]) for n in (1, 2, 3)}
    new = random_bytes(2 * MiB)
    s3.put_object(Bucket="retire-restart", Key="k", Body=new)
    second = shard_files(cluster)
    v2 = {n: set(second[n]) - set(first[n]) for n in (1, 2, 3)}
    assert all(v1[n] and v2[n] for n in (1, 2, 3))
    cluster.stop()
    cluster.start()
    deadline = time.time() + 30
    while time.time() < deadline:
        now = shard_files(cluster)
        if not any(v1[n] & set(now[n]) for n in (1, 2, 3)):
            break
        time.sleep(0.3)
    now = shard_files(cluster)
    for n in (1, 2, 3):
        assert not v1[n] & set(now[n]), f"node {n} kept the replaced version's shards"
        assert v2[n] <= set(now[n]), f"node {n} lost the current version's shards"
    s3 = cluster.client()
    assert s3.get_object(Bucket="retire-restart", Key="k")["Body"].read() == new
    s3.delete_object(Bucket="retire-restart", Key="k")
    s3.delete_bucket(Bucket="retire-restart")


def test_read_in_flight_survives_overwrite_and_delete(cluster):
    """A GET that started before an overwrite and a delete streams the old bytes to the end:
    the replaced version's shards outlive the replacement by the grace period. (Found by
    baobab-bench's mixed workload: such GETs failed mid-body with missing shards.)"""
    s3 = cluster.client()
    s3.create_bucket(Bucket="inflight")
    old = random_bytes(64 * MiB)
    s3.put_object(Bucket="inflight", Key="k", Body=old)
    resp = s3.get_object(Bucket="inflight", Key="k")
    body = resp["Body"]
    head = body.read(1 * MiB)
    s3.put_object(Bucket="inflight", Key="k", Body=random_bytes(2 * MiB))
    s3.delete_object(Bucket="inflight", Key="k")
    rest = body.read()
    got = head + rest
    assert len(got) == len(old)
    assert got == old


def test_slow_read_outlives_the_retire_grace(cluster):
    """A GET that streams for longer than the retire grace after an overwrite and a delete
    still gets every byte: the retire worker keeps a shard that was read within the read
    lease. (Before read leases, the shards were deleted RETIRED_DATA_GRACE_SECS after the
    overwrite and such a GET failed mid-body.)"""
    import time

    s3 = cluster.client()
    s3.create_bucket(Bucket="slowread")
    old = random_bytes(64 * MiB)
    s3.put_object(Bucket="slowread", Key="k", Body=old)
    body = s3.get_object(Bucket="slowread", Key="k")["Body"]
    got = [body.read(MiB)]
    s3.put_object(Bucket="slowread", Key="k", Body=random_bytes(2 * MiB))
    s3.delete_object(Bucket="slowread", Key="k")
    started = time.time()
    while True:
        chunk = body.read(MiB)
        if not chunk:
            break
        got.append(chunk)
        time.sleep(0.15)
    took = time.time() - started
    assert took > 3 * 2, f"the read was not slow enough to outlive the grace ({took:.1f} s)"
    assert b"".join(got) == old
    s3.delete_bucket(Bucket="slowread")
