"""Browser-form POST uploads (presigned POST with a policy document), through boto3's
generate_presigned_post and the `requests` multipart encoder, against baobab dev. Large forms
are produced as they are sent (`Form`), so neither side holds the file."""

import hashlib
import os
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

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


BOUNDARY = "baobab-form-boundary"


def part(name, value, filename=None):
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
    if filename:
        head += "Content-Type: application/octet-stream\r\n"
    return (head + "\r\n").encode() + (value if filename else str(value).encode()) + (b"" if filename else b"\r\n")


class Form:
    """A multipart/form-data body of `fields`, a file of `size` pseudo-random bytes named
    `filename`, then `after` fields, generated as it is read (a 1 MiB + 7 block rotated, so
    chunks never line up with the gateway's blocks). `md5` is the file's, once all is read.
    With `chunked`, `requests` sends it with Transfer-Encoding: chunked (iteration); otherwise
    with its Content-Length (read())."""

    def __init__(self, fields, size, filename="file.bin", after=None, chunked=False):
        self.head = b"".join(part(k, v) for k, v in fields.items()) + part("file", b"", filename)
        self.tail = b"\r\n" + b"".join(part(k, v) for k, v in (after or {}).items()) + f"--{BOUNDARY}--\r\n".encode()
        self.size = size
        self.block = os.urandom(MiB + 7)
        self.md5 = hashlib.md5()
        self.chunked = chunked
        self._pieces = self._generate()
        self._current = memoryview(b"")

    content_type = f"multipart/form-data; boundary={BOUNDARY}"

    def _generate(self):
        yield self.head
        sent = 0
        while sent < self.size:
            start = sent % len(self.block)
            chunk = (self.block[start:] + self.block[:start])[:min(MiB, self.size - sent)]
            self.md5.update(chunk)
            sent += len(chunk)
            yield chunk
        yield self.tail

    def __iter__(self):
        if not self.chunked:
            raise TypeError("sent with a Content-Length: read(), not iteration")
        return self._pieces

    def __len__(self):
        if self.chunked:
            raise TypeError("no length: sent chunked")
        return len(self.head) + self.size + len(self.tail)

    def read(self, n=-1):
        while not len(self._current):
            nxt = next(self._pieces, None)
            if nxt is None:
                return b""
            self._current = memoryview(nxt)
        n = len(self._current) if n is None or n < 0 else n
        out, self._current = self._current[:n], self._current[n:]
        return bytes(out)


def send(url, form, **kw):
    data = form if not form.chunked else iter(form)
    return requests.post(url, data=data, headers={"Content-Type": form.content_type}, timeout=300, **kw)


@contextmanager
def rss_growth_mib(pid):
    """Yields a list whose one entry becomes the peak RSS growth in MiB over the block."""
    before = rss_kib(pid)
    peak = [before]
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(pid))
            time.sleep(0.02)

    t = threading.Thread(target=watch)
    t.start()
    grown = [0.0]
    try:
        yield grown
    finally:
        stop.set()
        t.join()
        grown[0] = (peak[0] - before) / 1024


def shard_files(dev_cluster):
    return {p for p in dev_cluster.data_dir.glob("node*/shards/**/*") if p.is_file()}


def streamed_md5(s3, bucket, key):
    md5 = hashlib.md5()
    for chunk in s3.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(MiB):
        md5.update(chunk)
    return md5.hexdigest()


def assert_no_object(s3, bucket, key):
    with pytest.raises(s3.exceptions.ClientError) as e:
        s3.head_object(Bucket=bucket, Key=key)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_100mib_post_streams_with_bounded_memory(dev_cluster, post_bucket):
    s3, bucket = post_bucket
    size = 100 * MiB
    post = presigned(s3, bucket, "big/${filename}", [["content-length-range", 1, 200 * MiB]])
    form = Form(post["fields"], size, filename="hundred.bin")
    with rss_growth_mib(dev_cluster.proc.pid) as grown:
        r = send(post["url"], form)
    assert r.status_code == 204, r.text
    assert r.headers["ETag"] == f'"{form.md5.hexdigest()}"'
    print(f"RSS growth during the 100 MiB POST: {grown[0]:.1f} MiB")
    assert grown[0] < 64, f"RSS grew by {grown[0]:.0f} MiB during a 100 MiB POST"
    head = s3.head_object(Bucket=bucket, Key="big/hundred.bin")
    assert head["ContentLength"] == size
    assert streamed_md5(s3, bucket, "big/hundred.bin") == form.md5.hexdigest()


