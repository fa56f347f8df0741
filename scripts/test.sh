#!/usr/bin/env bash
# THE test command of the project (CI runs it through .ci/run):
# installs the test dependencies, then fmt, clippy, build, unit tests and the
# end-to-end suite with real Kafka clients. Exits non-zero on any failure.
#
#   scripts/test.sh
#
# The end-to-end suite starts `$CARGO_TARGET_DIR/debug/inkless serve` itself;
# set INKLESS_TEST_BOOTSTRAP=host:port to run it against another broker.
set -euo pipefail

cd "$(dirname "$0")/.."

for d in "$HOME/.cargo/bin" /usr/local/go/bin "$HOME/go/bin" "$HOME/.pyenv/shims"; do
    if [[ -d "$d" && ":$PATH:" != *":$d:"* ]]; then PATH="$PATH:$d"; fi
done
export PATH
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/inkless-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

T0=$SECONDS
step() {
    local t=$SECONDS
    echo "==> $*" >&2
    "$@"
    echo "==> ok ($((SECONDS - t))s): $*" >&2
}

step scripts/install-test-deps.sh
step cargo fmt --all -- --check
step cargo clippy --workspace --all-targets -- -D warnings
step cargo build --workspace
step cargo test --workspace
step python3 -m pytest -v integration/tests_py

echo "==> all checks passed in $((SECONDS - T0))s" >&2
