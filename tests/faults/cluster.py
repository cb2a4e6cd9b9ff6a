"""The fault campaign's own cluster: 8 storage nodes in 3 sites (3 + 3 + 2), erasure 4+2, two
gateways, each a separate `baobab server --config FILE` process with its own data dir, log file
and PID file, all under one work directory.

Why 4+2: placement (`src/placement.rs`) caps a site at m shards of a version when
`sites * m >= k + m`; with 3 sites and m = 2 that holds (6 >= 6), so every version has exactly
2 shards per site and the loss of any site (3 nodes) leaves 4 = k shards. Metadata: 8 voters,
a majority is 5, so losing a 3-node site keeps a majority.

Network: with root, every storage node runs in its own network namespace, joined to a bridge
in the root namespace by a veth pair; the gateways and admin commands run in the root namespace
and reach the nodes through the bridge. Cutting a node off = setting its host-side veth down
(packets are dropped, as in a real partition), healing = up. Without root (or when namespaces
do not work) every process listens on 127.0.0.1 and the `cut` fault is not available.

Only processes this module started are ever signalled, by PID.
"""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

SITES = {"site-a": [1, 2, 3], "site-b": [4, 5, 6], "site-c": [7, 8]}
NODES = [n for ids in SITES.values() for n in ids]
SITE_OF = {n: s for s, ids in SITES.items() for n in ids}
K, M = 4, 2
GATEWAYS = [1, 2]
MiB = 1024 * 1024

ROOT = Path(__file__).resolve().parent.parent.parent


def default_bin():
    """As tests/conftest.py: $BAOBAB_BIN, else $CARGO_TARGET_DIR/release/baobab."""
    return os.environ.get("BAOBAB_BIN") or str(
        Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/baobab-target")) / "release/baobab")


def free_port_block(n):
    """A port P such that P..P+n-1 are free on 127.0.0.1 (as tests/conftest.py)."""
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


def run(cmd, check=True, timeout=30):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited with {p.returncode}: {p.stderr.strip()}")
    return p


def wait_tcp(host, port, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    return False


class Proc:
    """One `baobab server` process."""

    def __init__(self, name, config, log, pid_file, netns=None):
        self.name = name
        self.config = config
        self.log = log
        self.pid_file = pid_file
        self.netns = netns
        self.popen = None
        self.stopped = False  # SIGSTOPped by us

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    def alive(self):
        return self.popen is not None and self.popen.poll() is None


class Network:
    """Namespaces + veth + bridge (mode "netns"), or plain loopback (mode "loopback")."""

    def __init__(self, mode, tag):
        self.mode = mode
        self.tag = tag
        self.bridge = f"bbf{tag}br"
        self.subnet = None
        self.created_ns = []
        self.created_links = []

    def ns(self, node):
        return f"bbf{self.tag}n{node}" if self.mode == "netns" else None

    def host_veth(self, node):
        return f"bbf{self.tag}h{node}"

    def addr(self, node):
        return f"{self.subnet}.{10 + node}" if self.mode == "netns" else "127.0.0.1"

    def _pick_subnet(self, rng):
        used = run(["ip", "-4", "-o", "addr"], check=False).stdout
        for _ in range(100):
            net = f"10.{rng.randrange(100, 250)}.{rng.randrange(1, 250)}"
            if f" {net}." not in used:
                return net
        raise RuntimeError("no free 10.x.y.0/24 subnet")

    def setup(self):
        if self.mode != "netns":
            return
        self.subnet = self._pick_subnet(random.Random())
        run(["ip", "link", "add", self.bridge, "type", "bridge"])
        self.created_links.append(self.bridge)
        run(["ip", "addr", "add", f"{self.subnet}.1/24", "dev", self.bridge])
        run(["ip", "link", "set", self.bridge, "up"])
        for n in NODES:
            ns, host, peer = self.ns(n), self.host_veth(n), f"bbf{self.tag}p{n}"
            run(["ip", "netns", "add", ns])
            self.created_ns.append(ns)
            run(["ip", "link", "add", host, "type", "veth", "peer", "name", peer])
            self.created_links.append(host)
            run(["ip", "link", "set", peer, "netns", ns])
            run(["ip", "link", "set", host, "master", self.bridge])
            run(["ip", "link", "set", host, "up"])
            run(["ip", "netns", "exec", ns, "ip", "addr", "add", f"{self.addr(n)}/24", "dev", peer])
            run(["ip", "netns", "exec", ns, "ip", "link", "set", peer, "up"])
            run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"])

    def cut(self, node):
        run(["ip", "link", "set", self.host_veth(node), "down"])

    def heal(self, node):
        run(["ip", "link", "set", self.host_veth(node), "up"])

    def teardown(self):
        for ns in self.created_ns:
            run(["ip", "netns", "del", ns], check=False)
        for link in self.created_links:
            if run(["ip", "link", "show", link], check=False).returncode == 0:
                run(["ip", "link", "del", link], check=False)
        self.created_ns, self.created_links = [], []

    @staticmethod
    def probe(tag):
        """Whether namespaces + veth + bridge work here (as root); tears its test down."""
        if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nsenter"):
            return False
        net = Network("netns", tag)
        try:
            net.subnet = net._pick_subnet(random.Random())
            run(["ip", "netns", "add", net.ns(0)])
            net.created_ns.append(net.ns(0))
            run(["ip", "link", "add", net.host_veth(0), "type", "veth", "peer", "name", f"bbf{tag}p0"])
            net.created_links.append(net.host_veth(0))
            run(["ip", "link", "set", f"bbf{tag}p0", "netns", net.ns(0)])
            return True
        except Exception:
            return False
        finally:
            net.teardown()


def can_mount_tmpfs(workdir):
    if os.geteuid() != 0:
        return False
    d = Path(workdir) / "mount-probe"
    d.mkdir(exist_ok=True)
    ok = run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(d)], check=False).returncode == 0
    if ok:
        run(["umount", str(d)], check=False)
    d.rmdir()
    return ok


