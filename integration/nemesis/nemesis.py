#!/usr/bin/env python3
"""A Jepsen-style nemesis test of a multi-node Inkless cluster: real clients write and read
while processes are killed and paused and the metadata store and object store fail; then a
checker compares what the clients were told with what the cluster serves.

    python3 integration/nemesis/nemesis.py --seed 7 --duration 120 [--out result.json]
    python3 integration/nemesis/nemesis.py --table results/*.json    # a table of many runs
    python3 integration/nemesis/nemesis.py --seed 11 --duration 3600 --idem-rate 500 \
        --plain-rate 100 --out soak.json        # a soak: one hour of faults at a steady rate

Every `--sample-interval` seconds (60) a sampler logs each node's RSS, the node gauges that
would grow with a leak (SAMPLED_GAUGES), the row counts of the metadata tables
(SAMPLED_TABLES), and each producer's acknowledgements and ack latency p50/p99 over the
interval; the summary keeps them ("samples") and the slope of each over the second half of
the run ("trend", per hour), so a long run shows whether memory and latency stay flat. A run
for memory leaves out the faults that restart nodes and sets a small cache:

    python3 integration/nemesis/nemesis.py --seed 13 --duration 3600 --cache-mib 64 \
        --faults pause,pg-restart,pg-cut,pg-blackhole,s3-cut,s3-blackhole --out mem.json

Time compression (`--time-scale K`): the nodes' long timers (retention checks, merging, object
deletion and orphan scans, producer and transactional id expiration, group offsets retention,
idle partitions, fetch session eviction; TIMER_FLOORS) and the topic's retention.ms run K times
faster, each down to a floor below which it would no longer cover what it waits for (an upload
in flight, a fetch still reading, a producer's retry). Leases, sessions and request timeouts
stay real. 30 minutes at K = 2,000 pass the timer events of 1,000 hours; the samples show
whether tables, caches and memory stay bounded meanwhile. Records below a partition's final
log start offset are then retired, not lost, if their timestamps were older than retention.ms
(else: retired_early):

    python3 integration/nemesis/nemesis.py --seed 33 --duration 1800 --time-scale 2000 \
        --cache-mib 16 --faults pause,pg-restart,pg-cut,pg-blackhole,s3-cut,s3-blackhole

The broker binary is `$INKLESS_BIN` (see integration/tests_py/conftest.py).

Setup (all real parts, loopback only)
    PostgreSQL (pgserver.py) and a moto S3 server (s3server.py), each behind its own
    CuttableProxy; six `inkless serve` processes in three AZs (az1: nodes 1, 2; az2: 3, 4;
    az3: 5, 6) on 127.0.0.<ip_base + id>, every node reaching PostgreSQL and S3 only through
    the proxies; produce flush interval 100 ms, leases renewed every 1 s with a 3 s TTL.
    The database runs with synchronous_commit=on, so that what PostgreSQL confirmed
    survives its crash (`pg-restart`). One topic with 12 partitions.

Workload (threads in this process, librdkafka through confluent_kafka)
    - "idem": an idempotent producer (acks=all), ~1,500 records/s;
    - "plain": a non-idempotent producer (acks=all, no retries, one request in flight),
      ~300 records/s. It never resends a batch the broker may have appended: librdkafka
      resends without counting a retry only a batch refused with an error that says it was
      not appended (NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION, ...) or never sent.
      So a duplicate of its records means the broker appended a batch it said it refused.
      But such a resend may land after a later batch (sent to the new leader meanwhile):
      send order is not guaranteed for this producer, and its reorders are only reported
      ("plain_reorders"), not counted as violations.
    Each value is "<producer>-<seq>", unique, seq in send order; keys spread the records over
    all partitions. A delivery report that succeeded is an acknowledgement: (partition,
    offset, time). A fatal producer error is counted and the producer is replaced.
    - Two consumers of one group, no auto-commit, a synchronous commit after each poll batch,
      `auto.offset.reset=error` (an out-of-range position surfaces as an error: "offset
      reset"). Every record they read and every commit that succeeded is recorded.
    - A monitor reads the group's committed offsets (OffsetFetch) and every partition's end
      offset (ListOffsets) every 0.5 s.

Nemesis
    From `random.Random(seed)`: a fault every 10-15 s (start to start, never overlapping),
    one of FAULT_KINDS: kill -9 of a node or of both nodes of an AZ (restarted 5 s later),
    SIGSTOP of a node for 8 s, the S3 or PostgreSQL proxy refusing connections ("cut") or
    forwarding nothing ("blackhole") for 5 s, `pg_ctl restart -m immediate`. A node that
    exits by itself is counted as a crash and restarted. At the end everything is healed.

Checker (Jepsen's rule: what clients were told against what is served)
    After healing, the producers flush (each record gets a final answer), the clients stop,
    and a fresh consumer reads every partition from offset 0 (with --time-scale: from its
    log start offset) to its high watermark (for as
    long as it makes progress: it gives up after 120 s without a record, and each pause of
    20 s leaves a snapshot of every node's /metrics and /actors in the work dir):
    - every acknowledged record is served exactly at the offset of its delivery report
      (absent: lost; elsewhere: wrong_offset);
    - no value is served twice (duplicates), and nothing is served that was never sent;
    - per partition, the idempotent producer's acknowledged records are served in send
      order (order_violations);
    - every record a group consumer read is served at the same offset (read_inconsistent);
    - while the workload runs, no partition's end offset (ListOffsets, read every 0.5 s)
      is below an acknowledged record's offset + 1 or a previous read's answer, once those
      were known (end_offset_regressions: acknowledged records not served for a while);
    - no fatal producer error, no offset reset in the group;
    - committed offsets never go backwards: neither in the sequence of successful commits
      nor in a monitor read compared with whatever commit or read completed before it
      started; the final committed offset is not above the high watermark.
    Unanswered records (no final answer after the flush) are counted as violations too.

Unavailability
    Per fault: the longest time ONE partition went without an acknowledged produce (the
    worst partition), within [fault start, min(fault end + 20 s, next fault start, end of
    the workload)]. Per partition, because a node's faults stop only its own partitions.

Output
    One JSON line (the summary) on stdout, logs on stderr; exit status 1 if a violation was
    found, 2 if the run could not be carried out. On a violation, a node crash or a final read
    that stalled for 20 s (it snapshots the nodes' /metrics and /actors) the work dir is kept
    and named in the summary ("kept"): node logs, the nemesis log, details.json (examples of
    each violation, the fault history), metadata.txt (the PostgreSQL tables: partitions,
    leases, producers, group offsets, the suspect partitions' batches) and clients.log
    (librdkafka's log; for "plain" with debug=msg, so that it shows the error behind each
    resend, e.g. "encountered error: Broker: Not leader for partition (actions
    Refresh,MsgNotPersisted)").
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import traceback
from bisect import bisect_left
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

TESTS_PY = Path(__file__).resolve().parents[1] / "tests_py"
if str(TESTS_PY) not in sys.path:
    sys.path.insert(0, str(TESTS_PY))

import pytest  # noqa: E402  (the servers and LocalBroker report failures with pytest.fail)
from cluster import ClusterNode  # noqa: E402
from conftest import free_port, port_open  # noqa: E402
from pgserver import PgServer  # noqa: E402
from s3server import CuttableProxy, MotoServer, s3_env  # noqa: E402

SetupFailed = pytest.fail.Exception  # what pytest.fail raises: a BaseException

FAULT_KINDS = ("kill", "kill-az", "pause", "s3-cut", "s3-blackhole", "pg-cut", "pg-blackhole", "pg-restart")
AZS = {1: "az1", 2: "az1", 3: "az2", 4: "az2", 5: "az3", 6: "az3"}
TOPIC = "nemesis"
GROUP = "nemesis-group"
BUCKET = "inkless"
DATABASE = "nemesis"
KILL_SECONDS = 5.0      # a killed node is restarted this long after kill -9
PAUSE_SECONDS = 8.0     # SIGSTOP .. SIGCONT
PROXY_SECONDS = 5.0     # cut / black hole
UNAVAILABILITY_TAIL = 20.0
MESSAGE_TIMEOUT_MS = 60_000
FLUSH_TIMEOUT = 120.0   # >= MESSAGE_TIMEOUT_MS: every record gets its final answer
MAX_EXAMPLES = 50

Acked = dict[str, dict[int, tuple[int, int, float]]]  # producer -> seq -> (partition, offset, time)
Served = dict[int, dict[int, bytes]]                   # partition -> offset -> value
Op = tuple[float, float, int, int]                     # commit or read: (invoked, completed, partition, offset)

# --time-scale K: the nodes' long timers, divided by K from their defaults (configs/single-node.toml)
# but not below the floor (ms) under which a timer would no longer cover what it waits for.
# Lease, session and request timeouts stay real: faults are real-time events.
DEFAULTS_TOML = Path(__file__).resolve().parents[2] / "configs" / "single-node.toml"
TIMER_FLOORS = {
    "retention.check_interval_ms": 500,
    "merge.interval_ms": 500,
    "merge.min_age_ms": 10_000,               # a producer may still retry younger batches
    "merge.max_delay_ms": 10_000,
    "storage.collect_interval_ms": 500,
    "storage.object_delete_delay_ms": 15_000,  # a fetch that located a batch still reads it
    "storage.orphan_scan_interval_ms": 5_000,
    "storage.orphan_min_age_ms": 60_000,       # an upload (20 s timeout) not committed yet
    "produce.producer_id_expiration_ms": 30_000,
    "transactions.id_expiration_ms": 30_000,
    "transactions.abort_check_interval_ms": 500,
    "partitions.idle_stop_ms": 1_000,
    "fetch.session_eviction_ms": 1_000,
    "groups.offsets_retention_minutes": 1,     # in minutes
}
# The topic's retention.ms: log.retention.ms (retention.ms in the defaults) scaled, at least 30 s
# (more than a group member lags behind a fault: past it, the member's position is retired).
RETENTION_FLOOR_MS = 30_000


@functools.cache
def _defaults() -> dict:
    with open(DEFAULTS_TOML, "rb") as f:
        return tomllib.load(f)


def default_setting(name: str) -> int:
    section, key = name.split(".")
    return int(_defaults()[section][key])


def scaled_timers(k: float) -> dict[str, str]:
    """The environment of a node whose timers run K times faster (see TIMER_FLOORS)."""
    return {"INKLESS__" + name.upper().replace(".", "__"): str(max(floor, round(default_setting(name) / k)))
            for name, floor in TIMER_FLOORS.items()}


def scaled_retention_ms(k: float) -> int:
    return max(RETENTION_FLOOR_MS, round(default_setting("retention.ms") / k))


@dataclass
class Options:
    seed: int
    duration: float = 120.0
    ip_base: int = 10
    faults: tuple[str, ...] = FAULT_KINDS
    interval: tuple[float, float] = (10.0, 15.0)
    cover: bool = False  # the first faults are every kind once, in seeded order
    idem_rate: int = 1500
    plain_rate: int = 300
    partitions: int = 12
    warmup: float = 5.0
    keep: bool = False   # keep the work dir even without a violation
    sample_interval: float = 60.0  # seconds between soak samples (RSS, ack p99)
    cache_mib: int | None = None   # each node's block cache (None: the node's default)
    time_scale: float = 1.0        # the nodes' long timers and the topic's retention.ms divided by this

    @property
    def retention_ms(self) -> int | None:
        """The topic's retention.ms when time is scaled (else the node default, 7 days)."""
        return scaled_retention_ms(self.time_scale) if self.time_scale > 1 else None


