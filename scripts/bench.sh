#!/usr/bin/env bash
# The standard benchmark: builds (release), starts a local cluster (3 storage nodes, 2+1, one
# gateway; scripts/local-cluster.sh), runs the standard scenarios with baobab-bench and the
# hot-path micro-benchmarks, and writes a Markdown report. 64 MiB and 4 KiB PUT/GET also run
# over HTTPS, through a second gateway on the same storage nodes with a certificate from a CA
# made for the run (openssl), and the report sets TLS beside plain HTTP.
#
#   scripts/bench.sh [--out FILE] [--no-micro] [--no-geo] [--quick] [--s3-port P] [--bin BAOBAB] [--label L]
#
# --out      report path (default bench/reports/<date>-<commit>.md)
# --bin      benchmark this baobab binary (e.g. an older build kept aside) instead of the build
# --label    what the report calls the server under test (default: the commit)
# --no-micro skip the criterion micro-benchmarks (about 3 minutes)
# --no-geo   skip the latency table across three sites 20 ms apart (scripts/geo-bench.sh, ~1 min)
# --quick    shorter runs (a smoke run, not for reporting)
# Everything the run writes (cluster data, JSON results) lives in a temp dir that is deleted.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prereqs.sh

out=""
micro=1
geo=1
quick=0
port=4700
server_bin=""
label=""
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=$2; shift 2 ;;
        --no-micro) micro=0; shift ;;
        --no-geo) geo=0; shift ;;
        --quick) quick=1; shift ;;
        --s3-port) port=$2; shift 2 ;;
        --bin) server_bin=$(realpath "$2"); shift 2 ;;
        --label) label=$2; shift 2 ;;
        *) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
    esac
done

install_build_prereqs
# The one release build (scripts/prereqs.sh) serves the unit and black-box tests, `baobab dev`
# and the benchmarks.
build_release
bin="$CARGO_TARGET_DIR/release"
export BAOBAB_BIN="${server_bin:-$bin/baobab}"
commit=$(git rev-parse --short HEAD)
dirty=$(git status --porcelain --untracked-files=no | grep -q . && echo "+changes" || true)
if [ -n "$label" ]; then commit=$label; dirty=""; fi
out=${out:-bench/reports/$(date -u +%Y-%m-%d)-$commit$dirty.md}

