#!/usr/bin/env bash
# Installs everything the end-to-end tests (integration/tests_py) need, and the
# PostgreSQL server that storage/tests/postgres.rs starts by itself, on a
# Debian machine of the project's kind (Rust, Python 3.11, Java 17 + Maven,
# Go, Node preinstalled; registries reachable: apt, PyPI, npm, Go proxy,
# Maven Central). Idempotent, and fast when everything is already there.
#
#   scripts/install-test-deps.sh
#
# It also resolves Apache Kafka's jars (scripts/kafka-reference.sh fetch): the
# reference broker's, and the kafka-tools CLIs that test_kafka_tools.py runs (that
# test's fixture resolves them too, so the suite alone also works on a fresh machine).
set -euo pipefail

cd "$(dirname "$0")/.."
REPO="$PWD"
T0=$SECONDS

log() { echo "install-test-deps: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

for d in "$HOME/.cargo/bin" /usr/local/go/bin "$HOME/go/bin" "$HOME/.pyenv/shims"; do
    if [[ -d "$d" && ":$PATH:" != *":$d:"* ]]; then PATH="$PATH:$d"; fi
done
export PATH

# ---- apt: kcat, promtool, the PostgreSQL server (and toolchains, only if missing) ----
APT_UPDATED=0
apt_install() {
    local sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    if [[ $APT_UPDATED -eq 0 ]]; then
        log "apt-get update"
        $sudo apt-get update -qq >&2
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >&2
}

missing=()
have kcat || missing+=(kcat)
have java || missing+=(openjdk-17-jdk-headless)
have mvn || missing+=(maven)
have node || missing+=(nodejs)
have npm || missing+=(npm)
have setpriv || missing+=(util-linux)
# promtool checks and unit-tests the alert rules (test_observability.py); Debian's
# prometheus package ships it.
have promtool || missing+=(prometheus)
# storage/tests/postgres.rs runs initdb and pg_ctl from /usr/lib/postgresql/<version>/bin.
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
# test_ops.py loads the admin endpoint's web view in headless Chromium (Debian's package;
# no browser is downloaded) and drives it through chromedriver with selenium.
have chromium || missing+=(chromium)
have chromedriver || missing+=(chromium-driver)
if ((${#missing[@]})); then
    apt_install "${missing[@]}"
fi
have go || die "go not found (expected /usr/local/go/bin/go, Go >= 1.26)"
have python3 || die "python3 not found"

# ---- Python packages (pinned) ----
REQ="$REPO/integration/tests_py/requirements.txt"
if ! python3 - "$REQ" <<'EOF'
import re, sys
from importlib.metadata import version, PackageNotFoundError
ok = True
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    m = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^;\s]+)$", line)
    if not m:
        continue
    try:
        if version(m.group(1)) != m.group(3):
            ok = False
    except PackageNotFoundError:
        ok = False
sys.exit(0 if ok else 1)
EOF
then
    log "pip install -r ${REQ#"$REPO"/}"
    pip_args=(-q --disable-pip-version-check --no-input -r "$REQ")
    stdlib="$(python3 -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')"
    if [[ -f "$stdlib/EXTERNALLY-MANAGED" ]]; then
        pip_args+=(--break-system-packages)
    fi
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install "${pip_args[@]}" >&2 || die "pip install failed"
fi

# ---- kafkajs (npm ci, keyed on package-lock.json) ----
JS="$REPO/integration/clients/js"
stamp="$JS/node_modules/.inkless-lock.sha256"
want="$(sha256sum "$JS/package-lock.json" | cut -d' ' -f1)"
if [[ ! -f "$JS/node_modules/kafkajs/package.json" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    log "npm ci in integration/clients/js"
    (cd "$JS" && npm ci --no-audit --no-fund --loglevel=error >&2) || die "npm ci failed"
    echo "$want" >"$stamp"
fi

# ---- franz-go client (go mod download + build; both cached by go) ----
GO_DIR="$REPO/integration/clients/go"
(cd "$GO_DIR" && go mod download && go build -o bin/franz-client . && go build -o bin/fetchbench ./fetchbench) >&2 || die "go build of the franz-go client failed"

# ---- Java client (mvn package when the jar is missing or older than its sources) ----
JAVA_DIR="$REPO/integration/clients/java"
JAR="$JAVA_DIR/target/inkless-java-client.jar"
if [[ ! -f "$JAR" ]] || [[ -n "$(find "$JAVA_DIR/pom.xml" "$JAVA_DIR/src" -newer "$JAR" -print -quit)" ]]; then
    log "mvn package in integration/clients/java"
    (cd "$JAVA_DIR" && mvn -B -q package >&2) || die "mvn package of the Java client failed"
    [[ -f "$JAR" ]] || die "$JAR not built"
fi

# ---- Kafka's jars (kafka_2.13, kafka-tools; Maven Central, cached) ----
"$REPO/scripts/kafka-reference.sh" fetch || die "resolving Kafka's jars failed"

log "done in $((SECONDS - T0))s"
