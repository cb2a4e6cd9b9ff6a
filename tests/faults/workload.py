"""Writers that keep a ledger of what the cluster acknowledged, and the checks against it.

Every key belongs to one writer thread, so the operations on a key are sequential. An
operation is acknowledged (2xx) or failed (any error, timeout, refused connection). A failed
operation may or may not have taken effect, now or later; its key is then "tainted": the writer
never touches it again, and the key may hold either the state after its last acknowledged
operation or the failed operation's effect (absent for a DELETE, the attempted body, whole, for
a PUT). An untainted key must hold exactly the state of its last acknowledged operation.

Bodies are random and regenerable from a seed; the ledger keeps only their size, MD5 and the
first bytes of each data shard (to find their shard files on disk, see shards.py).
"""

import hashlib
import random
import threading
import time
from collections import Counter

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

import shards

KiB = 1024
MiB = 1024 * 1024
INLINE_MAX = 16 * KiB


class Body:
    __slots__ = ("id", "key", "seed", "size", "md5", "fps", "acked")


class KeyState:
    __slots__ = ("key", "state", "candidates", "tainted", "bodies", "history", "bad", "pinned", "cold")

    def __init__(self, key):
        self.key = key
        self.state = None          # body id of the last acknowledged state, None = absent
        self.candidates = {None}   # states the key may be in
        self.tainted = False
        self.bodies = []           # every body id ever attempted for this key
        self.history = []          # (phase, op, body id, t0, t1, outcome)
        self.bad = None            # first failed check, once found
        self.pinned = False        # writers leave it alone (the corrupt fault's victims)
        self.cold = False          # written once, never touched again: must survive every fault


def error_kind(e):
    if isinstance(e, ClientError):
        err = e.response.get("Error", {})
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{status} {err.get('Code', '?')}"
    return type(e).__name__


def s3_client(endpoint, key_id, secret, attempts=1, read_timeout=40, connect_timeout=5):
    # botocore's `max_attempts` counts retries after the first attempt; `total_max_attempts`
    # counts them all: 1 means exactly one attempt, no retry.
    cfg = Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": attempts, "mode": "standard"},
                 connect_timeout=connect_timeout, read_timeout=read_timeout, max_pool_connections=4)
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key_id, aws_secret_access_key=secret,
                        region_name="us-east-1", config=cfg)


class Ledger:
    def __init__(self, k, block_size):
        self.k = k
        self.block_size = block_size
        self.lock = threading.Lock()
        self.keys = {}
        self.bodies = {}
        self.next_body = 0
        self.phase = "setup"
        self.fault_windows = []  # [start, end or None] (monotonic)
        self.acked = Counter()   # (phase, op) -> n
        self.errors = Counter()  # (phase, kind) -> n
        self.failed_ops = Counter()  # phase -> n

    def new_body(self, key, seed, size):
        data = random.Random(seed).randbytes(size)
        with self.lock:
            b = Body()
            b.id = self.next_body
            self.next_body += 1
            b.key, b.seed, b.size, b.acked = key, seed, size, None
            b.md5 = hashlib.md5(data).hexdigest()
            b.fps = shards.fingerprints(data, self.k, self.block_size) if size > INLINE_MAX else None
            self.bodies[b.id] = b
        return b, data

    def record(self, ks, op, body_id, t0, t1, error):
        with self.lock:
            phase = self.phase
            ks.history.append((phase, op, body_id, t0, t1, error or "ok"))
            effect = body_id if op == "put" else None
            if error is None:
                if body_id is not None:
                    self.bodies[body_id].acked = (t0, t1)
                ks.state = effect
                ks.candidates = {effect}
                self.acked[(phase, op)] += 1
            else:
                ks.tainted = True
                ks.candidates = {ks.state, effect}
                self.errors[(phase, error)] += 1
                self.failed_ops[phase] += 1

    def clean(self, t0, t1):
        """Whether [t0, t1] overlaps no fault window (a window ends 5 s after recovery)."""
        for start, end in self.fault_windows:
            if t1 >= start and (end is None or t0 <= end):
                return False
        return True


