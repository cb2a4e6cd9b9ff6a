#!/usr/bin/env bash
# Builds Baobab (installing the build prerequisites when missing) and runs `baobab dev`:
# a local cluster of three storage nodes and one gateway, with zero configuration.
# Usage: scripts/dev.sh [--data-dir DIR] [--s3-port PORT]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prereqs.sh
install_build_prereqs
# The one release build (scripts/prereqs.sh) serves the unit and black-box tests, `baobab dev`
# and the benchmarks.
build_release
exec "$CARGO_TARGET_DIR/release/baobab" dev "$@"