work=$(mktemp -d "${TMPDIR:-/tmp}/baobab-bench.XXXXXX")
cleanup() {
    scripts/local-cluster.sh stop "$work/cluster" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

if [ "$micro" = 1 ]; then
    echo "== micro-benchmarks (criterion)"
    rm -rf "$CARGO_TARGET_DIR/criterion"
    cargo bench -p baobab-bench --bench hotpath 2>&1 | grep -E "^[a-z_0-9]+/|thrpt" || true
fi

scripts/local-cluster.sh start "$work/cluster" --s3-port "$port" >/dev/null
# shellcheck disable=SC1091
source "$work/cluster/cluster.env"
pids=()
for p in gateway node1 node2 node3; do pids+=(--server-pid "$(cat "$work/cluster/$p.pid")"); done

if [ "$quick" = 1 ]; then
    large=5s; small_ops=2000; list_keys=5000; mixed=5s
else
    large=20s; small_ops=20000; list_keys=100000; mixed=20s
fi

run() { # NAME ARGS...: one scenario, JSON into $work/results/NAME.json
    local name=$1; shift
    mkdir -p "$work/results"
    echo "== $name: baobab-bench $*"
    local rc=0
    "$bin/baobab-bench" "$@" "${pids[@]}" --json > "$work/results/$name.json" || rc=$?
    # Exit code 2 means some operations failed; the report shows them. Anything else is fatal.
    if [ "$rc" != 0 ] && [ "$rc" != 2 ]; then
        echo "scenario $name failed (exit $rc)" >&2; exit 1
    fi
    python3 scripts/bench_report.py --summary "$work/results/$name.json"
}

# HTTPS: a second gateway (same storage nodes and secret) with a certificate for 127.0.0.1.
tls_port=$((port + 10))
mkdir -p "$work/pki"
(
    cd "$work/pki"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key \
        -out ca.crt -days 2 -subj "/CN=baobab-bench CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout s3.key -out s3.csr \
        -subj "/CN=localhost" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > s3.ext
    openssl x509 -req -in s3.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out s3.crt -days 2 \
        -extfile s3.ext 2>/dev/null
)
sed -e "s|^listen = .*|listen = \"127.0.0.1:$tls_port\"|" \
    -e "s|^log_file = .*|log_file = \"$work/cluster/gateway-tls.log\"|" \
    -e "s|^\[s3\]|[s3]\ntls_cert = \"$work/pki/s3.crt\"\ntls_key = \"$work/pki/s3.key\"|" \
    "$work/cluster/gateway.toml" > "$work/cluster/gateway-tls.toml"
"$BAOBAB_BIN" server --config "$work/cluster/gateway-tls.toml" >> "$work/cluster/gateway-tls.log" 2>&1 < /dev/null &
tls_pid=$!
cleanup_tls() { kill -TERM "$tls_pid" 2>/dev/null || true; wait "$tls_pid" 2>/dev/null || true; cleanup; }
trap cleanup_tls EXIT
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$tls_port") 2>/dev/null && break; sleep 0.1; done
tls_args=(--endpoint "https://127.0.0.1:$tls_port" --ca-file "$work/pki/ca.crt")
run_tls() { # NAME ARGS...: like run, against the HTTPS gateway
    local name=$1; shift
    local saved=("${pids[@]}")
    pids=(--server-pid "$tls_pid"); for p in node1 node2 node3; do pids+=(--server-pid "$(cat "$work/cluster/$p.pid")"); done
    run "$name" "$@" "${tls_args[@]}"
    pids=("${saved[@]}")
}

# Each TLS scenario right after its plain one, so the machine's noise hits both alike.
run large-put put --size 64MiB -c 4 --duration "$large" --keys 8 --prefix large/ --no-cleanup
run_tls large-put-tls put --size 64MiB -c 4 --duration "$large" --keys 8 --prefix large-tls/ --no-cleanup
run large-get get --size 64MiB -c 4 --duration "$large" --keys 8 --prefix large/ --no-prepare
run_tls large-get-tls get --size 64MiB -c 4 --duration "$large" --keys 8 --prefix large-tls/ --no-prepare
run small-put put --size 4KiB -c 32 --ops "$small_ops" --keys "$small_ops" --prefix small/ --no-cleanup
run_tls small-put-tls put --size 4KiB -c 32 --ops "$small_ops" --keys "$small_ops" --prefix small-tls/ --no-cleanup
run small-get get --size 4KiB -c 32 --ops "$small_ops" --keys "$small_ops" --prefix small/ --no-prepare --no-cleanup
run_tls small-get-tls get --size 4KiB -c 32 --ops "$small_ops" --keys "$small_ops" --prefix small-tls/ --no-prepare
run list list --size 0 -c 1 --duration 10s --keys "$list_keys" --page-size 1000 --prefix list/ --no-cleanup --prepare-concurrency 32
run multipart multipart --size 1GiB --part-size 16MiB -c 4 --duration "$large" --keys 4 --prefix mp/
run mixed mixed --size 1MiB -c 16 --duration "$mixed" --keys 200 --get-ratio 0.7 --prefix mixed/

mkdir -p "$(dirname "$out")"
python3 scripts/bench_report.py --results "$work/results" \
    --criterion "$CARGO_TARGET_DIR/criterion" --data-dir "$work/cluster" \
    --commit "$commit$dirty" > "$out"
python3 - "$work/results" >> "$out" <<'PY'
import json, os, sys
d = sys.argv[1]
def summary(name):
    p = os.path.join(d, f"{name}.json")
    return json.load(open(p))["results"][0]["summary"] if os.path.exists(p) else None
rows = [("large-put", "PUT 64 MiB, c=4", "mib_per_sec", "MiB/s"), ("large-get", "GET 64 MiB, c=4", "mib_per_sec", "MiB/s"),
        ("small-put", "PUT 4 KiB, c=32", "ops_per_sec", "ops/s"), ("small-get", "GET 4 KiB, c=32", "ops_per_sec", "ops/s")]
print("\n## HTTPS beside plain HTTP\n")
print("Same storage nodes; the HTTPS gateway is a second `baobab server` process (rustls, ring, "
      "TLS 1.3, ECDSA P-256 certificate); server CPU includes the storage nodes.\n")
print("| scenario | plain | HTTPS | HTTPS / plain | p50 ms plain / HTTPS | p99 ms plain / HTTPS | server CPU plain / HTTPS | errors HTTPS |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for name, title, key, unit in rows:
    a, b = summary(name), summary(name + "-tls")
    if not a or not b:
        continue
    ratio = b[key] / a[key] if a[key] else float("nan")
    cpu = lambda s: "-" if s.get("server_cpu_cores") is None else f"{s['server_cpu_cores']:.2f}"
    print(f"| {title} | {a[key]:.1f} {unit} | {b[key]:.1f} {unit} | {ratio:.2f} | "
          f"{a['latency_ms']['p50']:.2f} / {b['latency_ms']['p50']:.2f} | {a['latency_ms']['p99']:.2f} / {b['latency_ms']['p99']:.2f} | "
          f"{cpu(a)} / {cpu(b)} | {sum(b['errors'].values())} |")
PY
if [ "$geo" = 1 ]; then
    echo "== latency across sites (scripts/geo-bench.sh)"
    { echo; BAOBAB_BIN="$BAOBAB_BIN" scripts/geo-bench.sh --rtt-ms 20 --s3-port $((port + 60)); } >> "$out"
fi
echo "report: $out"
