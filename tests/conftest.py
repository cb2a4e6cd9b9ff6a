"""Black-box test fixtures: real `baobab` processes (`baobab dev`, and the multi-process cluster
of scripts/local-cluster.sh) driven by real clients (boto3, aws-cli, rclone, s3cmd, restic).

A cluster's logs are scanned at teardown: an ERROR line fails the session unless a test declared
it expected (``cluster.allow_errors(pattern)``).
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

ROOT = Path(__file__).resolve().parent.parent
BIN = os.environ.get("BAOBAB_BIN") or str(
    Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/baobab-target")) / "release/baobab"
)
LOCAL_CLUSTER = str(ROOT / "scripts/local-cluster.sh")
# Replaced and deleted objects' shards are kept this long (the default 60 s would make the
# tests that check their removal slow).
RETIRED_DATA_GRACE_SECS = 3
MiB = 1024 * 1024
# A tracing log line: an RFC 3339 timestamp, then the level.
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z\s+(TRACE|DEBUG|INFO|WARN|ERROR) ")
# Access-key secrets the tests created through `baobab key create` (see `Cluster.admin`).
SECRETS_CREATED = set()


def free_port_block(n=8):
    """A port P such that P..P+n-1 are free on 127.0.0.1."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n >= 65535:
            continue
        ok = True
        for p in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port block")


def parse_env_file(path):
    env = {}
    for line in Path(path).read_text().splitlines():
        m = re.match(r"export (\w+)=(.*)$", line)
        if m:
            env[m.group(1)] = m.group(2)
    return env


