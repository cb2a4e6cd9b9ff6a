"""Hostile clients meet bounds: slow connections (partial request heads, PUT bodies at a trickle)
do not stop others from being served nor grow the gateway's memory without bound; a stalled PUT
is answered `RequestTimeout` and leaves no temp shard file; the connection limit holds; a key past
its request rate gets `SlowDown`; unknown access keys cost a bounded number of metadata reads.

One local cluster (separate processes) with short limits set through its config:
header read timeout 4 s, body idle timeout 2 s, 1,200 connections; the last test restarts its
gateway with 40 requests/s per key (the slow-connection test sends 500 PUTs at once).
"""

import hashlib
import os
import random
import signal
import socket
import string
import threading
import time
import uuid
from pathlib import Path

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import LocalCluster, MiB, check_logs, free_port_block

# Long enough that the connection-limit test's flood (1,200 connections) and its checks end
# before the gateway drops the first idle ones, even on a loaded machine.
HEADER_READ_TIMEOUT_SECS = 8
BODY_IDLE_TIMEOUT_SECS = 2
MAX_CONNECTIONS = 1200
REQUESTS_PER_SEC_PER_KEY = 40
# The gateway's RSS may grow by at most this much while 1,000 slow connections are held
# (256 KiB per connection: an unfinished head holds < 128 KiB of hyper's buffer, a PUT's first
# block is 1 MiB of which a trickle touches little).
SLOW_CONNECTIONS = 1000
RSS_GROWTH_LIMIT_BYTES = 256 * MiB
# What the gateway may look up of unknown keys (auth.rs): a burst, then a rate.
UNKNOWN_KEY_LOOKUPS_BURST = 200
UNKNOWN_KEY_LOOKUPS_PER_SEC = 50
REGION = "us-east-1"


class LimitedCluster(LocalCluster):
    def __init__(self, directory, port):
        super().__init__(directory, port, script_env={
            "BAOBAB_S3_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
            "BAOBAB_S3_HEADER_READ_TIMEOUT_SECS": str(HEADER_READ_TIMEOUT_SECS),
            "BAOBAB_S3_BODY_IDLE_TIMEOUT_SECS": str(BODY_IDLE_TIMEOUT_SECS),
        })

    def restart_gateway(self, **s3_settings):
        """Stops the gateway, adds `s3_settings` to its [s3] section, starts it again."""
        pid = self.gateway_pid()
        os.kill(pid, signal.SIGTERM)
        deadline = time.time() + 15
        while Path(f"/proc/{pid}").exists() and time.time() < deadline:
            try:
                if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                    break
            except OSError:
                break
            time.sleep(0.1)
        toml = self.dir / "gateway.toml"
        extra = "".join(f"{k} = {v}\n" for k, v in s3_settings.items())
        toml.write_text(toml.read_text().replace("[s3]\n", "[s3]\n" + extra, 1))
        self.script("start", "--s3-port", str(self.s3_port))

    def tmp_shard_files(self):
        return [p for n in (1, 2, 3) for p in (self.dir / f"node{n}").rglob("*.tmp")]


@pytest.fixture(scope="module")
def limited(workdir):
    c = LimitedCluster(workdir / "limits", free_port_block()).start()
    yield c
    c.stop()
    check_logs(c)


@pytest.fixture(scope="module")
def lbucket(limited):
    name = f"lim-{uuid.uuid4().hex[:10]}"
    limited.client().create_bucket(Bucket=name)
    return name


