"""Authentication and malformed input: each case gets the S3 error code and status a real S3
gives, and a rejected write leaves no object."""

import base64
import datetime
import hashlib
import hmac
import http.client
import time
import urllib.error
import urllib.request
import zlib

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

REGION = "us-east-1"


def code(e):
    return e.value.response["Error"]["Code"]


def raw(cluster, method, path, headers=None, body=b""):
    conn = http.client.HTTPConnection("127.0.0.1", cluster.port, timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    return resp.status, resp.read()


def signed_headers(cluster, method, path, body=b"", extra=None, secret=None):
    url = f"{cluster.endpoint}{path}"
    headers = {"x-amz-content-sha256": hashlib.sha256(body).hexdigest(), **(extra or {})}
    req = AWSRequest(method=method, url=url, data=body, headers=headers)
    creds = Credentials(cluster.key, secret or cluster.secret)
    SigV4Auth(creds, "s3", REGION).add_auth(req)
    return dict(req.headers.items())


def test_wrong_secret(cluster, bucket):
    bad = boto3.client("s3", endpoint_url=cluster.endpoint, aws_access_key_id=cluster.key,
                       aws_secret_access_key="x" * 40, region_name=REGION,
                       config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
    with pytest.raises(ClientError) as e:
        bad.list_objects_v2(Bucket=bucket)
    assert code(e) == "SignatureDoesNotMatch"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as e:
        bad.put_object(Bucket=bucket, Key="nope", Body=b"x")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_unknown_key(cluster, bucket):
    bad = boto3.client("s3", endpoint_url=cluster.endpoint, aws_access_key_id="BKUNKNOWNUNKNOWN0000",
                       aws_secret_access_key="x" * 40, region_name=REGION,
                       config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
    with pytest.raises(ClientError) as e:
        bad.list_objects_v2(Bucket=bucket)
    assert code(e) == "InvalidAccessKeyId"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_no_auth(cluster, bucket):
    status, body = raw(cluster, "GET", f"/{bucket}")
    assert status == 403
    assert b"<Code>AccessDenied</Code>" in body
    status, body = raw(cluster, "PUT", f"/{bucket}/anon", body=b"data", headers={"Content-Length": "4"})
    assert status == 403
    assert cluster.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_presigned_urls(cluster, bucket):
    s3 = cluster.client(signature_version="s3v4")
    s3.put_object(Bucket=bucket, Key="p", Body=b"presigned body")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p"}, ExpiresIn=60)
    assert "X-Amz-Signature=" in url
    assert urllib.request.urlopen(url, timeout=10).read() == b"presigned body"
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "p2"}, ExpiresIn=60)
    req = urllib.request.Request(put_url, data=b"uploaded", method="PUT")
    urllib.request.urlopen(req, timeout=10).read()
    assert s3.get_object(Bucket=bucket, Key="p2")["Body"].read() == b"uploaded"

    short = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p"}, ExpiresIn=1)
    time.sleep(2.5)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(short, timeout=10)
    assert e.value.code == 403
    assert b"AccessDenied" in e.value.read()

    import re

    sig = re.search(r"X-Amz-Signature=([0-9a-f]{64})", url).group(1)
    tampered = url.replace(sig, ("1" if sig[0] == "0" else "0") + sig[1:])
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(tampered, timeout=10)
    assert e.value.code == 403


def test_malformed_delete_objects_xml(cluster, bucket):
    body = b"<Delete><Object><Key>unclosed</Delete>"
    headers = signed_headers(cluster, "POST", f"/{bucket}?delete",
                             body, {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()})
    status, resp = raw(cluster, "POST", f"/{bucket}?delete", headers, body)
    assert status == 400, resp
    assert b"<Code>MalformedXML</Code>" in resp


def sign_at(cluster, method, path, when):
    """Headers for an empty-bodied request signed as if made at `when` (manual SigV4)."""
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    day = when.strftime("%Y%m%d")
    scope = f"{day}/{REGION}/s3/aws4_request"
    empty = hashlib.sha256(b"").hexdigest()
    headers = {"host": f"127.0.0.1:{cluster.port}", "x-amz-content-sha256": empty, "x-amz-date": amz_date}
    signed = sorted(headers)
    canonical = "\n".join([method, path, "", "".join(f"{h}:{headers[h]}\n" for h in signed), ";".join(signed), empty])
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = _hmac(f"AWS4{cluster.secret}".encode(), day)
    for part in (REGION, "s3", "aws4_request"):
        k = _hmac(k, part)
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = f"AWS4-HMAC-SHA256 Credential={cluster.key}/{scope}, SignedHeaders={';'.join(signed)}, Signature={sig}"
    return headers


def test_request_time_too_skewed(cluster, bucket):
    now = datetime.datetime.now(datetime.timezone.utc)
    status, resp = raw(cluster, "GET", f"/{bucket}", sign_at(cluster, "GET", f"/{bucket}", now))
    assert status == 200, resp  # the manual signer is right
    old = now - datetime.timedelta(minutes=20)
    status, resp = raw(cluster, "GET", f"/{bucket}", sign_at(cluster, "GET", f"/{bucket}", old))
    assert status == 403, resp
    assert b"<Code>RequestTimeTooSkewed</Code>" in resp


def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def streaming_put(cluster, bucket, key, data, chunk_size=64 * 1024, tamper_chunk=None):
    """A PUT with STREAMING-AWS4-HMAC-SHA256-PAYLOAD, chunk signatures per the SigV4 spec."""
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = now.strftime("%Y%m%d")
    scope = f"{day}/{REGION}/s3/aws4_request"
    chunks = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)] + [b""]
    encoded_len = sum(len(f"{len(c):x};chunk-signature=".encode()) + 64 + 2 + len(c) + 2 for c in chunks)
    host = f"127.0.0.1:{cluster.port}"
    headers = {
        "host": host,
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "x-amz-date": amz_date,
        "x-amz-decoded-content-length": str(len(data)),
        "content-encoding": "aws-chunked",
        "content-length": str(encoded_len),
    }
    signed = sorted(headers)
    canonical = "\n".join([
        "PUT", f"/{bucket}/{key}", "",
        "".join(f"{h}:{headers[h]}\n" for h in signed), ";".join(signed), "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    ])
    string_to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = _hmac(f"AWS4{cluster.secret}".encode(), day)
    k = _hmac(k, REGION)
    k = _hmac(k, "s3")
    k = _hmac(k, "aws4_request")
    seed = hmac.new(k, string_to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={cluster.key}/{scope}, "
                                f"SignedHeaders={';'.join(signed)}, Signature={seed}")
    prev = seed
    body = b""
    empty_hash = hashlib.sha256(b"").hexdigest()
    for i, c in enumerate(chunks):
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev, empty_hash, hashlib.sha256(c).hexdigest()])
        sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
        prev = sig
        if tamper_chunk == i:
            sig = ("0" if sig[0] != "0" else "1") + sig[1:]
        body += f"{len(c):x};chunk-signature={sig}\r\n".encode() + c + b"\r\n"
    assert len(body) == encoded_len
    return raw(cluster, "PUT", f"/{bucket}/{key}", headers, body)


