"""A short, seeded run of the fault campaign (tests/faults/campaign.py, issue 10): its own
8-node, 3-site, 4+2 cluster with two gateways, writers keeping a ledger, then a few faults.
Asserts that nothing acknowledged was lost, no failed write is half-visible, and every object
is back at full redundancy after each fault; the full
campaign (every fault, longer phases) is `python3 tests/faults/campaign.py --seed N`.

Faults that need no root (kill, corrupt, wipe-meta) run everywhere; as root, `cut` (network
namespaces) is added. About 2 minutes on a 2-core machine.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import BIN

CAMPAIGN = Path(__file__).resolve().parent / "faults" / "campaign.py"
SEED = int(os.environ.get("BAOBAB_FAULT_SEED", "10"))
FAULTS = ["kill", "corrupt", "wipe-meta"] + (["cut"] if os.geteuid() == 0 else [])
DURATION_SECS = 12
# Every fault must end with every erasure-coded object at k + m intact shards on disk (counted
# from outside, on the nodes' disks) within REDUNDANCY_WAIT_SECS: healing rebuilds what reads,
# the scrub and degraded writes queued. Builds without healing fail this.
ASSERT_FULL_REDUNDANCY = True
REDUNDANCY_WAIT_SECS = 90 if ASSERT_FULL_REDUNDANCY else 5
TIMEOUT_SECS = 600


def test_short_fault_campaign(tmp_path):
    summary_file = tmp_path / "summary.json"
    cmd = [sys.executable, str(CAMPAIGN), "--seed", str(SEED), "--faults", ",".join(FAULTS),
           "--duration", str(DURATION_SECS), "--redundancy-wait", str(REDUNDANCY_WAIT_SECS),
           "--writers", "2", "--bin", BIN, "--json", str(summary_file), "--workdir", str(tmp_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_SECS)
    except subprocess.TimeoutExpired:
        # SIGTERM lets the campaign kill its servers, remove its namespaces and unmount
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        raise AssertionError(f"the campaign took more than {TIMEOUT_SECS} s:\n{out[-6000:]}")
    print(out)
    assert summary_file.exists(), f"no summary (exit {proc.returncode}):\n{out[-6000:]}"
    summary = json.loads(summary_file.read_text())
    rows = [r for r in summary["rows"] if not r["skipped"]]
    assert [r["fault"] for r in rows if r["fault"] != "baseline"], out[-6000:]
    assert proc.returncode in (0, 1), f"the campaign could not run (exit {proc.returncode}):\n{out[-6000:]}"
    losses = [line for r in rows for line in r["losses"]]
    assert summary["lost"] == 0 and summary["half_visible"] == 0, \
        f"seed {SEED}: {summary['lost']} lost, {summary['half_visible']} half-visible:\n" + "\n".join(losses[:20])
    assert not summary["panics"], "\n".join(summary["panics"][:10])
    assert all(r["acked"] > 0 for r in rows), "a phase acknowledged no operation:\n" + out[-6000:]
    if ASSERT_FULL_REDUNDANCY:
        short = [f"{r['fault']}: {r['redundancy_text']}" for r in rows if r["redundancy"] is None]
        assert not short, "full redundancy not reached:\n" + "\n".join(short)
    assert proc.returncode == 0, out[-6000:]
