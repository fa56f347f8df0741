#!/usr/bin/env bash
# Storage stays bounded under retention (a steady producer, retention.ms of minutes, moto)
# release binary; see scripts/bench/retention_soak.py.
#
#   scripts/bench/retention_soak.sh                 # 30 minutes, retention 2 min, 2 MB/s
#   BUILD=0 scripts/bench/retention_soak.sh --minutes 3 --retention-s 30 --interval-s 15
#
# Arguments go to retention_soak.py (--minutes, --retention-s, --interval-s, --mb-per-s, --partitions).
# Env:
#   BUILD            0 skips `cargo build --release --workspace` (default 1)
#   CARGO_TARGET_DIR (default $HOME/.cache/inkless-target)
#   INKLESS_BIN      the broker binary (default $CARGO_TARGET_DIR/release/inkless)
# Needs confluent-kafka, moto and boto3 (scripts/install-test-deps.sh). The broker listens on 127.0.0.1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/inkless-target}"
BUILD="${BUILD:-1}"

if [[ "$BUILD" == 1 ]]; then
    echo "retention soak: building the release binary" >&2
    (cd "$ROOT" && cargo build --release --workspace) >&2
fi
export INKLESS_BIN="${INKLESS_BIN:-$CARGO_TARGET_DIR/release/inkless}"
exec python3 "$ROOT/scripts/bench/retention_soak.py" "$@"
