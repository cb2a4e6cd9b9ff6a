"""Conditional requests and CopyObject with boto3 against `baobab dev`, checked against AWS S3:
If-Match / If-None-Match / If-Modified-Since / If-Unmodified-Since on GET and HEAD (with S3's
precedence rules), conditional PUTs (If-None-Match: * and If-Match) including a race of 20
writers for one new key, and CopyObject (metadata directives, x-amz-copy-source-if-* conditions,
large multipart sources, error cases)."""

import datetime
import hashlib
import os
import threading
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import MiB, empty_and_delete, unique_bucket

OTHER_ETAG = '"0123456789abcdef0123456789abcdef"'


def error_code(exc_info):
    return exc_info.value.response["Error"]["Code"]


def status(exc_info):
    return exc_info.value.response["ResponseMetadata"]["HTTPStatusCode"]


def md5_etag(data):
    return '"' + hashlib.md5(data).hexdigest() + '"'


def dates_around(last_modified):
    """(a day before, one second after) `last_modified`; returns once the second one is past.

    The "after" date is not in the future: HTTP (RFC 9110, 13.1.3) lets a server ignore an
    If-Modified-Since date later than its clock, and the s3-tests suite waits likewise."""
    before = last_modified - datetime.timedelta(days=1)
    after = last_modified + datetime.timedelta(seconds=1)
    while time.time() < after.timestamp() + 0.3:
        time.sleep(0.1)
    return before, after


@pytest.fixture
def cb(dev_cluster):
    """(boto3 client, bucket) on the dev cluster."""
    s3 = dev_cluster.client()
    name = unique_bucket("cond")
    s3.create_bucket(Bucket=name)
    yield s3, name
    empty_and_delete(s3, name)


@pytest.fixture
def other_bucket(dev_cluster):
    s3 = dev_cluster.client()
    name = unique_bucket("cond2")
    s3.create_bucket(Bucket=name)
    yield name
    empty_and_delete(s3, name)


def put(s3, if_match=None, if_none_match=None, **kw):
    """PutObject with If-Match / If-None-Match; botocore models both since 1.35 (the header is
    added by hand for an older one)."""
    members = s3.meta.service_model.operation_model("PutObject").input_shape.members
    headers = {}
    if if_match is not None:
        if "IfMatch" in members:
            kw["IfMatch"] = if_match
        else:
            headers["If-Match"] = if_match
    if if_none_match is not None:
        if "IfNoneMatch" in members:
            kw["IfNoneMatch"] = if_none_match
        else:
            headers["If-None-Match"] = if_none_match
    if not headers:
        return s3.put_object(**kw)

    def add(request, **_):
        request.headers.update(headers)

    s3.meta.events.register("before-sign.s3.PutObject", add)
    try:
        return s3.put_object(**kw)
    finally:
        s3.meta.events.unregister("before-sign.s3.PutObject", add)


# ---- GET and HEAD ----------------------------------------------------------------------------