class RunLog:
    """Lines stamped with the seconds since the run started, to stderr and nemesis.log.
    `now()` is the clock of every event of the run (acks, commits, faults)."""

    def __init__(self, path: Path):
        self.t0 = time.monotonic()
        self.file = open(path, "a")
        self.lock = threading.Lock()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def __call__(self, msg: str) -> None:
        line = f"[{self.now():7.2f}] {msg}"
        with self.lock:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
            self.file.write(line + "\n")
            self.file.flush()

    def close(self) -> None:
        self.file.close()


# ---------------------------------------------------------------- infrastructure

class Node(ClusterNode):
    """A cluster.py node moved to 127.0.0.<ip_base + id>, flushing every 100 ms."""

    def __init__(self, root: Path, node_id: int, az: str, ip_base: int, metadata_url: str, s3: dict,
                 cache_mib: int | None = None, time_scale: float = 1.0):
        super().__init__(root, node_id, az, metadata_url, s3)
        if time_scale > 1:
            self.extra_env.update(scaled_timers(time_scale))
        if cache_mib is not None:
            # The cache must hold 8 blocks (configuration.md); a small one gets small blocks,
            # and merged rows no larger than a block.
            block = max(4096, min(4 << 20, (cache_mib << 20) // 16))
            self.extra_env["INKLESS__FETCH__CACHE_CAPACITY_BYTES"] = str(cache_mib << 20)
            self.extra_env["INKLESS__FETCH__CACHE_BLOCK_BYTES"] = str(block)
            self.extra_env["INKLESS__MERGE__MAX_ROW_BYTES"] = str(min(1 << 20, block))
        self.host = f"127.0.0.{ip_base + node_id}"
        self.port = free_port(self.host)
        self.admin_port = free_port(self.host)
        self.extra_env["INKLESS__CLUSTER__LISTEN"] = f"{self.host}:{free_port(self.host)}"
        self.extra_env["INKLESS__ADMIN__LISTEN"] = f"{self.host}:{self.admin_port}"
        self.extra_env["INKLESS__PRODUCE__FLUSH_INTERVAL_MS"] = "100"
        self.paused = False

    def signal(self, sig: int) -> None:
        if self.alive():
            self.proc.send_signal(sig)


class Infra:
    """PostgreSQL and moto behind their proxies, and the six nodes. `close()` stops all."""

    def __init__(self, root: Path, ip_base: int, log: RunLog, cache_mib: int | None = None,
                 time_scale: float = 1.0):
        self.root = root
        self.ip_base = ip_base
        self.cache_mib = cache_mib
        self.time_scale = time_scale
        self.log = log
        self.pg: PgServer | None = None
        self.moto: MotoServer | None = None
        self.pg_proxy: CuttableProxy | None = None
        self.s3_proxy: CuttableProxy | None = None
        self.nodes: dict[int, Node] = {}

    def start(self) -> None:
        self.pg = PgServer()
        self.pg.start()
        self.pg.create_database(DATABASE)
        self.durable_commits()
        self.moto = MotoServer(self.root / "moto.log")
        self.moto.start()
        self.moto.create_bucket(BUCKET)
        self.pg_proxy = CuttableProxy(self.pg.port)
        self.s3_proxy = CuttableProxy(self.moto.port)
        url = self.pg.url(DATABASE, port=self.pg_proxy.port)
        s3 = s3_env(f"http://127.0.0.1:{self.s3_proxy.port}", BUCKET, "nemesis", 20_000)
        for node_id, az in AZS.items():
            self.nodes[node_id] = Node(self.root, node_id, az, self.ip_base, url, s3, self.cache_mib,
                                        self.time_scale)
            self.nodes[node_id].start()
        self.log(f"PostgreSQL :{self.pg.port} (proxy :{self.pg_proxy.port}), moto :{self.moto.port} "
                 f"(proxy :{self.s3_proxy.port}), nodes {self.bootstrap}")

    def durable_commits(self) -> None:
        """pgserver.py runs PostgreSQL with synchronous_commit=off, which loses the last
        commits when it crashes: a `pg-restart` would lose what the database had confirmed.
        The nemesis database turns it back on (fsync=off stays: the OS does not crash)."""
        self.psql(f"ALTER DATABASE {DATABASE} SET synchronous_commit = on")
        setting = self.psql("SHOW synchronous_commit")
        if "\n on\n" not in setting:
            raise RuntimeError(f"synchronous_commit is not on for {DATABASE}: {setting}")

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes.values())

    def live(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.alive()]

    def placement(self) -> dict[str, list[int]]:
        """partition actor -> nodes running it, as every live node's /actors says."""
        owners: dict[str, list[int]] = {}
        for n in self.live():
            for a in n.admin("/actors"):
                # The tests' topics only, not __consumer_offsets (made by the first group).
                if a["kind"] == "partition" and a.get("topic") != "__consumer_offsets":
                    owners.setdefault(a["name"], []).append(n.node_id)
        return owners

    def wait_ready(self, partitions: int, timeout: float = 90.0) -> float:
        """Until every live node sees all live nodes and each partition runs on one node."""
        t0 = time.monotonic()
        state = "no answer"
        while time.monotonic() - t0 < timeout:
            try:
                views = {n.name: len(n.admin("/cluster")["live"]) for n in self.live()}
                owners = self.placement()
                state = f"live sets {views}, placement {owners}"
                if all(v == len(self.live()) for v in views.values()) and len(owners) == partitions \
                        and all(len(v) == 1 for v in owners.values()):
                    return time.monotonic() - t0
            except OSError as e:
                state = f"admin endpoint: {e!r}"
            time.sleep(0.2)
        raise RuntimeError(f"cluster not ready within {timeout}s: {state}")

    def snapshot(self, paused: float) -> None:
        """Each live node's /metrics and /actors into the work dir, named by the time: what
        the nodes were doing while the checker's read made no progress."""
        at = f"{time.monotonic():.0f}"
        self.log(f"final read: no record for {paused:.0f} s; snapshot {at}")
        for n in self.live():
            for path, name in (("/metrics", "metrics"), ("/actors", "actors")):
                try:
                    body = n.admin(path)
                    text = body if isinstance(body, str) else json.dumps(body, indent=1)
                except OSError as e:
                    text = f"admin endpoint: {e!r}"
                (self.root / f"stall-{at}-{n.name}-{name}.txt").write_text(text)

    def pg_ctl_restart(self) -> str:
        pg = self.pg
        r = subprocess.run(pg._cmd("pg_ctl", "-D", str(pg.data), "-l", str(pg.root / "server.log"),
                                   "-m", "immediate", "-w", "-t", "60", "restart"),
                           capture_output=True, text=True, timeout=90)
        return f"rc={r.returncode} {r.stderr.strip()[-200:]}"

    def row_counts(self) -> dict[str, int] | None:
        """Rows in each of SAMPLED_TABLES, straight from PostgreSQL (None while it is down)."""
        query = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in SAMPLED_TABLES)
        try:
            r = subprocess.run(self.pg._cmd("psql", "-h", "127.0.0.1", "-p", str(self.pg.port), "-U",
                                            "postgres", "-d", DATABASE, "-tA", "-F", " ", "-c", query),
                               capture_output=True, text=True, timeout=20)
        except subprocess.TimeoutExpired:
            return None
        if r.returncode != 0:
            return None
        return {name: int(n) for name, n in (line.split() for line in r.stdout.split("\n") if line)}

    def psql(self, sql: str) -> str:
        r = subprocess.run(self.pg._cmd("psql", "-h", "127.0.0.1", "-p", str(self.pg.port), "-U", "postgres",
                                        "-d", DATABASE, "-P", "pager=off", "-c", sql),
                           capture_output=True, text=True, timeout=60)
        return r.stdout + r.stderr

    def close(self) -> None:
        """Stops every process this run started, whatever state it is in."""
        procs = [n.proc for n in self.nodes.values() if n.proc is not None and n.proc.poll() is None]
        for p in procs:
            _quietly(p.send_signal, signal.SIGCONT)
            _quietly(p.send_signal, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=30)
        for proxy in (self.pg_proxy, self.s3_proxy):
            if proxy is not None:
                _quietly(proxy.close)
        if self.moto is not None:
            _quietly(self.moto.stop)
        if self.pg is not None:
            _quietly(self.pg.stop)


