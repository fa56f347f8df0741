#!/usr/bin/env bash
# Placement and hand-off of many partitions between cluster nodes (PostgreSQL + an S3
# server, release binary); see scripts/bench/placement.py for the phases measured.
#
#   scripts/bench/placement.sh                                  # 10,000 partitions
#   BUILD=0 scripts/bench/placement.sh --partitions 500 --topics 5 --nodes 3
#
# Arguments go to placement.py (--partitions, --topics, --nodes, --timeout, --out).
# Env:
#   BUILD            0 skips `cargo build --release --workspace` (default 1)
#   CARGO_TARGET_DIR (default $HOME/.cache/inkless-target)
#   INKLESS_BIN      the broker binary (default $CARGO_TARGET_DIR/release/inkless)
# Needs scripts/install-test-deps.sh (PostgreSQL server binaries, moto, confluent-kafka).
# Nodes listen on 127.0.0.100, .101, ... (--nodes, default 2).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/inkless-target}"
BUILD="${BUILD:-1}"

if [[ "$BUILD" == 1 ]]; then
    echo "placement: building the release binary" >&2
    (cd "$ROOT" && cargo build --release --workspace) >&2
fi
export INKLESS_BIN="${INKLESS_BIN:-$CARGO_TARGET_DIR/release/inkless}"
exec python3 "$ROOT/scripts/bench/placement.py" "$@"
