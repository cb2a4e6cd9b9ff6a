"""The S3 surface with boto3 (default checksum settings), against `baobab dev` and the
multi-process cluster."""

import hashlib
import time
import urllib.parse

import pytest
from botocore.exceptions import ClientError

from conftest import MiB, random_bytes

INLINE = 16 * 1024
SIZES = [0, 1, INLINE, INLINE + 1, MiB - 1, MiB, MiB + 1, 100 * MiB]


def error_code(exc_info):
    return exc_info.value.response["Error"]["Code"]


def status(exc_info):
    return exc_info.value.response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.mark.parametrize("size", SIZES)
def test_round_trip(s3, bucket, size):
    data = random_bytes(size)
    put = s3.put_object(Bucket=bucket, Key=f"obj-{size}", Body=data)
    assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    head = s3.head_object(Bucket=bucket, Key=f"obj-{size}")
    assert head["ContentLength"] == size
    assert head["ETag"] == put["ETag"]
    got = s3.get_object(Bucket=bucket, Key=f"obj-{size}")
    assert got["Body"].read() == data
    assert got["ETag"] == put["ETag"]


def test_overwrite_returns_the_new_bytes(s3, bucket):
    for size in (3 * MiB, 10, 2 * MiB + 5):
        data = random_bytes(size)
        s3.put_object(Bucket=bucket, Key="k", Body=data)
        assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == data


@pytest.mark.parametrize("size", [5000, 3 * MiB + 12345])
def test_ranges(s3, bucket, size):
    data = random_bytes(size)
    s3.put_object(Bucket=bucket, Key="r", Body=data)
    cases = {
        "bytes=0-0": data[0:1],
        "bytes=10-99": data[10:100],
        "bytes=-100": data[-100:],
        "bytes=100-": data[100:],
        f"bytes=0-{size + 50}": data,
    }
    if size > 2 * MiB:
        cases[f"bytes={MiB - 10}-{2 * MiB + 10}"] = data[MiB - 10 : 2 * MiB + 11]
    for rng, want in cases.items():
        got = s3.get_object(Bucket=bucket, Key="r", Range=rng)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206, rng
        assert got["Body"].read() == want, rng
        assert got["ContentLength"] == len(want), rng
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="r", Range=f"bytes={size + 10}-")
    assert error_code(e) == "InvalidRange"
    assert status(e) == 416


def test_metadata_and_standard_headers(s3, bucket):
    s3.put_object(
        Bucket=bucket,
        Key="m",
        Body=b"hello",
        Metadata={"color": "blue", "x-y": "z"},
        ContentType="text/plain; charset=utf-8",
        CacheControl="max-age=60",
        ContentDisposition='attachment; filename="a.txt"',
        ContentEncoding="identity",
        ContentLanguage="fr",
    )
    for resp in (s3.head_object(Bucket=bucket, Key="m"), s3.get_object(Bucket=bucket, Key="m")):
        assert resp["Metadata"] == {"color": "blue", "x-y": "z"}
        assert resp["ContentType"] == "text/plain; charset=utf-8"
        assert resp["CacheControl"] == "max-age=60"
        assert resp["ContentDisposition"] == 'attachment; filename="a.txt"'
        assert resp["ContentEncoding"] == "identity"
        assert resp["ContentLanguage"] == "fr"
        assert resp["LastModified"].timestamp() == pytest.approx(time.time(), abs=120)


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "CRC64NVME", "SHA256"])
def test_checksums_round_trip(s3, bucket, algorithm):
    data = random_bytes(2 * MiB + 7)
    put = s3.put_object(Bucket=bucket, Key="c", Body=data, ChecksumAlgorithm=algorithm)
    field = f"Checksum{algorithm}"
    assert put.get(field), put
    got = s3.get_object(Bucket=bucket, Key="c", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got[field] == put[field]
    head = s3.head_object(Bucket=bucket, Key="c", ChecksumMode="ENABLED")
    assert head[field] == put[field]


def test_wrong_checksum_header_is_rejected(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"some bytes", ChecksumCRC32="AAAAAA==")
    assert status(e) == 400
    assert error_code(e) in ("BadDigest", "XAmzContentChecksumMismatch", "InvalidRequest")
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="bad")
    assert status(e) == 404


def test_content_md5_mismatch_is_bad_digest(s3, bucket):
    import base64

    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="md5", Body=b"these bytes", ContentMD5=wrong)
    assert error_code(e) == "BadDigest"
    right = base64.b64encode(hashlib.md5(b"these bytes").digest()).decode()
    s3.put_object(Bucket=bucket, Key="md5", Body=b"these bytes", ContentMD5=right)