class Writer(threading.Thread):
    """One writer: PUT of new keys, overwrites, DELETEs, on its own keys, one at a time. A fifth
    of its first new keys (up to max_cold) are cold: written once and kept, so the campaign's
    later faults hit data written before the earlier ones."""

    def __init__(self, index, ledger, client, bucket, seed, target_live=30, think=0.02, max_cold=40):
        super().__init__(name=f"writer-{index}", daemon=True)
        self.index = index
        self.ledger = ledger
        self.client = client
        self.bucket = bucket
        self.rng = random.Random(f"{seed}:writer:{index}")
        self.target_live = target_live
        self.think = think
        self.go = threading.Event()
        self.idle = threading.Event()
        self.idle.set()
        self.quit = threading.Event()
        self.n = 0
        self.mine = []
        self.mode = "mixed"  # or "fill": only PUTs of new large objects
        self.max_cold = max_cold
        self.n_cold = 0

    def size(self):
        r = self.rng.random()
        if r < 0.45:
            return 1 * KiB
        if r < 0.50:
            return self.rng.choice([INLINE_MAX, INLINE_MAX + 1, MiB, MiB + 1])
        return self.rng.randint(1 * MiB, 6 * MiB)

    def choose(self):
        live = [ks for ks in self.mine
                if not ks.tainted and ks.bad is None and not ks.pinned and not ks.cold and ks.state is not None]
        r = self.rng.random()
        if len(live) > self.target_live:
            weights = (0.2, 0.3, 0.5)
        elif len(live) < self.target_live // 3:
            weights = (0.7, 0.2, 0.1)
        else:
            weights = (0.45, 0.3, 0.25)
        if r < weights[0] or not live or self.mode == "fill":
            self.n += 1
            key = f"w{self.index}/{self.n:06d}-{self.rng.getrandbits(32):08x}"
            ks = KeyState(key)
            if self.mode == "mixed" and self.n_cold < self.max_cold and self.rng.random() < 0.2:
                ks.cold = True
                self.n_cold += 1
            with self.ledger.lock:
                self.ledger.keys[key] = ks
            self.mine.append(ks)
            return "put", ks
        ks = self.rng.choice(live)
        return ("put" if r < weights[0] + weights[1] else "delete"), ks

    def one(self):
        op, ks = self.choose()
        body_id = None
        data = None
        if op == "put":
            size = self.rng.randint(1 * MiB, 6 * MiB) if self.mode == "fill" else self.size()
            body, data = self.ledger.new_body(ks.key, self.rng.getrandbits(64), size)
            body_id = body.id
            ks.bodies.append(body_id)
        t0 = time.monotonic()
        error = None
        try:
            if op == "put":
                self.client.put_object(Bucket=self.bucket, Key=ks.key, Body=data)
            else:
                self.client.delete_object(Bucket=self.bucket, Key=ks.key)
        except Exception as e:  # noqa: BLE001 -- any failure leaves the outcome unknown
            error = error_kind(e)
        self.ledger.record(ks, op, body_id, t0, time.monotonic(), error)
        return error

    def run(self):
        while not self.quit.is_set():
            if not self.go.wait(0.2):
                continue
            self.idle.clear()
            try:
                if not self.go.is_set():
                    continue
                error = self.one()
                # a refused connection fails at once: do not spin
                time.sleep(0.5 if error else self.think)
            finally:
                self.idle.set()


class Writers:
    def __init__(self, writers):
        self.writers = writers

    def start(self):
        for w in self.writers:
            w.start()

    def set_mode(self, mode):
        for w in self.writers:
            w.mode = mode

    def resume(self):
        for w in self.writers:
            w.go.set()

    def pause(self, timeout=120):
        """Stops new operations and waits for those in flight (bounded by the client timeouts)."""
        for w in self.writers:
            w.go.clear()
        deadline = time.monotonic() + timeout
        for w in self.writers:
            w.idle.wait(max(0.0, deadline - time.monotonic()))
        return all(w.idle.is_set() for w in self.writers)

    def stop(self, join=True):
        for w in self.writers:
            w.go.clear()
            w.quit.set()
        if join:
            deadline = time.monotonic() + 60
            for w in self.writers:
                w.join(timeout=max(0.1, deadline - time.monotonic()))