def _quietly(fn, *args) -> None:
    try:
        fn(*args)
    except (Exception, SetupFailed):
        pass


# ---------------------------------------------------------------- workload

def client_logger(path: Path) -> logging.Logger:
    """librdkafka's log lines (connection refused, ...) go to a file, not the terminal."""
    logger = logging.getLogger(f"nemesis.clients.{path}")
    logger.propagate = False
    logger.handlers = [logging.FileHandler(path)]
    logger.setLevel(logging.DEBUG)
    return logger


def value_of(producer: str, seq: int) -> bytes:
    return f"{producer}-{seq}".encode()


def parse_value(value: bytes | None) -> tuple[str, int] | None:
    try:
        name, seq = value.decode().rsplit("-", 1)
        return name, int(seq)
    except (AttributeError, UnicodeDecodeError, ValueError):
        return None


class Worker(threading.Thread):
    """A client thread: `work()` until `halt`; an exception ends it and is kept as `failure`
    (a harness error: the run's result cannot be trusted)."""

    def __init__(self, name: str, log: RunLog):
        super().__init__(name=name, daemon=True)
        self.log = log
        self.halt = threading.Event()
        self.failure: str | None = None

    def run(self) -> None:
        try:
            self.work()
        except BaseException as e:
            self.failure = f"{self.name}: {e!r}"
            self.log(f"HARNESS ERROR in {self.name}: {traceback.format_exc()}")

    def work(self) -> None:
        raise NotImplementedError


class ProducerWorker(Worker):
    """Produces unique values at `rate` per second; records every delivery report. After
    `halt`, flushes until every record has its final answer. A fatal error (from error_cb
    or raised by a call) is recorded and the producer replaced."""

    def __init__(self, name: str, conf: dict, rate: int, log: RunLog, logger, stamps: bool = False):
        super().__init__(f"producer-{name}", log)
        self.pname = name
        self.conf = dict(conf, logger=logger, error_cb=self._on_error)
        self.rate = rate
        self.clock = log.now
        self.sent = 0
        self.acked: dict[int, tuple[int, int, float]] = {}  # seq -> (partition, offset, time)
        # seq -> the record's timestamp (ms since the epoch), kept when retention retires records
        self.stamps: dict[int, int] | None = {} if stamps else None
        self.delivery_errors: Counter = Counter()
        self.fatal: list[tuple[float, str]] = []
        self.unanswered = 0
        self.stopped_at = 0.0
        self._fatal_err = None
        self.latencies: list[float] = []  # ack latencies (s) since the sampler last took them

    def _on_error(self, err) -> None:
        if err.fatal():
            self._note_fatal(err)

    def _note_fatal(self, err) -> None:
        """Keeps the cause rather than the generic _FATAL of a later call."""
        from confluent_kafka import KafkaError

        if self._fatal_err is None or self._fatal_err.code() == KafkaError._FATAL:
            self._fatal_err = err

    def _on_delivery(self, err, msg) -> None:
        seq = parse_value(msg.value())[1]
        if err is None:
            self.acked[seq] = (msg.partition(), msg.offset(), self.clock())
            if self.stamps is not None:
                self.stamps[seq] = msg.timestamp()[1]
            latency = msg.latency()
            if latency is not None:
                self.latencies.append(latency)
        else:
            self.delivery_errors[err.name()] += 1

    def _call(self, fn, *args):
        """A producer call; a fatal error it raises marks the producer dead."""
        from confluent_kafka import KafkaError, KafkaException

        try:
            return fn(*args)
        except KafkaException as e:
            err = e.args[0]
            if not (err.fatal() or err.code() == KafkaError._FATAL):
                raise
            self._note_fatal(err)
            return None

    def _produce_due(self, p, t_start: float) -> None:
        due = int((time.monotonic() - t_start) * self.rate) - self.sent
        for _ in range(min(due, self.rate)):
            seq = self.sent
            try:
                self._call(lambda: p.produce(TOPIC, key=b"k%d" % (seq % 61), value=value_of(self.pname, seq),
                                             on_delivery=self._on_delivery))
            except BufferError:
                return
            if self._fatal_err is not None:
                return
            self.sent += 1

    def _replace_if_fatal(self, p):
        """A fatal error ends a producer: count it, abandon its records, start a new one."""
        from confluent_kafka import KafkaError, Producer

        if self._fatal_err is None:
            return p
        for _ in range(10):  # error_cb may still have to tell the cause
            if self._fatal_err.code() != KafkaError._FATAL:
                break
            self._call(p.poll, 0.1)
        self.fatal.append((self.clock(), str(self._fatal_err)))
        self.log(f"producer {self.pname}: FATAL {self._fatal_err}; replacing it")
        self._call(p.purge)
        self._call(p.flush, 10)
        self._fatal_err = None
        return Producer(self.conf)

    def work(self) -> None:
        from confluent_kafka import Producer

        p = Producer(self.conf)
        t_start = time.monotonic()
        while not self.halt.is_set():
            self._produce_due(p, t_start)
            self._call(p.poll, 0.005)
            p = self._replace_if_fatal(p)
        self.stopped_at = self.clock()
        deadline = time.monotonic() + FLUSH_TIMEOUT
        while len(p) and time.monotonic() < deadline:
            self._call(p.flush, 1.0)
            p = self._replace_if_fatal(p)
        self.unanswered = len(p)