def test_get_and_head_conditions(cb):
    s3, bucket = cb
    data = b"conditional body"
    etag = s3.put_object(Bucket=bucket, Key="c", Body=data)["ETag"]
    last_modified = s3.head_object(Bucket=bucket, Key="c")["LastModified"]  # whole seconds, as sent
    past, later = dates_around(last_modified)

    def get(**kw):
        r = s3.get_object(Bucket=bucket, Key="c", **kw)
        assert r["Body"].read() == data
        return r

    def head(**kw):
        return s3.head_object(Bucket=bucket, Key="c", **kw)

    for call in (get, head):
        name = call.__name__

        def ok(**kw):
            r = call(**kw)
            assert r["ResponseMetadata"]["HTTPStatusCode"] == 200, (name, kw)
            assert r["ETag"] == etag

        def fails(want_status, **kw):
            with pytest.raises(ClientError) as e:
                call(**kw)
            assert status(e) == want_status, (name, kw)
            if want_status == 412 and call is get:
                assert error_code(e) == "PreconditionFailed", kw
            if want_status == 304:
                # botocore has no body to parse: the code is the status.
                assert error_code(e) == "304", kw
                assert e.value.response["ResponseMetadata"]["HTTPHeaders"].get("etag") == etag, kw
            return e

        ok(IfMatch=etag)
        fails(412, IfMatch=OTHER_ETAG)
        fails(304, IfNoneMatch=etag)
        ok(IfNoneMatch=OTHER_ETAG)
        fails(304, IfModifiedSince=later)
        # Compared at the HTTP date's one-second resolution: not modified since its own
        # Last-Modified.
        fails(304, IfModifiedSince=last_modified)
        ok(IfModifiedSince=past)
        fails(412, IfUnmodifiedSince=past)
        ok(IfUnmodifiedSince=last_modified)
        ok(IfUnmodifiedSince=later)

        # S3's precedence (documented for GetObject and HeadObject):
        # If-Match true and If-Unmodified-Since false -> 200.
        ok(IfMatch=etag, IfUnmodifiedSince=past)
        # If-None-Match true (no match) and If-Modified-Since false -> 200.
        ok(IfNoneMatch=OTHER_ETAG, IfModifiedSince=later)
        # If-None-Match false (match) and If-Modified-Since true -> 304.
        fails(304, IfNoneMatch=etag, IfModifiedSince=past)
        # If-Match false -> 412 whatever If-Unmodified-Since says.
        fails(412, IfMatch=OTHER_ETAG, IfUnmodifiedSince=later)


def test_conditions_on_a_missing_key_are_404(cb):
    s3, bucket = cb
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="missing", IfMatch=OTHER_ETAG)
    assert error_code(e) == "NoSuchKey"
    assert status(e) == 404


# ---- conditional PUT -------------------------------------------------------------------------


def test_put_if_none_match(cb):
    s3, bucket = cb
    r = put(s3, if_none_match="*", Bucket=bucket, Key="new", Body=b"first")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    with pytest.raises(ClientError) as e:
        put(s3, if_none_match="*", Bucket=bucket, Key="new", Body=b"second")
    assert error_code(e) == "PreconditionFailed"
    assert status(e) == 412
    assert s3.get_object(Bucket=bucket, Key="new")["Body"].read() == b"first"
    # Once the key is deleted, it is free again.
    s3.delete_object(Bucket=bucket, Key="new")
    put(s3, if_none_match="*", Bucket=bucket, Key="new", Body=b"third")
    assert s3.get_object(Bucket=bucket, Key="new")["Body"].read() == b"third"


def test_put_if_match(cb):
    s3, bucket = cb
    etag = s3.put_object(Bucket=bucket, Key="m", Body=b"v1")["ETag"]
    r = put(s3, if_match=etag, Bucket=bucket, Key="m", Body=b"v2")
    assert r["ETag"] == md5_etag(b"v2")
    # The ETag of v1 no longer matches.
    with pytest.raises(ClientError) as e:
        put(s3, if_match=etag, Bucket=bucket, Key="m", Body=b"v3")
    assert error_code(e) == "PreconditionFailed"
    assert status(e) == 412
    assert s3.get_object(Bucket=bucket, Key="m")["Body"].read() == b"v2"
    # If-Match on a key that does not exist: 404 NoSuchKey (S3's documented answer).
    with pytest.raises(ClientError) as e:
        put(s3, if_match=etag, Bucket=bucket, Key="absent", Body=b"x")
    assert error_code(e) == "NoSuchKey"
    assert status(e) == 404
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="absent")
    assert status(e) == 404


