#!/usr/bin/env bash
# A local cluster of separate `baobab server` processes: storage nodes 1-3 in sites
# site-a/b/c (erasure 2+1) and one gateway, each with its own config file.
#
#   local-cluster.sh start DIR [--s3-port P]   start (or restart) all; writes DIR/cluster.env
#   local-cluster.sh init DIR [--s3-port P]    only write the config files and certificates
#   local-cluster.sh stop DIR [N]              SIGTERM all, or storage node N (SIGKILL after 10 s)
#   local-cluster.sh status DIR                which processes run, and `baobab status`
#   local-cluster.sh kill DIR N                SIGKILL storage node N
#   local-cluster.sh restart DIR N             start storage node N again
#
# S3 listens on 127.0.0.1:P (default 3900), storage node N's RPC on P+N (mutual TLS: the
# cluster CA and every process's certificate are made under DIR/tls on the first start).
# The binary is $BAOBAB_BIN, else $CARGO_TARGET_DIR/release/baobab (default target ~/.cache/baobab-target),
# else `baobab` on PATH. Only PIDs recorded under DIR are ever signalled.
# BAOBAB_RETIRED_DATA_GRACE_SECS, when set, goes into every process's retired_data_grace_secs;
# BAOBAB_SHARD_RESERVE_BYTES into every storage node's shard_reserve_bytes;
# BAOBAB_GC_INTERVAL_SECS and BAOBAB_GC_MIN_AGE_SECS into every storage node's gc_interval_secs
# and gc_min_age_secs; BAOBAB_SCRUB_INTERVAL_SECS into every storage node's scrub_interval_secs;
# BAOBAB_NODE<N>_DATA_DIR puts storage node N's data there instead of
# DIR/nodeN (e.g. on a small file system). The gateway's [s3] limits come from
# BAOBAB_S3_MAX_CONNECTIONS, BAOBAB_S3_HEADER_READ_TIMEOUT_SECS, BAOBAB_S3_BODY_IDLE_TIMEOUT_SECS
# and BAOBAB_S3_REQUESTS_PER_SEC_PER_KEY (max_connections, header_read_timeout_secs, ...);
# BAOBAB_S3_TLS_CERT and BAOBAB_S3_TLS_KEY (PEM files) make it serve HTTPS only (cluster.env
# then says https://; `kill -HUP` the gateway to reload them).
# BAOBAB_METRICS=1 gives every process a Prometheus /metrics listener: the gateway on P+4,
# storage node N on P+4+N (cluster.env then lists them in BAOBAB_METRICS_URLS).
# All are read when a config file is first written.
set -euo pipefail