class ConsumerWorker(Worker):
    """A member of GROUP: polls batches, commits each batch's positions synchronously."""

    def __init__(self, name: str, conf: dict, log: RunLog, logger):
        super().__init__(f"consumer-{name}", log)
        self.cname = name
        self.conf = dict(conf, logger=logger)
        self.clock = log.now
        self.assigned: set[int] = set()  # from the rebalance callbacks (see _commit)
        self.consumed: set[tuple[int, int, bytes]] = set()
        self.commits: list[Op] = []  # successful commits
        self.offset_resets: list[tuple[float, str]] = []
        self.errors: Counter = Counter()

    def work(self) -> None:
        from confluent_kafka import Consumer

        c = Consumer(self.conf)
        c.subscribe([TOPIC], on_assign=self._on_assign, on_revoke=self._on_revoke)
        try:
            while not self.halt.is_set():
                self._commit(c, self._poll(c))
        finally:
            c.close()

    def _on_assign(self, consumer, partitions) -> None:
        self.assigned |= {tp.partition for tp in partitions}
        self.log(f"consumer {self.cname} assigned {sorted(self.assigned)}")

    def _on_revoke(self, consumer, partitions) -> None:
        self.assigned -= {tp.partition for tp in partitions}

    def _poll(self, c) -> dict[int, int]:
        from confluent_kafka import KafkaError

        positions: dict[int, int] = {}
        for m in c.consume(500, 0.5):
            err = m.error()
            if err is None:
                self.consumed.add((m.partition(), m.offset(), m.value()))
                positions[m.partition()] = max(positions.get(m.partition(), 0), m.offset() + 1)
            elif err.code() == KafkaError._AUTO_OFFSET_RESET:
                self.offset_resets.append((self.clock(), str(err)))
                self.log(f"consumer {self.cname}: OFFSET RESET {err}")
            else:
                self.errors[err.name()] += 1
        return positions

    def _commit(self, c, positions: dict[int, int]) -> None:
        """Commits only the partitions still assigned (a rebalance during the poll may have
        moved some: their new owner commits them). The assignment comes from the rebalance
        callbacks: Consumer.assignment() waits for librdkafka holding the GIL, which can
        deadlock with librdkafka threads waiting for the GIL."""
        from confluent_kafka import KafkaException, TopicPartition

        offsets = [TopicPartition(TOPIC, p, o) for p, o in positions.items() if p in self.assigned]
        if not offsets:
            return
        invoked = self.clock()
        try:
            result = c.commit(offsets=offsets, asynchronous=False)
        except KafkaException as e:
            self.errors[f"commit {e.args[0].name()}"] += 1
            return
        done = self.clock()
        for tp in result:
            if tp.error is None:
                self.commits.append((invoked, done, tp.partition, tp.offset))
            else:
                self.errors[f"commit {tp.error.name()}"] += 1


class OffsetMonitor(Worker):
    """Every 0.5 s, reads GROUP's committed offsets (OffsetFetch) and every partition's end
    offset (ListOffsets): `reads` and `end_reads`, as (invoked, completed, partition, offset)."""

    def __init__(self, consumer, partitions: int, log: RunLog):
        super().__init__("offset-monitor", log)
        self.consumer = consumer
        self.partitions = partitions
        self.clock = log.now
        self.reads: list[Op] = []
        self.end_reads: list[Op] = []
        self.failures = 0

    def read_once(self, timeout: float = 5.0) -> dict[int, int] | None:
        """The committed offsets, or None if the group's coordinator did not answer."""
        from confluent_kafka import KafkaException, TopicPartition

        t0 = self.clock()
        try:
            tps = self.consumer.committed([TopicPartition(TOPIC, p) for p in range(self.partitions)],
                                          timeout=timeout)
        except KafkaException:
            self.failures += 1
            return None
        t1 = self.clock()
        got = {tp.partition: tp.offset for tp in tps if tp.error is None}
        self.reads += [(t0, t1, p, o) for p, o in got.items()]
        return got

    def read_end_offsets(self) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        for p in range(self.partitions):
            t0 = self.clock()
            try:
                _, end = self.consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=2, cached=False)
            except KafkaException:
                continue
            self.end_reads.append((t0, self.clock(), p, end))

    def work(self) -> None:
        while not self.halt.wait(0.5):
            self.read_once()
            self.read_end_offsets()


