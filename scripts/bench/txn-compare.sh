#!/usr/bin/env bash
# Transactional produce side by side: Apache Kafka 4.x (one KRaft node, jars from Maven
# Central through scripts/kafka-reference.sh) against the release `inkless` binary (embedded:
# SQLite and local files, unless INKLESS_ENV says otherwise), with the Java client's
# io.inkless.clients.TxnBench (integration/clients/java; `mvn -B -q package` builds it).
#
#   scripts/bench/txn-compare.sh
#
# For each repetition, each system in turn (alternating, so both see the same background
# load of a shared machine): a fresh broker in a temp dir, one warm-up run (not counted),
# then one TxnBench run per MODES entry, each on a new topic of PARTITIONS partitions:
#   plain              idempotent producer, no transactions (the baseline)
#   records:N          a transaction per N records
#   ms:T               a transaction per T ms
# with an optional @RATE suffix (records/s; default: as fast as the producer goes) and an
# optional /COUNT suffix (records of that run; default RECORDS, or RATE*SECONDS_AT_RATE).
# TxnBench prints throughput, commitTransaction latency (after a flush: the EndTxn round
# trip) p50/p99, and end-to-end latency p50/p99 from send to a read_committed consumer.
# For Inkless, each run also records the object-store PUTs and GETs (the broker's /metrics)
# per GiB produced. Prints a table: the median of the repetitions and their range.
#
# Env:
#   REPS        repetitions (default 3)
#   SYSTEMS     subset/order of "kafka inkless inkless-s3" (default "kafka inkless")
#   MODES       space-separated (default "plain records:1000 ms:100 records:100/50000
#               records:1000@5000 ms:100@5000")
#   RECORDS     records per max-rate run (default 200000); rate-limited runs send RATE*SECONDS
#   SECONDS_AT_RATE  seconds of a rate-limited run (default 10)
#   RECORD_SIZE bytes per record (default 1024)
#   PARTITIONS  partitions per topic (default 12)
#   CATCHUP     1: after each Inkless run, a second read_committed consumer reads the topic
#               from its start (a catch-up read) and its object GETs per GiB are recorded
#               (as catchup_gets_per_gib; set a small fetch.cache_capacity_bytes in
#               INKLESS_ENV, else the write-through cache serves it); default 0
#   INKLESS_ENV extra VAR=value settings for the Inkless broker, space-separated
#   CARGO_TARGET_DIR (default $HOME/.cache/inkless-target): uses $CARGO_TARGET_DIR/release/inkless
#   OUT         directory for logs and results (default: a new temp dir, kept)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/inkless-target}"
REL="$CARGO_TARGET_DIR/release"
REPS="${REPS:-3}"
SYSTEMS="${SYSTEMS:-kafka inkless}"
MODES="${MODES:-plain records:1000 ms:100 records:100/50000 records:1000@5000 ms:100@5000}"
RECORDS="${RECORDS:-200000}"
SECONDS_AT_RATE="${SECONDS_AT_RATE:-10}"
RECORD_SIZE="${RECORD_SIZE:-1024}"
PARTITIONS="${PARTITIONS:-12}"
INKLESS_ENV="${INKLESS_ENV:-}"
CATCHUP="${CATCHUP:-0}"
OUT="${OUT:-$(mktemp -d /tmp/inkless-txn-compare.XXXXXX)}"
JAR="$ROOT/integration/clients/java/target/inkless-java-client.jar"
mkdir -p "$OUT"
BENCH_NAME=txn-compare
# shellcheck source=scripts/bench/lib.sh
source "$ROOT/scripts/bench/lib.sh"

"$ROOT/scripts/kafka-reference.sh" fetch
[[ "$SYSTEMS" != *inkless* || -x "$REL/inkless" ]] || die "missing $REL/inkless (cargo build --release --workspace)"
[[ -f "$JAR" ]] || die "missing $JAR (mvn -B -q package in integration/clients/java)"