usage() { sed -n '2,/^set /{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

find_bin() {
    if [ -n "${BAOBAB_BIN:-}" ]; then echo "$BAOBAB_BIN"; return; fi
    local t="${CARGO_TARGET_DIR:-$HOME/.cache/baobab-target}/release/baobab"
    if [ -x "$t" ]; then echo "$t"; return; fi
    command -v baobab || { echo "baobab binary not found (set BAOBAB_BIN)" >&2; exit 1; }
}

# A process that exited but was not reaped yet (a zombie) counts as gone: `kill -0` still
# succeeds on it, and who reaps it (init) may take a second or more.
process_running() { # PID
    kill -0 "$1" 2>/dev/null && [ "$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)" != Z ]
}

pid_alive() { [ -f "$1" ] && process_running "$(cat "$1")"; }

write_config() { # DIR NAME ROLE NODE_ID PORT
    local dir=$1 name=$2 role=$3 id=$4 port=$5
    local data_dir_var="BAOBAB_NODE${id}_DATA_DIR"
    local data_dir="$dir/$name"
    if [ "$role" = storage ] && [ -n "${!data_dir_var:-}" ]; then data_dir=${!data_dir_var}; fi
    {
        echo "roles = [\"$role\"]"
        [ "$role" = storage ] && echo "node_id = $id"
        echo "data_dir = \"$data_dir\""
        [ "$role" = storage ] && echo "rpc_listen = \"127.0.0.1:$((port + id))\""
        echo "cluster_secret_file = \"$dir/cluster.secret\""
        echo "log_file = \"$dir/$name.log\""
        if [ "${BAOBAB_METRICS:-}" = 1 ]; then
            echo "metrics_listen = \"127.0.0.1:$((port + 4 + id))\""
        fi
        if [ -n "${BAOBAB_RETIRED_DATA_GRACE_SECS:-}" ]; then
            echo "retired_data_grace_secs = $BAOBAB_RETIRED_DATA_GRACE_SECS"
        fi
        if [ "$role" = storage ] && [ -n "${BAOBAB_SHARD_RESERVE_BYTES:-}" ]; then
            echo "shard_reserve_bytes = $BAOBAB_SHARD_RESERVE_BYTES"
        fi
        if [ "$role" = storage ] && [ -n "${BAOBAB_GC_INTERVAL_SECS:-}" ]; then
            echo "gc_interval_secs = $BAOBAB_GC_INTERVAL_SECS"
        fi
        if [ "$role" = storage ] && [ -n "${BAOBAB_GC_MIN_AGE_SECS:-}" ]; then
            echo "gc_min_age_secs = $BAOBAB_GC_MIN_AGE_SECS"
        fi
        if [ "$role" = storage ] && [ -n "${BAOBAB_SCRUB_INTERVAL_SECS:-}" ]; then
            echo "scrub_interval_secs = $BAOBAB_SCRUB_INTERVAL_SECS"
        fi
        if [ -f "$dir/tls/ca.pem" ]; then
            local stem=gateway
            [ "$role" = storage ] && stem="node-$id"
            printf '[rpc_tls]\nca = "%s"\ncert = "%s"\nkey = "%s"\n' "$dir/tls/ca.pem" "$dir/tls/$stem.pem" "$dir/tls/$stem.key"
        fi
        if [ "$role" = gateway ]; then
            printf '[s3]\nlisten = "127.0.0.1:%s"\nregion = "us-east-1"\nroot_domain = "localhost"\n' "$port"
            local s3_var
            for s3_var in max_connections header_read_timeout_secs body_idle_timeout_secs requests_per_sec_per_key; do
                local env_var="BAOBAB_S3_${s3_var^^}"
                if [ -n "${!env_var:-}" ]; then echo "$s3_var = ${!env_var}"; fi
            done
            if [ -n "${BAOBAB_S3_TLS_CERT:-}" ]; then
                printf 'tls_cert = "%s"\ntls_key = "%s"\n' "$BAOBAB_S3_TLS_CERT" "${BAOBAB_S3_TLS_KEY:?BAOBAB_S3_TLS_KEY goes with BAOBAB_S3_TLS_CERT}"
            fi
        fi
        printf '[erasure]\nk = 2\nm = 1\n'
        local sites=(site-a site-b site-c)
        for n in 1 2 3; do
            printf '[[nodes]]\nid = %s\nsite = "%s"\nrpc_addr = "127.0.0.1:%s"\n' "$n" "${sites[$((n - 1))]}" "$((port + n))"
        done
    } > "$dir/$name.toml"
}

start_one() { # DIR NAME
    local dir=$1 name=$2
    if pid_alive "$dir/$name.pid"; then return; fi
    mkdir -p "$dir/$name"
    nohup "$BIN" server --config "$dir/$name.toml" >> "$dir/$name.log" 2>&1 < /dev/null &
    echo $! > "$dir/$name.pid"
}

wait_port() { # PORT
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$1 after 20 s" >&2
    return 1
}

stop_pid_file() { # PIDFILE
    local f=$1
    pid_alive "$f" || { rm -f "$f"; return 0; }
    local pid; pid=$(cat "$f")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        process_running "$pid" || { rm -f "$f"; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$f"
}

cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || usage
shift 2

case "$cmd" in
start|init)
    port=3900
    while [ $# -gt 0 ]; do
        case "$1" in
            --s3-port) port=$2; shift 2 ;;
            *) usage ;;
        esac
    done
    BIN=$(find_bin)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ ! -f "$dir/cluster.secret" ]; then
        (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/cluster.secret")
    fi
    if [ -f "$dir/port" ]; then port=$(cat "$dir/port"); else echo "$port" > "$dir/port"; fi
    # The cluster CA and a certificate per process (mutual TLS on the internal RPC); builds
    # before it (benchmarked with --bin) have no `cert` command and speak plain RPC.
    if "$BIN" cert --help > /dev/null 2>&1; then
        [ -f "$dir/tls/ca.pem" ] || "$BIN" cert ca --dir "$dir/tls" --name local-cluster > /dev/null
        for n in 1 2 3; do
            [ -f "$dir/tls/node-$n.pem" ] || "$BIN" cert issue --ca-dir "$dir/tls" --node "$n" > /dev/null
        done
        [ -f "$dir/tls/gateway.pem" ] || "$BIN" cert issue --ca-dir "$dir/tls" --gateway > /dev/null
    fi
    for n in 1 2 3; do [ -f "$dir/node$n.toml" ] || write_config "$dir" "node$n" storage "$n" "$port"; done
    [ -f "$dir/gateway.toml" ] || write_config "$dir" gateway gateway 0 "$port"
    if [ "$cmd" = init ]; then exit 0; fi
    for n in 1 2 3; do start_one "$dir" "node$n"; done
    start_one "$dir" gateway
    wait_port "$port"
    if [ -f "$dir/cluster.env" ]; then
        key_id=$(sed -n 's/^export AWS_ACCESS_KEY_ID=//p' "$dir/cluster.env")
        secret=$(sed -n 's/^export AWS_SECRET_ACCESS_KEY=//p' "$dir/cluster.env")
    else
        key_id="BK$(head -c 4096 /dev/urandom | tr -dc 'A-Z2-7' | head -c 18)"
        secret=$(head -c 4096 /dev/urandom | tr -dc 'A-Za-z0-9' | head -c 40)
    fi
    # Builds before per-bucket rights (benchmarked with --bin) know no --allow-create-bucket.
    rights=()
    if "$BIN" key create --help 2>/dev/null | grep -q -- --allow-create-bucket; then
        rights=(--allow-create-bucket)
    fi
    if "$BIN" key create --help 2>/dev/null | grep -q -- --secret-stdin; then
        printf '%s\n' "$secret" | "$BIN" key create --config "$dir/gateway.toml" --name local-cluster "${rights[@]}" --key-id "$key_id" --secret-stdin > /dev/null
    else # builds before --secret-stdin (benchmarked with --bin)
        "$BIN" key create --config "$dir/gateway.toml" --name local-cluster "${rights[@]}" --key-id "$key_id" --secret "$secret" > /dev/null
    fi
    scheme=http
    if grep -q '^tls_cert' "$dir/gateway.toml"; then scheme=https; fi
    (umask 077; : > "$dir/cluster.env.tmp")
    cat > "$dir/cluster.env.tmp" <<ENV
export AWS_ACCESS_KEY_ID=$key_id
export AWS_SECRET_ACCESS_KEY=$secret
export AWS_ENDPOINT_URL=$scheme://127.0.0.1:$port
export AWS_REGION=us-east-1
ENV
    if grep -q '^metrics_listen' "$dir/gateway.toml"; then
        echo "export BAOBAB_METRICS_URLS=\"$(for n in 0 1 2 3; do printf 'http://127.0.0.1:%s/metrics ' "$((port + 4 + n))"; done)\"" >> "$dir/cluster.env.tmp"
    fi
    mv "$dir/cluster.env.tmp" "$dir/cluster.env"
    echo "cluster running; credentials: source $dir/cluster.env"
    ;;
stop)
    if [ $# -gt 0 ]; then stop_pid_file "$dir/node${1:?node number}.pid"; exit 0; fi
    stop_pid_file "$dir/gateway.pid"
    for n in 1 2 3; do stop_pid_file "$dir/node$n.pid"; done
    ;;
status)
    for name in node1 node2 node3 gateway; do
        if pid_alive "$dir/$name.pid"; then echo "$name: up (pid $(cat "$dir/$name.pid"))"; else echo "$name: down"; fi
    done
    BIN=$(find_bin)
    "$BIN" status --config "$dir/gateway.toml" || true
    ;;
kill)
    n=${1:?node number}
    if pid_alive "$dir/node$n.pid"; then kill -KILL "$(cat "$dir/node$n.pid")"; fi
    rm -f "$dir/node$n.pid"
    ;;
restart)
    n=${1:?node number}
    BIN=$(find_bin)
    start_one "$dir" "node$n"
    ;;
*) usage ;;
esac