def probe_config_key(bin_path, workdir, line):
    """Whether `baobab server` accepts a config line (unknown keys are refused at parse time).
    The probe config is otherwise invalid (no roles), so the process exits at once either way."""
    cfg = Path(workdir) / "probe.toml"
    cfg.write_text(f'roles = []\ndata_dir = "{workdir}/probe"\ncluster_secret = "0123456789abcdef0123"\n'
                   f'{line}\nnodes = []\n')
    try:
        p = subprocess.run([bin_path, "server", "--config", str(cfg)], capture_output=True, text=True, timeout=20)
        return "unknown field" not in (p.stderr + p.stdout)
    except subprocess.TimeoutExpired:
        return False
    finally:
        cfg.unlink()


class FaultCluster:
    def __init__(self, workdir, bin_path, net_mode, tmpfs_nodes=None, reserve_bytes=64 * MiB,
                 tmpfs_reserve_bytes=None, extra_config=(), log=print):
        self.dir = Path(workdir)
        self.bin = bin_path
        self.log = log
        self.tag = f"{random.randrange(16 ** 4):04x}"
        self.net = Network(net_mode, self.tag)
        self.tmpfs_nodes = dict(tmpfs_nodes or {})  # node -> tmpfs size string, e.g. "300m"
        self.mounts = {}
        self.reserve_bytes = reserve_bytes
        self.tmpfs_reserve_bytes = tmpfs_reserve_bytes or reserve_bytes
        self.extra_config = list(extra_config)
        self.port = None
        self.procs = {}
        self.key_id = self.secret = None  # from `baobab key create`, in start()
        self.setpriv = shutil.which("setpriv")

    # ---- layout ----------------------------------------------------------------------------

    def node_name(self, n):
        return f"node{n}"

    def gw_name(self, g):
        return f"gw{g}"

    def rpc_port(self, n):
        return self.port + len(GATEWAYS) + n - 1

    def s3_port(self, g):
        return self.port + g - 1

    def endpoint(self, g):
        return f"http://127.0.0.1:{self.s3_port(g)}"

    def data_dir(self, n):
        if n in self.mounts:
            return self.mounts[n] / "data"
        return self.dir / self.node_name(n)

    def mount_point(self, n):
        return self.mounts.get(n)

    @property
    def admin_config(self):
        return self.dir / "gw1.toml"

    def _config(self, name, role, node=None, gw=None):
        lines = [f'roles = ["{role}"]']
        if role == "storage":
            lines.append(f"node_id = {node}")
            lines.append(f'data_dir = "{self.data_dir(node)}"')
            lines.append(f'rpc_listen = "{self.net.addr(node)}:{self.rpc_port(node)}"')
            reserve = self.tmpfs_reserve_bytes if node in self.mounts else self.reserve_bytes
            lines.append(f"shard_reserve_bytes = {reserve}")
        else:
            lines.append(f'data_dir = "{self.dir / name}"')
        lines.append(f'cluster_secret_file = "{self.dir / "cluster.secret"}"')
        lines.append(f'log_file = "{self.dir / (name + ".log")}"')
        if role == "storage":
            lines.extend(self.extra_config)
        stem = f"node-{node}" if role == "storage" else "gateway"
        tls = self.dir / "tls"
        lines.append(f'[rpc_tls]\nca = "{tls / "ca.pem"}"\ncert = "{tls / (stem + ".pem")}"\n'
                     f'key = "{tls / (stem + ".key")}"')
        if role == "gateway":
            lines.append(f'[s3]\nlisten = "127.0.0.1:{self.s3_port(gw)}"\nregion = "us-east-1"')
        lines.append(f"[erasure]\nk = {K}\nm = {M}")
        for n in NODES:
            lines.append(f'[[nodes]]\nid = {n}\nsite = "{SITE_OF[n]}"\n'
                         f'rpc_addr = "{self.net.addr(n)}:{self.rpc_port(n)}"')
        path = self.dir / f"{name}.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    # ---- lifecycle -------------------------------------------------------------------------

    def setup(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port_block(len(GATEWAYS) + len(NODES))
        (self.dir / "cluster.secret").write_text(os.urandom(24).hex())
        os.chmod(self.dir / "cluster.secret", 0o600)
        # The cluster CA and a certificate per storage node and for the gateways (mutual TLS).
        tls = str(self.dir / "tls")
        run([self.bin, "cert", "ca", "--dir", tls, "--name", "fault-campaign"])
        for n in NODES:
            run([self.bin, "cert", "issue", "--ca-dir", tls, "--node", str(n)])
        run([self.bin, "cert", "issue", "--ca-dir", tls, "--gateway"])
        for n, size in self.tmpfs_nodes.items():
            mnt = self.dir / f"node{n}-mnt"
            mnt.mkdir(parents=True, exist_ok=True)
            run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)])
            self.mounts[n] = mnt
        self.net.setup()
        for n in NODES:
            name = self.node_name(n)
            self.data_dir(n).mkdir(parents=True, exist_ok=True)
            self.procs[name] = Proc(name, self._config(name, "storage", node=n), self.dir / f"{name}.log",
                                    self.dir / f"{name}.pid", self.net.ns(n))
        for g in GATEWAYS:
            name = self.gw_name(g)
            (self.dir / name).mkdir(exist_ok=True)
            self.procs[name] = Proc(name, self._config(name, "gateway", gw=g), self.dir / f"{name}.log",
                                    self.dir / f"{name}.pid")

    def spawn(self, name):
        """Starts one process (must be called from the main thread: children get SIGKILL when
        the thread that started them dies, so a killed campaign leaves no servers behind)."""
        p = self.procs[name]
        if p.alive():
            return
        cmd = [self.bin, "server", "--config", str(p.config)]
        if p.netns:
            cmd = ["nsenter", f"--net=/run/netns/{p.netns}", "--"] + cmd
        if self.setpriv:
            cmd = [self.setpriv, "--pdeathsig", "KILL", "--"] + cmd
        with open(p.log, "ab") as logf:
            p.popen = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        p.stopped = False
        p.pid_file.write_text(f"{p.popen.pid}\n")

    def wait_listening(self, name, timeout=30):
        if name.startswith("node"):
            n = int(name[4:])
            return wait_tcp(self.net.addr(n), self.rpc_port(n), timeout)
        return wait_tcp("127.0.0.1", self.s3_port(int(name[2:])), timeout)

    def start(self, timeout=90):
        for n in NODES:
            self.spawn(self.node_name(n))
        for g in GATEWAYS:
            self.spawn(self.gw_name(g))
        for name in self.procs:
            if not self.wait_listening(name, timeout):
                raise RuntimeError(f"{name} does not listen after {timeout} s: {self.tail(name)}")
        # the key id and secret are generated by `key create` (never passed as arguments)
        out = run([self.bin, "key", "create", "--config", str(self.admin_config), "--name", "fault-campaign",
                   "--allow-create-bucket"], timeout=timeout)
        key = json.loads(out.stdout)
        self.key_id, self.secret = key["access_key_id"], key["secret_access_key"]

    def signal(self, name, sig):
        p = self.procs[name]
        if p.alive():
            os.kill(p.pid, sig)

    def kill(self, name):
        """SIGKILL, and reap."""
        p = self.procs[name]
        if p.alive():
            os.kill(p.pid, signal.SIGKILL)
            try:
                p.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        p.stopped = False
        if p.pid_file.exists():
            p.pid_file.unlink()

    def pause(self, name):
        self.signal(name, signal.SIGSTOP)
        self.procs[name].stopped = True

    def resume(self, name):
        self.signal(name, signal.SIGCONT)
        self.procs[name].stopped = False

    def restart(self, name, timeout=30):
        self.spawn(name)
        return self.wait_listening(name, timeout)

    def status(self, timeout=40):
        p = run([self.bin, "status", "--config", str(self.admin_config)], check=False, timeout=timeout)
        try:
            return json.loads(p.stdout)
        except ValueError:
            return None

    def leader(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.status()
            if st and st.get("leader"):
                return st["leader"]
            time.sleep(0.5)
        return None

    def repair_status(self):
        """`baobab repair status --json` when the binary has it, else None."""
        p = run([self.bin, "repair", "status", "--config", str(self.admin_config), "--json"], check=False,
                timeout=30)
        if p.returncode != 0:
            return None
        try:
            return json.loads(p.stdout)
        except ValueError:
            return None

    def has_repair_status(self):
        return run([self.bin, "repair", "status", "--help"], check=False).returncode == 0

    def tail(self, name, n=3000):
        p = self.procs[name]
        try:
            return p.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def log_size(self, name):
        try:
            return self.procs[name].log.stat().st_size
        except OSError:
            return 0

    def log_since(self, name, offset):
        try:
            with open(self.procs[name].log, "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def teardown(self, keep=False):
        """Kills every process we started (by PID), removes namespaces and links, unmounts."""
        for p in self.procs.values():
            if p.alive():
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for p in self.procs.values():
            if p.popen is not None:
                try:
                    p.popen.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
        self.net.teardown()
        for n, mnt in list(self.mounts.items()):
            if keep:
                dest = self.dir / f"node{n}"
                subprocess.run(["cp", "-a", str(mnt / "data"), str(dest)], capture_output=True)
            r = run(["umount", str(mnt)], check=False)
            if r.returncode != 0:
                run(["umount", "-l", str(mnt)], check=False)
            del self.mounts[n]