def test_filename_variable_names_the_key(post_bucket):
    s3, bucket = post_bucket
    post = presigned(s3, bucket, "user/${filename}", [])
    # The conditions boto3 wrote: starts-with $key "user/".
    for filename, key in (("notes.txt", "user/notes.txt"), ("dir/sub/photo.jpg", "user/photo.jpg")):
        r = requests.post(post["url"], data=post["fields"], files={"file": (filename, b"named")}, timeout=30)
        assert r.status_code == 204, r.text
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"named"
    # The substituted key must still keep the policy.
    post = presigned(s3, bucket, "user/${filename}", [])
    fields = dict(post["fields"], key="${filename}")
    r = requests.post(post["url"], data=fields, files={"file": ("x.txt", b"no")}, timeout=30)
    assert r.status_code == 403 and error_code(r) == "AccessDenied", r.text
    assert_no_object(s3, bucket, "x.txt")


def test_file_past_content_length_range_is_refused_while_streaming(dev_cluster, post_bucket):
    s3, bucket = post_bucket
    before = shard_files(dev_cluster)
    post = presigned(s3, bucket, "too-big", [["content-length-range", 1, 40 * MiB]])
    form = Form(post["fields"], 100 * MiB, chunked=True)
    with rss_growth_mib(dev_cluster.proc.pid) as grown:
        r = send(post["url"], form)
    assert r.status_code == 400, r.text
    assert error_code(r) == "EntityTooLarge"
    assert grown[0] < 64, f"RSS grew by {grown[0]:.0f} MiB"
    assert_no_object(s3, bucket, "too-big")
    # What was written before the limit was passed is never committed: no new shard file
    # stays. (Temp files of the aborted shard streams are the data path's, as for any
    # aborted PUT, and not checked here.)
    def committed_new():
        return {p for p in shard_files(dev_cluster) - before if not p.name.endswith(".tmp")}

    deadline = time.time() + 10
    while committed_new() and time.time() < deadline:
        time.sleep(0.2)
    assert not committed_new()

    # Below the minimum: EntityTooSmall, nothing stored.
    post = presigned(s3, bucket, "too-small", [["content-length-range", 10, 100]])
    r = requests.post(post["url"], data=post["fields"], files={"file": ("x", b"abc")}, timeout=30)
    assert r.status_code == 400 and error_code(r) == "EntityTooSmall", r.text
    assert_no_object(s3, bucket, "too-small")


def test_fields_before_and_after_the_file(post_bucket):
    s3, bucket = post_bucket
    conditions = [{"Content-Type": "text/plain"}, {"x-amz-meta-color": "blue"}, {"Cache-Control": "max-age=60"},
                  {"tagging": "<Tagging><TagSet><Tag><Key>k</Key><Value>v</Value></Tag></TagSet></Tagging>"}]
    fields = {"Content-Type": "text/plain", "x-amz-meta-color": "blue", "Cache-Control": "max-age=60",
              "tagging": conditions[3]["tagging"]}
    post = presigned(s3, bucket, "fields", conditions, fields=fields)
    # Fields after the file are ignored (AWS), even ones no condition names.
    form = Form(post["fields"], 1000, after={"x-amz-meta-late": "ignored", "Content-Type": "image/png"})
    r = send(post["url"], form)
    assert r.status_code == 204, r.text
    head = s3.head_object(Bucket=bucket, Key="fields")
    assert head["ContentType"] == "text/plain"
    assert head["CacheControl"] == "max-age=60"
    assert head["Metadata"] == {"color": "blue"}
    assert s3.get_object_tagging(Bucket=bucket, Key="fields")["TagSet"] == [{"Key": "k", "Value": "v"}]

    # A field before the file that no condition names.
    post = presigned(s3, bucket, "extra", [])
    r = requests.post(post["url"], data=dict(post["fields"], **{"x-amz-meta-sneaky": "1"}),
                      files={"file": ("x", b"data")}, timeout=30)
    assert r.status_code == 403 and error_code(r) == "AccessDenied", r.text
    assert "sneaky" in r.text
    assert_no_object(s3, bucket, "extra")
    # ... except x-ignore-* fields.
    r = requests.post(post["url"], data=dict(post["fields"], **{"x-ignore-me": "1"}),
                      files={"file": ("x", b"data")}, timeout=30)
    assert r.status_code == 204, r.text


def test_success_action_redirect_answers_303(post_bucket):
    s3, bucket = post_bucket
    target = "https://example.com/done?from=form"
    post = presigned(s3, bucket, "redirected", [{"success_action_redirect": target}],
                     fields={"success_action_redirect": target})
    r = requests.post(post["url"], data=post["fields"], files={"file": ("x", b"data")}, timeout=30,
                      allow_redirects=False)
    assert r.status_code == 303, r.text
    location = urlsplit(r.headers["Location"])
    assert (location.scheme, location.netloc, location.path) == ("https", "example.com", "/done")
    query = parse_qs(location.query)
    assert query["from"] == ["form"]
    assert query["bucket"] == [bucket]
    assert query["key"] == ["redirected"]
    etag = s3.head_object(Bucket=bucket, Key="redirected")["ETag"]
    assert query["etag"] == [etag]
    # success_action_status 200: an empty 200.
    post = presigned(s3, bucket, "two-hundred", [{"success_action_status": "200"}],
                     fields={"success_action_status": "200"})
    r = requests.post(post["url"], data=post["fields"], files={"file": ("x", b"data")}, timeout=30)
    assert r.status_code == 200 and r.content == b"", r.text
    assert r.headers["ETag"] == etag


