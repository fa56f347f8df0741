#!/usr/bin/env bash
# One partition, side by side with Apache Kafka 4.4 (issue 16, the seed's per-partition
# bars): scripts/bench/compare.sh three times on a topic of ONE partition, one producer
# and one consumer connection (inkless-bench: acks=all, linger 5 ms, end-to-end latency
# from the send timestamp in each value):
#
#   1. 10,000 records/s of 100 bytes   (the seed's 10k records/s per partition)
#   2.  1,000 records/s of 1 KiB       (the seed's 1 MB/s per partition)
#   3. as fast as one producer can     (1 KiB records, 64-record batches, 5 requests in
#                                       flight as Java's and librdkafka's idempotent producers)
#   4. the same with 64 requests in flight: the largest single-partition rate
#
#   scripts/bench/one_partition.sh
#
# Env: SYSTEMS (default "kafka inkless inkless-s3"), DURATION (default 30), WARMUP (10),
# BUILD (1: cargo build --release --workspace first), QUIET_PCT / QUIET_WAIT as compare.sh,
# OUT (default a new temp dir; one sub-dir per workload, each with compare.sh's table.txt).
# The seed's bar: end-to-end p99 under 2 s at 10k records/s and at 1 MB/s.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/inkless-target}"
OUT="${OUT:-$(mktemp -d /tmp/inkless-one-partition.XXXXXX)}"
export SYSTEMS="${SYSTEMS:-kafka inkless inkless-s3}"
if [[ "${BUILD:-1}" == 1 ]]; then
    (cd "$ROOT" && cargo build --release --workspace) >"$OUT/build.log" 2>&1 \
        || { tail -30 "$OUT/build.log" >&2; exit 1; }
fi
common="--partitions 1 --producers 1 --consumers 1"
status=0
run() { # run NAME RATE ARGS
    local name="$1" rate="$2" args="$3"
    echo "== one partition: $name" >&2
    OUT="$OUT/$name" BUILD=0 RATES="$rate" BENCH_ARGS="--topic one-$name $common $args" \
        "$ROOT/scripts/bench/compare.sh" || status=1
    echo "== $name (rate $rate, $args)"
    cat "$OUT/$name/table.txt"
}
run 10k-records 10000 "--record-bytes 100 --batch-records 100"
run 1-mbps 1000 "--record-bytes 1024"
run max 0 "--record-bytes 1024 --batch-records 64"
run max-deep 0 "--record-bytes 1024 --batch-records 64 --max-in-flight 64"
echo "results under $OUT" >&2
exit $status
