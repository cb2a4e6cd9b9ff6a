#!/usr/bin/env python3
"""Fault campaign (issue 10): a multi-process cluster (8 storage nodes in 3 sites, erasure 4+2,
two gateways; see cluster.py) under writer threads that keep a ledger of acknowledged
operations (workload.py), one fault after another. After each fault:

- every acknowledged object reads back byte-identical (MD5), every acknowledged DELETE stays
  404, and a key whose operation failed holds its previous state or the attempted body, whole
  (never a mix: "half-visible"); the listing agrees;
- then, bounded, the time until every live erasure-coded object has all k + m shard files
  present and intact, counted from outside, on the nodes' disks (shards.py).

    python3 tests/faults/campaign.py --seed N [--faults a,b,...] [--duration S] [--keep]

Faults: kill, kill-leader, pause, cut, disk-full, corrupt, wipe-meta, site-loss, gateway-kill.
The seed picks the fault order, the victims, and the writers' keys, sizes and operations.
Exit code: 0 when nothing was lost, 1 on a loss, a half-visible write or a panic, 2 when the
campaign itself could not run. Needs root for `cut` (network namespaces) and `disk-full`
(a tmpfs); without it those two are reported as skipped.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cluster as cl  # noqa: E402
import shards  # noqa: E402
import workload as wl  # noqa: E402

ALL_FAULTS = ["kill", "kill-leader", "pause", "cut", "disk-full", "corrupt", "wipe-meta", "site-loss",
              "gateway-kill"]
BUCKET = "faults"
BLOCK_SIZE = 1024 * 1024          # the default block_size_bytes
RETIRED_DATA_GRACE_SECS = 3
GC_INTERVAL_SECS = 30
GC_MIN_AGE_SECS = 120             # far above the 30 s write timeouts
SCRUB_INTERVAL_SECS = 10          # only when the binary accepts `scrub_interval_secs`
TMPFS_SIZE = "300m"               # the disk-full victim's file system
TMPFS_RESERVE_BYTES = 64 * wl.MiB
DISK_FULL_MARGIN_BYTES = 24 * wl.MiB  # the ballast leaves this much above the reserve
RPC_TIMEOUT_SECS = 15             # pause and cut last longer than this


class Terminated(Exception):
    pass


def _on_term(signum, frame):
    raise Terminated(f"signal {signum}")


class Campaign:
    def __init__(self, args):
        self.args = args
        self.seed = args.seed
        self.t0 = time.monotonic()
        self.logf = None
        self.rows = []
        self.damage = shards.Damage()
        self.findings = []
        self.panics = []
        self.error_lines = Counter()
        self.cluster = None
        self.writers = None
        self.prev_short = set()
        self.reported_unknown = set()

    # ---- output ----------------------------------------------------------------------------

    def log(self, msg):
        line = f"[{time.monotonic() - self.t0:7.1f}s] {msg}"
        print(line, flush=True)
        if self.logf:
            self.logf.write(line + "\n")
            self.logf.flush()

    def sleep(self, secs):
        end = time.monotonic() + max(0.0, secs)
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.5))

    def rng(self, fault):
        return random.Random(f"{self.seed}:{fault}")

    # ---- setup -----------------------------------------------------------------------------

    def plan(self):
        faults = self.args.faults
        order = random.Random(self.seed).sample(faults, len(faults))
        victims = {
            "kill": self.rng("kill").choice(cl.NODES),
            # pause and cut hit the metadata leader half of the time (a stale leader coming back)
            "pause": self.leader_or_node("pause"),
            "cut": self.leader_or_node("cut"),
            "disk-full": self.rng("disk-full").choice(cl.NODES),
            "wipe-meta": self.rng("wipe-meta").choice(cl.NODES),
            "site-loss": self.rng("site-loss").choice(sorted(cl.SITES)),
            "gateway-kill": self.rng("gateway-kill").choice(cl.GATEWAYS),
        }
        return order, victims

    def leader_or_node(self, fault):
        rng = self.rng(fault)
        return "leader" if rng.random() < 0.5 else rng.choice(cl.NODES)

    def resolve(self, victim, row):
        """A node id; "leader" is looked up now."""
        if victim != "leader":
            return victim, f"node{victim}"
        leader = self.cluster.leader()
        if leader is None:
            n = self.rng(row["fault"] + ":no-leader").choice(cl.NODES)
            row["details"].append(f"no leader known; node{n} instead")
            return n, f"node{n}"
        return leader, f"node{leader} (leader)"

    def run(self):
        a = self.args
        order, self.victims = self.plan()
        parent = a.workdir or None
        self.dir = Path(tempfile.mkdtemp(prefix="baobab-faults-", dir=parent))
        self.logf = open(self.dir / "campaign.log", "a")
        self.log(f"seed {self.seed}; fault order: {', '.join(order)}")
        self.log(f"reproduce: {self.command()}")
        self.log(f"work dir: {self.dir}; binary: {a.bin}")

        net_mode = a.net
        if net_mode == "auto":
            net_mode = "netns" if cl.Network.probe(f"{random.randrange(16 ** 4):04x}") else "loopback"
        self.net_mode = net_mode
        self.can_mount = cl.can_mount_tmpfs(self.dir)
        tmpfs = {}
        if "disk-full" in order and self.can_mount:
            tmpfs[self.victims["disk-full"]] = TMPFS_SIZE
        extra = [f"retired_data_grace_secs = {RETIRED_DATA_GRACE_SECS}",
                 f"gc_interval_secs = {GC_INTERVAL_SECS}", f"gc_min_age_secs = {GC_MIN_AGE_SECS}"]
        if cl.probe_config_key(a.bin, self.dir, f"scrub_interval_secs = {SCRUB_INTERVAL_SECS}"):
            extra.append(f"scrub_interval_secs = {SCRUB_INTERVAL_SECS}")
        self.log(f"network: {net_mode}; tmpfs for disk-full: {'yes' if self.can_mount else 'no (not root)'}; "
                 f"storage config: {'; '.join(extra)}")
        self.cluster = cl.FaultCluster(self.dir, a.bin, net_mode, tmpfs_nodes=tmpfs,
                                       tmpfs_reserve_bytes=TMPFS_RESERVE_BYTES, extra_config=extra, log=self.log)
        self.writers = None
        try:
            self.cluster.setup()
            started = time.monotonic()
            self.cluster.start()
            self.has_repair = self.cluster.has_repair_status()
            self.log(f"cluster up in {time.monotonic() - started:.1f} s: nodes {cl.SITES}, erasure {cl.K}+{cl.M}, "
                     f"S3 on {', '.join(self.cluster.endpoint(g) for g in cl.GATEWAYS)}; "
                     f"`baobab repair status`: {'yes' if self.has_repair else 'not in this binary'}")
            self.setup_workload()
            phases = ([] if a.no_baseline else ["baseline"]) + order
            for fault in phases:
                self.phase(fault)
        finally:
            if self.writers:
                self.writers.stop(join=False)
            self.scan_logs()
            self.cluster.teardown(keep=a.keep)
            if self.writers:
                self.writers.stop(join=True)
            self.log("processes stopped, namespaces and mounts removed")
            if self.logf:
                self.logf.close()
                self.logf = None
            if a.keep:
                print(f"kept {self.dir}", flush=True)
            else:
                shutil.rmtree(self.dir, ignore_errors=True)

    def setup_workload(self):
        c = self.cluster
        admin = wl.s3_client(c.endpoint(1), c.key_id, c.secret, attempts=3)
        deadline = time.monotonic() + 60
        while True:
            try:
                admin.create_bucket(Bucket=BUCKET)
                break
            except Exception as e:  # metadata may still be electing
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cannot create the bucket: {e}")
                time.sleep(1)
        self.ledger = wl.Ledger(cl.K, BLOCK_SIZE)
        ws = []
        for i in range(self.args.writers):
            g = cl.GATEWAYS[i % len(cl.GATEWAYS)]
            client = wl.s3_client(c.endpoint(g), c.key_id, c.secret, attempts=1)
            ws.append(wl.Writer(i, self.ledger, client, BUCKET, self.seed, target_live=self.args.live_per_writer))
        self.writers = wl.Writers(ws)
        self.writers.start()
        self.readers = [wl.s3_client(c.endpoint(g), c.key_id, c.secret, attempts=3, read_timeout=60)
                        for g in cl.GATEWAYS]

    def command(self):
        a = self.args
        parts = [f"python3 tests/faults/campaign.py --seed {self.seed}", f"--faults {','.join(a.faults)}",
                 f"--duration {a.duration:g}"]
        if a.redundancy_wait != DEFAULTS["redundancy_wait"]:
            parts.append(f"--redundancy-wait {a.redundancy_wait:g}")
        if a.writers != DEFAULTS["writers"]:
            parts.append(f"--writers {a.writers}")
        if a.live_per_writer != DEFAULTS["live_per_writer"]:
            parts.append(f"--live-per-writer {a.live_per_writer}")
        if a.no_baseline:
            parts.append("--no-baseline")
        if a.net != "auto":
            parts.append(f"--net {a.net}")
        return " ".join(parts)

    # ---- one phase -------------------------------------------------------------------------

    def phase(self, fault):
        a = self.args
        c, ledger = self.cluster, self.ledger
        row = {"fault": fault, "victim": "", "details": [], "acked": 0, "lost": 0, "half_visible": 0,
               "client_errors": 0, "errors_by_kind": {}, "redundancy": None, "redundancy_text": "",
               "losses": [], "skipped": None}
        self.rows.append(row)
        skip = None
        if fault == "cut" and self.net_mode != "netns":
            skip = "needs network namespaces (root)"
        if fault == "disk-full" and self.victims["disk-full"] not in c.mounts:
            skip = "needs root to mount a tmpfs"
        if skip:
            row["skipped"] = skip
            self.log(f"=== {fault}: skipped ({skip})")
            return
        self.log(f"=== {fault}")
        started = time.monotonic()
        ledger.phase = fault
        self.writers.resume()
        warm, hold, settle = a.duration * 0.25, a.duration * 0.5, a.duration * 0.25
        self.sleep(warm)
        window = [time.monotonic(), None]
        if fault != "baseline":
            with ledger.lock:
                ledger.fault_windows.append(window)
        self.recovered_at = time.monotonic()
        getattr(self, "fault_" + fault.replace("-", "_"))(row, hold)
        window[1] = self.recovered_at + 5
        self.sleep(settle)
        if not self.writers.pause():
            row["details"].append("writers still busy after 120 s")
        ledger.phase = f"{fault}:checks"
        self.wait_ready(row)

        # acknowledged operations and client errors of this phase
        row["acked"] = sum(n for (ph, _op), n in ledger.acked.items() if ph == fault)
        errs = Counter({kind: n for (ph, kind), n in ledger.errors.items() if ph == fault})
        row["client_errors"] = sum(errs.values())
        row["errors_by_kind"] = dict(errs.most_common())

        t = time.monotonic()
        results, observed, anomalies = wl.verify(ledger, self.readers, BUCKET, log=self.log)
        if "(listing)" in anomalies:
            row["details"].append(anomalies.pop("(listing)")[1])
        for key, (cls, detail) in sorted(list(results.items()) + list(anomalies.items())):
            ks = ledger.keys.get(key)
            if ks is not None:
                if ks.bad is not None:
                    continue
                ks.bad = (fault, cls, detail)
            elif key in self.reported_unknown:
                continue
            else:
                self.reported_unknown.add(key)
            if cls == "half-visible":
                row["half_visible"] += 1
            else:
                row["lost"] += 1
            row["losses"].append(f"{cls}: {key}: {detail}" + (f" [history: {self.history(ks)}]" if ks else ""))
        corrupted = getattr(self, "corrupted", None)
        if corrupted:
            intact = sum(1 for key, b in corrupted.items() if observed.get(key) == b)
            replaced = sum(1 for key, b in corrupted.items() if key in observed and observed[key] != b)
            row["details"].append(f"{intact} of {len(corrupted)} damaged objects read back intact" +
                                  (f" ({replaced} replaced by a write in flight at the damage)" if replaced else ""))
            with ledger.lock:
                for key in corrupted:
                    ledger.keys[key].pinned = False
            self.corrupted = None
        n_keys = len(ledger.keys)
        self.log(f"verified {n_keys} keys in {time.monotonic() - t:.1f} s: {row['lost']} lost, "
                 f"{row['half_visible']} half-visible")
        for line in row["losses"][:20]:
            self.log(f"  {line}")
        self.measure_redundancy(row, observed)
        row["phase_secs"] = round(time.monotonic() - started, 1)
        self.log(f"--- {fault}: {row['acked']} acked, {row['client_errors']} client errors "
                 f"{row['errors_by_kind'] or ''}, redundancy: {row['redundancy_text']}")

    def history(self, ks):
        return "; ".join(f"{ph} {op}{'' if b is None else ' #' + str(b)} {out}" for ph, op, b, _t0, _t1, out
                         in ks.history[-4:])

    def wait_ready(self, row, timeout=120):
        """Every process runs (a process that died on its own is a finding, and is restarted),
        the metadata has a leader, every node answers, both gateways serve S3."""
        c = self.cluster
        for name, p in c.procs.items():
            if p.stopped:
                c.resume(name)
            if not p.alive():
                code = p.popen.returncode if p.popen else None
                msg = f"{name} had exited on its own (code {code}); restarted"
                row["details"].append(msg)
                self.findings.append(f"{row['fault']}: {msg}")
                self.log(msg)
                c.restart(name)
        deadline = time.monotonic() + timeout
        st = None
        while time.monotonic() < deadline:
            st = c.status()
            if st and st.get("leader") and all(n.get("reachable") for n in st["nodes"]):
                break
            time.sleep(1)
        else:
            msg = f"cluster not ready after {timeout} s: {st}"
            row["details"].append(msg)
            self.findings.append(f"{row['fault']}: {msg}")
            self.log(msg)
        for n in (st or {}).get("nodes", []):
            if "raft_fatal" in n:
                msg = f"node {n['id']} raft_fatal: {n['raft_fatal']}"
                row["details"].append(msg)
                self.findings.append(f"{row['fault']}: {msg}")
        for client in self.readers:
            for _ in range(30):
                try:
                    client.head_bucket(Bucket=BUCKET)
                    break
                except Exception:
                    time.sleep(1)

    def measure_redundancy(self, row, observed):
        a, ledger, c = self.args, self.ledger, self.cluster
        objects = []
        for key, b in sorted(observed.items()):
            if b is None:
                continue
            body = ledger.bodies[b]
            if body.size > wl.INLINE_MAX:
                objects.append({"key": key, "body": b, "size": body.size, "fps": body.fps})
        data_dirs = {n: c.data_dir(n) for n in cl.NODES}
        deadline = time.monotonic() + a.redundancy_wait
        checks = 0
        repair = None
        while True:
            checks += 1
            found = shards.assess(shards.scan(data_dirs), objects, cl.K, cl.M, self.damage, BLOCK_SIZE)
            short = [(o["key"], v, good) for o, v, good in found if len(good) < cl.K + cl.M]
            inherited = sum(1 for o, _v, good in found
                            if len(good) < cl.K + cl.M and (o["key"], o["body"]) in self.prev_short)
            if self.has_repair:
                repair = c.repair_status()
            now = time.monotonic()
            if not short:
                secs = now - self.recovered_at
                row["redundancy"] = round(secs, 1)
                row["redundancy_text"] = (f"<= {secs:.1f} s" if checks == 1 else f"{secs:.1f} s") + \
                    f" ({len(objects)} objects)"
                break
            if now >= deadline:
                missing = Counter(cl.K + cl.M - len(g) for _k, _v, g in short)
                row["redundancy_text"] = (f"not reached within {a.redundancy_wait:g} s: {len(short)} of "
                                          f"{len(objects)} objects short (" +
                                          ", ".join(f"{n} missing {m}" for m, n in sorted(missing.items())) +
                                          (f"; {inherited} short since an earlier phase" if inherited else "") + ")")
                row["short"] = [f"{k} version {v}: indices {sorted(g)}" for k, v, g in short[:50]]
                unreadable = [k for k, _v, g in short if len(g) < cl.K]
                if unreadable:
                    row["details"].append(f"{len(unreadable)} objects with fewer than k good shards on disk "
                                          f"(e.g. {unreadable[:3]})")
                break
            time.sleep(2)
        self.prev_short = {(o["key"], o["body"]) for o, _v, good in found if len(good) < cl.K + cl.M}
        # where the complete objects' shards are: two on one node, or more than m in one site,
        # means a node's (or a site's) loss takes more than one (m) of them
        same_node = same_site = 0
        for _o, _v, good in found:
            if len(good) < cl.K + cl.M:
                continue
            per_node = Counter(good.values())
            per_site = Counter(cl.SITE_OF[n] for n in good.values())
            same_node += max(per_node.values()) > 1
            same_site += max(per_site.values()) > cl.M
        row["placement"] = {"two_shards_on_one_node": same_node, "over_m_in_one_site": same_site}
        if same_node or same_site:
            row["details"].append(f"placement on disk: {same_node} complete objects have 2+ shards on one node, "
                                  f"{same_site} have more than m={cl.M} in one site")
        if repair is not None:
            row["repair_status"] = {k: repair.get(k) for k in ("queue", "healed", "scrub")}

    # ---- the faults: inject, hold, recover; set self.recovered_at --------------------------

    def fault_baseline(self, row, hold):
        row["victim"] = "-"
        self.sleep(hold)
        self.recovered_at = time.monotonic()

    def hold_and_observe(self, row, secs, nodes):
        """Sleeps `secs`; half-way, checks with `baobab status` that the fault took: the victim
        nodes do not answer (and, when the leader was among them, another one leads)."""
        self.sleep(secs / 2)
        t = time.monotonic()
        st = self.cluster.status() or {}
        down = sorted(n["id"] for n in st.get("nodes", []) if not n.get("reachable"))
        row["details"].append(f"mid-fault status: leader {st.get('leader')}, not answering {down}")
        if not set(nodes) <= set(down):
            msg = f"mid-fault status shows victim(s) {sorted(set(nodes) - set(down))} answering"
            row["details"].append(msg)
            self.findings.append(f"{row['fault']}: {msg}")
        self.sleep(secs / 2 - (time.monotonic() - t))

    def _kill_restart(self, row, names, hold):
        c = self.cluster
        for name in names:
            c.kill(name)
        self.log(f"SIGKILL {', '.join(names)}")
        nodes = [int(n[4:]) for n in names if n.startswith("node")]
        if nodes:
            self.hold_and_observe(row, hold, nodes)
        else:
            self.sleep(hold)
        for name in names:
            if not c.restart(name):
                row["details"].append(f"{name} does not listen 30 s after its restart")
        self.recovered_at = time.monotonic()
        self.log(f"restarted {', '.join(names)}")

    def fault_kill(self, row, hold):
        n = self.victims["kill"]
        row["victim"] = f"node{n}"
        self._kill_restart(row, [f"node{n}"], hold)

    def fault_kill_leader(self, row, hold):
        leader = self.cluster.leader()
        if leader is None:
            row["details"].append("no leader known: killed nobody")
            self.sleep(hold)
            self.recovered_at = time.monotonic()
            return
        row["victim"] = f"node{leader} (leader)"
        self._kill_restart(row, [f"node{leader}"], hold)
        new = self.cluster.leader()
        row["details"].append(f"leader {leader} killed; leader after restart: {new}")

    def fault_site_loss(self, row, hold):
        site = self.victims["site-loss"]
        row["victim"] = f"{site} (nodes {cl.SITES[site]})"
        self._kill_restart(row, [f"node{n}" for n in cl.SITES[site]], hold)

    def fault_gateway_kill(self, row, hold):
        g = self.victims["gateway-kill"]
        row["victim"] = f"gw{g}"
        self._kill_restart(row, [f"gw{g}"], hold)

    def fault_pause(self, row, hold):
        n, row["victim"] = self.resolve(self.victims["pause"], row)
        name = f"node{n}"
        secs = max(hold, RPC_TIMEOUT_SECS + 5)
        self.cluster.pause(name)
        self.log(f"SIGSTOP {name} for {secs:.0f} s")
        self.hold_and_observe(row, secs, [n])
        self.cluster.resume(name)
        self.recovered_at = time.monotonic()
        self.log(f"SIGCONT {name}")

    def fault_cut(self, row, hold):
        n, row["victim"] = self.resolve(self.victims["cut"], row)
        secs = max(hold, RPC_TIMEOUT_SECS + 5)
        self.cluster.net.cut(n)
        self.log(f"node{n} cut off the network ({self.cluster.net.host_veth(n)} down) for {secs:.0f} s")
        try:
            self.hold_and_observe(row, secs, [n])
        finally:
            self.cluster.net.heal(n)
        self.recovered_at = time.monotonic()
        self.log(f"node{n} back on the network")

    def fault_wipe_meta(self, row, hold):
        c = self.cluster
        n = self.victims["wipe-meta"]
        name = f"node{n}"
        row["victim"] = name
        c.kill(name)
        meta = c.data_dir(n) / "meta"
        marker = c.data_dir(n) / "meta.joined"
        shutil.rmtree(meta, ignore_errors=True)
        row["details"].append(f"deleted {meta}; marker meta.joined {'kept' if marker.exists() else 'ABSENT'}")
        self.log(f"SIGKILL {name}, deleted its meta/ (marker kept: {marker.exists()})")
        self.sleep(hold / 2)
        offset = c.log_size(name)
        c.restart(name)
        restarted = time.monotonic()
        self.log(f"restarted {name}; waiting for it to rejoin as a voter")
        rejoined = None
        deadline = restarted + max(hold, 90)
        while time.monotonic() < deadline:
            text = c.log_since(name, offset)
            if "rejoined the group as a voter" in text:
                rejoined = time.monotonic() - restarted
                break
            time.sleep(0.5)
        self.recovered_at = time.monotonic()
        text = c.log_since(name, offset)
        if rejoined is None:
            msg = f"{name} did not log 'rejoined the group as a voter' within {deadline - restarted:.0f} s"
            row["details"].append(msg)
            self.findings.append(f"wipe-meta: {msg}")
        else:
            row["details"].append(f"{name} rejoined as a voter {rejoined:.1f} s after its restart")
        if "metadata group initialized" in text:
            msg = f"{name} INITIALIZED a metadata group after losing its store"
            row["details"].append(msg)
            self.findings.append(f"wipe-meta: {msg}")

    def fault_disk_full(self, row, hold):
        c = self.cluster
        n = self.victims["disk-full"]
        name = f"node{n}"
        row["victim"] = f"{name} (tmpfs {TMPFS_SIZE}, reserve {TMPFS_RESERVE_BYTES // wl.MiB} MiB)"
        mnt = c.mount_point(n)
        ballast = mnt / "ballast"
        st = os.statvfs(mnt)
        free = st.f_bavail * st.f_frsize
        size = max(0, free - TMPFS_RESERVE_BYTES - DISK_FULL_MARGIN_BYTES)
        offset = c.log_size(name)
        chunk = b"\0" * (4 * wl.MiB)
        with open(ballast, "wb") as f:
            left = size
            while left > 0:
                f.write(chunk[:min(left, len(chunk))])
                left -= len(chunk)
        self.log(f"{name}: {free // wl.MiB} MiB free; ballast of {size // wl.MiB} MiB leaves "
                 f"{DISK_FULL_MARGIN_BYTES // wl.MiB} MiB above the reserve for the writers to fill "
                 f"(writing new large objects only)")
        self.writers.set_mode("fill")
        try:
            self.sleep(max(hold, 10))
        finally:
            self.writers.set_mode("mixed")
        st = os.statvfs(mnt)
        low = st.f_bavail * st.f_frsize
        refusals = c.log_since(name, offset).count("shard refused")
        ballast.unlink()
        self.recovered_at = time.monotonic()
        row["details"].append(f"{name}: {low // wl.MiB} MiB free at the end (reserve "
                              f"{TMPFS_RESERVE_BYTES // wl.MiB} MiB), {refusals} 'shard refused' log lines; "
                              f"ballast removed")
        if low < TMPFS_RESERVE_BYTES // 2:
            msg = f"{name}: shards ate into the metadata reserve ({low // wl.MiB} MiB free)"
            row["details"].append(msg)
            self.findings.append(f"disk-full: {msg}")
        self.log(f"{name}: {refusals} refusals; ballast removed")

    def fault_corrupt(self, row, hold):
        c, ledger = self.cluster, self.ledger
        rng = self.rng("corrupt")
        # no operation in flight while victims are chosen and damaged (a few seconds), so each
        # victim still holds the version we damage
        self.writers.pause()
        with ledger.lock:
            live = []
            for ks in ledger.keys.values():
                if ks.tainted or ks.bad is not None or ks.state is None:
                    continue
                b = ledger.bodies[ks.state]
                if b.size > wl.INLINE_MAX and b.acked:
                    live.append({"key": ks.key, "body": b.id, "size": b.size, "fps": b.fps,
                                 "clean": ledger.clean(*b.acked)})
        versions = shards.scan({n: c.data_dir(n) for n in cl.NODES})
        found = shards.assess(versions, live, cl.K, cl.M, self.damage, BLOCK_SIZE)
        eligible = sorted(((o, v) for o, v, good in found if len(good) == cl.K + cl.M),
                          key=lambda x: x[0]["key"])
        n_victims = min(40, max(1, round(len(eligible) * 0.25))) if eligible else 0
        victims = rng.sample(eligible, n_victims)
        with ledger.lock:
            for o, _v in victims:
                ledger.keys[o["key"]].pinned = True
        self.corrupted = {o["key"]: o["body"] for o, _v in victims}
        kinds = Counter()
        two = 0
        for o, v in victims:
            # at most m shards of a version; two only for a version written with no fault around
            # (then the record names all k + m shards)
            n_damage = 2 if o["clean"] and rng.random() < 0.4 else 1
            two += n_damage == 2
            for idx in rng.sample(range(cl.K + cl.M), n_damage):
                files = [f for f in versions[v] if f.index == idx and f.header_ok]
                if not files:
                    continue
                kind = rng.choice(["flip", "truncate", "delete"])
                what = shards.damage_file(files[0].path, kind, rng, self.damage)
                kinds[kind] += 1
                self.logf.write(f"  corrupt: {o['key']}: {what}\n")
        # self-check of the outside count: every object we damaged must now count as short
        after = shards.assess(shards.scan({n: c.data_dir(n) for n in cl.NODES}), [o for o, _v in victims],
                              cl.K, cl.M, self.damage, BLOCK_SIZE)
        counted = sum(1 for _o, _v, good in after if len(good) < cl.K + cl.M)
        if counted != n_victims:
            msg = f"outside count self-check: only {counted} of {n_victims} damaged objects count as short"
            row["details"].append(msg)
            self.findings.append(f"corrupt: {msg}")
        self.writers.resume()
        row["victim"] = f"{n_victims} objects"
        row["details"].append(f"damaged {sum(kinds.values())} shard files of {n_victims} of {len(eligible)} "
                              f"complete objects ({two} with 2 shards): " +
                              ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
        self.log(row["details"][-1])
        self.recovered_at = time.monotonic()
        self.sleep(hold)

    # ---- end -------------------------------------------------------------------------------

    def scan_logs(self):
        """Panics and ERROR lines of every process."""
        self.panics = []
        self.error_lines = Counter()
        for name, p in getattr(self.cluster, "procs", {}).items():
            try:
                text = p.log.read_text(errors="replace")
            except OSError:
                continue
            for line in text.splitlines():
                if "panicked at" in line:
                    self.panics.append(f"{name}: {line.strip()[:300]}")
                elif " ERROR " in line:
                    msg = line.split(" ERROR ", 1)[1]
                    msg = re.sub(r"\d+", "N", msg)[:160]
                    self.error_lines[f"{name.rstrip('0123456789')}: {msg}"] += 1

    def table(self):
        head = ["fault", "victim", "ops acked", "lost", "half-visible", "client errors", "time to full redundancy"]
        rows = []
        for r in self.rows:
            if r["skipped"]:
                rows.append([r["fault"], "-", "-", "-", "-", "-", f"skipped: {r['skipped']}"])
            else:
                rows.append([r["fault"], r["victim"], str(r["acked"]), str(r["lost"]), str(r["half_visible"]),
                             str(r["client_errors"]), r["redundancy_text"]])
        widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
        out = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |",
               "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        for row in rows:
            out.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
        return "\n".join(out)

    def report(self, elapsed):
        print("", flush=True)
        print(self.table())
        print("")
        for r in self.rows:
            if r["skipped"]:
                continue
            extra = list(r["details"])
            if r["errors_by_kind"]:
                extra.append("client errors: " + ", ".join(f"{k} x{n}" for k, n in r["errors_by_kind"].items()))
            if r.get("repair_status"):
                extra.append(f"repair status: {json.dumps(r['repair_status'])}")
            for line in r["losses"][:10]:
                extra.append(line)
            if extra:
                print(f"{r['fault']}:")
                for line in extra:
                    print(f"  - {line}")
        if self.panics:
            print(f"PANICS ({len(self.panics)}):")
            for p in self.panics[:10]:
                print(f"  {p}")
        if self.error_lines:
            print("ERROR log lines (by process kind and message):")
            for msg, n in self.error_lines.most_common(12):
                print(f"  {n:5d}  {msg}")
        if self.findings:
            print("findings:")
            for f in self.findings:
                print(f"  - {f}")
        lost = sum(r["lost"] for r in self.rows)
        half = sum(r["half_visible"] for r in self.rows)
        keys = list(self.ledger.keys.values()) if hasattr(self, "ledger") else []
        print(f"\nseed {self.seed}: {len(keys)} keys ({sum(k.cold for k in keys)} cold: written once, kept), "
              f"{lost} lost, {half} half-visible, {len(self.panics)} panics; {elapsed:.0f} s")
        print(f"reproduce: {self.command()}", flush=True)
        return lost, half

    def summary(self, elapsed, lost, half):
        return {"seed": self.seed, "command": self.command(), "elapsed_secs": round(elapsed, 1),
                "network": getattr(self, "net_mode", None), "lost": lost, "half_visible": half,
                "panics": self.panics, "findings": self.findings,
                "error_lines": dict(self.error_lines.most_common(50)), "rows": self.rows}


DEFAULTS = {"duration": 30.0, "redundancy_wait": 60.0, "writers": 3, "live_per_writer": 30}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--faults", default=",".join(ALL_FAULTS),
                   help=f"comma-separated, from: {', '.join(ALL_FAULTS)} (default: all)")
    p.add_argument("--duration", type=float, default=DEFAULTS["duration"],
                   help="seconds of writing per fault: 1/4 before it, 1/2 during (pause and cut: at least "
                        f"{RPC_TIMEOUT_SECS + 5} s), 1/4 after recovery")
    p.add_argument("--redundancy-wait", type=float, default=DEFAULTS["redundancy_wait"],
                   help="bound on the wait for full redundancy after each fault")
    p.add_argument("--writers", type=int, default=DEFAULTS["writers"])
    p.add_argument("--live-per-writer", type=int, default=DEFAULTS["live_per_writer"],
                   help="live keys a writer aims at (it deletes more above)")
    p.add_argument("--no-baseline", action="store_true", help="skip the fault-free first phase")
    p.add_argument("--net", choices=["auto", "netns", "loopback"], default="auto")
    p.add_argument("--keep", action="store_true", help="keep the work dir (configs, logs, data)")
    p.add_argument("--workdir", help="parent of the work dir (default: the system temp dir)")
    p.add_argument("--bin", default=cl.default_bin(), help="the baobab binary (default: $BAOBAB_BIN, else "
                   "$CARGO_TARGET_DIR/release/baobab)")
    p.add_argument("--json", help="write a JSON summary here")
    a = p.parse_args(argv)
    faults = [f.strip() for f in a.faults.split(",") if f.strip()]
    unknown = [f for f in faults if f not in ALL_FAULTS]
    if unknown:
        p.error(f"unknown faults: {', '.join(unknown)} (known: {', '.join(ALL_FAULTS)})")
    a.faults = list(dict.fromkeys(faults))
    if not Path(a.bin).is_file():
        p.error(f"no baobab binary at {a.bin} (set BAOBAB_BIN or --bin)")
    return a


def main(argv=None):
    args = parse_args(argv if argv is not None else sys.argv[1:])
    signal.signal(signal.SIGTERM, _on_term)
    camp = Campaign(args)
    started = time.monotonic()
    code = 0
    try:
        camp.run()
    except (Terminated, KeyboardInterrupt) as e:
        print(f"interrupted ({e or 'Ctrl-C'})", flush=True)
        code = 2
    except Exception as e:
        import traceback
        traceback.print_exc()
        print(f"the campaign could not run: {e}", flush=True)
        code = 2
    elapsed = time.monotonic() - started
    lost, half = camp.report(elapsed)
    if args.json:
        Path(args.json).write_text(json.dumps(camp.summary(elapsed, lost, half), indent=2, default=str))
    if code == 0 and (lost or half or camp.panics):
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