def test_concurrent_if_none_match_has_exactly_one_winner(dev_cluster, cb):
    _, bucket = cb
    n = 20
    # No automatic retries: a retried PUT could turn a success into a 412.
    cfg = Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1},
                 max_pool_connections=2, connect_timeout=10, read_timeout=60)
    session = boto3.session.Session()
    clients = [
        session.client("s3", endpoint_url=dev_cluster.endpoint, region_name="us-east-1",
                       aws_access_key_id=dev_cluster.key, aws_secret_access_key=dev_cluster.secret, config=cfg)
        for _ in range(n)
    ]
    bodies = [os.urandom(MiB + i) if i % 2 else os.urandom(1000 + i) for i in range(n)]
    barrier = threading.Barrier(n)
    outcomes = [None] * n

    def writer(i):
        barrier.wait(timeout=30)
        # S3 may answer 409 ConditionalRequestConflict to a conditional write racing another one,
        # and says to retry it; the final answer must be 200 or 412.
        for _ in range(20):
            try:
                r = put(clients[i], if_none_match="*", Bucket=bucket, Key="race", Body=bodies[i])
                outcomes[i] = (200, r["ETag"])
                return
            except ClientError as e:
                code = e.response["Error"]["Code"]
                if code == "ConditionalRequestConflict":
                    time.sleep(0.05)
                    continue
                outcomes[i] = (e.response["ResponseMetadata"]["HTTPStatusCode"], code)
                return
            except Exception as e:  # noqa: BLE001 - reported in the assertion below
                outcomes[i] = ("exception", repr(e))
                return
        outcomes[i] = ("409 forever", None)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)

    winners = [i for i, o in enumerate(outcomes) if o and o[0] == 200]
    losers = [o for o in outcomes if o and o[0] == 412]
    assert len(winners) == 1, outcomes
    assert len(losers) == n - 1, outcomes
    assert all(o[1] == "PreconditionFailed" for o in losers), outcomes
    winner = winners[0]
    got = clients[0].get_object(Bucket=bucket, Key="race")
    assert got["Body"].read() == bodies[winner]
    assert got["ETag"] == outcomes[winner][1] == md5_etag(bodies[winner])


# ---- CopyObject ------------------------------------------------------------------------------


def test_copy_object_metadata_directives(cb, other_bucket):
    s3, bucket = cb
    src_key = "dir/spaced name+plus&.txt"
    data = os.urandom(3 * MiB + 11)
    etag = s3.put_object(Bucket=bucket, Key=src_key, Body=data, ContentType="text/x-source",
                         Metadata={"color": "blue"})["ETag"]
    source = {"Bucket": bucket, "Key": src_key}

    # Same bucket, default directive (COPY).
    r = s3.copy_object(Bucket=bucket, Key="copy", CopySource=source)
    assert r["CopyObjectResult"]["ETag"] == etag
    assert "LastModified" in r["CopyObjectResult"]
    got = s3.get_object(Bucket=bucket, Key="copy")
    assert got["Body"].read() == data
    assert got["ContentType"] == "text/x-source"
    assert got["Metadata"] == {"color": "blue"}

    # Across buckets, COPY said explicitly.
    s3.copy_object(Bucket=other_bucket, Key="copied", CopySource=source, MetadataDirective="COPY")
    got = s3.get_object(Bucket=other_bucket, Key="copied")
    assert got["Body"].read() == data
    assert got["ContentType"] == "text/x-source"
    assert got["Metadata"] == {"color": "blue"}

    # REPLACE: the request's metadata and content type, nothing of the source's.
    s3.copy_object(Bucket=other_bucket, Key="replaced", CopySource=source, MetadataDirective="REPLACE",
                   ContentType="application/x-new", Metadata={"shape": "round"})
    head = s3.head_object(Bucket=other_bucket, Key="replaced")
    assert head["ContentType"] == "application/x-new"
    assert head["Metadata"] == {"shape": "round"}
    assert head["ContentLength"] == len(data)
    assert s3.get_object(Bucket=other_bucket, Key="replaced")["Body"].read() == data

    # The source is untouched.
    head = s3.head_object(Bucket=bucket, Key=src_key)
    assert head["Metadata"] == {"color": "blue"} and head["ETag"] == etag


