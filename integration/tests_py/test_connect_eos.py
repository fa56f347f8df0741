"""Kafka Connect exactly-once source (KIP-618) on the broker's transactions (ADR 0018).

A distributed Kafka Connect worker (the real connect-runtime jar of Kafka 4.4.0, from Maven
Central through `scripts/kafka-reference.sh fetch`) with `exactly.once.source.support=enabled`
runs integration/clients/java LineSourceConnector (a file source that declares exactly-once
support) with `exactly.once.support=required` and `transaction.boundary=interval`: the task's
transactional producer writes the lines and their source offsets in one transaction per
interval, and the worker reads its config and offsets topics read_committed.

While lines are appended to the file without pause, the worker is killed with SIGKILL at a
moment when its task has an open transaction with records in the topic (the read_uncommitted
end offset of a partition is past its read_committed one). A new worker fences the dead
task's transactional id (Admin.fenceProducers, InitProducerId), which aborts that
transaction, and resumes from the last committed source offset. Read with
isolation.level=read_committed, the topic holds every line exactly once, in file order within
each partition; read_uncommitted it also holds the aborted copies (so the kill did hit an
open transaction), and no partition's last stable offset is left behind its high watermark.

The same in a 3-node cluster (PostgreSQL, an S3 server) where the node that coordinates the
task's transactional id is killed with SIGKILL inside the open transaction instead: the
producer finds the new coordinator, which has the transaction from the metadata store, and
the worker carries on; every line is in the topic exactly once.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, IsolationLevel, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from conftest import EXTERNAL, JAVA_JAR, LocalBroker, free_port, measurement, stop_and_check
from test_connect_streams import CONNECTOR, ConnectWorker, wait_until
from test_transactions_cluster import cluster, txn_coordinator  # noqa: F401 (fixture: a three-node cluster)
from test_kafka_tools import kafka_libs  # noqa: F401 (fixture: Kafka's jars, resolved from Maven Central)

PARTITIONS = 3
# Lines appended per tick of the writer, and the tick.
CHUNK, TICK_S = 20, 0.05
# The task commits a transaction every this many ms: long enough that a kill lands inside one.
BOUNDARY_MS = 3000


@pytest.fixture(scope="module")
def eos_boot(tmp_path_factory):
    if EXTERNAL:
        yield EXTERNAL
        return
    root = tmp_path_factory.mktemp("connect-eos")
    b = LocalBroker(root / "data", free_port(), root, name="connect-eos")
    b.extra_env["INKLESS__GROUPS__INITIAL_REBALANCE_DELAY_MS"] = "0"
    b.start()
    yield b.bootstrap
    stop_and_check(b)


def worker_config(tmp: Path, bootstrap: str, port: int, run: str) -> tuple[Path, Path]:
    plugins = tmp / "plugins"
    plugins.mkdir(exist_ok=True)
    link = plugins / JAVA_JAR.name
    if not link.exists():
        link.symlink_to(JAVA_JAR)
    props = {
        "bootstrap.servers": bootstrap,
        "group.id": f"connect-eos-{run}",
        "listeners": f"http://127.0.0.1:{port}",
        "rest.advertised.host.name": "127.0.0.1",
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "value.converter": "org.apache.kafka.connect.storage.StringConverter",
        "plugin.discovery": "service_load",
        "plugin.path": str(plugins),
        "exactly.once.source.support": "enabled",
        "scheduled.rebalance.max.delay.ms": "0",
        "session.timeout.ms": "6000",
        "heartbeat.interval.ms": "1000",
        # Zombie fencing reads the config topic to its end within this; its default (3 s) is
        # shorter than a crashed node's partitions take to move (lease TTL + claim), and a
        # task whose fencing fails stays failed. docs/operations/node-lost.md says the same.
        "worker.sync.timeout.ms": "15000",
        # The worker's shared admin (built from these settings) caches each partition's leader
        # and sends ListOffsets for the config topic to it until the call's deadline, even when
        # that node is gone (a connection refused is not a reason for it to look the leader up
        # again). Its default deadline (60 s) outlasts the fencing read above; a shorter one
        # lets the read retry, look up the new leader and finish in time. Same advice in
        # docs/operations/node-lost.md.
        "request.timeout.ms": "5000",
        "default.api.timeout.ms": "5000",
        "config.storage.topic": f"connect-eos-configs-{run}",
        "offset.storage.topic": f"connect-eos-offsets-{run}",
        "status.storage.topic": f"connect-eos-status-{run}",
        "offset.storage.partitions": "5",
        "status.storage.partitions": "2",
    }
    for kind in ("config", "offset", "status"):
        props[f"{kind}.storage.replication.factor"] = "1"
    path = tmp / "worker.properties"
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    log4j = tmp / "log4j2.properties"
    log4j.write_text(
        "status = warn\n"
        "appender.out.type = Console\nappender.out.name = OUT\n"
        "appender.out.layout.type = PatternLayout\nappender.out.layout.pattern = [%d] %p %m (%c)%n\n"
        "rootLogger.level = INFO\nrootLogger.appenderRef.out.ref = OUT\n"
        "logger.reflections.name = org.reflections\nlogger.reflections.level = ERROR\n")
    return path, log4j


class LineWriter:
    """Appends numbered lines to a file, CHUNK every TICK_S, until stopped."""

    def __init__(self, path: Path):
        self.path = path
        self.n = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with open(self.path, "a") as f:
                f.write("".join(f"line {i:06d}\n" for i in range(self.n, self.n + CHUNK)))
            self.n += CHUNK
            time.sleep(TICK_S)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(timeout=10)
        return self.n


def end_offsets(admin: AdminClient, topic: str, isolation: IsolationLevel) -> dict[int, int]:
    req = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(PARTITIONS)}
    res = admin.list_offsets(req, isolation_level=isolation, request_timeout=10)
    return {tp.partition: f.result(10).offset for tp, f in res.items()}


def read(bootstrap: str, topic: str, isolation: str) -> dict[int, list[str]]:
    """Every value of every partition up to its end (the LSO for read_committed), in offset order."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"eos-read-{uuid.uuid4().hex[:8]}",
                  "isolation.level": isolation, "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        out: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
        eof: set[int] = set()
        deadline = time.monotonic() + 60
        while len(eof) < PARTITIONS:
            assert time.monotonic() < deadline, f"read of {topic} ({isolation}) stuck: eof {sorted(eof)}"
            m = c.poll(0.3)
            if m is None:
                continue
            if m.error() is not None:
                if m.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                continue
            eof.discard(m.partition())
            out[m.partition()].append(m.value().decode())
        return out
    finally:
        c.close()