def proc_stats(pid: int) -> dict | None:
    """Resident set size (MiB), threads and open file descriptors of a process, from /proc
    (None when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status if ":" in line)
    try:
        rss = round(int(fields["VmRSS"].split()[0]) / 1024, 1)
        threads = int(fields["Threads"])
    except (KeyError, ValueError, IndexError):
        return None
    return {"rss_mib": rss, "threads": threads, "fds": fds}


# Gauges sampled from each node's /metrics over a soak: what would grow if something leaked.
SAMPLED_GAUGES = ("inkless_cache_bytes", "inkless_actors", "inkless_connections",
                  "inkless_fetch_sessions", "inkless_partitions")
# Metadata tables sampled over a soak; `batches` grows with the data kept, the others must not.
SAMPLED_TABLES = ("batches", "objects", "producers", "node_leases", "group_offsets")


def sum_metrics(text: str, names: tuple[str, ...]) -> dict[str, float]:
    """Each named metric of a Prometheus text page, summed over its label sets."""
    sums = {name: 0.0 for name in names}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in sums:
            try:
                sums[name] += float(line.rsplit(" ", 1)[1])
            except (IndexError, ValueError):
                pass
    return {k: round(v) for k, v in sums.items()}


class Sampler(Worker):
    """Every `interval` s (the soak's view of the run): each node's RSS, the records
    acknowledged so far, and the p50/p99 acknowledgement latency of each producer over the
    interval. A node restarted by a fault starts small again; its RSS is reported as is."""

    def __init__(self, infra: Infra, producers: list[ProducerWorker], interval: float, log: RunLog):
        super().__init__("sampler", log)
        self.infra = infra
        self.producers = producers
        self.interval = interval
        self.samples: list[dict] = []

    def work(self) -> None:
        while not self.halt.wait(self.interval):
            self.samples.append(self.sample())

    def sample(self) -> dict:
        stats = {}
        for node_id, node in self.infra.nodes.items():
            proc = node.proc
            stats[node_id] = proc_stats(proc.pid) if proc is not None and proc.poll() is None else None
        rss = {k: v and v["rss_mib"] for k, v in stats.items()}
        fds = {k: v and v["fds"] for k, v in stats.items()}
        threads = {k: v and v["threads"] for k, v in stats.items()}
        acks = {}
        for p in self.producers:
            taken, p.latencies = p.latencies, []
            taken.sort()

            def ms(q: float) -> float | None:
                return round(1000 * taken[min(len(taken) - 1, int(q * len(taken)))], 1) if taken else None
            acks[p.pname] = {"acked": len(p.acked), "p50_ms": ms(0.5), "p99_ms": ms(0.99)}
        gauges = {node_id: self.node_gauges(node) for node_id, node in self.infra.nodes.items()}
        sample = {"t": round(self.log.now(), 1), "rss_mib": rss, "fds": fds, "threads": threads,
                  "producers": acks,
                  "gauges": gauges, "rows": self.infra.row_counts()}
        live = [v for v in rss.values() if v is not None]
        self.log(f"sample: RSS MiB {rss} (max {max(live, default=0)}); fds {fds}; threads {threads}; "
                 + "; ".join(f"{k} acked {v['acked']} p50 {v['p50_ms']} ms p99 {v['p99_ms']} ms"
                             for k, v in acks.items())
                 + f"; gauges {gauges}; rows {sample['rows']}")
        return sample

    @staticmethod
    def node_gauges(node: Node) -> dict | None:
        """The node's gauges that must stay bounded over a soak, summed over their labels
        (None for a node that is down or paused)."""
        if node.paused or not node.alive():
            return None
        try:
            text = node.admin("/metrics")
        except OSError:
            return None
        return sum_metrics(text, SAMPLED_GAUGES)


class Workload:
    """The two producers, the two group members and the offset monitor."""

    def __init__(self, bootstrap: str, opts: Options, log: RunLog, root: Path):
        from confluent_kafka import Consumer

        logger = client_logger(root / "clients.log")
        common = {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "message.timeout.ms": MESSAGE_TIMEOUT_MS}
        stamps = opts.retention_ms is not None
        self.producers = [
            ProducerWorker("idem", dict(common, **{"enable.idempotence": True}), opts.idem_rate, log, logger,
                           stamps),
            ProducerWorker("plain", dict(common, **{"enable.idempotence": False, "message.send.max.retries": 0,
                                                    "max.in.flight.requests.per.connection": 1, "debug": "msg"}),
                           opts.plain_rate, log, logger, stamps),
        ]
        group = {"bootstrap.servers": bootstrap, "group.id": GROUP, "enable.auto.commit": False,
                 "auto.offset.reset": "error", "session.timeout.ms": 10_000,
                 "heartbeat.interval.ms": 1000}
        self.consumers = [ConsumerWorker(f"c{i}", group, log, logger) for i in (1, 2)]
        self.monitor = OffsetMonitor(Consumer(dict(group, logger=logger)), opts.partitions, log)
        self.log = log

    def threads(self) -> list[Worker]:
        return [*self.producers, *self.consumers, self.monitor]

    def start(self) -> None:
        for t in self.threads():
            t.start()

    def finish(self) -> dict[int, int]:
        """Stops producing and flushes, stops the group; returns the final committed offsets."""
        for p in self.producers:
            p.halt.set()
        for p in self.producers:
            p.join(FLUSH_TIMEOUT + 30)
        self.log(f"producers flushed: {sum(p.unanswered for p in self.producers)} records unanswered")
        time.sleep(2)
        for c in self.consumers:
            c.halt.set()
            c.join(60)
        self.monitor.halt.set()
        self.monitor.join(30)
        deadline = time.monotonic() + 60
        while (final := self.monitor.read_once(10)) is None and time.monotonic() < deadline:
            time.sleep(1)
        return final or {}

    def halt(self) -> None:
        for t in self.threads():
            t.halt.set()
        for t in self.threads():
            t.join(FLUSH_TIMEOUT + 30 if t in self.producers else 60)
        _quietly(self.monitor.consumer.close)

    @property
    def stopped_at(self) -> float:
        """When the first producer stopped producing (its flush then began)."""
        return min((p.stopped_at for p in self.producers if p.stopped_at), default=self.log.now())

    def acked(self) -> dict[str, dict[int, tuple[int, int, float]]]:
        return {p.pname: p.acked for p in self.producers}

    def consumed(self) -> set[tuple[int, int, bytes]]:
        return set().union(*(c.consumed for c in self.consumers))

    def commits(self) -> list[Op]:
        return sorted(x for c in self.consumers for x in c.commits)

    def failures(self) -> list[str]:
        return [t.failure for t in self.threads() if t.failure]


def create_topic(bootstrap: str, partitions: int, retention_ms: int | None = None) -> None:
    """Creates the topic, retrying what a cluster that has just started can answer: the
    client drops its bootstrap connection (and the request on it) once Metadata names the
    nodes (_DESTROY_BROKER), or a node is not ready yet; an earlier attempt that did create
    the topic makes the next one TOPIC_ALREADY_EXISTS."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + 60
    while True:
        try:
            config = {} if retention_ms is None else {"retention.ms": str(retention_ms)}
            topic = NewTopic(TOPIC, num_partitions=partitions, replication_factor=1, config=config)
            admin.create_topics([topic])[TOPIC].result(60)
            return
        except KafkaException as e:
            err = e.args[0]
            if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                return
            if not (err.retriable() or err.code() in (KafkaError._DESTROY_BROKER, KafkaError._TRANSPORT)) \
                    or time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def commit_start_offsets(bootstrap: str, partitions: int) -> None:
    """Offset 0 committed for every partition, so that `auto.offset.reset=error` only ever
    fires for a position the cluster says is out of range."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP, "enable.auto.commit": False})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                c.commit(offsets=[TopicPartition(TOPIC, p, 0) for p in range(partitions)], asynchronous=False)
                return
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        c.close()


# ---------------------------------------------------------------- nemesis

@dataclass
class Fault:
    kind: str
    target: str = ""
    start: float = 0.0
    end: float = 0.0


class Nemesis:
    """Injects one fault at a time on a seeded schedule; `heal()` undoes everything."""

    def __init__(self, infra: Infra, opts: Options, log: RunLog):
        self.infra = infra
        self.opts = opts
        self.log = log
        self.rnd = random.Random(opts.seed)
        self.history: list[Fault] = []
        self.crashes: list[dict] = []
        self.killed: set[int] = set()  # by the nemesis, until restarted
        self.noted: set[int] = set()   # crashed, not restarted yet

    def kinds(self):
        if self.opts.cover:
            yield from self.rnd.sample(self.opts.faults, len(self.opts.faults))
        while True:
            yield self.rnd.choice(self.opts.faults)

    def run(self, duration: float) -> None:
        t_end = self.log.now() + duration
        next_start = self.log.now()
        for kind in self.kinds():
            if next_start >= t_end:
                return
            self._idle_until(next_start)
            fault = Fault(kind, start=self.log.now())
            getattr(self, "_" + kind.replace("-", "_"))(fault)
            fault.end = self.log.now()
            self.history.append(fault)
            self.log(f"fault {kind} {fault.target} over ({fault.end - fault.start:.1f} s)")
            next_start = max(fault.start + self.rnd.uniform(*self.opts.interval), fault.end + 1.0)

    def _idle_until(self, t: float) -> None:
        while self.log.now() < t:
            self.restart_crashed()
            time.sleep(0.2)

    def _sleep(self, seconds: float) -> None:
        """Sleeps through a fault, noting the nodes that exit by themselves meanwhile."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._note_crashes()
            time.sleep(0.2)

    def _note_crashes(self) -> list[Node]:
        """The nodes down without being killed: crashes, each recorded once."""
        down = [n for n in self.infra.nodes.values() if n.node_id not in self.killed and not n.alive()]
        for n in down:
            if n.node_id not in self.noted:
                self.noted.add(n.node_id)
                rc = n.proc.returncode if n.proc else None
                self.crashes.append({"t": round(self.log.now(), 2), "node": n.name, "rc": rc,
                                     "log": str(n.log_path)})
                self.log(f"CRASH {n.name} exited with {rc}; log {n.log_path}")
        return down

    def restart_crashed(self) -> None:
        for n in self._note_crashes():
            if self._start(n):
                self.noted.discard(n.node_id)
                self.log(f"restarted {n.name} after its crash")

    def _start(self, n: Node) -> bool:
        try:
            n.start()
            self.killed.discard(n.node_id)
            return True
        except (Exception, SetupFailed) as e:
            self.log(f"restart of {n.name} failed: {str(e)[:300]}")
            return False

    def _live_node(self) -> Node:
        return self.rnd.choice(self.infra.live() or list(self.infra.nodes.values()))

    # -- the faults: each returns when its fault is over

    def _kill(self, f: Fault) -> None:
        node = self._live_node()
        f.target = node.name
        self._kill_restart([node])

    def _kill_az(self, f: Fault) -> None:
        f.target = self.rnd.choice(sorted(set(AZS.values())))
        self._kill_restart([n for n in self.infra.nodes.values() if n.az == f.target])

    def _kill_restart(self, nodes: list[Node]) -> None:
        for n in nodes:
            self.killed.add(n.node_id)
            n.signal(signal.SIGKILL)
        for n in nodes:
            n.kill9()  # waits until the port is closed
        self.log(f"kill -9 {[n.name for n in nodes]}")
        self._sleep(KILL_SECONDS)
        for n in nodes:
            self._start(n)
        self.log(f"restarted {[n.name for n in nodes]}")

    def _pause(self, f: Fault) -> None:
        node = self._live_node()
        f.target = node.name
        node.signal(signal.SIGSTOP)
        node.paused = True
        self.log(f"SIGSTOP {node.name}")
        self._sleep(PAUSE_SECONDS)
        node.signal(signal.SIGCONT)
        node.paused = False

    def _proxy(self, f: Fault, name: str, action: str) -> None:
        proxy = self.infra.s3_proxy if name == "s3" else self.infra.pg_proxy
        f.target = name
        getattr(proxy, action)()
        self.log(f"{name} proxy: {action}")
        self._sleep(PROXY_SECONDS)
        proxy.restore()

    def _s3_cut(self, f: Fault) -> None:
        self._proxy(f, "s3", "cut")

    def _s3_blackhole(self, f: Fault) -> None:
        self._proxy(f, "s3", "blackhole")

    def _pg_cut(self, f: Fault) -> None:
        self._proxy(f, "pg", "cut")

    def _pg_blackhole(self, f: Fault) -> None:
        self._proxy(f, "pg", "blackhole")

    def _pg_restart(self, f: Fault) -> None:
        f.target = "postgresql"
        self.log(f"pg_ctl restart -m immediate: {self.infra.pg_ctl_restart()}")

    def heal(self) -> None:
        self.infra.pg_proxy.restore()
        self.infra.s3_proxy.restore()
        if not port_open("127.0.0.1", self.infra.pg.port):
            self.log(f"PostgreSQL down at heal; restart: {self.infra.pg_ctl_restart()}")
        for n in self.infra.nodes.values():
            if n.paused:
                n.signal(signal.SIGCONT)
                n.paused = False
        self.restart_crashed()
        for _ in range(3):
            for n in self.infra.nodes.values():
                if not n.alive():
                    self._start(n)
        down = [n.name for n in self.infra.nodes.values() if not n.alive()]
        self.log(f"healed: proxies restored; nodes down: {down or 'none'}")


# ---------------------------------------------------------------- reading what is served

@dataclass
class FinalRead:
    """What the checker's read found: per partition the log start offset (`low`, read when
    the wall clock was below `low_read_by_ms`), the high watermark and the records served."""
    low: dict[int, int]
    low_read_by_ms: int
    hw: dict[int, int]
    served: Served
    problems: list[str]
    stats: dict


def read_served(bootstrap: str, partitions: int, stall: float = 120.0, on_stall=None,
                retention: bool = False) -> FinalRead:
    """Every partition read from its start (offset 0; its log start offset when `retention`
    retires records) up to its high watermark by a fresh consumer. The read goes on while it
    makes progress and gives up after `stall` seconds without a record; `on_stall(seconds)` is
    called once per pause of 20 s or more (to snapshot the nodes while it lasts).

    Retention goes on retiring the oldest records during the read, so with `retention` the
    consumer skips to the new log start offset when its position was retired (an offset
    reset to "earliest"), and the log start offsets are read again after the read: what was
    not served below them was retired, not lost."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "nemesis-checker", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest" if retention else "error", "enable.partition.eof": True})
    try:
        low, hw = watermarks(c, partitions, time.monotonic() + stall)
        problems = []
        if not retention:  # nothing is retired: a log start offset above 0 is a problem
            problems = [f"partition {p}: log start offset {lo}" for p, lo in low.items() if lo != 0]
            low = {p: 0 for p in low}
        served: dict[int, dict[int, bytes]] = {p: {} for p in range(partitions)}
        left = {p for p in range(partitions) if hw[p] > low[p]}
        c.assign([TopicPartition(TOPIC, p, low[p]) for p in sorted(left)])
        started = last = time.monotonic()
        longest, reported = 0.0, False
        while left and time.monotonic() - last < stall:
            got = c.consume(1000, 1.0)
            now = time.monotonic()
            if got:
                longest, last, reported = max(longest, now - last), now, False
            elif now - last >= 20 and not reported and on_stall:
                reported = True
                on_stall(now - last)
            for m in got:
                _take(m, hw, served, left, problems)
        longest = max(longest, time.monotonic() - last)
        problems += [f"partition {p}: read stopped before the high watermark {hw[p]}" for p in sorted(left)]
        if retention:
            low, _ = watermarks(c, partitions, time.monotonic() + stall)
        low_read_by_ms = int(time.time() * 1000)
        stats = {"seconds": round(time.monotonic() - started, 1), "longest_pause": round(longest, 1)}
        return FinalRead(low, low_read_by_ms, hw, served, problems[:MAX_EXAMPLES], stats)
    finally:
        c.close()


def _take(m, hw: dict[int, int], served: Served, left: set[int], problems: list[str]) -> None:
    """One message of the checker's read."""
    from confluent_kafka import KafkaError

    p, o, err = m.partition(), m.offset(), m.error()
    if err is None:
        if o < hw[p]:
            served[p][o] = m.value()
        if o + 1 >= hw[p]:
            left.discard(p)
    elif err.code() != KafkaError._PARTITION_EOF:
        problems.append(f"read error: {err}")
    elif o >= hw[p]:
        left.discard(p)
    elif len(problems) < MAX_EXAMPLES:  # the fetch said the end is below ListOffsets' answer
        problems.append(f"partition {p}: end of partition at {o}, below the high watermark {hw[p]}")


def watermarks(c, partitions: int, deadline: float) -> tuple[dict[int, int], dict[int, int]]:
    """ListOffsets of every partition, retried until each one answers."""
    from confluent_kafka import KafkaException, TopicPartition

    low: dict[int, int] = {}
    hw: dict[int, int] = {}
    while len(hw) < partitions:
        for p in range(partitions):
            if p not in hw:
                try:
                    low[p], hw[p] = c.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=5, cached=False)
                except KafkaException:
                    pass
        if len(hw) < partitions and time.monotonic() > deadline:
            raise RuntimeError(f"partitions {sorted(set(range(partitions)) - set(hw))} never answered ListOffsets")
    return low, hw