def read_key(client, bucket, key):
    """('absent', None) | ('body', (md5, size)) | ('error', kind)."""
    try:
        resp = client.get_object(Bucket=bucket, Key=key)
        h = hashlib.md5()
        n = 0
        for chunk in resp["Body"].iter_chunks(1 << 20):
            h.update(chunk)
            n += len(chunk)
        return "body", (h.hexdigest(), n)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return "absent", None
        return "error", error_kind(e)
    except (BotoCoreError, OSError) as e:
        return "error", error_kind(e)


def check_key(ledger, ks, outcome, value):
    """None if the key holds an allowed state, else (class, detail); sets the observed body."""
    def describe(b):
        return "absent" if b is None else f"body #{b} ({ledger.bodies[b].size} B)"
    allowed = " or ".join(sorted(describe(c) for c in ks.candidates))
    if outcome == "error":
        return "lost", f"unreadable after retries ({value}); expected {allowed}"
    if outcome == "absent":
        if None in ks.candidates:
            return None
        return "lost", f"absent; expected {allowed}"
    md5, size = value
    for c in ks.candidates:
        if c is not None and ledger.bodies[c].md5 == md5 and ledger.bodies[c].size == size:
            return None
    for b in ks.bodies:
        if ledger.bodies[b].md5 == md5 and ledger.bodies[b].size == size:
            return "lost", f"holds body #{b}, an earlier attempt; expected {allowed}"
    # content no PUT of this key ever sent: after a failed write, that write is half-visible
    return ("half-visible" if ks.tainted else "lost"), \
        f"holds {size} B (md5 {md5}) matching no body ever sent for it; expected {allowed}"


def verify(ledger, clients, bucket, deadline_secs=300, retries=4, workers=3, log=print):
    """Reads every key of the ledger; returns ({key: (class, detail)}, observed {key: body id or
    None}, listing anomalies)."""
    keys = list(ledger.keys.values())
    results = {}
    observed = {}
    lock = threading.Lock()
    deadline = time.monotonic() + deadline_secs
    queue = list(keys)

    def worker(i):
        client = clients[i % len(clients)]
        while True:
            with lock:
                if not queue:
                    return
                ks = queue.pop()
            outcome, value = "error", "deadline"
            for attempt in range(retries):
                if time.monotonic() > deadline:
                    break
                outcome, value = read_key(client, bucket, ks.key)
                if outcome != "error":
                    break
                time.sleep(min(8, 1 + 2 * attempt))
            problem = check_key(ledger, ks, outcome, value)
            with lock:
                if problem:
                    results[ks.key] = problem
                elif outcome == "body":
                    observed[ks.key] = next(c for c in ks.candidates if c is not None and
                                            ledger.bodies[c].md5 == value[0])
                else:
                    observed[ks.key] = None

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, deadline - time.monotonic() + 30))
    with lock:
        for ks in queue:
            results.setdefault(ks.key, ("lost", "not checked before the verification deadline"))

    # Listing: every key that must exist is listed, none that must not be.
    listing = {}
    anomalies = {}
    try:
        token = None
        for _ in range(10000):
            kw = {"Bucket": bucket, "MaxKeys": 1000}
            if token:
                kw["ContinuationToken"] = token
            page = clients[0].list_objects_v2(**kw)
            for o in page.get("Contents", []):
                listing[o["Key"]] = o["Size"]
            if not page.get("IsTruncated"):
                break
            token = page.get("NextContinuationToken")
    except (ClientError, BotoCoreError, OSError) as e:
        anomalies["(listing)"] = ("error", f"listing failed: {error_kind(e)}")
        return results, observed, anomalies
    for ks in keys:
        if ks.candidates == {None} and ks.key in listing:
            anomalies[ks.key] = ("lost", f"listed ({listing[ks.key]} B) after an acknowledged DELETE")
        elif None not in ks.candidates and ks.key not in listing:
            anomalies[ks.key] = ("lost", "missing from the listing")
    for key in listing:
        if key not in ledger.keys:
            anomalies[key] = ("half-visible", "listed but never written")
    return results, observed, anomalies
