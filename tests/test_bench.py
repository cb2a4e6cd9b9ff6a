"""baobab-bench, the load generator, against a real `baobab dev`: every workload runs, counts
what it did, reports errors by kind, cleans up, and compares two endpoints."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, unique_bucket

BENCH = str(Path(BIN).parent / "baobab-bench")


def bench(cluster, *args, bucket, check_rc=(0,)):
    env = cluster.client_env()
    cmd = [BENCH, *args, "--bucket", bucket, "--json", "--warmup", "0s"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode in check_rc, f"{cmd} exited {proc.returncode}: {proc.stderr[-2000:]}"
    return json.loads(proc.stdout), proc.returncode


def keys_in(s3, bucket):
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_put_get_mixed_delete_list(dev_cluster):
    s3 = dev_cluster.client()
    b = unique_bucket("bench")
    r, _ = bench(dev_cluster, "put", "--size", "4KiB", "-c", "8", "--ops", "200", "--keys", "50", bucket=b)
    s = r["results"][0]["summary"]
    assert s["ops"] == 200 and s["errors"] == {}
    assert abs(s["mib_per_sec"] * s["seconds"] - 200 * 4096 / 2**20) < 0.01
    assert 0 < s["latency_ms"]["p50"] <= s["latency_ms"]["p99"] <= s["latency_ms"]["max"]
    assert s["client_cpu_cores"] > 0
    assert keys_in(s3, b) == [], "put cleans up what it wrote"

    # Large enough to go through the erasure-coded path, with a size range.
    r, _ = bench(dev_cluster, "get", "--size", "100KiB..3MiB", "-c", "4", "--ops", "40", "--keys", "10", "--no-cleanup", bucket=b)
    s = r["results"][0]["summary"]
    assert s["ops"] == 40 and s["errors"] == {}
    sizes = [o["Size"] for o in s3.list_objects_v2(Bucket=b)["Contents"]]
    assert len(sizes) == 10 and all(100 * 1024 <= n <= 3 * 2**20 for n in sizes)
    assert s["mib_per_sec"] * s["seconds"] * 2**20 >= 40 * 100 * 1024

    r, _ = bench(dev_cluster, "mixed", "--size", "64KiB", "-c", "4", "--ops", "100", "--keys", "10", "--no-prepare", "--no-cleanup", bucket=b)
    assert r["results"][0]["summary"]["ops"] == 100
    assert r["results"][0]["summary"]["errors"] == {}

    r, _ = bench(dev_cluster, "delete", "--size", "0", "-c", "4", "--keys", "30", "--prefix", "del/", bucket=b)
    s = r["results"][0]["summary"]
    assert s["ops"] == 30 and s["errors"] == {}
    assert not [k for k in keys_in(s3, b) if k.startswith("del/")]

    r, _ = bench(dev_cluster, "list", "--size", "0", "-c", "1", "--keys", "250", "--page-size", "100", "--ops", "9", "--prefix", "ls/", bucket=b)
    s = r["results"][0]["summary"]
    # Three walks of 100 + 100 + 50 keys.
    assert s["ops"] == 9 and s["items_per_sec"] * s["seconds"] == pytest.approx(750)


def test_errors_are_counted_by_kind(dev_cluster):
    # Parts under 5 MiB (but the last) are refused at completion: every operation fails, visibly.
    b = unique_bucket("bench")
    r, rc = bench(dev_cluster, "multipart", "--size", "1MiB", "--part-size", "512KiB", "-c", "2", "--ops", "4", "--keys", "2", bucket=b, check_rc=(2,))
    s = r["results"][0]["summary"]
    assert rc == 2
    assert s["ops"] == 0
    assert s["errors"] == {"http_400_EntityTooSmall": 4}


def test_multipart_workload(dev_cluster):
    b = unique_bucket("bench")
    r, _ = bench(dev_cluster, "multipart", "--size", "11MiB", "--part-size", "5MiB", "-c", "2", "--ops", "4", "--keys", "2", bucket=b)
    s = r["results"][0]["summary"]
    assert s["ops"] == 4 and s["errors"] == {}
    assert abs(s["mib_per_sec"] * s["seconds"] - 4 * 11) < 0.01


def test_compare_alternates_two_endpoints(dev_cluster):
    b = unique_bucket("bench")
    r, _ = bench(dev_cluster, "put", "--size", "8KiB", "-c", "4", "--ops", "80", "--keys", "20", "--rounds", "2",
                 "--compare", dev_cluster.endpoint, "--compare-bucket", b + "-b", bucket=b)
    a, bb = r["results"]
    assert (a["label"], bb["label"]) == ("A", "B")
    assert a["summary"]["ops"] == 80 and bb["summary"]["ops"] == 80
    ratio = r["ratio_b_over_a"]
    assert ratio["ops_per_sec"] == pytest.approx(bb["summary"]["ops_per_sec"] / a["summary"]["ops_per_sec"])


def test_bad_arguments_are_refused(dev_cluster):
    env = dev_cluster.client_env()
    for args in (["put", "--size", "4 parsecs"], ["put", "--concurrency", "0"], ["teleport"]):
        proc = subprocess.run([BENCH, *args], env=env, capture_output=True, text=True, timeout=30)
        assert proc.returncode != 0 and proc.stderr, args
