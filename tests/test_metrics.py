"""Prometheus metrics: every process serves /metrics, and a real parser (the Prometheus
project's Python client, OpenMetrics format) reads every family the operators rely on, with
values that follow what the cluster did."""

import urllib.request
import uuid

import pytest
from botocore.exceptions import ClientError
from prometheus_client.openmetrics.parser import text_string_to_metric_families

MiB = 1024 * 1024

# Family names as the parser gives them (counters without their `_total` suffix).
GATEWAY_FAMILIES = {
    "baobab_s3_requests",
    "baobab_s3_request_duration_seconds",
    "baobab_s3_http_responses",
}
NODE_FAMILIES = {
    "baobab_raft_commit_duration_seconds",
    "baobab_raft_apply_lag_entries",
    "baobab_raft_term",
    "baobab_raft_is_leader",
    "baobab_raft_leader_changes",
    "baobab_meta_writes",
    "baobab_meta_reads",
    "baobab_meta_read_checks",
    "baobab_shard_ops",
    "baobab_shard_bytes",
    "baobab_shard_disk_size_bytes",
    "baobab_shard_disk_free_bytes",
    "baobab_shard_fsync_duration_seconds",
}


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("application/openmetrics-text")
        text = r.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(families, family, sample_name, **labels):
    """The value of one sample (0 when the labelled series does not exist yet)."""
    for s in families[family].samples:
        if s.name == sample_name and all(s.labels.get(k) == str(v) for k, v in labels.items()):
            return s.value
    return 0


def total(families, family, sample_name, **labels):
    """The sum over every series matching `labels` (e.g. over nodes)."""
    return sum(
        s.value
        for s in families[family].samples
        if s.name == sample_name and all(s.labels.get(k) == str(v) for k, v in labels.items())
    )


def test_dev_metrics_follow_requests(dev_cluster):
    url = dev_cluster.env["BAOBAB_METRICS_URL"]
    s3 = dev_cluster.client()
    bucket = f"metrics-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    before = scrape(url)
    assert GATEWAY_FAMILIES | NODE_FAMILIES <= set(before), set(before)

    body = b"m" * (3 * MiB)
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"k{i}", Body=body)
    assert s3.get_object(Bucket=bucket, Key="k0")["Body"].read() == body
    with pytest.raises(ClientError):
        s3.get_object(Bucket=bucket, Key="missing")
    stranger = dev_cluster.client_for(dev_cluster.key, "not-the-secret")
    with pytest.raises(ClientError):
        stranger.list_objects_v2(Bucket=bucket)
    after = scrape(url)

    def grew(family, sample, **labels):
        return total(after, family, sample, **labels) - total(before, family, sample, **labels)

    assert grew("baobab_s3_requests", "baobab_s3_requests_total", op="put_object", status=200) == 3
    assert grew("baobab_s3_requests", "baobab_s3_requests_total", op="get_object", status=200) == 1
    assert grew("baobab_s3_requests", "baobab_s3_requests_total", op="get_object", status=404) == 1
    assert grew("baobab_s3_request_duration_seconds", "baobab_s3_request_duration_seconds_count",
                op="put_object") == 3
    # The wrong signature never reaches an operation: only the listener counts it.
    assert grew("baobab_s3_http_responses", "baobab_s3_http_responses_total", status=403) >= 1
    # Three 3 MiB objects at 2+1: 3 shards of 1.5 MiB each (plus headers) per object.
    assert grew("baobab_shard_bytes", "baobab_shard_bytes_total", direction="in") >= 3 * 3 * 1.5 * MiB
    assert grew("baobab_shard_ops", "baobab_shard_ops_total", op="put", result="ok") >= 9
    assert grew("baobab_shard_ops", "baobab_shard_ops_total", op="get", result="ok") >= 2
    assert grew("baobab_shard_fsync_duration_seconds",
                "baobab_shard_fsync_duration_seconds_count") >= 9
    assert grew("baobab_meta_writes", "baobab_meta_writes_total", result="ok") >= 3
    assert grew("baobab_raft_commit_duration_seconds",
                "baobab_raft_commit_duration_seconds_count") >= 1
    # Reads share leadership checks: never more checks than reads.
    reads = total(after, "baobab_meta_reads", "baobab_meta_reads_total")
    checks = total(after, "baobab_meta_read_checks", "baobab_meta_read_checks_total")
    assert grew("baobab_meta_reads", "baobab_meta_reads_total") >= 1
    assert 1 <= checks <= reads

    # One group, three replicas, one leader; all on the same term, none far behind.
    leaders = [s for s in after["baobab_raft_is_leader"].samples if s.value == 1]
    assert len(leaders) == 1, after["baobab_raft_is_leader"].samples
    terms = {s.value for s in after["baobab_raft_term"].samples}
    assert len(terms) == 1 and terms.pop() >= 1
    assert len(after["baobab_raft_apply_lag_entries"].samples) == 3
    for node in (1, 2, 3):
        size = value(after, "baobab_shard_disk_size_bytes", "baobab_shard_disk_size_bytes", node=node)
        free = value(after, "baobab_shard_disk_free_bytes", "baobab_shard_disk_free_bytes", node=node)
        assert 0 < free <= size

    for i in range(3):
        s3.delete_object(Bucket=bucket, Key=f"k{i}")
    s3.delete_bucket(Bucket=bucket)


def test_every_process_of_a_cluster_serves_metrics(local_cluster):
    urls = local_cluster.env["BAOBAB_METRICS_URLS"].strip('"').split()
    assert len(urls) == 4
    s3 = local_cluster.client()
    bucket = f"metrics-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x" * MiB)
    gateway, *nodes = [scrape(u) for u in urls]
    assert GATEWAY_FAMILIES <= set(gateway)
    assert total(gateway, "baobab_s3_requests", "baobab_s3_requests_total", op="put_object",
                 status=200) >= 1
    # A gateway holds no shards and no metadata replica: its node families are empty.
    assert not gateway["baobab_raft_term"].samples
    leaders = 0
    for n, families in enumerate(nodes, start=1):
        assert NODE_FAMILIES <= set(families)
        assert not families["baobab_s3_requests"].samples, "a storage node serves no S3"
        assert value(families, "baobab_raft_term", "baobab_raft_term", node=n, group=0) >= 1
        assert {s.labels["node"] for s in families["baobab_raft_term"].samples} == {str(n)}
        leaders += value(families, "baobab_raft_is_leader", "baobab_raft_is_leader", node=n)
    assert leaders == 1
    # The 1 MiB object went to all three nodes (2+1).
    for families in nodes:
        assert total(families, "baobab_shard_ops", "baobab_shard_ops_total", op="put",
                     result="ok") >= 1
    s3.delete_object(Bucket=bucket, Key="k")
    s3.delete_bucket(Bucket=bucket)


def test_metrics_listener_answers_only_metrics(dev_cluster):
    base = dev_cluster.env["BAOBAB_METRICS_URL"].rsplit("/", 1)[0]
    for path, status in [("/", 404), ("/metrics/x", 404)]:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base + path, timeout=10)
        assert e.value.code == status
    req = urllib.request.Request(base + "/metrics", method="POST", data=b"x")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 405
