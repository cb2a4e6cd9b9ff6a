#!/usr/bin/env bash
# Runs every fuzz target (fuzz/README.md) for a bounded time with cargo-fuzz on the nightly
# toolchain: `scripts/fuzz.sh [--seconds N] [target...]` (default 20 s each, all targets).
# One libFuzzer process at a time (no -jobs). What a run learns stays under ~/.cache (the committed corpus
# is read, never written); a finding fails the script and names its reproducer.
# Without a nightly toolchain it says so and exits 0: the stable replay of the committed corpus
# (`cargo test --manifest-path fuzz/Cargo.toml`, in scripts/test.sh) still checks every input.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=20
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --seconds=*) seconds="${1#--seconds=}"; shift ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) targets+=("$1"); shift ;;
    esac
done
if [ "${#targets[@]}" -eq 0 ]; then
    targets=(shard_format rpc_messages meta_records config s3_bodies)
fi

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "=====================================================================" >&2
    echo "scripts/fuzz.sh: NO NIGHTLY TOOLCHAIN: the fuzz targets did NOT run." >&2
    echo "(The stable replay of the committed corpus did.) To fuzz:" >&2
    echo "    rustup toolchain install nightly && scripts/fuzz.sh" >&2
    echo "=====================================================================" >&2
    exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi

cache="$HOME/.cache/baobab-fuzz"
# Nightly and instrumented: cannot share the stable build's target directory.
export CARGO_TARGET_DIR="${BAOBAB_FUZZ_TARGET_DIR:-$HOME/.cache/baobab-fuzz-target}"
mkdir -p "$cache" "$CARGO_TARGET_DIR"

# RocksDB's C++ takes ~15 min to compile on 2 cores: link the static library the stable build
# made instead (same librocksdb-sys version: fuzz/Cargo.lock is the root's plus libfuzzer-sys).
# Hard-linked into our own directory, so a later stable rebuild cannot pull it away mid-build.
stable_target="${BAOBAB_STABLE_TARGET_DIR:-$HOME/.cache/baobab-target}"
rocksdb_lib=$(ls -t "$stable_target"/release/build/librocksdb-sys-*/out/librocksdb.a 2>/dev/null | head -n 1 || true)
if [ -n "$rocksdb_lib" ]; then
    mkdir -p "$CARGO_TARGET_DIR/rocksdb-lib"
    if [ ! "$CARGO_TARGET_DIR/rocksdb-lib/librocksdb.a" -ef "$rocksdb_lib" ]; then
        ln -f "$rocksdb_lib" "$CARGO_TARGET_DIR/rocksdb-lib/librocksdb.a" 2>/dev/null \
            || cp "$rocksdb_lib" "$CARGO_TARGET_DIR/rocksdb-lib/librocksdb.a"
    fi
    export ROCKSDB_LIB_DIR="$CARGO_TARGET_DIR/rocksdb-lib" ROCKSDB_STATIC=1
else
    echo "scripts/fuzz.sh: no stable build of RocksDB under $stable_target; building it (slow)" >&2
fi

# No sanitizer: the workspace forbids unsafe code, and ASan would halve the executions.
# Debug assertions on: an arithmetic overflow is a finding.
fuzz_flags=(--release --debug-assertions --sanitizer none --features libfuzzer)
start=$(date +%s)
cargo +nightly fuzz build "${fuzz_flags[@]}"
echo "scripts/fuzz.sh: built in $(( $(date +%s) - start )) s"

for t in "${targets[@]}"; do
    work="$cache/corpus/$t"
    artifacts="$cache/artifacts/$t"
    mkdir -p "$work" "$artifacts"
    echo "scripts/fuzz.sh: $t for ${seconds} s"
    # New inputs go to the first directory (ours); the committed corpus is only read.
    if ! cargo +nightly fuzz run "${fuzz_flags[@]}" "$t" "$work" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 -artifact_prefix="$artifacts/" -print_final_stats=1; then
        echo "scripts/fuzz.sh: $t FOUND A FAILURE; reproducer(s) in $artifacts/" >&2
        echo "see fuzz/README.md, 'A finding'" >&2
        exit 1
    fi
done
echo "scripts/fuzz.sh: all targets ran $seconds s without a finding ($(( $(date +%s) - start )) s in all)"