def committed_count(bootstrap: str, topic: str) -> int:
    return sum(len(v) for v in read(bootstrap, topic, "read_committed").values())


def copy_through_a_crash(bootstrap: str, libs: Path, tmp_path: Path, crash) -> None:
    """Runs the connector while lines are appended, calls `crash(worker)` at a moment when the
    task has an open transaction with records in the topic, and checks the topic.
    `crash` returns the worker that carries on."""
    run = uuid.uuid4().hex[:8]
    port = free_port()
    props, log4j = worker_config(tmp_path, bootstrap, port, run)
    topic = f"eos-lines-{run}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
    source = tmp_path / "source.txt"
    source.write_text("")
    t0 = time.monotonic()

    workers = [ConnectWorker(libs, props, log4j, port, tmp_path / "worker-1.log")]
    writer = None
    try:
        w1 = workers[0]
        w1.wait_ready()
        config = {"connector.class": "io.inkless.clients.LineSourceConnector", "tasks.max": "1",
                  "file": str(source), "topic": topic,
                  "exactly.once.support": "required",
                  "transaction.boundary": "interval",
                  "transaction.boundary.interval.ms": str(BOUNDARY_MS)}
        code, body = w1.rest("PUT", f"/connectors/{CONNECTOR}/config", config)
        assert code == 201, (code, body)
        w1.wait_task_running()
        writer = LineWriter(source)

        # Two committed transactions, then a moment when the third has records in the topic.
        wait_until("two transactions of lines are committed",
                   lambda: committed_count(bootstrap, topic) >= 2 * CHUNK, 30, w1.context)

        # A transaction that has just begun: the LSO moved (a commit) less than half an
        # interval ago, and records of the next transaction are already past it. The next
        # commit is more than a second away.
        moved = {"lso": end_offsets(admin, topic, IsolationLevel.READ_COMMITTED), "at": 0.0}

        def fresh_open_txn():
            lso = end_offsets(admin, topic, IsolationLevel.READ_COMMITTED)
            if lso != moved["lso"]:
                moved.update(lso=lso, at=time.monotonic())
                return None
            if time.monotonic() - moved["at"] > BOUNDARY_MS / 2000:
                return None
            hw = end_offsets(admin, topic, IsolationLevel.READ_UNCOMMITTED)
            return (lso, hw) if any(hw[p] > lso[p] for p in range(PARTITIONS)) else None
        lso, hw = wait_until("a new transaction of the task has records past the LSO", fresh_open_txn,
                             30, w1.context)
        crashed = time.monotonic()
        w = crash(w1, run, props, log4j, port, workers)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        w.wait_task_running(90)
        time.sleep(2 * BOUNDARY_MS / 1000)  # a few more lines through the task's next transactions
        n = writer.stop()
        wait_until(f"all {n} lines are committed", lambda: committed_count(bootstrap, topic) >= n, 60,
                   w.context)
        resumed = time.monotonic() - crashed
        time.sleep(BOUNDARY_MS / 1000 + 1)  # anything committed twice would show now

        got = read(bootstrap, topic, "read_committed")
        values = [v for p in range(PARTITIONS) for v in got[p]]
        want = [f"line {i:06d}" for i in range(n)]
        dupes = len(values) - len(set(values))
        assert dupes == 0 and sorted(values) == want, \
            f"every line exactly once: {len(values)} records ({dupes} duplicates) for {n} lines"
        for p, vs in got.items():
            assert vs == sorted(vs), f"partition {p} holds its lines in file order"
        uncommitted = sum(len(v) for v in read(bootstrap, topic, "read_uncommitted").values())
        lso_end = end_offsets(admin, topic, IsolationLevel.READ_COMMITTED)
        hw_end = end_offsets(admin, topic, IsolationLevel.READ_UNCOMMITTED)
        assert lso_end == hw_end, f"no transaction left open: LSO {lso_end}, high watermark {hw_end}"
        measurement(f"CONNECT exactly-once source ({crash.__doc__}): {n} lines, crashed with "
                    f"{sum(hw.values()) - sum(lso.values())} offsets past the LSO, {uncommitted - n} aborted "
                    f"records; every line committed {resumed:.1f} s after the crash; "
                    f"test took {time.monotonic() - t0:.1f} s")
        return uncommitted - n
    finally:
        if writer is not None:
            writer.stop()
        for w in workers:
            w.kill()


