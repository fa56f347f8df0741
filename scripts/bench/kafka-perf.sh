#!/usr/bin/env bash
# Second opinion on scripts/bench/compare.sh: Apache Kafka's own ProducerPerformance and
# ConsumerPerformance (kafka-tools, from Maven Central) against Apache Kafka 4.x (one KRaft
# node), Inkless (embedded default) and Inkless on an S3 server, one after the other, with the
# same settings.
#
#   scripts/bench/kafka-perf.sh
#
# Per system: fresh broker in a temp dir, a topic of PARTITIONS partitions (TopicCommand),
# ProducerPerformance --num-records RECORDS --record-size RECORD_SIZE --throughput -1
# (acks=all, linger.ms=5, batch.size=256 KiB), then ConsumerPerformance reading them all back.
# Prints one table: produce MB/s, records/s, latency avg/p50/p99/p99.9 (as ProducerPerformance
# measures it: send to ack), consume MB/s, broker CPU seconds per GiB produced and consumed,
# and for Inkless the object PUTs per GiB produced and GETs per GiB consumed (the consumer
# reads from offset 0 once everything is written: a catch-up read).
#
# Env:
#   RECORDS      records produced (default 1000000, about 1 GiB at 1 KiB)
#   RECORD_SIZE  bytes per record (default 1024)
#   PARTITIONS   partitions of the topic (default 100)
#   SYSTEMS      subset/order of "kafka inkless inkless-s3" (default: all three;
#                inkless-s3 = Inkless with objects in an S3 server, moto)
#   INKLESS_ENV  extra VAR=value settings for the Inkless broker, space-separated
#   BUILD        0 skips cargo build (default 1)
#   OUT          directory for logs (default: a new temp dir, kept)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/inkless-target}"
REL="$CARGO_TARGET_DIR/release"
RECORDS="${RECORDS:-1000000}"
RECORD_SIZE="${RECORD_SIZE:-1024}"
PARTITIONS="${PARTITIONS:-100}"
SYSTEMS="${SYSTEMS:-kafka inkless inkless-s3}"
INKLESS_ENV="${INKLESS_ENV:-}"
BUILD="${BUILD:-1}"
OUT="${OUT:-$(mktemp -d /tmp/inkless-kafka-perf.XXXXXX)}"
mkdir -p "$OUT"
BENCH_NAME=kafka-perf
# shellcheck source=scripts/bench/lib.sh
source "$ROOT/scripts/bench/lib.sh"

"$ROOT/scripts/kafka-reference.sh" fetch
LIBS="${KAFKA_REF_CACHE:-$HOME/.cache/inkless-kafka-ref}/${KAFKA_REF_VERSION:-4.4.0}/libs"
tool() { # tool CLASS ARGS... : run a Kafka tool with the resolved jars
    java -Xmx1g -cp "$LIBS/*" "$@"
}
if [[ "$BUILD" == 1 ]]; then
    log "building the release binary"
    (cd "$ROOT" && cargo build --release -p inkless-node) >"$OUT/build.log" 2>&1 \
        || { tail -30 "$OUT/build.log" >&2; die "build failed"; }
fi

: >"$OUT/results.tsv"
for sys in $SYSTEMS; do
    dir="$OUT/$sys"
    rm -rf "$dir"; mkdir -p "$dir"
    start_system "$dir" "$sys"
    log "$sys on $BOOTSTRAP: creating topic perf ($PARTITIONS partitions)"
    tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" --create \
        --topic perf --partitions "$PARTITIONS" --replication-factor 1 >"$dir/topic.log" 2>&1 \
        || { cat "$dir/topic.log" >&2; die "topic creation failed on $sys"; }
    cpu0="$(proc_cpu_s "$CUR_PID")"
    puts0="$(metric_value inkless_object_store_put_requests_total)"
    log "$sys: ProducerPerformance, $RECORDS records of $RECORD_SIZE bytes"
    tool org.apache.kafka.tools.ProducerPerformance --topic perf --num-records "$RECORDS" \
        --record-size "$RECORD_SIZE" --throughput -1 \
        --producer-props "bootstrap.servers=$BOOTSTRAP" acks=all linger.ms=5 batch.size=262144 \
        >"$dir/producer.txt" 2>"$dir/producer.err" || { tail -20 "$dir/producer.err" >&2; die "producer failed on $sys"; }
    cpu1="$(proc_cpu_s "$CUR_PID")"
    puts1="$(metric_value inkless_object_store_put_requests_total)"
    gets1="$(metric_value inkless_object_store_get_requests_total)"
    log "$sys: ConsumerPerformance"
    tool org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$BOOTSTRAP" --topic perf \
        --messages "$RECORDS" --timeout 120000 \
        >"$dir/consumer.txt" 2>"$dir/consumer.err" || { tail -20 "$dir/consumer.err" >&2; die "consumer failed on $sys"; }
    cpu2="$(proc_cpu_s "$CUR_PID")"
    gets2="$(metric_value inkless_object_store_get_requests_total)"
    stop_broker
    rm -rf "$dir/logs" "$dir/data/objects"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$sys" "$(tail -1 "$dir/producer.txt")" \
        "$(tail -1 "$dir/consumer.txt")" "$cpu0" "$cpu1" "$cpu2" \
        "$(python3 -c "print(${puts1:-0} - ${puts0:-0})" 2>/dev/null)" \
        "$(python3 -c "print(${gets2:-0} - ${gets1:-0})" 2>/dev/null)" >>"$OUT/results.tsv"
done

python3 - "$OUT/results.tsv" "$RECORDS" "$RECORD_SIZE" <<'EOF'
import re, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
gib = int(sys.argv[2]) * int(sys.argv[3]) / 2**30
out = {}
for sys_name, prod, cons, c0, c1, c2, puts, gets in rows:
    m = re.search(r"([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency.*?(\d+) ms 50th, "
                  r"(\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99.9th", prod)
    c = cons.split(",")
    out[sys_name] = {
        "produce MB/s": float(m[2]), "produce records/s": float(m[1]), "latency avg ms": float(m[3]),
        "latency p50 ms": float(m[4]), "latency p99 ms": float(m[6]), "latency p99.9 ms": float(m[7]),
        "consume MB/s": float(c[3]),
        "broker CPU s per GiB produced": (float(c1) - float(c0)) / gib,
        "broker CPU s per GiB consumed": (float(c2) - float(c1)) / gib,
    }
    if sys_name != "kafka":
        # Catch-up read: every block was written before the consumer started.
        out[sys_name]["object PUTs per GiB produced"] = float(puts) / gib
        out[sys_name]["object GETs per GiB consumed"] = float(gets) / gib
names = list(out)
print("ProducerPerformance / ConsumerPerformance (kafka-tools), acks=all, "
      f"{sys.argv[2]} records of {sys.argv[3]} B")
others = [n for n in names if n != "kafka"]
base = out.get("kafka")
print(f"{'':34}" + "".join(f"{n:>12}" for n in names) + ("".join(f"{n + '/kafka':>18}" for n in others) if base else ""))
for k in dict.fromkeys(k for n in names for k in out[n]):
    line = f"{k:34}" + "".join(f"{out[n][k]:12.1f}" if k in out[n] else f"{'-':>12}" for n in names)
    if base:
        line += "".join(f"{out[n][k] / base[k]:17.2f}x" if k in base and base[k] else f"{'-':>18}" for n in others)
    print(line)
EOF
log "logs in $OUT"
