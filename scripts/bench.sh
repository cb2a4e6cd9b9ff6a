#!/usr/bin/env bash
# The standard benchmark: builds (release), starts a local cluster (3 storage nodes, 2+1, one
# gateway; scripts/local-cluster.sh), runs the standard scenarios with baobab-bench and the
# hot-path micro-benchmarks, and writes a Markdown report.
#
#   scripts/bench.sh [--out FILE] [--no-micro] [--quick] [--s3-port P] [--bin BAOBAB] [--label L]
#
# --out      report path (default bench/reports/<date>-<commit>.md)
# --bin      benchmark this baobab binary (e.g. an older build kept aside) instead of the build
# --label    what the report calls the server under test (default: the commit)
# --no-micro skip the criterion micro-benchmarks (about 3 minutes)
# --quick    shorter runs (a smoke run, not for reporting)
# Everything the run writes (cluster data, JSON results) lives in a temp dir that is deleted.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prereqs.sh

out=""
micro=1
quick=0
port=4700
server_bin=""
label=""
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=$2; shift 2 ;;
        --no-micro) micro=0; shift ;;
        --quick) quick=1; shift ;;
        --s3-port) port=$2; shift 2 ;;
        --bin) server_bin=$(realpath "$2"); shift 2 ;;
        --label) label=$2; shift 2 ;;
        *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
    esac
done

install_build_prereqs
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/baobab-target}"
# The same build as scripts/test.sh, so neither rebuilds what the other built.
cargo build --release --workspace --all-targets
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

run large-put put --size 64MiB -c 4 --duration "$large" --keys 8 --prefix large/ --no-cleanup
run large-get get --size 64MiB -c 4 --duration "$large" --keys 8 --prefix large/ --no-prepare
run small-put put --size 4KiB -c 32 --ops "$small_ops" --keys "$small_ops" --prefix small/ --no-cleanup
run small-get get --size 4KiB -c 32 --ops "$small_ops" --keys "$small_ops" --prefix small/ --no-prepare --no-cleanup
run list list --size 0 -c 1 --duration 10s --keys "$list_keys" --page-size 1000 --prefix list/ --no-cleanup --prepare-concurrency 32
run multipart multipart --size 1GiB --part-size 16MiB -c 4 --duration "$large" --keys 4 --prefix mp/
run mixed mixed --size 1MiB -c 16 --duration "$mixed" --keys 200 --get-ratio 0.7 --prefix mixed/

mkdir -p "$(dirname "$out")"
python3 scripts/bench_report.py --results "$work/results" \
    --criterion "$CARGO_TARGET_DIR/criterion" --data-dir "$work/cluster" \
    --commit "$commit$dirty" > "$out"
echo "report: $out"