def test_list_objects_v2(s3, bucket):
    keys = [f"dir{d}/file{i:02d}" for d in range(2) for i in range(10)] + ["a", "b", "z/deep/x"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    everything = s3.list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in everything["Contents"]] == sorted(keys)
    assert everything["KeyCount"] == len(keys)
    assert not everything["IsTruncated"]
    assert all(o["Size"] == len(o["Key"]) for o in everything["Contents"])

    top = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [o["Key"] for o in top["Contents"]] == ["a", "b"]
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["dir0/", "dir1/", "z/"]

    sub = s3.list_objects_v2(Bucket=bucket, Prefix="dir1/", Delimiter="/")
    assert [o["Key"] for o in sub["Contents"]] == [f"dir1/file{i:02d}" for i in range(10)]

    seen, token, pages = [], None, 0
    while True:
        kw = {"ContinuationToken": token} if token else {}
        page = s3.list_objects_v2(Bucket=bucket, MaxKeys=10, **kw)
        pages += 1
        seen += [o["Key"] for o in page.get("Contents", [])]
        assert page["KeyCount"] <= 10
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert seen == sorted(keys)
    assert pages == 3

    after = s3.list_objects_v2(Bucket=bucket, StartAfter="dir1/file05")
    assert [o["Key"] for o in after["Contents"]] == sorted(k for k in keys if k > "dir1/file05")


def test_list_objects_url_encoding(s3, bucket):
    key = "spaced name/ünïcødé+plus&amp.txt"
    s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    # boto3 asks for encoding-type=url by default and decodes it.
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [key]
    # Raw: the key in the XML must be percent-encoded.
    raw = {}

    def grab(http_response, **_):
        raw["body"] = http_response.text

    s3.meta.events.register("after-call.s3.ListObjectsV2", lambda **kw: grab(kw["http_response"]))
    try:
        s3.list_objects_v2(Bucket=bucket, EncodingType="url")
    finally:
        s3.meta.events.unregister("after-call.s3.ListObjectsV2")
    assert urllib.parse.quote(key, safe="/") in raw["body"] or urllib.parse.quote_plus(key, safe="/") in raw["body"]
    assert key not in raw["body"]


def test_list_objects_v1_marker(s3, bucket):
    keys = [f"k{i:02d}" for i in range(15)]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"")
    first = s3.list_objects(Bucket=bucket, MaxKeys=10)
    assert [o["Key"] for o in first["Contents"]] == keys[:10]
    assert first["IsTruncated"]
    rest = s3.list_objects(Bucket=bucket, Marker=keys[9])
    assert [o["Key"] for o in rest["Contents"]] == keys[10:]
    assert not rest["IsTruncated"]


def test_delete_objects(s3, bucket):
    for k in ("x1", "x2", "x3", "keep"):
        s3.put_object(Bucket=bucket, Key=k, Body=random_bytes(20000))
    resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "x1"}, {"Key": "x2"}, {"Key": "x3"}]})
    assert sorted(d["Key"] for d in resp["Deleted"]) == ["x1", "x2", "x3"]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["keep"]
    s3.delete_object(Bucket=bucket, Key="keep")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="keep")
    assert error_code(e) == "NoSuchKey"
    # Deleting a missing key succeeds, as S3.
    s3.delete_object(Bucket=bucket, Key="never-was")


def test_bucket_lifecycle(s3, cluster):
    from conftest import unique_bucket

    name = unique_bucket("life")
    s3.create_bucket(Bucket=name)
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    s3.head_bucket(Bucket=name)
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] in (None, "")
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket=name)
    assert error_code(e) == "BucketAlreadyOwnedByYou"
    s3.put_object(Bucket=name, Key="o", Body=b"1")
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=name)
    assert error_code(e) == "BucketNotEmpty"
    assert status(e) == 409
    s3.delete_object(Bucket=name, Key="o")
    s3.delete_bucket(Bucket=name)
    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket=name)
    assert status(e) == 404
    with pytest.raises(ClientError) as e:
        s3.list_objects_v2(Bucket=name)
    assert error_code(e) == "NoSuchBucket"
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=name, Key="o", Body=b"1")
    assert error_code(e) == "NoSuchBucket"


def test_invalid_bucket_name(s3):
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket="Bad_Bucket_Name")
    assert error_code(e) == "InvalidBucketName"
    assert status(e) == 400


def test_missing_key(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="nope")
    assert error_code(e) == "NoSuchKey"
    assert status(e) == 404


def test_virtual_hosted_style(cluster, bucket):
    """`bucket.localhost:PORT` addresses the bucket (the Host header decides, as with DNS)."""
    import botocore.auth
    import botocore.awsrequest
    import botocore.credentials
    import http.client

    s3 = cluster.client()
    s3.put_object(Bucket=bucket, Key="vh", Body=b"virtual")
    host = f"{bucket}.localhost:{cluster.port}"
    req = botocore.awsrequest.AWSRequest(method="GET", url=f"http://{host}/vh", headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    botocore.auth.SigV4Auth(botocore.credentials.Credentials(cluster.key, cluster.secret), "s3", "us-east-1").add_auth(req)
    conn = http.client.HTTPConnection("127.0.0.1", cluster.port, timeout=10)
    conn.request("GET", "/vh", headers={"Host": host, **dict(req.headers.items())})
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.read() == b"virtual"
