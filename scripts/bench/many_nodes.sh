#!/usr/bin/env bash
# Many nodes sharing one PostgreSQL (release binary): membership, a mass crash, and what idle
# nodes cost; see scripts/bench/many_nodes.py for the phases measured.
#
#   scripts/bench/many_nodes.sh --nodes 300 --partitions 3000 --kill 10
#   BUILD=0 scripts/bench/many_nodes.sh --nodes 12 --partitions 600 --kill 3
#
# Env: BUILD (0 skips the release build), CARGO_TARGET_DIR, INKLESS_BIN.
# Needs scripts/install-test-deps.sh (PostgreSQL server binaries, moto, franz-client).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/inkless-target}"
if [[ "${BUILD:-1}" == 1 ]]; then
    echo "many_nodes: building the release binary" >&2
    (cd "$ROOT" && cargo build --release --workspace) >&2
fi
export INKLESS_BIN="${INKLESS_BIN:-$CARGO_TARGET_DIR/release/inkless}"
# Each node holds a few hundred descriptors.
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec python3 "$ROOT/scripts/bench/many_nodes.py" "$@"
