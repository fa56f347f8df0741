#!/usr/bin/env bash
# Runs the nemesis test (integration/nemesis/nemesis.py) for many seeds and prints a table:
# per run and in total, the faults, acknowledged records, and every kind of violation
# (lost, duplicates, fatal producer errors, offset resets, commit regressions, ...), then the
# unavailability per fault kind. Exits non-zero if any run found a violation or failed.
#
#   scripts/nemesis.sh
#   RUNS=50 DURATION=120 PARALLEL=2 FAULTS=kill-az,pg-cut scripts/nemesis.sh
#   SEEDS="1 2 3" scripts/nemesis.sh
#
# Env:
#   RUNS       number of runs with random seeds (default 10); ignored when SEEDS is set
#   SEEDS      space-separated seeds to run
#   DURATION   seconds of faults per run (default 120)
#   PARALLEL   runs at once (default 1); each gets its own loopback addresses
#              (127.0.0.<IP_BASE + 20 * slot + 1..6>); a run takes about two cores
#   IP_BASE    first loopback block (default 10); use 90 or more while the test command runs
#              (its cluster tests use 127.0.0.11-16 and .71-76)
#   FAULTS     comma-separated fault kinds (default: all; see nemesis.py --help)
#   OUT        directory for the per-run JSON and log files (default: a new temp dir)
#   INKLESS_BIN  broker binary; default: `cargo build --release -p inkless-node` and
#              $CARGO_TARGET_DIR/release/inkless (CARGO_TARGET_DIR default
#              $HOME/.cache/inkless-target)
# A run with a violation keeps its work dir (node logs, details.json, metadata.txt) and
# names it in its JSON line ("kept") and in its log.
set -euo pipefail

cd "$(dirname "$0")/.."
for d in "$HOME/.cargo/bin" "$HOME/.pyenv/shims"; do
    if [[ -d "$d" && ":$PATH:" != *":$d:"* ]]; then PATH="$PATH:$d"; fi
done
export PATH

RUNS="${RUNS:-10}"
DURATION="${DURATION:-120}"
PARALLEL="${PARALLEL:-1}"
IP_BASE="${IP_BASE:-10}"
FAULTS="${FAULTS:-}"
OUT="${OUT:-$(mktemp -d -t inkless-nemesis-runs-XXXXXX)}"
mkdir -p "$OUT"
((PARALLEL >= 1 && PARALLEL <= 12)) || { echo "PARALLEL must be 1..12" >&2; exit 2; }

if [[ -z "${INKLESS_BIN:-}" ]]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/inkless-target}"
    echo "nemesis: cargo build --release -p inkless-node" >&2
    cargo build --release -p inkless-node >&2
    export INKLESS_BIN="$CARGO_TARGET_DIR/release/inkless"
fi
[[ -x "$INKLESS_BIN" ]] || { echo "nemesis: broker binary $INKLESS_BIN not found" >&2; exit 2; }

if [[ -n "${SEEDS:-}" ]]; then
    read -r -a seeds <<< "$SEEDS"
else
    seeds=()
    for ((i = 0; i < RUNS; i++)); do seeds+=($(( (RANDOM << 15 | RANDOM) ))); done
fi

echo "nemesis: ${#seeds[@]} runs of ${DURATION}s, $PARALLEL at once, faults ${FAULTS:-all}," \
     "binary $INKLESS_BIN; results in $OUT" >&2

run_one() {  # seed slot
    local seed=$1 slot=$2 args=()
    args=(--seed "$seed" --duration "$DURATION" --ip-base $((IP_BASE + 20 * slot)) --out "$OUT/$seed.json")
    [[ -n "$FAULTS" ]] && args+=(--faults "$FAULTS")
    python3 integration/nemesis/nemesis.py "${args[@]}" > /dev/null 2> "$OUT/$seed.log" || true
    if [[ -s "$OUT/$seed.json" ]]; then
        echo "nemesis: seed $seed: $(cat "$OUT/$seed.json")" >&2
    else
        echo "nemesis: seed $seed: no result; see $OUT/$seed.log" >&2
    fi
}

declare -A slot_pid=()
for seed in "${seeds[@]}"; do
    while true; do  # the first free slot
        free=""
        for ((s = 0; s < PARALLEL; s++)); do
            pid="${slot_pid[$s]:-}"
            if [[ -z "$pid" ]] || ! kill -0 "$pid" 2>/dev/null; then free=$s; break; fi
        done
        [[ -n "$free" ]] && break
        sleep 1
    done
    run_one "$seed" "$free" &
    slot_pid[$free]=$!
done
wait

results=()
missing=0
for seed in "${seeds[@]}"; do
    if [[ -s "$OUT/$seed.json" ]] && ! grep -q '"error"' "$OUT/$seed.json"; then
        results+=("$OUT/$seed.json")
    else
        missing=$((missing + 1))
        echo "nemesis: seed $seed did not complete: $(cat "$OUT/$seed.json" 2>/dev/null || echo 'no result')" >&2
    fi
done

status=0
if ((${#results[@]})); then
    python3 integration/nemesis/nemesis.py --table "${results[@]}" || status=1
fi
if ((missing)); then
    echo "$missing run(s) did not complete (logs in $OUT)"
    status=1
fi
exit $status
