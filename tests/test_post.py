"""Browser-form POST uploads (presigned POST with a policy document), through boto3's
generate_presigned_post and the `requests` multipart encoder, against baobab dev."""

import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import MiB, empty_and_delete, unique_bucket


@pytest.fixture
def post_bucket(dev_cluster):
    # SigV4 POST policies (boto3 signs presigned POSTs with SigV2 unless told otherwise).
    s3 = dev_cluster.client(signature_version="s3v4")
    name = unique_bucket("post")
    s3.create_bucket(Bucket=name)
    yield s3, name
    empty_and_delete(s3, name)


def presigned(s3, bucket, key, conditions, fields=None, expires=300):
    return s3.generate_presigned_post(bucket, key, Fields=fields, Conditions=conditions, ExpiresIn=expires)


def error_code(resp):
    text = resp.text
    start = text.find("<Code>")
    return text[start + 6:text.find("</Code>")] if start >= 0 else None


def test_post_with_a_satisfied_policy_stores_the_object(post_bucket):
    s3, bucket = post_bucket
    post = presigned(s3, bucket, "uploads/hello.txt", [["starts-with", "$key", "uploads/"], ["content-length-range", 1, 1000]])
    r = requests.post(post["url"], data=post["fields"], files={"file": ("hello.txt", b"hello post")}, timeout=30)
    assert r.status_code == 204, r.text
    got = s3.get_object(Bucket=bucket, Key="uploads/hello.txt")
    assert got["Body"].read() == b"hello post"

    # success_action_status=201 answers with the PostResponse XML.
    post = presigned(s3, bucket, "uploads/two", [{"success_action_status": "201"}], fields={"success_action_status": "201"})
    r = requests.post(post["url"], data=post["fields"], files={"file": ("x", b"two")}, timeout=30)
    assert r.status_code == 201, r.text
    assert "<Key>uploads/two</Key>" in r.text
    assert s3.get_object(Bucket=bucket, Key="uploads/two")["Body"].read() == b"two"


def test_post_with_a_violated_policy_is_refused(post_bucket):
    s3, bucket = post_bucket
    # The key breaks a starts-with condition.
    post = presigned(s3, bucket, "elsewhere/x", [["starts-with", "$key", "uploads/"]])
    r = requests.post(post["url"], data=post["fields"], files={"file": ("x", b"data")}, timeout=30)
    assert r.status_code == 403, r.text
    assert error_code(r) == "AccessDenied"
    # Larger than content-length-range allows.
    post = presigned(s3, bucket, "uploads/big", [["content-length-range", 1, 10]])
    r = requests.post(post["url"], data=post["fields"], files={"file": ("x", b"x" * 100)}, timeout=30)
    assert r.status_code == 400, r.text
    assert error_code(r) == "EntityTooLarge"
    # A tampered signature.
    post = presigned(s3, bucket, "uploads/sig", [])
    fields = dict(post["fields"])
    fields["x-amz-signature"] = "0" * 64
    r = requests.post(post["url"], data=fields, files={"file": ("x", b"data")}, timeout=30)
    assert r.status_code == 403, r.text
    assert error_code(r) == "SignatureDoesNotMatch"
    # An expired policy.
    post = presigned(s3, bucket, "uploads/late", [], expires=1)
    time.sleep(2)
    r = requests.post(post["url"], data=post["fields"], files={"file": ("x", b"data")}, timeout=30)
    assert r.status_code == 403, r.text
    assert error_code(r) == "AccessDenied"
    for key in ("elsewhere/x", "uploads/big", "uploads/sig", "uploads/late"):
        with pytest.raises(s3.exceptions.ClientError):
            s3.head_object(Bucket=bucket, Key=key)


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def test_unsigned_1gib_post_is_refused_with_bounded_memory(dev_cluster, post_bucket):
    _, bucket = post_bucket
    pid = dev_cluster.proc.pid
    before = rss_kib(pid)
    peak = [before]
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(pid))
            time.sleep(0.02)

    boundary = "baobabboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nbig\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    chunk = b"\0" * MiB

    def body():
        yield head
        for _ in range(1024):
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    t = threading.Thread(target=watch)
    t.start()
    try:
        r = requests.post(f"{dev_cluster.endpoint}/{bucket}", data=body(), timeout=120,
                          headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert r.status_code in (400, 403), r.text
    except requests.exceptions.ConnectionError:
        pass  # The gateway refused and closed the connection while the body was still coming.
    finally:
        stop.set()
        t.join()
    grown_mib = (peak[0] - before) / 1024
    assert grown_mib < 64, f"RSS grew by {grown_mib:.0f} MiB"
    s3 = dev_cluster.client()
    with pytest.raises(s3.exceptions.ClientError):
        s3.head_object(Bucket=bucket, Key="big")
