#!/usr/bin/env bash
# The one command that runs every Baobab test on a fresh machine: installs what is missing
# (build prerequisites, aws-cli, boto3, rclone, s3cmd, restic, pytest), builds once (release), runs the
# Rust unit/property tests, then the black-box tests against real `baobab` processes.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prereqs.sh

install_build_prereqs
apt_install rclone s3cmd restic
command -v openssl >/dev/null 2>&1 || apt_install openssl   # tests/test_tls.py makes its certificates
py_missing=()
python3 -c 'import boto3' 2>/dev/null || py_missing+=(boto3)
python3 -c 'import awscrt' 2>/dev/null || py_missing+=(awscrt)     # boto3's CRC32C/CRC64NVME
python3 -c 'import pytest' 2>/dev/null || py_missing+=(pytest)
python3 -c 'import requests' 2>/dev/null || py_missing+=(requests)   # browser-form POST tests
python3 -c 'import prometheus_client' 2>/dev/null || py_missing+=(prometheus-client)   # /metrics parser
command -v aws >/dev/null 2>&1 || py_missing+=(awscli)
if [ "${#py_missing[@]}" -gt 0 ]; then
    python3 -m pip install -q "${py_missing[@]}"
fi
if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install --locked cargo-nextest
fi

# The one release build (scripts/prereqs.sh) serves the unit and black-box tests, `baobab dev`
# and the benchmarks.
build_release
cargo nextest run --release --workspace --no-fail-fast
# Fuzz targets (fuzz/README.md): the committed corpus replayed on stable (shares the target
# directory), then each target fuzzed briefly on nightly (a loud skip without nightly).
cargo test --release --manifest-path fuzz/Cargo.toml
scripts/fuzz.sh --seconds "${BAOBAB_FUZZ_SECONDS:-20}"

export BAOBAB_BIN="$CARGO_TARGET_DIR/release/baobab"
# rclone 1.60 refuses to start when AWS_CA_BUNDLE is set; the HTTPS tests pass their CA to
# each client themselves.
unset AWS_CA_BUNDLE
python3 -m pytest -p no:cacheprovider -q tests/ "$@"
