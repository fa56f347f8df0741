#!/usr/bin/env bash
# Runs franz-go's own client test suite (pkg/kgo, v1.22.3 by default) against
# one freshly started Inkless broker and prints a summary.
#
#   scripts/kgo-suite.sh [GO-TEST-RUN-REGEX]
#
# The broker is `$INKLESS_BIN serve` on a free 127.0.0.1 port with a temp data
# dir (SQLite + local files); its log goes to WORK/broker.log (the path is
# printed at the start and in the summary). The broker is stopped on exit.
#
# Env:
#   INKLESS_BIN     broker binary (default $CARGO_TARGET_DIR/release/inkless,
#                   CARGO_TARGET_DIR defaulting to $HOME/.cache/inkless-target);
#                   scripts/kafka-reference.sh works too (it is serve-compatible),
#                   to run the same tests against Apache Kafka
#   KGO_RUN         -run regex (default: all tests; the first argument wins).
#                   Without it the suite runs in two go test runs: every test
#                   but the transaction ones (names matching Txn|Transact),
#                   then those alone with KGO_TXN_TIMEOUT (default KGO_TIMEOUT;
#                   KGO_TXN=0 leaves them out). TestTxnEtl and TestGroupETL
#                   share franz-go's ETL semaphore; apart, neither waits for
#                   the other.
#   KGO_SKIP        -skip regex (default: none)
#   KGO_TIMEOUT     go test -timeout (default 20m); each go test run is also
#                   cut at that plus 2 minutes
#   KGO_PARALLEL    go test -parallel (default 4)
#   KGO_TEST_RECORDS  records per produce/consume test (franz-go's default is
#                   500000; unset keeps it)
#   KGO_VERSION     franz-go module version (default v1.22.3)
#   KGO_SRC         writable copy of the module (default
#                   $HOME/.cache/inkless-kgo/franz-go@VERSION; a stable path
#                   lets the Go build cache be reused between runs)
#   KGO_WORK        dir for broker data, broker.log and go-test*.log (default
#                   a new mktemp dir, kept after the run; its data/ is removed
#                   at the end unless KGO_KEEP_DATA=1)
#   RUST_LOG        broker log filter (default info)
#   KGO_LOG_LEVEL   franz-go test client log level (info|debug|none)
#   KGO_TEST_BROKER_ENV  extra "K=V K=V" env for the broker
#
# Exit status: 0 when every failure is an expected one (share groups: names
# containing Share; transactions are supported since ADR 0018), 1
# otherwise (including tests still running when the timeout hit), 2 on setup
# errors. The last line is "kgo: N passed, N failed, N skipped" (top-level
# tests).
set -uo pipefail
# The whole script is one compound command, read before it runs, so that editing
# the file during a (long) run cannot change what the run does.
{

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
for d in /usr/local/go/bin "$HOME/go/bin"; do
    if [[ -d "$d" && ":$PATH:" != *":$d:"* ]]; then PATH="$PATH:$d"; fi
done
export PATH

KGO_VERSION="${KGO_VERSION:-v1.22.3}"
INKLESS_BIN="${INKLESS_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/inkless-target}/release/inkless}"
KGO_RUN="${1:-${KGO_RUN:-}}"
KGO_SKIP="${KGO_SKIP:-}"
KGO_TIMEOUT="${KGO_TIMEOUT:-20m}"
KGO_PARALLEL="${KGO_PARALLEL:-4}"
KGO_SRC="${KGO_SRC:-$HOME/.cache/inkless-kgo/franz-go@$KGO_VERSION}"

log() { echo "kgo-suite: $*" >&2; }
die() { log "ERROR: $*"; exit 2; }

[[ -x "$INKLESS_BIN" ]] || die "broker binary not found: $INKLESS_BIN (set INKLESS_BIN)"
command -v go >/dev/null || die "go not found"
command -v python3 >/dev/null || die "python3 not found"

# --- franz-go source: a writable copy of the module from the module cache ---
if [[ ! -f "$KGO_SRC/.complete" ]]; then
    log "fetching github.com/twmb/franz-go@$KGO_VERSION into the module cache"
    modjson="$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "github.com/twmb/franz-go@$KGO_VERSION")" \
        || die "go mod download failed"
    moddir="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])' <<<"$modjson")"
    [[ -d "$moddir/pkg/kgo" ]] || die "module dir without pkg/kgo: $moddir"
    rm -rf "$KGO_SRC.tmp"
    mkdir -p "$(dirname "$KGO_SRC")"
    cp -r "$moddir" "$KGO_SRC.tmp" && chmod -R u+w "$KGO_SRC.tmp" || die "copy failed"
    touch "$KGO_SRC.tmp/.complete"
    rm -rf "$KGO_SRC"
    mv "$KGO_SRC.tmp" "$KGO_SRC"
fi

# --- broker ---
WORK="${KGO_WORK:-$(mktemp -d /tmp/kgo-suite.XXXXXX)}"
mkdir -p "$WORK/data"
BROKER_LOG="$WORK/broker.log"
GO_LOG="$WORK/go-test.log"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"

BROKER_PID=""
GO_PID=""
cleanup() {
    local rc=$?
    if [[ -n "$GO_PID" ]] && kill -0 "$GO_PID" 2>/dev/null; then
        kill -- -"$GO_PID" 2>/dev/null || kill "$GO_PID" 2>/dev/null
    fi
    if [[ -n "$BROKER_PID" ]] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill "$BROKER_PID" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$BROKER_PID" 2>/dev/null
        wait "$BROKER_PID" 2>/dev/null
    fi
    # The data dir can be large (500 000-record topics): dropped unless kept.
    if [[ "${KGO_KEEP_DATA:-0}" == 0 && -n "${WORK:-}" ]]; then rm -rf "$WORK/data"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "work dir $WORK; broker log $BROKER_LOG; go test log $GO_LOG"
log "starting $INKLESS_BIN on 127.0.0.1:$PORT"
# shellcheck disable=SC2086
env INKLESS__KAFKA__LISTEN="127.0.0.1:$PORT" \
    INKLESS__STORAGE__DATA_DIR="$WORK/data" \
    RUST_LOG="${RUST_LOG:-info}" NO_COLOR=1 \
    ${KGO_TEST_BROKER_ENV:-} \
    "$INKLESS_BIN" serve >"$BROKER_LOG" 2>&1 &
BROKER_PID=$!
for i in $(seq 1 1800); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
    kill -0 "$BROKER_PID" 2>/dev/null || { tail -20 "$BROKER_LOG" >&2; die "broker exited"; }
    [[ $i == 1800 ]] && die "broker not listening after 180 s"
    sleep 0.1
done
log "broker up (pid $BROKER_PID)"

# --- go test ---
# Guard for a whole go test run in case the test binary's own timeout does not fire.
guard_secs() {
    python3 - "$1" <<'EOF2'
import re, sys
t = 0.0
for n, u in re.findall(r'([\d.]+)(h|ms|m|s)', sys.argv[1]):
    t += float(n) * {'h': 3600, 'm': 60, 's': 1, 'ms': 0.001}[u]
print(int(t) + 120)
EOF2
}
# run_go LOG TIMEOUT RUN SKIP: one `go test` of pkg/kgo; returns its exit code.
run_go() {
    local out="$1" timeout="$2" run="$3" skip="$4"
    local args=(test ./pkg/kgo/ -count=1 -v -timeout "$timeout" -parallel "$KGO_PARALLEL")
    [[ -n "$run" ]] && args+=(-run "$run")
    [[ -n "$skip" ]] && args+=(-skip "$skip")
    log "go ${args[*]} (KGO_SEEDS=127.0.0.1:$PORT KGO_TEST_RF=1${KGO_TEST_RECORDS:+ KGO_TEST_RECORDS=$KGO_TEST_RECORDS}) > $out"
    local t0=$SECONDS guard rc
    guard="$(guard_secs "$timeout")"
    (
        cd "$KGO_SRC" || exit 2
        export KGO_SEEDS="127.0.0.1:$PORT" KGO_TEST_RF=1 GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod"
        exec setsid timeout -k 30 "$guard" go "${args[@]}"
    ) >"$out" 2>&1 &
    GO_PID=$!
    wait "$GO_PID"
    rc=$?
    GO_PID=""
    log "go test exited $rc after $((SECONDS - t0))s"
    return "$rc"
}

# Transaction tests run apart, after the rest: TestTxnEtl holds franz-go's
# etlSem slots, which TestGroupETL needs too, for as long as it runs.
TXN_RE='Txn|Transact'
LOGS=()
if [[ -n "$KGO_RUN" ]]; then
    run_go "$GO_LOG" "$KGO_TIMEOUT" "$KGO_RUN" "$KGO_SKIP"
    GO_RC=$?
    LOGS+=("$GO_LOG")
else
    run_go "$GO_LOG" "$KGO_TIMEOUT" "" "${KGO_SKIP:+$KGO_SKIP|}$TXN_RE"
    GO_RC=$?
    LOGS+=("$GO_LOG")
    if [[ "${KGO_TXN:-1}" != 0 ]]; then
        run_go "$WORK/go-test-txn.log" "${KGO_TXN_TIMEOUT:-$KGO_TIMEOUT}" "$TXN_RE" "$KGO_SKIP"
        LOGS+=("$WORK/go-test-txn.log")
    fi
fi

# --- summary ---
python3 - "$GO_RC" "$BROKER_LOG" "${LOGS[@]}" <<'EOF'
import re, sys
rc, broker_log, paths = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
status = {}          # top-level test -> PASS/FAIL/SKIP
sub = {}             # subtest -> status
running = []
in_running = False
build_failed = False
lines = [l for p in paths for l in open(p, errors='replace')]
for line in lines:
    m = re.match(r'^(\s*)--- (PASS|FAIL|SKIP): (\S+) \(', line)
    if m:
        (sub if '/' in m.group(3) else status)[m.group(3)] = m.group(2)
        continue
    if re.match(r'^panic: test timed out after', line):
        in_running = False
    if 'running tests:' in line:
        in_running = True
        continue
    if in_running:
        m = re.match(r'^\s+(\S+) \(', line)
        if m:
            running.append(m.group(1))
            continue
        in_running = False
    if re.search(r'\[(build failed|setup failed)\]', line):
        build_failed = True

def expected(name):
    if re.search(r'Share', name):
        return 'share groups'
    return None

hung = [t for t in running if '/' not in t]
for t in hung:
    status[t] = 'HUNG'
passed = sorted(t for t, s in status.items() if s == 'PASS')
failed = sorted(t for t, s in status.items() if s in ('FAIL', 'HUNG'))
skipped = sorted(t for t, s in status.items() if s == 'SKIP')
print()
print('==== kgo suite summary ====')
print(f'go test logs: {" ".join(paths)} (main run exit {rc}); broker log: {broker_log}')
print(f'top-level tests: {len(passed)} passed, {len(failed)} failed '
      f'({len(hung)} of them still running at the timeout), {len(skipped)} skipped')
subfail = sorted(t for t, s in sub.items() if s == 'FAIL')
unexpected = []
for t in failed:
    why = expected(t)
    tag = f'expected ({why})' if why else 'UNEXPECTED'
    if not why:
        unexpected.append(t)
    kind = 'hung' if status[t] == 'HUNG' else 'failed'
    subs = [s for s in subfail + [r for r in running if '/' in r] if s.startswith(t + '/')]
    print(f'  {kind:6} {t:45} {tag}' + (f'  [{", ".join(sorted(set(subs)))}]' if subs else ''))
if skipped:
    print('skipped: ' + ' '.join(skipped))
if build_failed or (rc != 0 and not failed):
    print('go test failed without a failing test (build error or crash): see the log')
    unexpected.append('<go test>')
print(f'unexpected failures: {len(unexpected)}')
print(f'kgo: {len(passed)} passed, {len(failed)} failed, {len(skipped)} skipped')
sys.exit(1 if unexpected else 0)
EOF
exit
}