def rss_bytes(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def signed_put_head(cluster, path, length, key=None, secret=None, extra=None):
    """The request head of a SigV4-signed PUT of `length` bytes (UNSIGNED-PAYLOAD), as bytes."""
    url = f"{cluster.endpoint}{path}"
    headers = {"x-amz-content-sha256": "UNSIGNED-PAYLOAD", "Content-Length": str(length), **(extra or {})}
    req = AWSRequest(method="PUT", url=url, headers=headers)
    SigV4Auth(Credentials(key or cluster.key, secret or cluster.secret), "s3", REGION).add_auth(req)
    lines = [f"PUT {path} HTTP/1.1", f"Host: 127.0.0.1:{cluster.port}"]
    lines += [f"{k}: {v}" for k, v in req.headers.items() if k.lower() != "host"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def signed_get(cluster, path, key, secret):
    url = f"{cluster.endpoint}{path}"
    req = AWSRequest(method="GET", url=url, headers={"x-amz-content-sha256": hashlib.sha256(b"").hexdigest()})
    SigV4Auth(Credentials(key, secret), "s3", REGION).add_auth(req)
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{cluster.port}"]
    lines += [f"{k}: {v}" for k, v in req.headers.items() if k.lower() != "host"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def connect(cluster, timeout=5):
    s = socket.create_connection(("127.0.0.1", cluster.port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_response(s, timeout):
    """(status, body) of one response on socket `s`, or None when nothing came within `timeout`;
    ("closed", b"") when the server closed the connection without an answer."""
    s.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                return ("closed", b"") if not data else (None, data)
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
        return int(head.split()[1]), body
    except socket.timeout:
        return None
    except ConnectionResetError:
        return ("closed", b"")


def closed_by_server(s, timeout):
    s.settimeout(timeout)
    try:
        return s.recv(1024) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_slow_connections_do_not_stop_others_and_memory_stays_bounded(limited, lbucket):
    s3 = limited.client()
    s3.put_object(Bucket=lbucket, Key="warm", Body=b"x" * 100_000)
    pid = limited.gateway_pid()
    rss_before = rss_bytes(pid)
    heads, trickles = [], []
    started = time.time()
    try:
        # Half send a request head that never ends, half a signed PUT whose body trickles.
        for i in range(SLOW_CONNECTIONS // 2):
            s = connect(limited)
            s.sendall(f"PUT /{lbucket}/slow{i} HTTP/1.1\r\nHost: x\r\nX-Pad: ".encode() + b"a" * 4000)
            heads.append(s)
        heads_opened = time.time()
        for i in range(SLOW_CONNECTIONS // 2):
            s = connect(limited)
            s.sendall(signed_put_head(limited, f"/{lbucket}/trickle{i}", 4 * MiB) + b"b" * 65536)
            trickles.append(s)
        opened_s = time.time() - started
        stop = threading.Event()

        def trickle():
            while not stop.is_set():
                for s in trickles:
                    try:
                        s.send(b"c")
                    except OSError:
                        pass
                stop.wait(0.5)

        t = threading.Thread(target=trickle, daemon=True)
        t.start()
        # Everyone else is served meanwhile, at normal speed.
        peak = rss_bytes(pid)
        ops = 0
        while time.time() - started < opened_s + 2.5 and ops < 200:
            t0 = time.time()
            key = f"ok{ops}"
            body = os.urandom(3 * 1024 * 1024 if ops % 5 == 0 else 1000)
            s3.put_object(Bucket=lbucket, Key=key, Body=body)
            assert s3.get_object(Bucket=lbucket, Key=key)["Body"].read() == body
            assert time.time() - t0 < 3, "a normal client waited"
            ops += 1
            peak = max(peak, rss_bytes(pid))
        assert ops >= 3
        growth = peak - rss_before
        print(f"\n{SLOW_CONNECTIONS} slow connections opened in {opened_s:.1f} s; gateway RSS "
              f"{rss_before / MiB:.0f} MiB before, peak {peak / MiB:.0f} MiB "
              f"(+{growth / MiB:.0f} MiB, bound {RSS_GROWTH_LIMIT_BYTES / MiB:.0f} MiB); {ops} normal PUT+GET")
        assert growth < RSS_GROWTH_LIMIT_BYTES
        # Heads that never end are dropped at the header read timeout, whatever trickles: each
        # head's timeout runs from its own connection, the last one opened at `heads_opened`
        # (seconds after the first on a loaded machine).
        deadline = heads_opened + HEADER_READ_TIMEOUT_SECS + 3
        still_open = [s for s in heads if not closed_by_server(s, max(0.01, deadline - time.time()))]
        assert not still_open, f"{len(still_open)} unfinished heads still open"
        # Trickling bodies are fine; stopped ones get RequestTimeout after the idle timeout.
        stop.set()
        t.join()
        answered = 0
        for s in trickles:
            r = read_response(s, BODY_IDLE_TIMEOUT_SECS + 3)
            assert r is not None and r[0] == 400 and b"<Code>RequestTimeout</Code>" in r[1], r
            answered += 1
        assert answered == len(trickles)
    finally:
        for s in heads + trickles:
            s.close()
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=lbucket, Prefix="trickle").get("Contents", [])}
    assert not keys, "a timed-out PUT left an object"


def test_stalled_put_times_out_and_leaves_no_temp_shard_file(limited, lbucket):
    s = connect(limited)
    try:
        s.sendall(signed_put_head(limited, f"/{lbucket}/stalled", 8 * MiB))
        s.sendall(os.urandom(3 * MiB))  # three blocks: shard streams are open on the nodes
        deadline = time.time() + 2
        while not limited.tmp_shard_files() and time.time() < deadline:
            time.sleep(0.05)
        assert limited.tmp_shard_files(), "the PUT never reached the storage nodes"
        t0 = time.time()
        r = read_response(s, BODY_IDLE_TIMEOUT_SECS + 5)
        waited = time.time() - t0
    finally:
        s.close()
    assert r is not None, "no answer to a stalled PUT"
    status, body = r
    assert status == 400, r
    assert b"<Code>RequestTimeout</Code>" in body
    assert b"Your socket connection to the server was not read from or written to within the timeout period" in body
    assert b"<RequestId>" in body
    assert waited < BODY_IDLE_TIMEOUT_SECS + 2
    deadline = time.time() + 5
    while limited.tmp_shard_files() and time.time() < deadline:
        time.sleep(0.1)
    assert not limited.tmp_shard_files(), "temp shard files left behind"
    s3 = limited.client()
    with pytest.raises(s3.exceptions.ClientError):
        s3.head_object(Bucket=lbucket, Key="stalled")


def test_connection_limit_holds(limited, lbucket):
    s3 = limited.client()
    s3.put_object(Bucket=lbucket, Key="c", Body=b"c")
    # A client connected before the flood keeps being served on its connection.
    existing = connect(limited)
    existing.sendall(signed_get(limited, f"/{lbucket}/c", limited.key, limited.secret))
    assert read_response(existing, 5)[0] == 200
    held = []
    try:
        # Past the header timeout the gateway closes idle held connections, freeing slots: the
        # check means something only before it. A loaded machine can make the flood itself
        # slow (the gateway accepts late, the listen backlog fills, SYNs are retried): then it
        # is tried again, at most three times.
        for attempt in range(3):
            flood_started = time.time()
            for _ in range(MAX_CONNECTIONS):
                held.append(connect(limited))
            time.sleep(0.5)  # the gateway accepts them all: its limit is reached
            waiting = connect(limited)
            waiting.sendall(signed_get(limited, f"/{lbucket}/c", limited.key, limited.secret))
            served = read_response(waiting, 1.0)
            elapsed = time.time() - flood_started
            if elapsed < HEADER_READ_TIMEOUT_SECS:
                break
            print(f"\nflood attempt {attempt + 1} took {elapsed:.1f} s, past the header timeout; again")
            waiting.close()
            for s in held:
                s.close()
            held = []
            time.sleep(2)
        assert elapsed < HEADER_READ_TIMEOUT_SECS, f"the flood took {elapsed:.1f} s, past the header timeout"
        assert served is None, "served past the connection limit"
        existing.sendall(signed_get(limited, f"/{lbucket}/c", limited.key, limited.secret))
        r = read_response(existing, 3)
        assert r is not None and r[0] == 200, "an existing connection was not served"
        # Freeing connections lets the waiting one in.
        for s in held[:50]:
            s.close()
        r = read_response(waiting, 3)
        assert r is not None and r[0] == 200, r
        waiting.close()
    finally:
        existing.close()
        for s in held:
            s.close()


def random_key_id():
    return "BK" + "".join(random.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(18))


def test_unknown_key_is_remembered_briefly(limited, lbucket):
    key_id = random_key_id()
    secret = "".join(random.choice(string.ascii_letters + string.digits) for _ in range(40))
    s = connect(limited)
    try:
        s.sendall(signed_get(limited, "/", key_id, secret))
        status, body = read_response(s, 5)
        assert status == 403 and b"InvalidAccessKeyId" in body
        limited.admin("key", "create", "--name", "late", "--key-id", key_id, "--secret-stdin", stdin=secret + "\n")
        created = time.time()
        while True:
            s.sendall(signed_get(limited, "/", key_id, secret))
            status, body = read_response(s, 5)
            if status == 200:
                break
            assert status == 403 and b"InvalidAccessKeyId" in body, (status, body)
            assert time.time() - created < 4, "a created key still refused after 4 s"
            time.sleep(0.2)
        print(f"\nkey usable {time.time() - created:.1f} s after its creation")
    finally:
        s.close()


def test_random_unknown_keys_cost_bounded_lookups(limited, lbucket):
    """Every 403 InvalidAccessKeyId for a never-seen key id is one metadata read; the rest of
    a flood is answered SlowDown without one."""
    counts = {403: 0, 503: 0}
    lock = threading.Lock()
    t0 = time.time()

    def flood(n):
        s = connect(limited)
        try:
            for _ in range(n):
                s.sendall(signed_get(limited, "/", random_key_id(), "x" * 40))
                r = read_response(s, 5)
                assert r is not None and r[0] in (403, 503), r
                with lock:
                    counts[r[0]] += 1
        finally:
            s.close()

    threads = [threading.Thread(target=flood, args=(250,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    elapsed = time.time() - t0
    bound = UNKNOWN_KEY_LOOKUPS_BURST + UNKNOWN_KEY_LOOKUPS_PER_SEC * elapsed + 5
    print(f"\n1000 random key ids in {elapsed:.1f} s: {counts[403]} looked up (bound {bound:.0f}), "
          f"{counts[503]} SlowDown")
    assert counts[403] + counts[503] == 1000
    assert counts[403] <= bound
    assert counts[503] > 0
    # The cluster's own key is unaffected.
    assert limited.client().list_objects_v2(Bucket=lbucket)["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_oversized_aws_chunk_is_refused_before_it_is_held(limited, lbucket):
    length = 16 * MiB
    head = signed_put_head(
        limited, f"/{lbucket}/chunky", length + 200,
        extra={"x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
               "x-amz-decoded-content-length": str(length), "Content-Encoding": "aws-chunked"},
    )
    s = connect(limited)
    try:
        s.sendall(head + f"{length:x};chunk-signature={'0' * 64}\r\n".encode() + b"d" * 65536)
        r = read_response(s, 5)
    finally:
        s.close()
    assert r is not None and r[0] == 400, r
    assert b"aws-chunked chunk" in r[1]


def test_rate_limit_answers_slow_down(limited, lbucket):
    limited.restart_gateway(requests_per_sec_per_key=REQUESTS_PER_SEC_PER_KEY)
    key = limited.admin("key", "create", "--name", "rate-limited")
    key_id, secret = key["access_key_id"], key["secret_access_key"]
    limited.admin("bucket", "allow", lbucket, "--key", key_id, "--read")
    time.sleep(2.2)  # bucket rights reach the gateway
    s = connect(limited)
    statuses, slow_body = [], None
    t0 = time.time()
    try:
        for _ in range(3 * REQUESTS_PER_SEC_PER_KEY):
            s.sendall(signed_get(limited, f"/{lbucket}?list-type=2", key_id, secret))
            r = read_response(s, 5)
            assert r is not None and r[0] != "closed"
            statuses.append(r[0])
            if r[0] == 503 and slow_body is None:
                slow_body = r[1]
    finally:
        s.close()
    elapsed = time.time() - t0
    ok = statuses.count(200)
    assert set(statuses) <= {200, 503}, statuses
    assert slow_body is not None, f"no SlowDown in {len(statuses)} requests in {elapsed:.2f} s"
    assert b"<Code>SlowDown</Code>" in slow_body and b"<RequestId>" in slow_body
    assert ok <= REQUESTS_PER_SEC_PER_KEY * (1 + elapsed) + 2, (ok, elapsed)
    # Other keys are not affected, and the key recovers within a second.
    assert limited.client().list_objects_v2(Bucket=lbucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
    time.sleep(1.1)
    s = connect(limited)
    try:
        s.sendall(signed_get(limited, f"/{lbucket}?list-type=2", key_id, secret))
        assert read_response(s, 5)[0] == 200
    finally:
        s.close()
