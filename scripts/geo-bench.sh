#!/usr/bin/env bash
# Latency across sites: a local cluster (storage nodes 1-3 in site-a/b/c, erasure 2+1, the
# gateway in site-a beside node 1) whose links between sites go through baobab-wan, a
# user-space delaying relay (tc netem is missing on our kernels), so every cross-site round
# trip costs --rtt-ms. Measures single-client (c=1) PUT and GET latency of 4 KiB and 1 MiB
# objects, with the metadata leader in another site and then in the gateway's, and prints a
# Markdown section (p50 and p99 in ms and in round trips).
#
#   scripts/geo-bench.sh [--rtt-ms 20] [--s3-port P] [--ops N]
#
# Uses the release build (scripts/prereqs.sh build_release) or $BAOBAB_BIN for the server.
# Everything it writes lives in a temp dir that is deleted.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prereqs.sh

rtt=20
port=4760
ops=40
while [ $# -gt 0 ]; do
    case "$1" in
        --rtt-ms) rtt=$2; shift 2 ;;
        --s3-port) port=$2; shift 2 ;;
        --ops) ops=$2; shift 2 ;;
        *) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
    esac
done
if [ $((rtt % 2)) != 0 ]; then echo "--rtt-ms must be even" >&2; exit 2; fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/baobab-target}"
if [ ! -x "$CARGO_TARGET_DIR/release/baobab-wan" ]; then build_release >&2; fi
bin="$CARGO_TARGET_DIR/release"
export BAOBAB_BIN="${BAOBAB_BIN:-$bin/baobab}"

work=$(mktemp -d "${TMPDIR:-/tmp}/baobab-geo.XXXXXX")
c="$work/cluster"
wan_pid=""
cleanup() {
    scripts/local-cluster.sh stop "$c" >/dev/null 2>&1 || true
    if [ -n "$wan_pid" ]; then kill "$wan_pid" 2>/dev/null || true; wait "$wan_pid" 2>/dev/null || true; fi
    if [ -z "${GEO_KEEP:-}" ]; then rm -rf "$work"; else echo "kept $work" >&2; fi
}
trap cleanup EXIT

# Route every link between sites through the relay before the cluster forms: node N is
# reached at relay port P+20+N by everyone but the gateway's site (the gateway reaches node 1
# directly). All node-to-node links cross sites here, and a node dials its peers at the
# addresses the Raft membership recorded when the group formed, so they must be the relayed
# ones from the start.
scripts/local-cluster.sh init "$c" --s3-port "$port" >/dev/null
one_way=$((rtt / 2))
links=$(python3 - "$c" "$port" "$one_way" <<'PY'
import re, sys
c, port, one_way = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for proc in ["gateway", "node1", "node2", "node3"]:
    path = f"{c}/{proc}.toml"
    text = open(path).read()
    for n in (1, 2, 3):
        if proc == "gateway" and n == 1:
            continue
        target = f"127.0.0.1:{port + n}"
        text, count = re.subn(rf'(\[\[nodes\]\]\nid = {n}\n(?:[^\[]*\n)*?rpc_addr = )"{re.escape(target)}"',
                              rf'\g<1>"127.0.0.1:{port + 20 + n}"', text)
        assert count == 1, (proc, n)
    open(path, "w").write(text)
print(" ".join(f"--link 127.0.0.1:{port + 20 + n}=127.0.0.1:{port + n}@{one_way}" for n in (1, 2, 3)))
PY
)
# shellcheck disable=SC2086
"$bin/baobab-wan" $links > "$work/wan.log" 2>&1 &
wan_pid=$!
scripts/local-cluster.sh start "$c" --s3-port "$port" >/dev/null
# shellcheck disable=SC1091
source "$c/cluster.env"

leader() { # the metadata leader's node id, or empty
    "$BAOBAB_BIN" status --config "$c/gateway.toml" 2>/dev/null \
        | python3 -c 'import json,sys; l=json.load(sys.stdin).get("leader"); print(l if l else "")' 2>/dev/null || true
}
wait_leader() {
    for _ in $(seq 1 100); do
        l=$(leader); if [ -n "$l" ]; then echo "$l"; return; fi; sleep 0.2
    done
    echo "no metadata leader" >&2; exit 1
}
# Moves the leader until `$1 LEADER` holds: kills the leader, waits until another one leads,
# restarts the old one (it comes back as a follower).
place_leader() { # PREDICATE
    local l next
    for _ in $(seq 1 12); do
        l=$(wait_leader)
        if "$1" "$l"; then echo "$l"; return; fi
        scripts/local-cluster.sh kill "$c" "$l" >/dev/null
        for _ in $(seq 1 100); do
            next=$(leader); if [ -n "$next" ] && [ "$next" != "$l" ]; then break; fi; sleep 0.2
        done
        scripts/local-cluster.sh restart "$c" "$l" >/dev/null
        sleep 1
    done
    echo "could not place the metadata leader" >&2; exit 1
}
remote() { [ "$1" != 1 ]; }
local_site() { [ "$1" = 1 ]; }

measure() { # NAME ARGS...: prints "p50 p99 errors" (ms)
    local name=$1 rc=0; shift
    "$bin/baobab-bench" "$@" -c 1 --json > "$work/$name.json" 2>"$work/$name.err" || rc=$?
    # Exit code 2: some operations failed (counted in the table); anything else is fatal.
    if [ "$rc" != 0 ] && [ "$rc" != 2 ]; then
        echo "baobab-bench $* failed: $(tail -3 "$work/$name.err")" >&2; exit 1
    fi
    python3 - "$work/$name.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["results"][0]["summary"]
print(f'{s["latency_ms"]["p50"]:.1f} {s["latency_ms"]["p99"]:.1f} {sum(s["errors"].values())}')
PY
}
row() { # WHERE OP P50 P99 ERRORS
    printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$2" "$3" \
        "$(awk -v p="$3" -v r="$rtt" 'BEGIN { printf "%.1f", p / r }')" "$4" "$5"
}

echo "## Latency across sites (RTT $rtt ms)"
echo
echo "Three sites, one storage node each (2+1), the gateway in site-a beside node 1; every link"
echo "between sites through \`baobab-wan\` (+$one_way ms each way). One client, $ops operations each"
echo "(\`scripts/geo-bench.sh --rtt-ms $rtt\`). RTT = round trips of $rtt ms (p50 / $rtt)."
echo
echo "| metadata leader | operation | p50 ms | p50 RTT | p99 ms | errors |"
echo "|---|---|---:|---:|---:|---:|"
for placement in remote local_site; do
    l=$(place_leader "$placement")
    where="node $l (site-$(echo "abc" | cut -c"$l"))"
    [ "$placement" = local_site ] && where="$where, the gateway's site" || where="$where, another site"
    for spec in "4 KiB:4KiB" "1 MiB:1MiB"; do
        title=${spec%%:*}; size=${spec##*:}
        prefix="geo-$placement-$size/"
        out=$(measure "put-$placement-$size" put --size "$size" --ops "$ops" --keys "$ops" --prefix "$prefix" --no-cleanup)
        read -r p50 p99 err <<<"$out"
        row "$where" "PUT $title" "$p50" "$p99" "$err"
        out=$(measure "get-$placement-$size" get --size "$size" --ops "$ops" --keys "$ops" --prefix "$prefix" --no-prepare)
        read -r p50 p99 err <<<"$out"
        row "$where" "GET $title" "$p50" "$p99" "$err"
    done
done
