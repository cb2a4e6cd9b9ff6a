"""The garbage collector of unreferenced shard files and the sweep of abandoned temp files, on a
local cluster whose collector runs every 2 s on shards older than 5 s: an orphan shard file
(planted, 1 h old) and a stale temp file go; a fresh temp file, every shard of every object and
of an upload in progress stay, and everything reads back."""

import os
import re
import shutil
import time
import uuid

import pytest

from conftest import MiB, LocalCluster, check_logs, free_port_block, random_bytes

GC_INTERVAL_SECS = 2
GC_MIN_AGE_SECS = 5
HOUR = 3600


@pytest.fixture(scope="module")
def cluster(workdir):
    c = LocalCluster(workdir / "gc", free_port_block())
    # Read when the config files are first written, i.e. by this start.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BAOBAB_GC_INTERVAL_SECS", str(GC_INTERVAL_SECS))
        mp.setenv("BAOBAB_GC_MIN_AGE_SECS", str(GC_MIN_AGE_SECS))
        c.start()
    yield c
    c.stop()
    check_logs(c)


def shards_dir(cluster, n):
    return cluster.dir / f"node{n}" / "shards"


def files(cluster):
    """Every file under the three shard stores, temp files included."""
    out = set()
    for n in (1, 2, 3):
        root = shards_dir(cluster, n)
        if root.exists():
            out |= {p for p in root.rglob("*") if p.is_file()}
    return out


def plant(cluster, n, name, age_secs, source=None):
    """A file named `name` in node n's store (in its directory), modified `age_secs` ago."""
    path = shards_dir(cluster, n) / name[:2] / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if source is None:
        path.write_bytes(b"partial shard bytes")
    else:
        shutil.copyfile(source, path)
    t = time.time() - age_secs
    os.utime(path, (t, t))
    return path


def gc_rounds(cluster):
    """(scanned, deleted, kept) of every round logged by any storage node so far."""
    rounds = []
    for n in (1, 2, 3):
        text = (cluster.dir / f"node{n}.log").read_text(errors="replace")
        for line in text.splitlines():
            if "garbage collection round done" in line:
                fields = dict(re.findall(r"(\w+)=(\d+)", line))
                rounds.append((int(fields["scanned"]), int(fields["deleted"]), int(fields["kept"])))
    return rounds


def test_orphans_and_stale_temp_files_go_referenced_shards_stay(cluster):
    s3 = cluster.client()
    s3.create_bucket(Bucket="gc-test")
    before = files(cluster)
    objects = {
        "big": random_bytes(3 * MiB),
        "medium": random_bytes(100 * 1024),
        "small": random_bytes(1024),  # inline: no shard files
    }
    for key, body in objects.items():
        s3.put_object(Bucket="gc-test", Key=key, Body=body)
    part1 = random_bytes(5 * MiB)
    upload = s3.create_multipart_upload(Bucket="gc-test", Key="multi")["UploadId"]
    etag1 = s3.upload_part(Bucket="gc-test", Key="multi", UploadId=upload, PartNumber=1, Body=part1)["ETag"]
    written_at = time.time()
    referenced = files(cluster) - before
    # 2+1: big and medium have 3 shard files each, and so does the part.
    assert len(referenced) == 9, sorted(p.name for p in referenced)

    # An orphan: a real shard file under a version no record names, an hour old. Temp files of
    # a write cut off an hour ago, and of one in progress now.
    source = next(p for p in referenced if p.is_relative_to(shards_dir(cluster, 1)))
    orphan_version = uuid.uuid4().hex
    orphan = plant(cluster, 1, f"{orphan_version}.0", HOUR, source=source)
    stale_tmp = plant(cluster, 1, f"{uuid.uuid4().hex}.1.{os.urandom(8).hex()}.tmp", 2 * HOUR)
    fresh_tmp = plant(cluster, 2, f"{uuid.uuid4().hex}.0.{os.urandom(8).hex()}.tmp", 0)

    # Until the collector has run after the referenced shards passed the minimum age, and the
    # orphan and the stale temp file are gone.
    deadline = time.time() + 30
    while True:
        old_enough = time.time() > written_at + GC_MIN_AGE_SECS + 2 * GC_INTERVAL_SECS + 1
        looked_at_all = any(scanned >= len(referenced) for scanned, _, _ in gc_rounds(cluster))
        if old_enough and looked_at_all and not orphan.exists() and not stale_tmp.exists():
            break
        assert time.time() < deadline, (
            f"after 30 s: orphan exists {orphan.exists()}, stale temp exists {stale_tmp.exists()}, "
            f"rounds (scanned, deleted, kept) {gc_rounds(cluster)[-6:]}"
        )
        time.sleep(0.5)

    # Nothing a record names was deleted, and the fresh temp file stays.
    now = files(cluster)
    missing = referenced - now
    assert not missing, f"the collector deleted referenced shards: {sorted(p.name for p in missing)}"
    assert fresh_tmp.exists(), "a fresh temp file was swept"
    assert any(kept >= len(referenced) for _, _, kept in gc_rounds(cluster)), gc_rounds(cluster)
    assert sum(deleted for _, deleted, _ in gc_rounds(cluster)) == 1, gc_rounds(cluster)

    for key, body in objects.items():
        assert s3.get_object(Bucket="gc-test", Key=key)["Body"].read() == body, key
    parts = s3.list_parts(Bucket="gc-test", Key="multi", UploadId=upload)["Parts"]
    assert [(p["PartNumber"], p["ETag"]) for p in parts] == [(1, etag1)]
    s3.complete_multipart_upload(
        Bucket="gc-test",
        Key="multi",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag1}]},
    )
    assert s3.get_object(Bucket="gc-test", Key="multi")["Body"].read() == part1