bench() { # bench SYSTEM REP MODE[@RATE] -> appends a JSON line to results.jsonl
    local sys="$1" rep="$2" spec="$3" mode rate n puts0 gets0 puts1 gets1 line run="${3%/*}"
    mode="${run%@*}"; rate=0
    [[ "$run" == *@* ]] && rate="${run#*@}"
    n="$RECORDS"
    [[ "$rate" != 0 ]] && n=$((rate * SECONDS_AT_RATE))
    [[ "$spec" == */* ]] && n="${spec#*/}"
    puts0="$(metric_value inkless_object_store_put_requests_total)"
    gets0="$(metric_value inkless_object_store_get_requests_total)"
    line="$(timeout 600 java -Xmx1g -XX:+UseSerialGC -cp "$JAR" io.inkless.clients.TxnBench "$BOOTSTRAP" \
        "tb-$rep-${spec//[:@\/]/-}" "$PARTITIONS" "$mode" "$n" "$RECORD_SIZE" "$rate" 2>"$OUT/$sys-$rep-${spec//[:@\/]/-}.err" \
        | grep '^RESULT ' || true)"
    puts1="$(metric_value inkless_object_store_put_requests_total)"
    gets1="$(metric_value inkless_object_store_get_requests_total)"
    local cgets=""
    if [[ "$CATCHUP" == 1 && -n "$METRICS" && -n "$line" ]]; then
        timeout 600 java -Xmx1g -XX:+UseSerialGC -cp "$JAR" io.inkless.clients.TxnBench "$BOOTSTRAP" \
            "tb-$rep-${spec//[:@\/]/-}" "$PARTITIONS" read "$n" 0 0 >/dev/null 2>>"$OUT/$sys-$rep-${spec//[:@\/]/-}.err" || true
        cgets="$(python3 -c "print(int($(metric_value inkless_object_store_get_requests_total)) - int($gets1))")"
    fi
    [[ -n "$line" ]] || { log "$sys rep $rep $spec: no RESULT"; tail -5 "$OUT/$sys-$rep-${spec//[:@\/]/-}.err" >&2; return 0; }
    log "$sys rep $rep $spec: ${line#RESULT }"
    python3 - "$sys" "$rep" "$spec" "$line" "$puts0" "$puts1" "$gets0" "$gets1" "$cgets" >>"$OUT/results.jsonl" <<'EOF'
import json, sys
sysname, rep, spec, line, p0, p1, g0, g1, cg = sys.argv[1:]
kv = dict(f.split("=", 1) for f in line.split()[1:])
row = {"system": sysname, "rep": int(rep), "spec": spec, **{k: kv[k] for k in kv}}
gib = int(kv["records"]) * int(kv["record_size"]) / 2**30
if p0 and p1:
    row["puts_per_gib"] = (float(p1) - float(p0)) / gib
    row["gets_per_gib"] = (float(g1) - float(g0)) / gib
if cg:
    row["catchup_gets_per_gib"] = float(cg) / gib
print(json.dumps(row))
EOF
}

log "results in $OUT (reps $REPS, systems: $SYSTEMS, modes: $MODES)"
: >"$OUT/results.jsonl"
for rep in $(seq 1 "$REPS"); do
    for sys in $SYSTEMS; do
        dir="$OUT/$sys-$rep"
        rm -rf "$dir"; mkdir -p "$dir"
        log "$sys rep $rep: machine busy $(busy_pct 2)% of one core before start"
        start_system "$dir" "$sys"
        # Warm-up (JIT of the broker and the client), not counted.
        timeout 300 java -Xmx1g -XX:+UseSerialGC -cp "$JAR" io.inkless.clients.TxnBench "$BOOTSTRAP" \
            "warmup-$rep" "$PARTITIONS" records:1000 50000 "$RECORD_SIZE" 0 >/dev/null 2>"$dir/warmup.err" || true
        for spec in $MODES; do
            bench "$sys" "$rep" "$spec"
        done
        stop_broker
        rm -rf "$dir/logs" "$dir/data/objects"
    done
done

python3 - "$OUT/results.jsonl" <<'EOF' | tee "$OUT/table.txt"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
systems = list(dict.fromkeys(r["system"] for r in rows))
specs = list(dict.fromkeys(r["spec"] for r in rows))
cols = [("records_per_s", "rec/s", 0), ("mb_per_s", "MB/s", 1), ("commit_p50_ms", "commit p50 ms", 1),
        ("commit_p99_ms", "commit p99 ms", 1), ("e2e_p50_ms", "e2e p50 ms", 0), ("e2e_p99_ms", "e2e p99 ms", 0),
        ("puts_per_gib", "PUTs/GiB", 0), ("gets_per_gib", "GETs/GiB", 0)]
if any("catchup_gets_per_gib" in r for r in rows):
    cols.append(("catchup_gets_per_gib", "catch-up GETs/GiB", 0))
print("median [min-max] of the repetitions; commit = commitTransaction after a flush; "
      "e2e = send to read_committed poll")
print("| mode | system | " + " | ".join(c[1] for c in cols) + " |")
print("| --- | --- |" + " --- |" * len(cols))
for spec in specs:
    for s in systems:
        rs = [r for r in rows if r["spec"] == spec and r["system"] == s]
        if not rs:
            continue
        cells = []
        for key, _, digits in cols:
            vs = [float(r[key]) for r in rs if key in r and float(r[key]) >= 0
                  and not (key.startswith("commit") and r["txns"] == "0")]
            if not vs:
                cells.append("-")
                continue
            f = f"{{:.{digits}f}}"
            cells.append(f.format(statistics.median(vs)) +
                         (f" [{f.format(min(vs))}-{f.format(max(vs))}]" if len(vs) > 1 else ""))
        print(f"| {spec} | {s} (n={len(rs)}) | " + " | ".join(cells) + " |")
EOF
log "logs in $OUT"
