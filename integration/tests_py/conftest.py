"""End-to-end tests of the broker with real Kafka clients.

Target broker:
- INKLESS_TEST_BOOTSTRAP=host:port set: use that running broker (e.g. the
  reference Kafka of scripts/kafka-reference.sh, to validate the tests).
- otherwise: start `$INKLESS_BIN` (default `$CARGO_TARGET_DIR/debug/inkless`,
  CARGO_TARGET_DIR default `$HOME/.cache/inkless-target`) as
  `inkless serve` on a free 127.0.0.1 port with a temporary data dir, wait for
  the port, and on teardown SIGTERM it and require exit status 0.

The client programs live in integration/clients/ (see SCENARIO.md there) and
are built by scripts/install-test-deps.sh. A missing tool or build fails the
test; nothing is skipped for that.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLIENTS = REPO / "integration" / "clients"
PY_CLIENTS = CLIENTS / "python"
JAVA_JAR = CLIENTS / "java" / "target" / "inkless-java-client.jar"
GO_DIR = CLIENTS / "go"
JS_DIR = CLIENTS / "js"

EXTERNAL = os.environ.get("INKLESS_TEST_BOOTSTRAP", "").strip()
CLIENT_TIMEOUT = float(os.environ.get("INKLESS_TEST_CLIENT_TIMEOUT", "300"))
START_TIMEOUT = float(os.environ.get("INKLESS_TEST_START_TIMEOUT", "60"))
STOP_TIMEOUT = float(os.environ.get("INKLESS_TEST_STOP_TIMEOUT", "30"))

# Numbers that tests measure (convergence times, GET counts, latencies): printed as they
# happen and again together at the end of the run, so that CI's log shows them.
MEASUREMENTS: list[str] = []


def measurement(line: str) -> None:
    MEASUREMENTS.append(line)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def pytest_terminal_summary(terminalreporter):
    if MEASUREMENTS:
        terminalreporter.section("measurements")
        for line in MEASUREMENTS:
            terminalreporter.write_line(line)


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache" / "inkless-target")


def broker_binary() -> Path:
    b = os.environ.get("INKLESS_BIN")
    return Path(b) if b else target_dir() / "debug" / "inkless"


# Listening ports are picked below the kernel's ephemeral range (32768-60999 by default):
# a port the kernel handed out for a bind to port 0 can be taken, before the broker binds
# it, by the ephemeral end of any outgoing connection (clients, moto, the JVMs); a port
# below the range cannot. Each port is handed out once per test run.
_PORT_RANGE = (20000, 32000)
_handed_out: set[int] = set()
_next_port = _PORT_RANGE[0] + (os.getpid() * 97) % (_PORT_RANGE[1] - _PORT_RANGE[0])


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free on `host`, outside the ephemeral range, not handed out before."""
    global _next_port
    span = _PORT_RANGE[1] - _PORT_RANGE[0]
    for _ in range(span):
        port = _next_port
        _next_port = _PORT_RANGE[0] + (_next_port + 1 - _PORT_RANGE[0]) % span
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {_PORT_RANGE} on {host}")


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def tail(path: Path, n: int = 60) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


