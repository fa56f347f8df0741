# Shared by scripts/bench/compare.sh and scripts/bench/kafka-perf.sh: start and stop one
# broker (Apache Kafka through scripts/kafka-reference.sh, or the release `inkless` binary
# with $INKLESS_ENV), free ports, CPU accounting. Expects ROOT, REL, INKLESS_ENV and
# BENCH_NAME (log prefix) to be set by the sourcing script. INKLESS_BIN names another
# inkless binary than $REL/inkless (e.g. an older build, for before/after runs).

log() { echo "${BENCH_NAME:-bench}: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Machine CPU busy (all cores, in % of one core) over $1 seconds, from /proc/stat.
busy_pct() {
    python3 - "$1" <<'EOF'
import sys, time
def snap():
    f = open("/proc/stat").readline().split()[1:]
    v = list(map(int, f))
    idle = v[3] + v[4]
    return sum(v[:8]), idle
t0, i0 = snap(); time.sleep(float(sys.argv[1])); t1, i1 = snap()
import os
ncpu = os.cpu_count() or 1
print(round(100.0 * ncpu * (1 - (i1 - i0) / max(1, t1 - t0)), 1))
EOF
}

# Machine busy CPU seconds so far (all cores), from /proc/stat.
machine_busy_s() {
    awk '/^cpu / { print ($2+$3+$4+$7+$8+$9) / 100.0 }' /proc/stat
}
# CPU seconds of process $1 so far (utime + stime), 0 if gone.
proc_cpu_s() {
    python3 - "$1" <<'EOF2'
import sys
try:
    t = open(f"/proc/{sys.argv[1]}/stat").read()
    f = t[t.rindex(")") + 2:].split()
    print((int(f[11]) + int(f[12])) / 100.0)
except Exception:
    print(0)
EOF2
}

# Value of the Prometheus counter $1 on the running Inkless broker ("" for Kafka or when
# the scrape fails).
metric_value() { # metric_value NAME
    [[ -n "${METRICS:-}" ]] || { echo ""; return; }
    curl -sf --max-time 5 "$METRICS" | awk -v n="$1" '$1 == n { print $2; found = 1 } END { if (!found) print "" }'
}

# --- currently running broker, stopped by cleanup ---
CUR_KIND=""
CUR_DIR=""
CUR_PID=""
CUR_PORT=""
S3_PID=""

stop_broker() {
    case "$CUR_KIND" in
        kafka)
            "$ROOT/scripts/kafka-reference.sh" stop "$CUR_DIR" "$CUR_PORT" >>"$CUR_DIR/stop.log" 2>&1 || true
            ;;
        inkless)
            if [[ -n "$CUR_PID" ]] && kill -0 "$CUR_PID" 2>/dev/null; then
                kill -TERM "$CUR_PID" 2>/dev/null || true
                for _ in $(seq 1 60); do kill -0 "$CUR_PID" 2>/dev/null || break; sleep 0.5; done
                if kill -0 "$CUR_PID" 2>/dev/null; then
                    log "inkless pid $CUR_PID still alive after 30 s; SIGKILL"
                    kill -KILL "$CUR_PID" 2>/dev/null || true
                fi
                wait "$CUR_PID" 2>/dev/null || true
            fi
            ;;
    esac
    if [[ -n "$S3_PID" ]]; then
        kill -TERM "$S3_PID" 2>/dev/null || true
        wait "$S3_PID" 2>/dev/null || true
        S3_PID=""
    fi
    CUR_KIND=""; CUR_PID=""
}
trap 'stop_broker' EXIT
trap 'exit 130' INT TERM

start_kafka() { # start_kafka DIR -> sets CUR_*
    local dir="$1" port
    port="$(free_port)"
    CUR_KIND=kafka; CUR_DIR="$dir"; CUR_PORT="$port"
    "$ROOT/scripts/kafka-reference.sh" start "$dir" "$port" >"$dir/start.log" 2>&1 \
        || { cat "$dir/start.log" >&2; die "kafka did not start"; }
    CUR_PID="$(cat "$dir/kafka.pid")"
    BOOTSTRAP="127.0.0.1:$port"
    METRICS=""
}

# The S3 server of the `inkless-s3` system: moto's server (Python, in memory; the test
# suite's S3 server), with one bucket. Sets S3_PID and S3_ENV (the broker's settings).
start_s3() { # start_s3 DIR
    local dir="$1" port i
    port="$(free_port)"
    python3 -m moto.server -H 127.0.0.1 -p "$port" >"$dir/s3.log" 2>&1 </dev/null &
    S3_PID=$!
    for i in $(seq 1 100); do
        kill -0 "$S3_PID" 2>/dev/null || { cat "$dir/s3.log" >&2; die "moto server exited during start"; }
        curl -sf -X PUT "http://127.0.0.1:$port/inkless" >/dev/null 2>&1 && break
        sleep 0.2
    done
    S3_ENV="INKLESS__STORAGE__OBJECT_STORE=s3://inkless/bench
INKLESS__STORAGE__S3__ENDPOINT=http://127.0.0.1:$port
INKLESS__STORAGE__S3__REGION=us-east-1
INKLESS__STORAGE__S3__ACCESS_KEY_ID=bench
INKLESS__STORAGE__S3__SECRET_ACCESS_KEY=bench
INKLESS__STORAGE__S3__PATH_STYLE=true
INKLESS__STORAGE__S3__ALLOW_HTTP=true"
}

# Starts the system named $2 (kafka, inkless, inkless-s3) in DIR -> sets CUR_*.
start_system() { # start_system DIR SYSTEM
    case "$2" in
        kafka) start_kafka "$1" ;;
        inkless) start_inkless "$1" ;;
        inkless-s3) start_s3 "$1"; start_inkless "$1" "$S3_ENV" ;;
        *) die "unknown system '$2' (kafka, inkless, inkless-s3)" ;;
    esac
}

start_inkless() { # start_inkless DIR [NEWLINE-SEPARATED VAR=value...] -> sets CUR_*
    local dir="$1" extra="${2:-}" port aport
    port="$(free_port)"; aport="$(free_port)"
    while [[ "$aport" == "$port" ]]; do aport="$(free_port)"; done
    mkdir -p "$dir/data"
    CUR_KIND=inkless; CUR_DIR="$dir"; CUR_PORT="$port"
    # shellcheck disable=SC2086
    local -a extra_env=()
    [[ -n "$extra" ]] && mapfile -t extra_env <<<"$extra"
    env $INKLESS_ENV "${extra_env[@]}" \
        INKLESS__KAFKA__LISTEN="127.0.0.1:$port" \
        INKLESS__STORAGE__DATA_DIR="$dir/data" \
        INKLESS__ADMIN__LISTEN="127.0.0.1:$aport" \
        "${INKLESS_BIN:-$REL/inkless}" serve >"$dir/broker.log" 2>&1 </dev/null &
    CUR_PID=$!
    local i
    for i in $(seq 1 100); do
        kill -0 "$CUR_PID" 2>/dev/null || { cat "$dir/broker.log" >&2; die "inkless exited during start"; }
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null \
            && curl -sf "http://127.0.0.1:$aport/metrics" >/dev/null; then
            break
        fi
        sleep 0.2
    done
    BOOTSTRAP="127.0.0.1:$port"
    METRICS="http://127.0.0.1:$aport/metrics"
}

