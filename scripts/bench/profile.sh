#!/usr/bin/env bash
# CPU profile of an Inkless broker (embedded: local files + SQLite) under inkless-bench.
#
#   scripts/bench/profile.sh [OUTDIR]
#
# Starts a fresh broker on free loopback ports, runs inkless-bench (OMB shape, max rate
# unless RATE is set), samples the broker with `perf record -e cpu-clock --call-graph dwarf`
# (software clock: no hardware counters are needed, so it works in VMs), stops the broker,
# then prints the cost categories (scripts/bench/perf_classify.py) and the flat top symbols.
# Also records the broker's on-CPU vs runnable-but-waiting time (/proc/PID/task/*/schedstat),
# which tells whether other processes starved it.
#
# Env: RATE (0 = max), DURATION bench seconds (default 25), PERF_SECS sampling seconds
# (default 15, starting PERF_DELAY s into the run, default 3; more for big topics, whose
# creation comes first), BENCH_ARGS extra inkless-bench arguments, FREQ Hz (default 999), INKLESS_ENV extra
# VAR=value settings for the broker, BUILD=0 skips cargo build, KEEP_DATA=1 keeps the
# objects (deleted by default; metadata.db stays). perf.data is ~15 MB per second sampled.
# Needs perf (apt-get install linux-perf). `perf script` takes minutes on a big profile.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/inkless-target}"
REL="$CARGO_TARGET_DIR/release"
OUT="${1:-$(mktemp -d /tmp/inkless-profile.XXXXXX)}"
RATE="${RATE:-0}"
DURATION="${DURATION:-25}"
PERF_SECS="${PERF_SECS:-15}"
PERF_DELAY="${PERF_DELAY:-3}"
BENCH_ARGS="${BENCH_ARGS:-}"
FREQ="${FREQ:-999}"
INKLESS_ENV="${INKLESS_ENV:-}"
mkdir -p "$OUT/data"
command -v perf >/dev/null || { echo "perf not found (apt-get install linux-perf)" >&2; exit 1; }
((PERF_SECS + PERF_DELAY < DURATION)) || { echo "PERF_SECS + PERF_DELAY must be below DURATION" >&2; exit 1; }

if [[ "${BUILD:-1}" == 1 ]]; then
    (cd "$ROOT" && cargo build --release -p inkless-node -p inkless-integration) >"$OUT/build.log" 2>&1
fi
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
port="$(free_port)"; aport="$(free_port)"
# shellcheck disable=SC2086
env $INKLESS_ENV INKLESS__KAFKA__LISTEN="127.0.0.1:$port" INKLESS__STORAGE__DATA_DIR="$OUT/data" \
    INKLESS__ADMIN__LISTEN="127.0.0.1:$aport" "$REL/inkless" serve >"$OUT/broker.log" 2>&1 </dev/null &
BP=$!
trap 'kill -TERM $BP 2>/dev/null || true; wait $BP 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$aport/metrics" >/dev/null && break
    sleep 0.2
done

# shellcheck disable=SC2086
timeout "$((DURATION + 120))" "$REL/inkless-bench" --bootstrap "127.0.0.1:$port" --rate "$RATE" \
    --duration-secs "$DURATION" --broker-pid "$BP" --metrics-url "http://127.0.0.1:$aport/metrics" \
    $BENCH_ARGS >"$OUT/bench.out" 2>"$OUT/bench.err" &
BEN=$!
sleep "$PERF_DELAY"
python3 - "$BP" "$PERF_SECS" >"$OUT/schedstat.txt" <<'EOF' &
import os, sys, time
pid, secs = sys.argv[1], float(sys.argv[2])
def snap():
    run = wait = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            a, b, _ = open(f"/proc/{pid}/task/{t}/schedstat").read().split()
            run += int(a); wait += int(b)
        except (OSError, ValueError):
            pass
    return run, wait
r0, w0 = snap(); time.sleep(secs); r1, w1 = snap()
print(f"broker threads over {secs:.0f}s: on-CPU {(r1 - r0) / 1e9:.2f}s, "
      f"runnable but waiting for a CPU {(w1 - w0) / 1e9:.2f}s")
EOF
SCHED=$!
perf record -F "$FREQ" -e cpu-clock --call-graph dwarf,16384 -p "$BP" -o "$OUT/perf.data" \
    -- sleep "$PERF_SECS" 2>"$OUT/perf.err"
wait "$BEN" || true
wait "$SCHED" || true
kill -TERM "$BP" 2>/dev/null || true
wait "$BP" 2>/dev/null || true
trap - EXIT
[[ "${KEEP_DATA:-0}" == 1 ]] || rm -rf "$OUT/data/objects"  # GiBs at max rate

grep -v '^RESULT_JSON' "$OUT/bench.out" || true
cat "$OUT/schedstat.txt"
echo "== flat profile (self time) =="
perf report -i "$OUT/perf.data" --no-children --sort sym -q --stdio -g none >"$OUT/flat.txt" 2>/dev/null || true
head -25 "$OUT/flat.txt"
echo "== categories (inclusive, first match) =="
perf script -i "$OUT/perf.data" -F tid,ip,sym 2>/dev/null >"$OUT/stacks.txt"
python3 "$ROOT/scripts/bench/perf_classify.py" "$OUT/stacks.txt" | tee "$OUT/categories.txt"
echo "profile data in $OUT"