def test_copy_source_conditions(cb):
    s3, bucket = cb
    etag = s3.put_object(Bucket=bucket, Key="src", Body=b"source bytes")["ETag"]
    last_modified = s3.head_object(Bucket=bucket, Key="src")["LastModified"]
    past, later = dates_around(last_modified)

    def copy(**kw):
        return s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"}, **kw)

    refused = [
        {"CopySourceIfMatch": OTHER_ETAG},
        {"CopySourceIfNoneMatch": etag},
        {"CopySourceIfModifiedSince": later},  # not modified since: 412 for a copy (not 304)
        {"CopySourceIfUnmodifiedSince": past},
        # S3's documented precedence: If-None-Match false and If-Modified-Since true -> 412.
        {"CopySourceIfNoneMatch": etag, "CopySourceIfModifiedSince": past},
    ]
    for kw in refused:
        with pytest.raises(ClientError) as e:
            copy(**kw)
        assert error_code(e) == "PreconditionFailed", kw
        assert status(e) == 412, kw
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="dst")
    assert status(e) == 404, "a refused copy writes nothing"

    accepted = [
        {"CopySourceIfMatch": etag},
        {"CopySourceIfNoneMatch": OTHER_ETAG},
        {"CopySourceIfModifiedSince": past},
        {"CopySourceIfUnmodifiedSince": later},
        # S3's documented precedence: If-Match true and If-Unmodified-Since false -> copied.
        {"CopySourceIfMatch": etag, "CopySourceIfUnmodifiedSince": past},
    ]
    for kw in accepted:
        s3.delete_object(Bucket=bucket, Key="dst")
        copy(**kw)
        assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"source bytes", kw


def test_copy_of_a_large_multipart_object(cb):
    s3, bucket = cb
    parts = [os.urandom(5 * MiB) for _ in range(8)]
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp-src")["UploadId"]
    done = []
    for n, data in enumerate(parts, start=1):
        r = s3.upload_part(Bucket=bucket, Key="mp-src", UploadId=upload_id, PartNumber=n, Body=data)
        done.append({"PartNumber": n, "ETag": r["ETag"]})
    s3.complete_multipart_upload(Bucket=bucket, Key="mp-src", UploadId=upload_id, MultipartUpload={"Parts": done})
    whole = b"".join(parts)
    assert len(whole) == 40 * MiB

    s3.copy_object(Bucket=bucket, Key="mp-copy", CopySource={"Bucket": bucket, "Key": "mp-src"})
    assert s3.head_object(Bucket=bucket, Key="mp-copy")["ContentLength"] == len(whole)
    got = s3.get_object(Bucket=bucket, Key="mp-copy")["Body"].read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(whole).digest()
    # The copy is independent of its source.
    s3.delete_object(Bucket=bucket, Key="mp-src")
    got = s3.get_object(Bucket=bucket, Key="mp-copy", Range=f"bytes={20 * MiB - 5}-{20 * MiB + 4}")
    assert got["Body"].read() == whole[20 * MiB - 5:20 * MiB + 5]


def test_copy_onto_itself(cb):
    s3, bucket = cb
    s3.put_object(Bucket=bucket, Key="self", Body=b"me", Metadata={"v": "1"})
    source = {"Bucket": bucket, "Key": "self"}
    for kw in ({}, {"MetadataDirective": "COPY"}):
        with pytest.raises(ClientError) as e:
            s3.copy_object(Bucket=bucket, Key="self", CopySource=source, **kw)
        assert error_code(e) == "InvalidRequest", kw
        assert status(e) == 400, kw
    # With REPLACE it is how S3 changes an object's metadata.
    s3.copy_object(Bucket=bucket, Key="self", CopySource=source, MetadataDirective="REPLACE", Metadata={"v": "2"})
    got = s3.get_object(Bucket=bucket, Key="self")
    assert got["Body"].read() == b"me"
    assert got["Metadata"] == {"v": "2"}


def test_copy_from_a_missing_source(cb):
    s3, bucket = cb
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "nothing-here"})
    assert error_code(e) == "NoSuchKey"
    assert status(e) == 404
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": unique_bucket("absent"), "Key": "k"})
    assert error_code(e) == "NoSuchBucket"
    assert status(e) == 404
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="dst")
    assert status(e) == 404
