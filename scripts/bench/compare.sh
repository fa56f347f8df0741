#!/usr/bin/env bash
# Side-by-side benchmark of Apache Kafka, Inkless embedded (local files + SQLite)
# and Inkless with an S3 server (moto + SQLite) with inkless-bench, on this
# machine, one broker at a time.
#
#   scripts/bench/compare.sh
#
# Builds the release binaries, then for each system (Kafka first, then the
# Inkless variants) and each rate: starts a fresh broker on free loopback ports in a
# temp dir, runs inkless-bench (OMB shape: 1 topic, 100 partitions, 1 KiB
# records, 4 producers, 4 consumers, acks=-1), stops the broker. Prints a
# table with Inkless/Kafka ratios built from the RESULT_JSON lines.
#
# Env:
#   DURATION        measured seconds per run (default 30)
#   WARMUP          seconds before the measured window, not counted (default 10; Kafka's
#                   JIT needs it: without it Kafka's low-rate latencies are ~10x worse)
#   RATES           space-separated --rate values, 0 = max (default "0 5000")
#   SYSTEMS         subset/order of "kafka inkless inkless-s3" (default: all three;
#                   inkless-s3 keeps its objects in an S3 server, moto's, started here
#                   on loopback: its CPU is on the same 2 cores and not counted as the
#                   broker's)
#   BENCH_ARGS      extra inkless-bench arguments (default none)
#   INKLESS_ENV     extra VAR=value settings for the Inkless broker, space-separated
#   BUILD           0 skips cargo build (default 1)
#   QUIET_PCT       before each run, wait until other processes use less than this
#                   % of one core (default 30; the machine has 2 cores = 200%)
#   QUIET_WAIT      ... but at most this many seconds, then run anyway (default 300)
#   OUT             directory for logs and results (default: a new temp dir, kept)
#   KEEP_DATA       1 keeps the brokers' data (GiBs per run); default 0 deletes Kafka's
#                   log dirs and Inkless's objects after each run (metadata.db is kept)
#   CARGO_TARGET_DIR (default $HOME/.cache/inkless-target)
# Each run is bounded: the bench stops itself after WARMUP + DURATION + drain
# (10 s) and is killed after WARMUP + DURATION + 120 s; brokers are stopped on
# any exit. Total with defaults: about 5 minutes plus the quiet waits.
# Exit status 1 if any run misbehaved (bench failure, broker died, consumed !=
# acked, errors, cut short); those are flagged with "!" under the table.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/inkless-target}"
DURATION="${DURATION:-30}"
WARMUP="${WARMUP:-10}"
RATES="${RATES:-0 5000}"
SYSTEMS="${SYSTEMS:-kafka inkless inkless-s3}"
BENCH_ARGS="${BENCH_ARGS:-}"
INKLESS_ENV="${INKLESS_ENV:-}"
BUILD="${BUILD:-1}"
QUIET_PCT="${QUIET_PCT:-30}"
QUIET_WAIT="${QUIET_WAIT:-300}"
KEEP_DATA="${KEEP_DATA:-0}"
OUT="${OUT:-$(mktemp -d /tmp/inkless-compare.XXXXXX)}"
REL="$CARGO_TARGET_DIR/release"
mkdir -p "$OUT"

BENCH_NAME=compare
# shellcheck source=scripts/bench/lib.sh
source "$ROOT/scripts/bench/lib.sh"

if [[ "$BUILD" == 1 ]]; then
    log "building release binaries (cargo build --release -p inkless-node -p inkless-integration)"
    (cd "$ROOT" && cargo build --release -p inkless-node -p inkless-integration) >"$OUT/build.log" 2>&1 \
        || { tail -30 "$OUT/build.log" >&2; die "build failed"; }
fi
[[ -x "$REL/inkless" && -x "$REL/inkless-bench" ]] || die "missing $REL/inkless or $REL/inkless-bench"
for s in $SYSTEMS; do
    [[ "$s" == kafka || "$s" == inkless || "$s" == inkless-s3 ]] || die "unknown system '$s' in SYSTEMS"
done

