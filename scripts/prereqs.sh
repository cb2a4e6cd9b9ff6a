# Sourced by the scripts: installs what building and testing Baobab needs, only when missing.

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

APT_UPDATED=0
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        if [ "$APT_UPDATED" -eq 0 ]; then
            as_root apt-get update -qq
            APT_UPDATED=1
        fi
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# RocksDB is built from source (bundled); its bindings need libclang.
install_build_prereqs() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "cargo not found: install Rust from https://rustup.rs first" >&2
        exit 1
    fi
    apt_install libclang-dev clang g++ make
}

# The one build every script uses (tests, `baobab dev`, benchmarks): the same cargo invocation,
# so features resolve the same way and none of them rebuilds what another built.
build_release() {
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/baobab-target}"
    cargo build --release --workspace --all-targets
}
