#!/usr/bin/env bash
# Fuzzes the protocol crate's decoders with cargo-fuzz (libFuzzer). For developers, not CI.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Runs each target (default: decode_request frames record_batches subscriptions) for SECONDS (default 60)
# and exits non-zero as soon as one finds a crash; the crashing input is then under
# protocol/fuzz/artifacts/<target>/ (reproduce: cargo fuzz run <target> <file>,
# shrink: cargo fuzz tmin <target> <file>).
#
# Targets are built as cargo-fuzz does by default: optimized, with debug assertions and
# overflow checks on. Works on a stable toolchain: cargo-fuzz passes nightly -Z flags,
# which RUSTC_BOOTSTRAP=1 lets stable rustc accept. FUZZ_SANITIZER=none|address (default address; falls back to
# none if the AddressSanitizer build fails). FUZZ_JOBS limits cargo's build jobs (default 2).
# The growing corpus is kept in protocol/fuzz/corpus/<target>/ (git-ignored); the committed
# seeds in protocol/fuzz/seeds/<target>/ are read too (regenerate them with
# `cd protocol/fuzz && cargo run --example gen_seeds`).
set -euo pipefail

cd "$(dirname "$0")/../protocol/fuzz"

SECS="${1:-60}"
shift || true
TARGETS=("$@")
if [[ ${#TARGETS[@]} -eq 0 ]]; then
    TARGETS=(decode_request frames record_batches subscriptions)
fi

if [[ -d "$HOME/.cargo/bin" && ":$PATH:" != *":$HOME/.cargo/bin:"* ]]; then
    PATH="$PATH:$HOME/.cargo/bin"
fi
export PATH
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/inkless-fuzz-target}"
export CARGO_BUILD_JOBS="${FUZZ_JOBS:-2}"
SAN="${FUZZ_SANITIZER:-address}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz
fi

echo "==> building fuzz targets (sanitizer: $SAN)" >&2
build() { for t in "${TARGETS[@]}"; do cargo fuzz build -s "$SAN" "$t" || return 1; done; }
if ! build; then
    if [[ "$SAN" != none ]]; then
        echo "==> $SAN build failed; retrying without a sanitizer" >&2
        SAN=none
        build
    else
        exit 1
    fi
fi

for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t"
    seeds=()
    [[ -d "seeds/$t" ]] && seeds=("seeds/$t")
    echo "==> fuzzing $t for ${SECS}s" >&2
    # -rss_limit_mb stays at libFuzzer's default (2 GiB); the targets install the broker's
    # LargeAllocGuard allocator, so decoder over-reservations do not count as OOMs.
    if ! cargo fuzz run -s "$SAN" "$t" "corpus/$t" "${seeds[@]}" -- \
        -max_total_time="$SECS" -print_final_stats=1; then
        echo "==> $t: CRASH; input saved under protocol/fuzz/artifacts/$t/" >&2
        exit 1
    fi
done
echo "==> no crashes (${SECS}s per target)" >&2