def test_streaming_signed_payload(cluster, bucket):
    s3 = cluster.client()
    data = bytes(range(256)) * 1000  # 256 KB over 4 chunks
    status, resp = streaming_put(cluster, bucket, "streamed", data)
    assert status == 200, resp
    assert s3.get_object(Bucket=bucket, Key="streamed")["Body"].read() == data

    for tamper in (0, 2):
        status, resp = streaming_put(cluster, bucket, f"tampered{tamper}", data, tamper_chunk=tamper)
        assert status in (400, 403), resp
        with pytest.raises(ClientError) as e:
            s3.head_object(Bucket=bucket, Key=f"tampered{tamper}")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def unsigned_trailer_put(cluster, bucket, key, data, crc_b64):
    body = b""
    for i in range(0, len(data), 8192):
        c = data[i:i + 8192]
        body += f"{len(c):x}\r\n".encode() + c + b"\r\n"
    body += b"0\r\n" + f"x-amz-checksum-crc32:{crc_b64}\r\n".encode() + b"\r\n"
    headers = signed_headers(cluster, "PUT", f"/{bucket}/{key}", b"", {
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "content-encoding": "aws-chunked",
        "x-amz-trailer": "x-amz-checksum-crc32",
        "x-amz-decoded-content-length": str(len(data)),
    })
    headers["Content-Length"] = str(len(body))
    return raw(cluster, "PUT", f"/{bucket}/{key}", headers, body)


