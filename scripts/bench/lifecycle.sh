#!/usr/bin/env bash
# Object-store requests over the life of data and what merging saves a catch-up read
# (embedded default, release binary); see scripts/bench/lifecycle.py for the phases.
#
#   scripts/bench/lifecycle.sh                       # 1 GiB over 100 partitions
#   BUILD=0 scripts/bench/lifecycle.sh --mib 64      # short version
#
# Arguments go to lifecycle.py (--mib, --partitions).
# Env:
#   BUILD            0 skips `cargo build --release --workspace` (default 1)
#   CARGO_TARGET_DIR (default $HOME/.cache/inkless-target)
#   INKLESS_BIN      the broker binary (default $CARGO_TARGET_DIR/release/inkless)
# Needs confluent-kafka (scripts/install-test-deps.sh). The broker listens on 127.0.0.1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/inkless-target}"
BUILD="${BUILD:-1}"

if [[ "$BUILD" == 1 ]]; then
    echo "lifecycle: building the release binary" >&2
    (cd "$ROOT" && cargo build --release --workspace) >&2
fi
export INKLESS_BIN="${INKLESS_BIN:-$CARGO_TARGET_DIR/release/inkless}"
exec python3 "$ROOT/scripts/bench/lifecycle.py" "$@"