class Cluster:
    """What the tests need of a running cluster."""

    kind = "?"

    def __init__(self):
        self.env = {}
        self.allowed_errors = []

    @property
    def endpoint(self):
        return self.env["AWS_ENDPOINT_URL"]

    @property
    def key(self):
        return self.env["AWS_ACCESS_KEY_ID"]

    @property
    def secret(self):
        return self.env["AWS_SECRET_ACCESS_KEY"]

    @property
    def port(self):
        return int(self.endpoint.rsplit(":", 1)[1])

    def allow_errors(self, pattern):
        self.allowed_errors.append(re.compile(pattern))

    def client(self, **config):
        return self.client_for(self.key, self.secret, **config)

    def client_for(self, key_id, secret, **config):
        """A boto3 client like `client()`, with other credentials."""
        cfg = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}, **config)
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            region_name="us-east-1",
            config=cfg,
        )

    @property
    def admin_config(self):
        raise NotImplementedError

    def admin(self, *args, timeout=60, stdin=None):
        """Runs `baobab *args --config <admin config>`; returns its JSON output (None when empty).
        Secrets it prints (`key create`) are remembered: no log may ever show them."""
        cmd = [BIN, *[str(a) for a in args], "--config", str(self.admin_config)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=stdin)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited with {p.returncode}:\n{p.stderr[-3000:]}")
        out = p.stdout.strip()
        answer = json.loads(out) if out else None
        if isinstance(answer, dict) and answer.get("secret_access_key"):
            SECRETS_CREATED.add(answer["secret_access_key"])
        return answer

    def client_env(self):
        """Environment for CLI clients: credentials only, no user config, no CA bundle."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(self.env)
        env["AWS_EC2_METADATA_DISABLED"] = "true"
        env["AWS_SHARED_CREDENTIALS_FILE"] = "/dev/null"
        return env

    def log_files(self):
        return []

    def secrets(self):
        """Every secret of this cluster a log line must never show: its access keys' secrets
        (the test key's and those `admin key create` made) and the cluster secret."""
        out = set(SECRETS_CREATED)
        if self.env.get("AWS_SECRET_ACCESS_KEY"):
            out.add(self.env["AWS_SECRET_ACCESS_KEY"])
        secret_file = self.cluster_secret_file()
        if secret_file is not None and secret_file.exists():
            out.add(secret_file.read_text().strip())
        # The private keys of the cluster CA and of every process's certificate: each base64
        # line of their PEM.
        tls_dir = self.tls_dir()
        if tls_dir is not None and tls_dir.is_dir():
            for key in tls_dir.glob("*.key"):
                out.update(line for line in key.read_text().splitlines() if not line.startswith("-----"))
        return {s for s in out if len(s) >= 8}

    def tls_dir(self):
        secret_file = self.cluster_secret_file()
        return None if secret_file is None else secret_file.parent / "tls"

    def cluster_secret_file(self):
        return None

    def unexpected_errors(self):
        """ERROR lines no test allowed, every panic (never allowed: nothing may panic on input
        from the network, a disk or a config file), and every log line that shows a secret."""
        bad = []
        secrets = self.secrets()
        for f in self.log_files():
            if not Path(f).exists():
                continue
            for line in Path(f).read_text(errors="replace").splitlines():
                # `baobab dev` prints the credentials once on its stdout for the user; only
                # log lines (timestamp and level first) must never carry a secret.
                if LOG_LINE.match(line) and any(secret in line for secret in secrets):
                    bad.append(f"{Path(f).name}: a secret in a log line: {line[:120]}…")
                elif "panicked at" in line:
                    bad.append(f"{Path(f).name}: {line}")
                elif " ERROR " in line and not any(p.search(line) for p in self.allowed_errors):
                    bad.append(f"{Path(f).name}: {line}")
        return bad


class DevCluster(Cluster):
    kind = "dev"

    def __init__(self, data_dir, port):
        super().__init__()
        self.data_dir = Path(data_dir)
        self.s3_port = port
        self.log = self.data_dir.parent / f"{self.data_dir.name}.log"
        self.proc = None

    def start(self, timeout=90):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env_file = self.data_dir / "dev.env"
        if env_file.exists():
            env_file.unlink()
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [BIN, "dev", "--data-dir", str(self.data_dir), "--s3-port", str(self.s3_port),
             "--retired-data-grace-secs", str(RETIRED_DATA_GRACE_SECS)],
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.time() + timeout
        while not env_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"baobab dev exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            if time.time() > deadline:
                self.proc.kill()
                raise RuntimeError(f"baobab dev not ready after {timeout} s: {self.log.read_text()[-3000:]}")
            time.sleep(0.1)
        self.env = parse_env_file(env_file)
        return self

    def stop(self, timeout=30):
        """SIGTERM; returns the exit code."""
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = "killed after timeout"
        self.proc = None
        return code

    @property
    def admin_config(self):
        return self.data_dir / "baobab.toml"

    def cluster_secret_file(self):
        return self.data_dir / "cluster.secret"

    def log_files(self):
        return [self.log]


class LocalCluster(Cluster):
    kind = "local"

    def __init__(self, directory, port, script_env=None):
        """`script_env`: more BAOBAB_* settings for scripts/local-cluster.sh (read when it
        writes the config files)."""
        super().__init__()
        self.dir = Path(directory)
        self.s3_port = port
        self.script_env = dict(script_env or {})

    def script(self, *args, check=True):
        env = dict(os.environ, BAOBAB_BIN=BIN,
                   BAOBAB_RETIRED_DATA_GRACE_SECS=str(RETIRED_DATA_GRACE_SECS),
                   BAOBAB_SHARD_RESERVE_BYTES=str(64 * MiB), **self.script_env)
        return subprocess.run(
            [LOCAL_CLUSTER, args[0], str(self.dir), *args[1:]],
            env=env,
            check=check,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def start(self):
        self.script("start", "--s3-port", str(self.s3_port))
        self.env = parse_env_file(self.dir / "cluster.env")
        return self

    def stop(self):
        self.script("stop", check=False)

    def kill(self, n):
        self.script("kill", str(n))

    def restart(self, n):
        self.script("restart", str(n))

    def gateway_pid(self):
        return int((self.dir / "gateway.pid").read_text().strip())

    @property
    def admin_config(self):
        return self.dir / "gateway.toml"

    def cluster_secret_file(self):
        return self.dir / "cluster.secret"

    def status(self):
        out = subprocess.run(
            [BIN, "status", "--config", str(self.dir / "gateway.toml")], capture_output=True, text=True, timeout=30
        )
        return json.loads(out.stdout)

    def log_files(self):
        return [self.dir / f"{n}.log" for n in ("node1", "node2", "node3", "gateway")]


def check_logs(cluster):
    bad = cluster.unexpected_errors()
    assert not bad, "unexpected ERROR lines in the logs:\n" + "\n".join(bad[:20])


@pytest.fixture(scope="session")
def workdir():
    d = Path(tempfile.mkdtemp(prefix="baobab-tests-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def dev_cluster(workdir):
    c = DevCluster(workdir / "dev", free_port_block()).start()
    yield c
    code = c.stop()
    assert code == 0, f"baobab dev exited with {code}"
    check_logs(c)


@pytest.fixture(scope="session")
def local_cluster(workdir):
    c = LocalCluster(workdir / "local", free_port_block(), {"BAOBAB_METRICS": "1"}).start()
    yield c
    c.stop()
    check_logs(c)


@pytest.fixture(scope="session", params=["dev", "local"])
def cluster(request):
    return request.getfixturevalue(f"{request.param}_cluster")


@pytest.fixture
def s3(cluster):
    return cluster.client()


def unique_bucket(prefix="t"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def empty_and_delete(client, bucket):
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for page in pages:
            for o in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=o["Key"])
        client.delete_bucket(Bucket=bucket)
    except client.exceptions.NoSuchBucket:
        pass


@pytest.fixture
def bucket(cluster):
    client = cluster.client()
    name = unique_bucket()
    client.create_bucket(Bucket=name)
    yield name
    empty_and_delete(client, name)


_RANDOM = {}


def random_bytes(n):
    """Incompressible bytes; the big ones are generated once per session."""
    if n >= MiB:
        if n not in _RANDOM:
            _RANDOM[n] = os.urandom(n)
        return _RANDOM[n]
    return os.urandom(n)