log "results in $OUT (warm-up ${WARMUP}s, duration ${DURATION}s, rates: $RATES, systems: $SYSTEMS)"
: >"$OUT/results.jsonl"
for sys in $SYSTEMS; do
    for rate in $RATES; do
        name="$sys-rate$rate"
        dir="$OUT/$name"
        rm -rf "$dir"; mkdir -p "$dir"
        waited=0
        while :; do
            idle_busy="$(busy_pct 3)"
            waited=$((waited + 3))
            if python3 -c "import sys; sys.exit(0 if $idle_busy < $QUIET_PCT else 1)" \
                || ((waited >= QUIET_WAIT)); then
                break
            fi
            ((waited % 30 == 0)) && log "$name: machine ${idle_busy}% busy; waiting for < ${QUIET_PCT}% (${waited}/${QUIET_WAIT}s)"
        done
        log "$name: machine busy before start ${idle_busy}% of one core"
        start_system "$dir" "$sys"
        log "$name: broker pid $CUR_PID on $BOOTSTRAP; running inkless-bench"
        args=(--bootstrap "$BOOTSTRAP" --warmup-secs "$WARMUP" --duration-secs "$DURATION" --rate "$rate" --broker-pid "$CUR_PID")
        [[ -n "$METRICS" ]] && args+=(--metrics-url "$METRICS")
        # shellcheck disable=SC2086
        rc=0
        m0="$(machine_busy_s)"; b0="$(proc_cpu_s "$CUR_PID")"; s0="$(proc_cpu_s "${S3_PID:-0}")"
        /usr/bin/time -f "%U %S" -o "$dir/bench.time" \
            timeout --kill-after=10 "$((WARMUP + DURATION + 120))" "$REL/inkless-bench" "${args[@]}" $BENCH_ARGS \
            >"$dir/bench.out" 2>"$dir/bench.err" || rc=$?
        m1="$(machine_busy_s)"; b1="$(proc_cpu_s "$CUR_PID")"; s1="$(proc_cpu_s "${S3_PID:-0}")"
        s3cpu="$(python3 -c "print(round($s1 - $s0, 1))")"
        # CPU used by other processes while the bench ran (neither broker, S3 server nor bench).
        others="$(python3 -c "
u = open('$dir/bench.time').read().split()[-2:]
print(round($m1 - $m0 - ($b1 - $b0) - ($s3cpu) - float(u[0]) - float(u[1]), 1))" 2>/dev/null || echo -1)"
        alive=1; kill -0 "$CUR_PID" 2>/dev/null || alive=0
        stop_broker
        if [[ "$KEEP_DATA" != 1 ]]; then
            rm -rf "$dir/logs" "$dir/data/objects"
        fi
        grep -v '^RESULT_JSON ' "$dir/bench.out" >&2 || true
        [[ $rc -eq 0 ]] || { log "$name: inkless-bench exited with $rc"; tail -5 "$dir/bench.err" >&2; }
        [[ $alive -eq 1 ]] || log "$name: WARNING broker was not running at the end of the run"
        python3 - "$sys" "$rate" "$idle_busy" "$rc" "$alive" "$dir/bench.out" "$others" "$s3cpu" >>"$OUT/results.jsonl" <<'EOF'
import json, sys
sysname, rate, busy, rc, alive, path, others, s3cpu = sys.argv[1:]
res = None
for line in open(path, errors="replace"):
    if line.startswith("RESULT_JSON "):
        res = json.loads(line[len("RESULT_JSON "):])
print(json.dumps({"system": sysname, "rate": float(rate), "busy_before": float(busy),
                  "bench_rc": int(rc), "broker_alive": alive == "1", "others_cpu_s": float(others),
                  "s3_server_cpu_s": float(s3cpu),
                  "result": res}))
EOF
    done
done

status=0
python3 - "$OUT/results.jsonl" <<'EOF' | tee "$OUT/table.txt" || status=1
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
runs = {(r["system"], r["rate"]): r for r in rows}
rates = sorted({r["rate"] for r in rows}, key=lambda x: (x != 0, x))

def get(res, *path):
    for p in path:
        if res is None:
            return None
        res = res.get(p) if isinstance(res, dict) else None
    return res

def puts_per_gib(res):
    os = get(res, "object_store") or {}
    for k, v in os.items():
        if k.startswith("inkless_object_store_put_requests_total"):
            return v.get("per_gib")
    return None