class LocalBroker:
    """One `inkless serve` process; can be killed and restarted on the same dir/port.

    `create_data_dir=False` leaves the data dir absent (cluster nodes need none)."""

    def __init__(self, data_dir: Path, port: int, log_dir: Path, host: str = "127.0.0.1",
                 name: str = "broker", create_data_dir: bool = True):
        self.binary = broker_binary()
        self.data_dir = data_dir
        self.host = host
        self.port = port
        self.log_dir = log_dir
        self.name = name
        self.create_data_dir = create_data_dir
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.extra_env: dict[str, str] = {}
        self.log_path = log_dir / f"{name}-0.log"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        if not self.binary.is_file():
            pytest.fail(
                f"broker binary {self.binary} not found: build it with `cargo build -p inkless-node` "
                f"(CARGO_TARGET_DIR={target_dir()}) or set INKLESS_TEST_BOOTSTRAP to test an external broker",
                pytrace=False,
            )
        if self.create_data_dir:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / f"{self.name}-{self.starts}.log"
        self.starts += 1
        env = dict(os.environ)
        env["INKLESS__KAFKA__LISTEN"] = self.bootstrap
        env["INKLESS__STORAGE__DATA_DIR"] = str(self.data_dir)
        env.update(self.extra_env)
        env.setdefault("RUST_BACKTRACE", "1")
        # Panics keep their backtrace; an error returned from main keeps its message on top.
        env.setdefault("RUST_LIB_BACKTRACE", "0")
        env.setdefault("NO_COLOR", "1")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(self.binary), "serve"],
                cwd=self.data_dir.parent,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        t0 = time.monotonic()
        deadline = t0 + START_TIMEOUT
        while not port_open(self.host, self.port):
            rc = self.proc.poll()
            if rc is not None:
                pytest.fail(
                    f"broker exited with status {rc} during startup; log {self.log_path}:\n{tail(self.log_path)}",
                    pytrace=False,
                )
            if time.monotonic() > deadline:
                self.kill9()
                pytest.fail(
                    f"broker did not listen on {self.bootstrap} within {START_TIMEOUT}s; log:\n{tail(self.log_path)}",
                    pytrace=False,
                )
            time.sleep(0.1)
        sys.stdout.write(f"[{time.monotonic() - t0:6.1f}s] {self.name} listening on {self.bootstrap} (start #{self.starts})\n")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        # Wait for the listener to be gone, so that a restart on the same port
        # cannot mistake a dying process (e.g. a wrapper's child) for the new one.
        deadline = time.monotonic() + 30
        while port_open(self.host, self.port):
            if time.monotonic() > deadline:
                pytest.fail(f"port {self.port} still accepting 30 s after kill -9 of the broker", pytrace=False)
            time.sleep(0.1)

    def stop(self) -> int | None:
        """SIGTERM and wait; returns the exit status (None if it had to be SIGKILLed)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        try:
            rc = self.proc.wait(timeout=STOP_TIMEOUT)
            sys.stdout.write(f"[{time.monotonic() - t0:6.1f}s] broker stopped by SIGTERM, exit status {rc}\n")
            return rc
        except subprocess.TimeoutExpired:
            self.kill9()
            return None

    def describe(self) -> str:
        state = "running" if self.alive() else f"exited with {self.proc.returncode if self.proc else None}"
        return f"broker {self.bootstrap} ({state}); log {self.log_path}:\n{tail(self.log_path, 40)}"


def stop_and_check(broker: LocalBroker) -> None:
    rc = broker.stop()
    if rc is None:
        pytest.fail(f"broker did not exit within {STOP_TIMEOUT}s of SIGTERM; log:\n{tail(broker.log_path)}", pytrace=False)
    if rc != 0:
        pytest.fail(f"broker exited with status {rc} after SIGTERM (expected 0); log:\n{tail(broker.log_path)}", pytrace=False)


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """The broker under test: a LocalBroker, or None when INKLESS_TEST_BOOTSTRAP is set."""
    if EXTERNAL:
        yield None
        return
    root = tmp_path_factory.mktemp("broker")
    b = LocalBroker(root / "data", free_port(), root)
    b.start()
    yield b
    stop_and_check(b)


@pytest.fixture(autouse=True)
def _session_broker_alive(request):
    """Fail fast (instead of waiting for client timeouts) when the session's
    local broker is no longer running, e.g. it crashed in an earlier test."""
    if {"broker", "bootstrap", "clients"} & set(request.fixturenames):
        b = request.getfixturevalue("broker")
        if b is not None and not b.alive():
            pytest.fail(f"the session's broker is not running any more: {b.describe()}", pytrace=False)
    yield


@pytest.fixture(scope="session")
def bootstrap(broker) -> str:
    return EXTERNAL if EXTERNAL else broker.bootstrap


@pytest.fixture
def topic(request) -> str:
    name = request.node.name.replace("[", "-").replace("]", "").replace("_", "-")
    return f"{name[:60]}-{uuid.uuid4().hex[:8]}"


def need_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` not found on PATH: run scripts/install-test-deps.sh", pytrace=False)
    return path


def base_ts() -> int:
    return (int(time.time() * 1000) - 600_000) // 1000 * 1000


class ClientRunner:
    """Runs client programs against the broker and reports failures with context."""

    def __init__(self, bootstrap: str, broker: LocalBroker | None, tmp: Path):
        self.bootstrap = bootstrap
        self.broker = broker
        self.tmp = tmp
        self._go_bin: Path | None = None

    # ---- commands per client ----

    def python_cmd(self, script: str) -> list[str]:
        return [sys.executable, str(PY_CLIENTS / script)]

    def java_cmd(self) -> list[str]:
        java = need_tool("java")
        if not JAVA_JAR.is_file():
            pytest.fail(f"{JAVA_JAR} missing: run scripts/install-test-deps.sh", pytrace=False)
        return [java, "-jar", str(JAVA_JAR)]

    def go_cmd(self) -> list[str]:
        if self._go_bin is None:
            go = need_tool("go")
            out = self.tmp / "franz-client"
            r = subprocess.run(
                [go, "build", "-o", str(out), "."],
                cwd=GO_DIR,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if r.returncode != 0:
                pytest.fail(f"go build in {GO_DIR} failed (run scripts/install-test-deps.sh):\n{r.stderr}", pytrace=False)
            self._go_bin = out
        return [str(self._go_bin)]

    def js_cmd(self) -> list[str]:
        node = need_tool("node")
        if not (JS_DIR / "node_modules" / "kafkajs" / "package.json").is_file():
            pytest.fail(f"kafkajs not installed in {JS_DIR}: run scripts/install-test-deps.sh", pytrace=False)
        return [node, str(JS_DIR / "client.js")]

    def cmd(self, client: str) -> list[str]:
        return {
            "java": self.java_cmd,
            "franz-go": self.go_cmd,
            "kafkajs": self.js_cmd,
            "confluent-kafka": lambda: self.python_cmd("confluent_client.py"),
            "kafka-python": lambda: self.python_cmd("kafka_python_client.py"),
            "aiokafka": lambda: self.python_cmd("aiokafka_client.py"),
        }[client]()

    # ---- running ----

    def run(self, argv: list[str], env: dict | None = None, timeout: float = CLIENT_TIMEOUT,
            input: str | None = None, what: str = "") -> subprocess.CompletedProcess:
        if self.broker is not None and not self.broker.alive():
            pytest.fail(f"broker not running before {what or argv[0]}: {self.broker.describe()}", pytrace=False)
        full_env = dict(os.environ)
        full_env.update(env or {})
        start = time.monotonic()
        try:
            r = subprocess.run(argv, env=full_env, capture_output=True, text=True, timeout=timeout, input=input,
                               stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            pytest.fail(
                f"{what or argv[0]} timed out after {timeout}s\n--- stdout\n{e.stdout}\n--- stderr\n{e.stderr}"
                f"\n{self._broker_info()}",
                pytrace=False,
            )
        elapsed = time.monotonic() - start
        sys.stdout.write(f"[{elapsed:6.1f}s] {' '.join(argv)}\n{r.stdout}")
        if r.stderr:
            sys.stdout.write(f"--- stderr (last 2000 chars)\n{r.stderr[-2000:]}\n")
        return r

    def _broker_info(self) -> str:
        return "" if self.broker is None else "\n--- " + self.broker.describe()

    def check(self, r: subprocess.CompletedProcess, what: str) -> None:
        if r.returncode != 0:
            pytest.fail(
                f"{what} failed with exit status {r.returncode}\n--- stdout\n{r.stdout[-4000:]}\n"
                f"--- stderr\n{r.stderr[-6000:]}{self._broker_info()}",
                pytrace=False,
            )

    def scenario(self, client: str, topic: str, partitions: int, count: int, mode: str = "all",
                 base: int | None = None, compression: str | None = None, create: bool = True) -> str:
        env = {"SCENARIO_MODE": mode, "SCENARIO_CREATE": "1" if create else "0"}
        if base is not None:
            env["SCENARIO_BASE_TS"] = str(base)
        if compression is not None:
            env["SCENARIO_COMPRESSION"] = compression
        argv = self.cmd(client) + [self.bootstrap, topic, str(partitions), str(count)]
        what = f"{client} scenario (mode={mode}, topic={topic}, partitions={partitions}, count={count}, compression={compression})"
        r = self.run(argv, env=env, what=what)
        self.check(r, what)
        if f"OK {client} {mode} {count} records" not in r.stdout:
            pytest.fail(f"{what}: exit 0 but no OK line in stdout:\n{r.stdout}", pytrace=False)
        return r.stdout


@pytest.fixture(scope="session")
def clients(bootstrap, broker, tmp_path_factory) -> ClientRunner:
    return ClientRunner(bootstrap, broker, tmp_path_factory.mktemp("clients"))