# ---------------------------------------------------------------- checker (pure functions)

def served_places(served: Served) -> dict[bytes, list[tuple[int, int]]]:
    where: dict[bytes, list[tuple[int, int]]] = defaultdict(list)
    for p, records in served.items():
        for o, v in records.items():
            where[v].append((p, o))
    return where


def check_records(acked: Acked, served: Served, sent: dict[str, int],
                  ordered: tuple[str, ...] = ("idem",), low: dict[int, int] | None = None) -> dict[str, list]:
    """Acknowledged records against the served log: lost, wrong_offset, duplicates (one entry
    per extra copy), unknown_values, order_violations (of the producers in `ordered`, whose
    client guarantees send order) and plain_reorders (of the others). A record not served
    below its partition's log start offset (`low`) is retired (by retention), not lost."""
    where = served_places(served)
    low = low or {}
    out: dict[str, list] = {"lost": [], "wrong_offset": [], "duplicates": [], "unknown_values": [],
                            "retired": []}
    for name, acks in acked.items():
        for seq, (p, o, t) in acks.items():
            places = where.get(value_of(name, seq), [])
            if not places and o < low.get(p, 0):
                out["retired"].append({"producer": name, "seq": seq, "partition": p, "offset": o})
            elif not places:
                out["lost"].append({"value": f"{name}-{seq}", "partition": p, "offset": o, "acked_at": round(t, 2)})
            elif (p, o) not in places:
                out["wrong_offset"].append({"value": f"{name}-{seq}", "acked": [p, o], "served": places})
    for v, places in where.items():
        out["duplicates"] += [{"value": v.decode(errors="replace"), "served": places}] * (len(places) - 1)
        parsed = parse_value(v)
        if parsed is None or parsed[0] not in sent or parsed[1] >= sent[parsed[0]]:
            out["unknown_values"].append({"value": repr(v), "served": places})
    reorders = order_violations(acked, where)
    out["order_violations"] = [r for r in reorders if r["producer"] in ordered]
    out["plain_reorders"] = [r for r in reorders if r["producer"] not in ordered]
    return out


def order_violations(acked: Acked, where: dict[bytes, list[tuple[int, int]]]) -> list[dict]:
    """Per producer and served partition: acknowledged records, taken in send order, must be
    served at increasing offsets. One entry per adjacent pair out of order, each record as
    [value, served offset, time acknowledged]."""
    out = []
    for name, acks in acked.items():
        last: dict[int, list] = {}  # partition -> the previous record
        for seq in sorted(acks):
            places = where.get(value_of(name, seq))
            if not places:
                continue
            p, o = min(places)
            record = [f"{name}-{seq}", o, round(acks[seq][2], 2)]
            prev = last.get(p)
            if prev is not None and o <= prev[1]:
                out.append({"producer": name, "partition": p, "earlier": prev, "later": record})
            last[p] = record
    return out


def check_reads(consumed: set[tuple[int, int, bytes]], served: Served,
                low: dict[int, int] | None = None) -> list[dict]:
    """Every record a group member read must still be served at the same offset (unless
    retention retired it: below the log start offset `low`)."""
    low = low or {}
    return [{"partition": p, "offset": o, "read": v.decode(errors="replace"),
             "served": (served.get(p, {}).get(o) or b"<nothing>").decode(errors="replace")}
            for p, o, v in sorted(consumed) if served.get(p, {}).get(o) != v and o >= low.get(p, 0)]


def retired_early(retired: list[dict], stamps: dict[str, dict[int, int]], low_read_by_ms: int,
                  retention_ms: int) -> list[dict]:
    """Retired records that were not yet retention_ms old: retention retires whole batches whose
    largest timestamp is older than retention_ms, and a record's timestamp is at most its
    batch's, so each one retired before `low_read_by_ms` has a timestamp below that minus
    retention_ms."""
    limit = low_read_by_ms - retention_ms
    out = []
    for r in retired:
        stamp = stamps.get(r["producer"], {}).get(r["seq"])
        if stamp is None or stamp >= limit:
            out.append(dict(r, timestamp=stamp, limit=limit))
    return out


def commit_regressions(commits: list[Op], reads: list[Op]) -> list[dict]:
    """Successful commits of the group members and the monitor's reads of the committed
    offsets. A regression: a commit or read whose offset is below that of a commit or read
    of the same partition that had completed before it was invoked (real-time order: two
    overlapping operations may take effect in either order)."""
    ops: dict[int, list[tuple[float, float, int, str]]] = defaultdict(list)
    for kind, group in (("commit", commits), ("read", reads)):
        for t0, t1, p, o in group:
            ops[p].append((t0, t1, o, kind))
    return [dict(r, partition=p) for p, group in sorted(ops.items()) for r in _regressions(group)]


def end_offset_regressions(acked: Acked, reads: list[Op]) -> list[dict]:
    """The monitor's reads of the partitions' end offsets (ListOffsets) against what was
    known when each read was invoked: an acknowledged record at offset o means an end
    offset of at least o + 1 from its acknowledgement on; an earlier read, at least its
    answer. Below that, acknowledged records were (at least for a while) not served."""
    known: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for acks in acked.values():
        for p, o, t in acks.values():
            known[p].append((t, o + 1))
    ops: dict[int, list[tuple[float, float, int, str]]] = defaultdict(list)
    for t0, t1, p, o in reads:
        ops[p].append((t0, t1, o, "end offset"))
    return [dict(r, partition=p) for p, group in sorted(ops.items()) for r in _regressions(group, known[p])]


def _regressions(ops: list[tuple[float, float, int, str]], known: list[tuple[float, int]] = ()) -> list[dict]:
    """The operations (invoked, completed, offset, kind) whose offset is below the highest
    one established before they were invoked, by another operation or by `known`
    (time established, offset)."""
    done = sorted([(t1, o) for _, t1, o, _ in ops] + list(known))
    times = [t for t, _ in done]
    floor: list[int] = []  # floor[i]: the highest offset among done[0..i]
    for _, o in done:
        floor.append(max(o, floor[-1]) if floor else o)
    out = []
    for t0, _, o, kind in sorted(ops):
        i = bisect_left(times, t0)  # established before t0
        if i and o < floor[i - 1]:
            out.append({"kind": kind, "t": round(t0, 2), "offset": o, "before": floor[i - 1]})
    return out


