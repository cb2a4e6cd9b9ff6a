"""Access keys and bucket permissions, on `baobab dev` and on the multi-process cluster: keys and
grants are managed with the `baobab key ...` / `baobab bucket ...` admin commands (JSON output),
and each S3 request is allowed or refused as the grants say (AccessDenied, 403, as S3 does).

The gateway caches permissions for up to 2 s, so a change is polled for (up to 5 s) before its
effect is asserted."""

import re
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import empty_and_delete, unique_bucket

PROPAGATION_SECS = 5.0


def status_of(e):
    return e.response["ResponseMetadata"]["HTTPStatusCode"]


def code_of(e):
    return e.response["Error"]["Code"]


def eventually(check, timeout=PROPAGATION_SECS):
    """Runs `check` until it neither fails an assertion nor raises a ClientError."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, ClientError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def refused(call, code="AccessDenied", status=403):
    """Calls `call`, which must fail with `status` and (when the response has a body) `code`."""
    try:
        call()
    except ClientError as e:
        assert status_of(e) == status, (status_of(e), code_of(e))
        if code is not None:
            assert code_of(e) == code, code_of(e)
        return e
    raise AssertionError(f"expected {status} {code}, the request succeeded")


def bucket_names(client):
    return [b["Name"] for b in client.list_buckets()["Buckets"]]


def create_bucket(client, name):
    """create_bucket, then waits until the creator can use it (its cached permissions may
    predate the bucket)."""
    client.create_bucket(Bucket=name)
    eventually(lambda: client.list_objects_v2(Bucket=name))


def remove_bucket(client, name):
    eventually(lambda: empty_and_delete(client, name))


@pytest.fixture
def keys(cluster):
    """make(label, create_bucket=True) -> (key record, boto3 client); the keys are deleted after
    the test."""
    made = []

    def make(label, create_bucket=True):
        args = ["key", "create", "--name", f"{label}-{uuid.uuid4().hex[:8]}"]
        if create_bucket:
            args.append("--allow-create-bucket")
        record = cluster.admin(*args)
        assert set(record) >= {"access_key_id", "secret_access_key", "name", "allow_create_bucket"}, record
        assert record["allow_create_bucket"] is create_bucket
        made.append(record["access_key_id"])
        client = cluster.client_for(record["access_key_id"], record["secret_access_key"])
        eventually(lambda: client.list_buckets())  # the new key has reached the gateway
        return record, client

    yield make
    for key_id in made:
        try:
            cluster.admin("key", "delete", key_id)
        except RuntimeError:
            pass  # already deleted by the test


def pick(record, *fields):
    return {f: record[f] for f in fields}


def grant_of(info, key_id):
    """The grant of `key_id` in `bucket info`, as {access_key_id, read, write, owner}, or None."""
    found = [g for g in info["grants"] if g["access_key_id"] == key_id]
    assert len(found) <= 1, info
    return pick(found[0], "access_key_id", "read", "write", "owner") if found else None


def key_bucket(info, bucket):
    """The entry of `bucket` in `key info`, as {bucket, read, write, owner}, or None."""
    found = [b for b in info["buckets"] if b["bucket"] == bucket]
    assert len(found) <= 1, info
    return pick(found[0], "bucket", "read", "write", "owner") if found else None


def test_another_keys_bucket(cluster, keys):
    a, sa = keys("perm-a")
    b, sb = keys("perm-b")
    a_id, b_id = a["access_key_id"], b["access_key_id"]
    bucket = unique_bucket("perm")
    create_bucket(sa, bucket)
    try:
        sa.put_object(Bucket=bucket, Key="secret", Body=b"a's data")

        # B has no grant on A's bucket: every request is refused.
        refused(lambda: sb.list_objects_v2(Bucket=bucket))
        refused(lambda: sb.get_object(Bucket=bucket, Key="secret"))
        refused(lambda: sb.head_object(Bucket=bucket, Key="secret"), code=None)  # HEAD: no body
        refused(lambda: sb.put_object(Bucket=bucket, Key="from-b", Body=b"b's data"))
        refused(lambda: sb.delete_object(Bucket=bucket, Key="secret"))
        refused(lambda: sb.delete_bucket(Bucket=bucket))
        refused(lambda: sb.create_multipart_upload(Bucket=bucket, Key="mp-from-b"))
        assert [o["Key"] for o in sa.list_objects_v2(Bucket=bucket)["Contents"]] == ["secret"]
        assert sa.get_object(Bucket=bucket, Key="secret")["Body"].read() == b"a's data"
        assert not sa.list_multipart_uploads(Bucket=bucket).get("Uploads")

        # Nor can B copy A's object into a bucket of its own.
        b_bucket = unique_bucket("perm-b")
        create_bucket(sb, b_bucket)
        try:
            sb.put_object(Bucket=b_bucket, Key="own", Body=b"b writes here")
            refused(lambda: sb.copy_object(Bucket=b_bucket, Key="stolen", CopySource={"Bucket": bucket, "Key": "secret"}))
            refused(lambda: sb.head_object(Bucket=b_bucket, Key="stolen"), code=None, status=404)
            assert b_bucket in bucket_names(sb)
            assert b_bucket not in bucket_names(sa)
        finally:
            remove_bucket(sb, b_bucket)

        assert bucket not in bucket_names(sb)
        assert bucket in bucket_names(sa)

        # Read: B can list and get, not write.
        cluster.admin("bucket", "allow", bucket, "--key", b_id, "--read")
        listed = eventually(lambda: sb.list_objects_v2(Bucket=bucket))
        assert [o["Key"] for o in listed["Contents"]] == ["secret"]
        assert sb.get_object(Bucket=bucket, Key="secret")["Body"].read() == b"a's data"
        assert sb.head_object(Bucket=bucket, Key="secret")["ContentLength"] == len(b"a's data")
        refused(lambda: sb.put_object(Bucket=bucket, Key="from-b", Body=b"b's data"))
        refused(lambda: sb.delete_object(Bucket=bucket, Key="secret"))

        info = cluster.admin("bucket", "info", bucket)
        assert info["name"] == bucket
        assert info["owner"] == a_id
        assert grant_of(info, b_id) == {"access_key_id": b_id, "read": True, "write": False, "owner": False}
        b_info = cluster.admin("key", "info", b_id)
        assert b_info["access_key_id"] == b_id and b_info["name"] == b["name"]
        assert key_bucket(b_info, bucket) == {"bucket": bucket, "read": True, "write": False, "owner": False}
        assert any(x["name"] == bucket and x["owner"] == a_id and isinstance(x["created_ms"], int)
                   for x in cluster.admin("bucket", "list"))

        # Write too: B can put and delete.
        cluster.admin("bucket", "allow", bucket, "--key", b_id, "--write")
        eventually(lambda: sb.put_object(Bucket=bucket, Key="from-b", Body=b"b's data"))
        assert sa.get_object(Bucket=bucket, Key="from-b")["Body"].read() == b"b's data"
        sb.delete_object(Bucket=bucket, Key="from-b")
        refused(lambda: sa.get_object(Bucket=bucket, Key="from-b"), code="NoSuchKey", status=404)
        g = grant_of(cluster.admin("bucket", "info", bucket), b_id)
        assert g["read"] and g["write"] and not g["owner"]

        # Both taken back: refused again.
        cluster.admin("bucket", "deny", bucket, "--key", b_id, "--read", "--write")
        eventually(lambda: refused(lambda: sb.list_objects_v2(Bucket=bucket)))
        refused(lambda: sb.get_object(Bucket=bucket, Key="secret"))
        refused(lambda: sb.put_object(Bucket=bucket, Key="from-b", Body=b"again"))
        g = grant_of(cluster.admin("bucket", "info", bucket), b_id)
        assert g is None or not (g["read"] or g["write"] or g["owner"]), g
        kb = key_bucket(cluster.admin("key", "info", b_id), bucket)
        assert kb is None or not (kb["read"] or kb["write"] or kb["owner"]), kb
        # A, the owner, was never affected.
        assert sa.get_object(Bucket=bucket, Key="secret")["Body"].read() == b"a's data"
    finally:
        remove_bucket(sa, bucket)


def test_error_request_id_matches_the_header(cluster, keys):
    a, sa = keys("rid-a")
    _, sb = keys("rid-b")
    bucket = unique_bucket("rid")
    create_bucket(sa, bucket)
    try:
        sa.put_object(Bucket=bucket, Key="k", Body=b"x")
        raw = {}

        def grab(http_response, **_):
            raw["body"] = http_response.content

        sb.meta.events.register("after-call.s3.GetObject", grab)
        e = refused(lambda: sb.get_object(Bucket=bucket, Key="k"))
        header = e.response["ResponseMetadata"]["HTTPHeaders"].get("x-amz-request-id")
        assert header, e.response["ResponseMetadata"]
        # botocore takes ResponseMetadata.RequestId from the header and drops the body's, so the
        # body's <RequestId> is read from the raw XML.
        m = re.search(rb"<RequestId>([^<]*)</RequestId>", raw["body"])
        assert m, raw["body"]
        assert m.group(1).decode() == header == e.response["ResponseMetadata"]["RequestId"]
    finally:
        remove_bucket(sa, bucket)


def test_create_bucket_permission(cluster, keys):
    c, sc = keys("perm-c", create_bucket=False)
    c_id = c["access_key_id"]
    assert cluster.admin("key", "info", c_id)["allow_create_bucket"] is False
    first = unique_bucket("perm-c")
    refused(lambda: sc.create_bucket(Bucket=first))
    assert first not in bucket_names(sc)

    cluster.admin("key", "allow", c_id, "--create-bucket")
    eventually(lambda: sc.create_bucket(Bucket=first))
    try:
        eventually(lambda: sc.list_objects_v2(Bucket=first))
        assert first in bucket_names(sc)
        sc.put_object(Bucket=first, Key="o", Body=b"mine")
        info = cluster.admin("bucket", "info", first)
        assert info["owner"] == c_id
        listed = [pick(k, "access_key_id", "name", "allow_create_bucket")
                  for k in cluster.admin("key", "list") if k["access_key_id"] == c_id]
        assert listed == [{"access_key_id": c_id, "name": c["name"], "allow_create_bucket": True}]
        assert key_bucket(cluster.admin("key", "info", c_id), first)["owner"] is True

        cluster.admin("key", "deny", c_id, "--create-bucket")
        attempts = []

        def create_refused():
            attempts.append(unique_bucket("perm-c"))  # a fresh name: an earlier try may have worked
            refused(lambda: sc.create_bucket(Bucket=attempts[-1]))

        try:
            eventually(create_refused)
        finally:
            for name in attempts:
                remove_bucket(sc, name)  # those created before the denial took effect
        assert cluster.admin("key", "info", c_id)["allow_create_bucket"] is False
        # Buckets it already has stay its own.
        assert sc.get_object(Bucket=first, Key="o")["Body"].read() == b"mine"
    finally:
        remove_bucket(sc, first)


def test_admin_bucket_commands(cluster, keys):
    e, se = keys("perm-e", create_bucket=False)
    f, sf = keys("perm-f", create_bucket=False)
    e_id, f_id = e["access_key_id"], f["access_key_id"]
    bucket = unique_bucket("adm")
    cluster.admin("bucket", "create", bucket, "--owner", e_id)
    try:
        eventually(lambda: se.put_object(Bucket=bucket, Key="o", Body=b"by e"))
        assert bucket in bucket_names(se)
        assert bucket not in bucket_names(sf)
        listed = [x for x in cluster.admin("bucket", "list") if x["name"] == bucket]
        assert len(listed) == 1 and listed[0]["owner"] == e_id
        assert abs(listed[0]["created_ms"] / 1000 - time.time()) < 300
        info = cluster.admin("bucket", "info", bucket)
        assert info["owner"] == e_id
        assert grant_of(info, f_id) is None

        cluster.admin("bucket", "allow", bucket, "--key", f_id, "--read", "--write", "--owner")
        assert grant_of(cluster.admin("bucket", "info", bucket), f_id) == {
            "access_key_id": f_id, "read": True, "write": True, "owner": True}
        assert key_bucket(cluster.admin("key", "info", f_id), bucket) == {
            "bucket": bucket, "read": True, "write": True, "owner": True}
        got = eventually(lambda: sf.get_object(Bucket=bucket, Key="o")["Body"].read())
        assert got == b"by e"
        cluster.admin("bucket", "deny", bucket, "--key", f_id, "--owner")
        g = grant_of(cluster.admin("bucket", "info", bucket), f_id)
        assert g["read"] and g["write"] and not g["owner"]

        se.delete_object(Bucket=bucket, Key="o")
        cluster.admin("bucket", "delete", bucket)
        assert bucket not in [x["name"] for x in cluster.admin("bucket", "list")]
        eventually(lambda: refused(lambda: se.list_objects_v2(Bucket=bucket), code="NoSuchBucket", status=404))
    finally:
        try:
            empty_and_delete(se, bucket)  # E owns it; a no-op once deleted above
        except ClientError:
            pass
        try:
            cluster.admin("bucket", "delete", bucket)
        except RuntimeError:
            pass  # deleted already


def test_deleted_key_is_invalid_access_key_id(cluster, keys):
    d, sd = keys("perm-d")
    d_id = d["access_key_id"]
    assert d_id in [k["access_key_id"] for k in cluster.admin("key", "list")]
    cluster.admin("key", "delete", d_id)
    assert d_id not in [k["access_key_id"] for k in cluster.admin("key", "list")]
    eventually(lambda: refused(lambda: sd.list_buckets(), code="InvalidAccessKeyId"))
    with pytest.raises(RuntimeError):
        cluster.admin("key", "info", d_id)


def test_secrets_are_sealed_in_the_metadata(dev_cluster):
    """A copy of the nodes' data directories (RocksDB files, Raft log, WAL) holds no access-key
    secret in the clear, and no log line shows one; the key still signs requests."""
    from pathlib import Path

    created = dev_cluster.admin("key", "create", "--name", f"sealed-{uuid.uuid4().hex[:6]}", "--allow-create-bucket")
    secret = created["secret_access_key"].encode()
    client = dev_cluster.client_for(created["access_key_id"], created["secret_access_key"])
    bucket = unique_bucket("sealed")
    eventually(lambda: client.create_bucket(Bucket=bucket))
    try:
        client.put_object(Bucket=bucket, Key="k", Body=b"x")
        assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
    finally:
        empty_and_delete(client, bucket)
    found, key_id_seen = [], False
    for f in Path(dev_cluster.data_dir).rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            key_id_seen |= created["access_key_id"].encode() in data
            if secret in data:
                found.append(str(f))
    # The scan does see the key's record (its id is stored in the clear)...
    assert key_id_seen
    # ...but not its secret.
    assert not found, f"secret in the clear in {found}"
    assert secret not in Path(dev_cluster.log).read_bytes()