def test_unsigned_payload_with_crc32_trailer(cluster, bucket):
    s3 = cluster.client()
    data = bytes(range(251)) * 400
    right = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    status, resp = unsigned_trailer_put(cluster, bucket, "trailer-ok", data, right)
    assert status == 200, resp
    got = s3.get_object(Bucket=bucket, Key="trailer-ok", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got["ChecksumCRC32"] == right

    wrong = base64.b64encode((zlib.crc32(data) ^ 1).to_bytes(4, "big")).decode()
    status, resp = unsigned_trailer_put(cluster, bucket, "trailer-bad", data, wrong)
    assert status == 400, resp
    assert b"BadDigest" in resp or b"XAmzContentChecksumMismatch" in resp
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="trailer-bad")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404

    # Big enough to be erasure-coded: the bad checksum must not leave a visible object either.
    big = bytes(range(256)) * 12000
    bad = base64.b64encode((zlib.crc32(big) ^ 1).to_bytes(4, "big")).decode()
    status, _ = unsigned_trailer_put(cluster, bucket, "trailer-bad-big", big, bad)
    assert status == 400
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="trailer-bad-big")


def test_internal_rpc_refuses_unauthenticated_peers(local_cluster):
    """A storage node's RPC port speaks only mutual TLS: a plain HTTP request, signed or not,
    gets no HTTP answer (every endpoint and every way in: tests/test_mtls.py)."""
    node1 = local_cluster.s3_port + 1
    for method, path, headers in [
        ("POST", "/v1/meta/read", {}),
        ("GET", "/v1/shard/" + "0" * 32 + "/0?offset=0&len=10", {}),
        ("POST", "/v1/meta/write", {"x-baobab-proto": "3"}),
    ]:
        conn = http.client.HTTPConnection("127.0.0.1", node1, timeout=10)
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            conn.request(method, path, body=b"\x80", headers=headers)
            conn.getresponse()
        conn.close()


def _signing_key(secret, day):
    k = _hmac(f"AWS4{secret}".encode(), day)
    for part in (REGION, "s3", "aws4_request"):
        k = _hmac(k, part)
    return k


