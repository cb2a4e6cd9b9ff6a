#!/usr/bin/env python3
"""Renders scripts/bench.sh results (baobab-bench --json files, criterion estimates) as Markdown.

  bench_report.py --summary FILE.json          one line for the terminal
  bench_report.py --results DIR --criterion DIR --data-dir DIR --commit C   the whole report
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys

SCENARIOS = [
    ("large-put", "1. Large objects: PUT 64 MiB, concurrency 4"),
    ("large-get", "1. Large objects: GET 64 MiB, concurrency 4"),
    ("small-put", "2. Small objects: PUT 4 KiB, concurrency 32"),
    ("small-get", "2. Small objects: GET 4 KiB, concurrency 32"),
    ("list", "3. Listing: ListObjectsV2, pages of 1000"),
    ("multipart", "1. Large objects: multipart PUT 1 GiB in 16 MiB parts, concurrency 4"),
    ("mixed", "4. Mixed 70/30 GET/PUT, 1 MiB, concurrency 16"),
]


def load(path):
    with open(path) as f:
        return json.load(f)


def summary_of(report):
    return report["results"][0]["summary"]


def one_line(report):
    s = summary_of(report)
    errors = sum(s["errors"].values())
    parts = [
        f"{s['ops']} ops",
        f"{s['ops_per_sec']:.1f} ops/s",
        f"{s['mib_per_sec']:.1f} MiB/s",
    ]
    if s["items_per_sec"]:
        parts.append(f"{s['items_per_sec']:.0f} keys/s")
    parts.append(f"p50 {s['latency_ms']['p50']:.2f} ms, p99 {s['latency_ms']['p99']:.2f} ms")
    parts.append(f"errors {errors}")
    return "   " + ", ".join(parts)


def criterion_results(root):
    """{full benchmark id: MiB/s} from criterion's new/estimates.json + benchmark.json."""
    out = {}
    if not root or not os.path.isdir(root):
        return out
    for dirpath, _dirs, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "benchmark.json" not in files:
            continue
        bench = load(os.path.join(dirpath, "benchmark.json"))
        est = load(os.path.join(dirpath, "estimates.json"))
        tp = bench.get("throughput") or {}
        nbytes = tp.get("Bytes") or tp.get("BytesDecimal")
        ns = est["mean"]["point_estimate"]
        if not nbytes or not ns:
            continue
        out[bench["full_id"]] = nbytes / (ns * 1e-9) / 2**20
    return out


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:
        return ""


def machine(data_dir):
    model = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = sh("awk '/MemTotal/ {printf \"%.1f GiB\", $2/1048576}' /proc/meminfo")
    fs = sh(f"df -T {data_dir} | awk 'NR==2 {{print $2\" on \"$1}}'") if data_dir else ""
    return [
        ("CPU", f"{os.cpu_count()} logical CPUs, {model}"),
        ("Memory", mem),
        ("Kernel", f"{platform.system()} {platform.release()}"),
        ("Data disk", fs or "unknown"),
        ("Rust", sh("rustc --version")),
    ]


def fmt(v, digits=1):
    return f"{v:,.{digits}f}"


def full_report(args):
    results = {}
    for name, _ in SCENARIOS:
        p = os.path.join(args.results, f"{name}.json")
        if os.path.exists(p):
            results[name] = load(p)
    micro = criterion_results(args.criterion)
    lines = []
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines += [f"# Baobab benchmark report ({now}, commit {args.commit})", ""]
    lines += ["Produced by `scripts/bench.sh`. Cluster: 3 storage nodes (site-a/b/c) and one gateway as "
              "separate `baobab server` processes on loopback, erasure 2+1, 1 MiB blocks; load from "
              "`baobab-bench` (Rust, hyper, SigV4 with UNSIGNED-PAYLOAD) on the same machine. "
              "Server CPU is the sum over the four server processes; 1.00 = one core busy.", ""]
    lines += ["## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in machine(args.data_dir)]
    lines += ["", "## Scenarios", ""]
    lines += ["| scenario | ops | ops/s | MiB/s | keys/s | p50 ms | p90 ms | p99 ms | max ms | errors | client CPU | server CPU |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, title in SCENARIOS:
        if name not in results:
            continue
        s = summary_of(results[name])
        lat = s["latency_ms"]
        errors = sum(s["errors"].values())
        err_text = str(errors) if not errors else f"{errors} ({', '.join(f'{k}: {v}' for k, v in s['errors'].items())})"
        server = s.get("server_cpu_cores")
        lines.append(
            f"| {title} | {s['ops']} | {fmt(s['ops_per_sec'])} | {fmt(s['mib_per_sec'])} | "
            f"{fmt(s['items_per_sec'], 0) if s['items_per_sec'] else '-'} | {lat['p50']:.2f} | {lat['p90']:.2f} | "
            f"{lat['p99']:.2f} | {lat['max']:.1f} | {err_text} | {s['client_cpu_cores']:.2f} | "
            f"{'-' if server is None else f'{server:.2f}'} |")

    if micro:
        lines += ["", "## Micro-benchmarks (one core, criterion mean)", "", "| benchmark | MiB/s |", "|---|---:|"]
        for full_id, mibs in sorted(micro.items()):
            lines.append(f"| {full_id} | {fmt(mibs)} |")

    lines += ["", "## Targets", "", "| target | measured | goal | met |", "|---|---:|---:|:---:|"]

    def target(label, name, key, goal, unit, goal_text=None):
        if name not in results:
            return
        v = summary_of(results[name])[key]
        lines.append(f"| {label} | {fmt(v)} {unit} | {goal_text or f'≥ {fmt(goal, 0)} {unit}'} | {'yes' if v >= goal else 'no'} |")

    limit = micro.get("put_pipeline/2+1")
    if limit:
        target("Large PUT vs per-byte CPU limit of the PUT pipeline (put_pipeline/2+1, one core)",
               "large-put", "mib_per_sec", limit / 2, "MiB/s",
               f"≥ 50% of {fmt(limit)} = {fmt(limit / 2)} MiB/s")
        cores = os.cpu_count() or 1
        if cores > 1:
            target(f"Large PUT vs the same limit on all {cores} cores (stricter reading)",
                   "large-put", "mib_per_sec", limit * cores / 2, "MiB/s",
                   f"≥ 50% of {fmt(limit * cores)} = {fmt(limit * cores / 2)} MiB/s")
    target("Large GET", "large-get", "mib_per_sec", 1024, "MiB/s", "≥ 1 GiB/s")
    target("4 KiB PUT", "small-put", "ops_per_sec", 2000, "ops/s")
    target("4 KiB GET", "small-get", "ops_per_sec", 5000, "ops/s")
    target("Listing", "list", "items_per_sec", 100000, "keys/s")
    lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--summary")
    ap.add_argument("--results")
    ap.add_argument("--criterion")
    ap.add_argument("--data-dir")
    ap.add_argument("--commit", default="unknown")
    args = ap.parse_args()
    if args.summary:
        print(one_line(load(args.summary)))
        return 0
    if not args.results:
        ap.error("--results or --summary is required")
    sys.stdout.write(full_report(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