def test_sigv2_post(dev_cluster):
    # boto3 signs presigned POSTs with SigV2 unless the client is told s3v4.
    s3 = dev_cluster.client()
    bucket = unique_bucket("postv2")
    s3.create_bucket(Bucket=bucket)
    try:
        post = presigned(s3, bucket, "v2/${filename}", [["content-length-range", 1, 100]])
        assert "signature" in post["fields"] and "AWSAccessKeyId" in post["fields"], post["fields"]
        r = requests.post(post["url"], data=post["fields"], files={"file": ("a.txt", b"signed v2")}, timeout=30)
        assert r.status_code == 204, r.text
        assert s3.get_object(Bucket=bucket, Key="v2/a.txt")["Body"].read() == b"signed v2"

        fields = dict(post["fields"], signature="AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
        r = requests.post(post["url"], data=fields, files={"file": ("b.txt", b"x")}, timeout=30)
        assert r.status_code == 403 and error_code(r) == "SignatureDoesNotMatch", r.text
        assert_no_object(s3, bucket, "v2/b.txt")
    finally:
        empty_and_delete(s3, bucket)


def test_unknown_key_and_missing_right(dev_cluster, post_bucket):
    s3, bucket = post_bucket
    stranger = dev_cluster.client_for("NOSUCHKEY0000000", "secret", signature_version="s3v4")
    post = presigned(stranger, bucket, "k", [])
    r = requests.post(post["url"], data=post["fields"], files={"file": ("x", b"x")}, timeout=30)
    assert r.status_code == 403 and error_code(r) == "InvalidAccessKeyId", r.text

    # A known key without the write right on the bucket: as its PutObject would be.
    record = dev_cluster.admin("key", "create", "--name", f"post-{uuid.uuid4().hex[:8]}")
    try:
        other = dev_cluster.client_for(record["access_key_id"], record["secret_access_key"],
                                       signature_version="s3v4")
        post = presigned(other, bucket, "k", [])
        r = requests.post(post["url"], data=post["fields"], files={"file": ("x", b"x")}, timeout=30)
        assert r.status_code == 403 and error_code(r) == "AccessDenied", r.text
        assert_no_object(s3, bucket, "k")
    finally:
        dev_cluster.admin("key", "delete", record["access_key_id"])


def test_malformed_forms(post_bucket):
    s3, bucket = post_bucket
    post = presigned(s3, bucket, "m", [])
    url = post["url"]
    ct = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}

    def body(*parts):
        return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()

    fields = b"".join(part(k, v) for k, v in post["fields"].items())
    cases = [
        # No file field.
        (body(fields), "IncorrectNumberOfFilesInPostRequest"),
        # A field before the file above the bound.
        (body(part("x-ignore-pad", "p" * (64 * 1024 + 1)), fields, part("file", b"x", "f") + b"\r\n"),
         "MaxPostPreDataLengthExceededError"),
        # Not multipart at all.
        (b"this is not a form", "MalformedPOSTRequest"),
        # No key.
        (body(b"".join(part(k, v) for k, v in post["fields"].items() if k != "key"), part("file", b"x", "f") + b"\r\n"),
         "InvalidArgument"),
    ]
    for data, code in cases:
        r = requests.post(url, data=data, headers=ct, timeout=30)
        assert r.status_code == 400, (code, r.text)
        assert error_code(r) == code, r.text
        # Error bodies carry the request id of the header, as every gateway error.
        assert f"<RequestId>{r.headers['x-amz-request-id']}</RequestId>" in r.text
    r = requests.post(url, data=b"x", headers={"Content-Type": "multipart/form-data"}, timeout=30)
    assert r.status_code == 400 and error_code(r) == "MalformedPOSTRequest", r.text
    assert_no_object(s3, bucket, "m")


def test_virtual_hosted_post(dev_cluster, post_bucket):
    s3, bucket = post_bucket
    post = presigned(s3, bucket, "vhost", [])
    host = f"{bucket}.localhost:{dev_cluster.port}"
    r = requests.post(f"{dev_cluster.endpoint}/", data=post["fields"], files={"file": ("x", b"vh")},
                      headers={"Host": host}, timeout=30)
    assert r.status_code == 204, r.text
    assert r.headers["Location"] == f"http://{host}/vhost"
    assert s3.get_object(Bucket=bucket, Key="vhost")["Body"].read() == b"vh"