def streaming_trailer_put(cluster, bucket, key, data, crc_b64, tamper_trailer=False, chunk_size=64 * 1024):
    """STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER: signed chunks, then a CRC32 trailer with its own
    signature (what current AWS SDKs send by default over plain HTTP)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    scope = f"{day}/{REGION}/s3/aws4_request"
    k = _signing_key(cluster.secret, day)
    chunks = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)]
    headers = {
        "host": f"127.0.0.1:{cluster.port}",
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        "x-amz-date": amz_date,
        "x-amz-decoded-content-length": str(len(data)),
        "x-amz-trailer": "x-amz-checksum-crc32",
        "content-encoding": "aws-chunked",
    }
    # The body is built first (its length is signed).
    signed = sorted(list(headers) + ["content-length"])

    def sign_body(seed):
        prev, body = seed, b""
        empty = hashlib.sha256(b"").hexdigest()
        for c in chunks + [b""]:
            sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev, empty, hashlib.sha256(c).hexdigest()])
            prev = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
            body += f"{len(c):x};chunk-signature={prev}\r\n".encode() + c + (b"\r\n" if c else b"")
        trailer = f"x-amz-checksum-crc32:{crc_b64}\n"
        sts = "\n".join(["AWS4-HMAC-SHA256-TRAILER", amz_date, scope, prev, hashlib.sha256(trailer.encode()).hexdigest()])
        tsig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
        if tamper_trailer:
            tsig = ("0" if tsig[0] != "0" else "1") + tsig[1:]
        return body + f"x-amz-checksum-crc32:{crc_b64}\r\nx-amz-trailer-signature:{tsig}\r\n\r\n".encode()

    length = len(sign_body("0" * 64))  # signatures have a fixed length
    headers["content-length"] = str(length)
    canonical = "\n".join(["PUT", f"/{bucket}/{key}", "", "".join(f"{h}:{headers[h]}\n" for h in signed),
                           ";".join(signed), "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"])
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    seed = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={cluster.key}/{scope}, "
                                f"SignedHeaders={';'.join(signed)}, Signature={seed}")
    body = sign_body(seed)
    assert len(body) == length
    return raw(cluster, "PUT", f"/{bucket}/{key}", headers, body)


def test_signed_streaming_with_signed_trailer(cluster, bucket):
    s3 = cluster.client()
    data = bytes(range(256)) * 700
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    status, resp = streaming_trailer_put(cluster, bucket, "trailed", data, crc)
    assert status == 200, resp
    got = s3.get_object(Bucket=bucket, Key="trailed", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got["ChecksumCRC32"] == crc
    # A wrong CRC in a validly signed trailer: BadDigest; a tampered trailer signature: refused.
    wrong = base64.b64encode((zlib.crc32(data) ^ 1).to_bytes(4, "big")).decode()
    status, resp = streaming_trailer_put(cluster, bucket, "badcrc", data, wrong)
    assert status == 400 and b"<Code>BadDigest</Code>" in resp, resp
    status, resp = streaming_trailer_put(cluster, bucket, "badsig", data, crc, tamper_trailer=True)
    assert status in (400, 403), resp
    for key in ("badcrc", "badsig"):
        with pytest.raises(ClientError):
            s3.head_object(Bucket=bucket, Key=key)


def test_sigv4_with_date_header_instead_of_x_amz_date(cluster, bucket):
    """SigV4 lets the request time travel in `Date` (RFC 1123) with no x-amz-date header."""
    now = datetime.datetime.now(datetime.timezone.utc)
    date_hdr = now.strftime("%a, %d %b %Y %H:%M:%S GMT")
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    scope = f"{day}/{REGION}/s3/aws4_request"
    body = b"dated body"
    headers = {"host": f"127.0.0.1:{cluster.port}", "date": date_hdr,
               "x-amz-content-sha256": hashlib.sha256(body).hexdigest()}
    signed = sorted(headers)
    canonical = "\n".join(["PUT", f"/{bucket}/dated", "", "".join(f"{h}:{headers[h]}\n" for h in signed),
                           ";".join(signed), headers["x-amz-content-sha256"]])
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    sig = hmac.new(_signing_key(cluster.secret, day), sts.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={cluster.key}/{scope}, "
                                f"SignedHeaders={';'.join(signed)}, Signature={sig}")
    status, resp = raw(cluster, "PUT", f"/{bucket}/dated", headers, body)
    assert status == 200, resp
    assert cluster.client().get_object(Bucket=bucket, Key="dated")["Body"].read() == body
    # The same request signed with a wrong secret is refused.
    bad = dict(headers)
    bad["authorization"] = bad["authorization"][:-1] + ("0" if sig[-1] != "0" else "1")
    status, resp = raw(cluster, "PUT", f"/{bucket}/dated2", bad, body)
    assert status == 403, resp


def test_put_with_transfer_encoding_chunked_and_no_content_length(cluster, bucket):
    """A PUT whose body comes with Transfer-Encoding: chunked and no Content-Length (nor
    x-amz-decoded-content-length): AWS answers 411 MissingContentLength, and so do we, with the
    S3 error body, and nothing is stored."""
    url = f"{cluster.endpoint}/{bucket}/chunked"
    req = AWSRequest(method="PUT", url=url, headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    SigV4Auth(Credentials(cluster.key, cluster.secret), "s3", REGION).add_auth(req)
    conn = http.client.HTTPConnection("127.0.0.1", cluster.port, timeout=30)
    conn.putrequest("PUT", f"/{bucket}/chunked", skip_host=True, skip_accept_encoding=True)
    for k, v in req.headers.items():
        conn.putheader(k, v)
    conn.putheader("Host", f"127.0.0.1:{cluster.port}")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    conn.send(b"5\r\nhello\r\n0\r\n\r\n")
    resp = conn.getresponse()
    body = resp.read()
    assert resp.status == 411, body
    assert b"<Code>MissingContentLength</Code>" in body
    with pytest.raises(ClientError):
        cluster.client().head_object(Bucket=bucket, Key="chunked")


def sigv2_headers(cluster, method, path, date):
    """Header-signed SigV2 (HMAC-SHA1 over method, Content-MD5, Content-Type, Date, resource)."""
    date_str = date.strftime("%a, %d %b %Y %H:%M:%S GMT")
    string_to_sign = f"{method}\n\n\n{date_str}\n{path}"
    sig = base64.b64encode(hmac.new(cluster.secret.encode(), string_to_sign.encode(), hashlib.sha1).digest()).decode()
    return {"Date": date_str, "Authorization": f"AWS {cluster.key}:{sig}"}


def test_sigv2_is_held_to_a_15_minute_date_window(cluster, bucket):
    s3 = cluster.client()
    s3.put_object(Bucket=bucket, Key="v2", Body=b"signed v2")
    path = f"/{bucket}/v2"
    now = datetime.datetime.now(datetime.timezone.utc)
    status, body = raw(cluster, "GET", path, sigv2_headers(cluster, "GET", path, now))
    assert (status, body) == (200, b"signed v2")  # the manual signer is right
    for skew in (datetime.timedelta(minutes=16), -datetime.timedelta(minutes=16)):
        status, body = raw(cluster, "GET", path, sigv2_headers(cluster, "GET", path, now - skew))
        assert status == 403, body
        assert b"<Code>RequestTimeTooSkewed</Code>" in body and b"<RequestId>" in body, body
    status, body = raw(cluster, "GET", path, {"Authorization": sigv2_headers(cluster, "GET", path, now)["Authorization"]})
    assert status == 403 and b"<Code>AccessDenied</Code>" in body, body


def test_sigv2_signatures_are_checked_by_the_gateway(cluster, bucket):
    """SigV2 is on (boto3 signs presigned URLs and POSTs with it by default); the listener
    checks its signatures in constant time before s3s (`gateway/src/sig_v2.rs`), so its string
    to sign must agree with every client's: a SigV2 client's everyday requests pass, wrong
    signatures get AWS's error."""
    v2 = cluster.client(signature_version="s3")
    v2.put_object(Bucket=bucket, Key="v2/a b+c", Body=b"v2 body", ContentType="text/x-v2",
                  Metadata={"spaced": "  a   b  "}, Tagging="k=v")
    got = v2.get_object(Bucket=bucket, Key="v2/a b+c", ResponseContentType="text/plain")
    assert got["Body"].read() == b"v2 body" and got["ContentType"] == "text/plain"
    assert v2.get_object_tagging(Bucket=bucket, Key="v2/a b+c")["TagSet"] == [{"Key": "k", "Value": "v"}]
    assert [o["Key"] for o in v2.list_objects_v2(Bucket=bucket, Prefix="v2/")["Contents"]] == ["v2/a b+c"]
    up = v2.create_multipart_upload(Bucket=bucket, Key="v2/mp")
    part = v2.upload_part(Bucket=bucket, Key="v2/mp", UploadId=up["UploadId"], PartNumber=1, Body=b"p")
    v2.complete_multipart_upload(Bucket=bucket, Key="v2/mp", UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    url = v2.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "v2/mp"}, ExpiresIn=60)
    assert "Signature=" in url and "AWSAccessKeyId=" in url, url
    assert urllib.request.urlopen(url, timeout=10).read() == b"p"

    # A wrong signature, in the header or in a presigned URL: 403 SignatureDoesNotMatch.
    path = f"/{bucket}/v2/mp"
    headers = sigv2_headers(cluster, "GET", path, datetime.datetime.now(datetime.timezone.utc))
    key_id, sig = headers["Authorization"][len("AWS "):].split(":")
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    status, body = raw(cluster, "GET", path, {**headers, "Authorization": f"AWS {key_id}:{flipped}"})
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body and b"<RequestId>" in body, body
    tampered = url.replace("Signature=", "Signature=A", 1)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(tampered, timeout=10)
    assert e.value.code == 403 and b"<Code>SignatureDoesNotMatch</Code>" in e.value.read()
    # Signed for another object: the resource is part of what is signed.
    status, body = raw(cluster, "GET", f"/{bucket}/v2/a%20b%2Bc", headers)
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body, body


def test_presigned_urls_live_at_most_a_week(cluster, bucket):
    s3 = cluster.client(signature_version="s3v4")
    s3.put_object(Bucket=bucket, Key="week", Body=b"a week")
    week = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "week"}, ExpiresIn=604800)
    assert urllib.request.urlopen(week, timeout=10).read() == b"a week"
    longer = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "week"}, ExpiresIn=604801)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(longer, timeout=10)
    assert e.value.code == 400
    assert b"<Code>AuthorizationQueryParametersError</Code>" in e.value.read()