def committed_above_hw(final: dict[int, int], hw: dict[int, int]) -> list[dict]:
    return [{"partition": p, "committed": o, "high_watermark": hw.get(p, 0)}
            for p, o in sorted(final.items()) if o > hw.get(p, 0)]


def longest_gap(times: list[float], start: float, end: float) -> float:
    """The longest interval in [start, end] without an element of sorted `times`."""
    points = [start] + times[bisect_left(times, start):bisect_left(times, end)] + [end]
    return max(b - a for a, b in zip(points, points[1:]))


def unavailability(faults: list[Fault], acked: Acked, horizon: float, partitions: int) -> dict[str, dict]:
    """Per fault kind, max and mean over its faults of the worst partition's longest time
    without an acknowledged produce, from the fault's start until 20 s after its end (or the
    next fault's start, or the end of the workload)."""
    per_partition: dict[int, list[float]] = {p: [] for p in range(partitions)}
    for acks in acked.values():
        for p, _, t in acks.values():
            per_partition[p].append(t)
    for ts in per_partition.values():
        ts.sort()
    by_kind: dict[str, list[float]] = defaultdict(list)
    for i, f in enumerate(faults):
        nxt = faults[i + 1].start if i + 1 < len(faults) else float("inf")
        end = min(f.end + UNAVAILABILITY_TAIL, nxt, horizon)
        if end > f.start:
            by_kind[f.kind].append(max(longest_gap(ts, f.start, end) for ts in per_partition.values()))
    return {k: {"max": round(max(v), 2), "mean": round(sum(v) / len(v), 2), "n": len(v)}
            for k, v in sorted(by_kind.items())}


# ---------------------------------------------------------------- a run

VIOLATION_KEYS = ("lost", "wrong_offset", "duplicates", "order_violations", "unknown_values",
                  "retired_early", "read_inconsistent", "end_offset_regressions", "fatal_errors", "offset_resets",
                  "commit_regressions", "committed_above_hw", "unanswered")


def run(opts: Options) -> dict:
    """One nemesis run; returns the summary (see the module docstring)."""
    root = Path(tempfile.mkdtemp(prefix=f"inkless-nemesis-{opts.seed}-"))
    log = RunLog(root / "nemesis.log")
    infra = Infra(root, opts.ip_base, log, opts.cache_mib, opts.time_scale)
    keep = True
    try:
        summary, details = _run(opts, infra, log)
        stalled = summary.get("final_read", {}).get("longest_pause", 0) >= 20  # it left snapshots
        keep = (opts.keep or summary["violations"] or summary["node_crashes"] or stalled
                or "harness_errors" in summary)
        if keep:
            _keep(root, infra, summary, details, log)
        return summary
    except BaseException:
        log(f"run failed; work dir kept: {root}")
        raise
    finally:
        infra.close()
        log.close()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def _run(opts: Options, infra: Infra, log: RunLog) -> tuple[dict, dict]:
    log(f"seed {opts.seed}: {asdict(opts)}")
    infra.start()
    create_topic(infra.bootstrap, opts.partitions, opts.retention_ms)
    infra.wait_ready(opts.partitions)
    commit_start_offsets(infra.bootstrap, opts.partitions)
    workload = Workload(infra.bootstrap, opts, log, infra.root)
    nemesis = Nemesis(infra, opts, log)
    sampler = Sampler(infra, workload.producers, opts.sample_interval, log)
    workload.start()
    sampler.start()
    try:
        time.sleep(opts.warmup)
        nemesis.run(opts.duration)
        sampler.halt.set()
        nemesis.heal()
        try:
            log(f"cluster ready {infra.wait_ready(opts.partitions):.1f} s after healing")
        except RuntimeError as e:  # the checker still reads what the cluster serves
            log(f"NOT READY after healing: {e}")
        final = workload.finish()
    finally:
        sampler.halt.set()
        workload.halt()
    read = read_served(infra.bootstrap, opts.partitions, on_stall=infra.snapshot,
                       retention=opts.retention_ms is not None)
    log(f"read {sum(len(r) for r in read.served.values())} records in {read.stats['seconds']} s "
        f"(longest pause {read.stats['longest_pause']} s); log start offsets {read.low}, "
        f"high watermarks {read.hw}")
    summary, details = summarize(opts, workload, nemesis, final, read, log)
    summary["final_read"] = read.stats
    summary["samples"] = sampler.samples
    summary["trend"] = second_half_trends(sampler.samples)
    return summary, details


def slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per hour (None for fewer than 3)."""
    if len(points) < 3:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    return round(3600 * sum((t - mt) * (v - mv) for t, v in points) / var, 1) if var else None


def second_half_trends(samples: list[dict]) -> dict:
    """Per node, the slope of RSS (MiB/hour) and of its sampled gauges over the second half
    of the run: after warm-up a node that does not leak stays flat. Samples from before a
    node's last restart (its RSS fell by half or it was down) are left out."""
    half = samples[len(samples) // 2:]
    trends: dict = {}
    for node_id in (half[0]["rss_mib"] if half else {}):
        points: list[tuple[float, dict]] = []
        for s in half:
            rss = s["rss_mib"].get(node_id)
            if rss is None or (points and rss < points[-1][1]["rss"] / 2):
                points = []  # down, or restarted: start again
                continue
            gauges = (s.get("gauges") or {}).get(node_id) or {}
            process = {k: s[k].get(node_id) for k in ("fds", "threads") if s.get(k, {}).get(node_id) is not None}
            points.append((s["t"], {"rss": rss, **process, **gauges}))
        keys = sorted({k for _, v in points for k in v})
        trends[node_id] = {"samples": len(points),
                           **{f"{k}_per_hour": slope_per_hour([(t, v[k]) for t, v in points if k in v])
                              for k in keys}}
    rows = [(s["t"], s["rows"]) for s in half if s.get("rows")]
    trends["rows_per_hour"] = {t: slope_per_hour([(at, r[t]) for at, r in rows if t in r])
                               for t in SAMPLED_TABLES}
    return trends


def find_violations(workload: Workload, final: dict[int, int], read: FinalRead,
                    retention_ms: int | None) -> dict[str, list]:
    """Every check of the module docstring: kind -> examples (the count is the length)."""
    sent = {p.pname: p.sent for p in workload.producers}
    found = check_records(workload.acked(), read.served, sent, low=read.low)
    stamps = {p.pname: p.stamps or {} for p in workload.producers}
    found["retired_early"] = [] if retention_ms is None else \
        retired_early(found["retired"], stamps, read.low_read_by_ms, retention_ms)
    found["read_inconsistent"] = check_reads(workload.consumed(), read.served, read.low)
    found["end_offset_regressions"] = end_offset_regressions(workload.acked(), workload.monitor.end_reads)
    found["fatal_errors"] = [f for p in workload.producers for f in p.fatal]
    found["offset_resets"] = [r for c in workload.consumers for r in c.offset_resets]
    found["commit_regressions"] = commit_regressions(workload.commits(), workload.monitor.reads)
    found["committed_above_hw"] = committed_above_hw(final, read.hw)
    found["unanswered"] = [p.pname for p in workload.producers for _ in range(p.unanswered)]
    return found


def summarize(opts, workload: Workload, nemesis: Nemesis, final, read: FinalRead, log) -> tuple[dict, dict]:
    """(the summary line, the details kept with a failed run)."""
    acked = workload.acked()
    found = find_violations(workload, final, read, opts.retention_ms)
    summary = {
        "seed": opts.seed, "duration": opts.duration,
        "faults": dict(Counter(f.kind for f in nemesis.history)),
        "sent": sum(p.sent for p in workload.producers), "acked": sum(len(a) for a in acked.values()),
        **{k: len(found[k]) for k in VIOLATION_KEYS},
        "plain_reorders": len(found["plain_reorders"]),
        "node_crashes": len(nemesis.crashes),
        "unavailability": unavailability(nemesis.history, acked, workload.stopped_at, opts.partitions),
        "elapsed": round(log.now(), 1),
    }
    summary["violations"] = sum(summary[k] for k in VIOLATION_KEYS)
    if opts.time_scale > 1:
        summary["time_scale"] = opts.time_scale
        summary["simulated_hours"] = round(opts.duration * opts.time_scale / 3600, 1)
        summary["retention_ms"] = opts.retention_ms
        summary["retired"] = len(found["retired"])
        summary["log_start_offsets"] = read.low
    summary["duplicates_by_producer"] = dict(Counter(r["value"].rsplit("-", 1)[0] for r in found["duplicates"]))
    if read.problems:
        summary["read_problems"] = len(read.problems)
    if workload.failures():
        summary["harness_errors"] = workload.failures()
    details = {
        "summary": summary,
        "examples": {k: found[k][:MAX_EXAMPLES] for k in (*VIOLATION_KEYS, "plain_reorders") if found[k]},
        "lost_by_partition": lost_ranges(found["lost"]),
        "by_producer": {k: dict(Counter(r["value"].rsplit("-", 1)[0] for r in found[k]))
                        for k in ("lost", "duplicates")},
        "faults": [asdict(f) for f in nemesis.history], "crashes": nemesis.crashes,
        "read_problems": read.problems, "high_watermarks": read.hw, "final_committed": final,
        "delivery_errors": {p.pname: dict(p.delivery_errors) for p in workload.producers},
        "consumer_errors": {c.cname: dict(c.errors) for c in workload.consumers},
        "monitor_failures": workload.monitor.failures,
    }
    return summary, details


def lost_ranges(lost: list[dict]) -> dict[int, list[list]]:
    """partition -> [first offset, last offset, count, first ack time, last ack time] per run
    of consecutive lost offsets."""
    out: dict[int, list[list]] = defaultdict(list)
    for r in sorted(lost, key=lambda r: (r["partition"], r["offset"])):
        runs = out[r["partition"]]
        if runs and runs[-1][1] + 1 == r["offset"]:
            runs[-1][1:5] = [r["offset"], runs[-1][2] + 1, runs[-1][3], r["acked_at"]]
        else:
            runs.append([r["offset"], r["offset"], 1, r["acked_at"], r["acked_at"]])
    return dict(out)


def suspect_partitions(details: dict) -> dict[int, int]:
    """partition -> the lowest offset involved in a violation there (first examples only)."""
    places: list[tuple[int, int]] = [(p, r[0]) for p, runs in details["lost_by_partition"].items() for r in runs]
    examples = details["examples"]
    places += [(r["partition"], r["offset"]) for r in examples.get("read_inconsistent", [])]
    places += [tuple(r["acked"]) for r in examples.get("wrong_offset", [])]
    places += [tuple(r["served"][0]) for r in examples.get("duplicates", [])]
    places += [(r["partition"], r["later"][1]) for r in examples.get("order_violations", [])]
    out: dict[int, int] = {}
    for p, o in places:
        out[p] = min(out.get(p, o), o)
    return out


def _keep(root: Path, infra: Infra, summary: dict, details: dict, log: RunLog) -> None:
    summary["kept"] = str(root)
    (root / "details.json").write_text(json.dumps(details, indent=1, default=str))
    queries = [("topics", "SELECT * FROM topics"),
               ("partitions", "SELECT * FROM partitions ORDER BY partition"),
               ("node_leases", "SELECT * FROM node_leases ORDER BY node_id"),
               ("producers", "SELECT * FROM producers ORDER BY partition, producer_id"),
               ("group_offsets", "SELECT * FROM group_offsets ORDER BY group_id, partition")]
    for p, first in sorted(suspect_partitions(details).items()):
        queries.append((f"batches of partition {p} from offset {first - 100}",
                        f"SELECT * FROM batches WHERE partition = {p} AND last_offset >= {first - 100} "
                        f"ORDER BY base_offset LIMIT 3000"))
        queries.append((f"last batches of partition {p}",
                        f"SELECT * FROM batches WHERE partition = {p} ORDER BY base_offset DESC LIMIT 50"))
    with open(root / "metadata.txt", "w") as f:
        for title, sql in queries:
            f.write(f"==== {title}\n{sql}\n{infra.psql(sql)}\n")
    log(f"work dir kept for diagnosis: {root} (details.json, metadata.txt, node-*.log, clients.log)")


# ---------------------------------------------------------------- many runs: the table

TABLE_COLUMNS = ("seed", "faults", "acked", "lost", "wrong_offset", "duplicates", "order_violations",
                 "fatal_errors", "offset_resets", "commit_regressions", "committed_above_hw",
                 "read_inconsistent", "end_offset_regressions", "unanswered", "plain_reorders", "node_crashes")
SHORT = {"wrong_offset": "wrong_off", "duplicates": "dups", "order_violations": "order",
         "fatal_errors": "fatal", "offset_resets": "resets", "commit_regressions": "commit_regr",
         "committed_above_hw": "above_hw", "read_inconsistent": "read_incons",
         "end_offset_regressions": "end_regr", "unanswered": "unans", "plain_reorders": "plain_reord",
         "node_crashes": "crashes"}


def format_table(summaries: list[dict]) -> str:
    def cell(s: dict, k: str):
        return sum(s["faults"].values()) if k == "faults" else s.get(k, "")

    heads = [SHORT.get(k, k) for k in TABLE_COLUMNS] + ["result"]
    def result(s: dict) -> str:
        return "ERROR" if "harness_errors" in s else "FAIL" if s.get("violations") else "ok"

    rows = [[cell(s, k) for k in TABLE_COLUMNS] + [result(s)] for s in summaries]
    totals = ["total"] + [sum(cell(s, k) or 0 for s in summaries) for k in TABLE_COLUMNS[1:]]
    rows.append(totals + [f"{sum(1 for s in summaries if result(s) != 'ok')} failed"])
    widths = [max(len(str(x)) for x in col) for col in zip(heads, *rows)]
    lines = ["  ".join(str(x).rjust(w) for x, w in zip(r, widths)) for r in [heads, *rows]]
    lines += ["", "unavailability per fault kind (worst partition's longest gap without an ack, s):",
              f"{'kind':>14} {'faults':>7} {'max':>7} {'mean':>7}"]
    for kind in FAULT_KINDS:
        stats = [s["unavailability"][kind] for s in summaries if kind in s.get("unavailability", {})]
        n = sum(x["n"] for x in stats)
        if n:
            mean = sum(x["mean"] * x["n"] for x in stats) / n
            lines.append(f"{kind:>14} {n:>7} {max(x['max'] for x in stats):>7.2f} {mean:>7.2f}")
    return "\n".join(lines)


# ---------------------------------------------------------------- CLI

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=None, help="default: random")
    ap.add_argument("--duration", type=float, default=120.0, help="seconds of faults")
    ap.add_argument("--ip-base", type=int, default=10, help="nodes on 127.0.0.<ip-base + 1..6>")
    ap.add_argument("--faults", default=",".join(FAULT_KINDS), help="comma-separated fault kinds")
    ap.add_argument("--interval", default="10,15", help="seconds between fault starts: min,max")
    ap.add_argument("--cover", action="store_true", help="first every fault kind once, then random")
    ap.add_argument("--idem-rate", type=int, default=1500)
    ap.add_argument("--plain-rate", type=int, default=300)
    ap.add_argument("--keep", action="store_true", help="keep the work dir even without violation")
    ap.add_argument("--sample-interval", type=float, default=60.0,
                    help="seconds between samples of node RSS and ack latency (the soak's view)")
    ap.add_argument("--cache-mib", type=int, default=None,
                    help="each node's block cache in MiB (default: the node's, 1 GiB)")
    ap.add_argument("--time-scale", type=float, default=1.0,
                    help="divide the nodes' long timers (retention, merging, deletion, expirations) and the "
                         "topic's retention.ms by this, each down to a floor; leases and timeouts stay real")
    ap.add_argument("--out", type=Path, help="also write the summary line to this file")
    ap.add_argument("--table", nargs="+", type=Path, metavar="JSON",
                    help="print the table of these summary files instead of running")
    args = ap.parse_args(argv)
    kinds = tuple(k for k in args.faults.split(",") if k)
    unknown = set(kinds) - set(FAULT_KINDS)
    if unknown or not kinds:
        ap.error(f"unknown fault kinds {sorted(unknown)}; known: {','.join(FAULT_KINDS)}")
    if not 1 <= args.ip_base <= 248:
        ap.error("--ip-base must be in 1..248")
    args.faults = kinds
    args.interval = tuple(float(x) for x in args.interval.split(","))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table:
        summaries = [json.loads(p.read_text().strip().splitlines()[-1]) for p in args.table]
        print(format_table(summaries))
        return 1 if any(s.get("violations") or "harness_errors" in s for s in summaries) else 0
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    opts = Options(seed=seed, duration=args.duration, ip_base=args.ip_base, faults=args.faults,
                   interval=args.interval, cover=args.cover, idem_rate=args.idem_rate,
                   plain_rate=args.plain_rate, keep=args.keep, sample_interval=args.sample_interval,
                   cache_mib=args.cache_mib, time_scale=args.time_scale)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # runs the cleanup in `finally`
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the summary
            summary = run(opts)
    except (Exception, SetupFailed) as e:
        summary = {"seed": seed, "duration": opts.duration, "error": f"{type(e).__name__}: {e}"[:2000]}
    line = json.dumps(summary)
    print(line, flush=True)
    if args.out:
        args.out.write_text(line + "\n")
    if "error" in summary or "harness_errors" in summary:
        return 2
    return 1 if summary["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