def test_connect_exactly_once_source_survives_kill9_of_the_worker(eos_boot, kafka_libs, tmp_path):  # noqa: F811
    def crash(w1, run, props, log4j, port, workers):
        """kill -9 of the worker"""
        w1.kill()
        w2 = ConnectWorker(kafka_libs, props, log4j, port, tmp_path / "worker-2.log")
        workers.append(w2)
        w2.wait_ready()
        return w2

    aborted = copy_through_a_crash(eos_boot, kafka_libs, tmp_path, crash)
    assert aborted > 0, "the killed worker's open transaction left aborted records in the topic"


@pytest.mark.skipif(bool(EXTERNAL), reason="INKLESS_TEST_BOOTSTRAP is set: this test runs its own cluster")
def test_connect_exactly_once_source_survives_kill9_of_its_transaction_coordinator(
        cluster, kafka_libs, tmp_path):  # noqa: F811
    c = cluster
    bootstrap = c.bootstrap

    seen = {}

    def crash(w1, run, props, log4j, port, workers):
        """kill -9 of the node coordinating the task's transactions"""
        victim = txn_coordinator(bootstrap, f"connect-eos-{run}-{CONNECTOR}-0")
        configs = f"connect-eos-configs-{run}"
        meta = AdminClient({"bootstrap.servers": bootstrap}).list_topics(configs, timeout=10)
        seen["config topic led by the killed node"] = meta.topics[configs].partitions[0].leader == victim
        c.nodes[victim].kill9()
        return w1

    copy_through_a_crash(bootstrap, kafka_libs, tmp_path, crash)
    measurement(f"CONNECT exactly-once source, coordinator killed: {seen}")