metrics = [
    ("produce MB/s", lambda r: get(r, "produce_mb_per_sec"), True),
    ("records/s", lambda r: get(r, "produce_records_per_sec"), True),
    ("ack p50 ms", lambda r: get(r, "produce_latency_ms", "p50"), False),
    ("ack p99 ms", lambda r: get(r, "produce_latency_ms", "p99"), False),
    ("ack p99.9 ms", lambda r: get(r, "produce_latency_ms", "p999"), False),
    ("e2e p50 ms", lambda r: get(r, "e2e_latency_ms", "p50"), False),
    ("e2e p99 ms", lambda r: get(r, "e2e_latency_ms", "p99"), False),
    ("e2e p99.9 ms", lambda r: get(r, "e2e_latency_ms", "p999"), False),
    ("broker CPU s/GiB", lambda r: get(r, "broker_cpu_seconds_per_gib"), False),
    ("broker CPU s", lambda r: get(r, "broker_cpu_seconds"), False),
    ("bench CPU s", lambda r: get(r, "bench_cpu_seconds"), False),
    ("S3 server CPU s", "s3_server_cpu_s", False),
    ("others' CPU s", "others_cpu_s", False),
    ("object PUTs/GiB", puts_per_gib, False),
    ("records acked", lambda r: get(r, "records_acked"), True),
    ("records failed", lambda r: get(r, "records_failed"), False),
    ("consumed == acked", lambda r: get(r, "consumed_equals_acked"), None),
    ("kafka errors", lambda r: sum(e["count"] for e in get(r, "kafka_errors") or []), None),
]

def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.2f}"
    return f"{v:,}" if isinstance(v, int) else str(v)

def value(run, f):
    if run is None:
        return None
    if isinstance(f, str):  # per-run, not per-result
        return run.get(f)
    return f(run["result"]) if run["result"] else None

systems = list(dict.fromkeys(r["system"] for r in rows))
others = [s for s in systems if s != "kafka"]
ok = True
for rate in rates:
    k = runs.get(("kafka", rate))
    label = "max" if rate == 0 else f"{rate:g} records/s"
    print(f"\n=== rate {label} ===")
    head = f"{'metric':<20}" + "".join(f" {s:>14}" for s in systems)
    if k:
        head += "".join(f" {s + '/kafka':>18}" for s in others)
    print(head)
    for name, f, _ in metrics:
        vals = {s: value(runs.get((s, rate)), f) for s in systems}
        line = f"{name:<20}" + "".join(f" {fmt(vals[s]):>14}" for s in systems)
        if k:
            kv = vals.get("kafka")
            for s in others:
                iv, ratio = vals[s], "-"
                if callable(f) and isinstance(kv, (int, float)) and isinstance(iv, (int, float)) \
                        and not isinstance(kv, bool) and kv:
                    ratio = f"{iv / kv:.2f}x"
                line += f" {ratio:>18}"
        print(line)
    for r in (runs.get((s, rate)) for s in systems):
        if not r:
            continue
        res = r["result"]
        notes = []
        if r["busy_before"] > 20:
            notes.append(f"machine already {r['busy_before']}% busy before start (noisy)")
        if r.get("others_cpu_s", 0) > 5:
            notes.append(f"other processes used {r['others_cpu_s']} CPU s during the run (noisy)")
        if r["bench_rc"] != 0 or res is None:
            notes.append(f"bench exit {r['bench_rc']}, result {'missing' if res is None else 'present'}")
            ok = False
        if not r["broker_alive"]:
            notes.append("broker died during the run")
            ok = False
        if res is not None:
            if not res.get("consumed_equals_acked"):
                notes.append(f"consumed {res.get('records_consumed')} != acked {res.get('records_acked')}")
                ok = False
            if res.get("records_failed") or res.get("kafka_errors") or res.get("client_errors"):
                notes.append(f"errors: failed={res.get('records_failed')} kafka={res.get('kafka_errors')} client={res.get('client_errors')}")
                ok = False
            if not res.get("finished", True):
                notes.append("run cut short at the hard deadline")
                ok = False
        for n in notes:
            print(f"  ! {r['system']}: {n}")
print("\nall runs clean" if ok else "\nSOME RUNS MISBEHAVED (see ! lines and the logs)")
sys.exit(0 if ok else 1)
EOF
log "logs, bench output and results.jsonl in $OUT"
exit "$status"
