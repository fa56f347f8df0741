"""Kafka Connect's internal topics and a Kafka Streams changelog on compacted topics, with the
broker compacting them as they are used (against a real S3 API server, moto).

- Kafka Streams (the real kafka-streams jar; integration/clients/java StreamsCountApp): a
  count per key in an in-memory store, whose changelog Streams creates with
  cleanup.policy=compact. Once the broker has compacted the changelog to one record per key,
  the instance is stopped and a fresh one with an empty state dir restores the store from the
  compacted changelog (restoring one record per key) and its counts continue from the
  restored values.
- Kafka Connect (the real connect-runtime jar of Kafka 4.4.0, from Maven Central through
  `scripts/kafka-reference.sh fetch`; Maven Central has no connect-file 4.4.0, and 4.3.1's
  FileStreamSource does not load on 4.4.0, so the connector is integration/clients/java
  LineSourceConnector, its equivalent, loaded from plugin.path): a distributed worker creates
  its config, offset and status topics compacted; a file source connector copies lines into a
  topic; once the broker has compacted the offsets topic (and the config
  topic, after a config update) the worker is killed with SIGKILL, lines are appended, and a
  new worker resumes from the stored source offset: every line is in the topic exactly once,
  in order, and the connector's updated config survived in the config topic.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from conftest import EXTERNAL, JAVA_JAR, LocalBroker, free_port, measurement, need_tool, stop_and_check
from s3server import MotoServer, s3_env
from test_kafka_tools import kafka_libs  # noqa: F401 (fixture: Kafka's jars, resolved from Maven Central)

pytestmark = pytest.mark.skipif(
    bool(EXTERNAL), reason="INKLESS_TEST_BOOTSTRAP is set: these tests configure their own broker"
)

BUCKET = "inkless-connect-streams"
PREFIX = "cs"
BROKER_ENV = {
    "INKLESS__COMPACT__INTERVAL_MS": "500",
    "INKLESS__COMPACT__MIN_AGE_MS": "1000",
    "INKLESS__GROUPS__INITIAL_REBALANCE_DELAY_MS": "0",
}
# Topic configs that make the broker compact a partition as soon as anything in it is dirty.
EAGER = {"min.cleanable.dirty.ratio": "0.01", "max.compaction.lag.ms": "1000"}
# A short-lived JVM: C1 only, the small collector.
JVM_FLAGS = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xmx512m"]


@pytest.fixture(scope="module")
def compacting(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("connect-streams")
    moto = MotoServer(tmp / "moto.log")
    moto.start()
    moto.create_bucket(BUCKET)
    admin_port = free_port()
    broker = LocalBroker(tmp / "data", free_port(), tmp)
    broker.extra_env = {**s3_env(moto.endpoint, BUCKET, PREFIX, 10_000), **BROKER_ENV,
                        "INKLESS__ADMIN__LISTEN": f"127.0.0.1:{admin_port}"}
    broker.start()
    try:
        yield broker, admin_port
    finally:
        try:
            stop_and_check(broker)
        finally:
            moto.stop()


# ---------------------------------------------------------------- helpers

def compactions(admin_port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(r"^inkless_compactor_compactions_total (\d+)$", text, re.M)
    return int(m.group(1)) if m else 0


def wait_until(what: str, check, timeout: float, context=lambda: ""):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    pytest.fail(f"timed out after {timeout} s waiting until {what} (last: {last!r}){context()}", pytrace=False)


def read_all(bootstrap: str, topic: str) -> list[tuple[int, int, bytes | None, bytes | None]]:
    """(partition, offset, key, value) of every record of every partition, from the log start
    to the high watermark, in offset order per partition."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "enable.partition.eof": False})
    try:
        meta = c.list_topics(topic, timeout=10).topics[topic]
        assert meta.error is None, meta.error
        want: dict[int, int] = {}
        for p in meta.partitions:
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                want[p] = high
        c.assign([TopicPartition(topic, p, 0) for p in want])
        out: list[tuple[int, int, bytes | None, bytes | None]] = []
        done: set[int] = set()
        deadline = time.monotonic() + 30
        while len(done) < len(want):
            assert time.monotonic() < deadline, f"read of {topic} stuck: {len(done)}/{len(want)} partitions"
            m = c.poll(0.3)
            if m is None or m.error() is not None:
                continue
            out.append((m.partition(), m.offset(), m.key(), m.value()))
            if m.offset() >= want[m.partition()] - 1:
                done.add(m.partition())
        return out
    finally:
        c.close()


def high_watermark(bootstrap: str, topic: str, partition: int) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"wm-{uuid.uuid4().hex[:8]}"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
    finally:
        c.close()


def topic_configs(bootstrap: str, topic: str) -> dict[str, str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = admin.describe_configs([res])[res].result(30)
    return {k: e.value for k, e in entries.items()}


class JavaProcess:
    """A JVM whose stdout lines are collected (and copied to a log file)."""

    def __init__(self, argv: list[str], log: Path):
        self.log = log
        self.lines: list[str] = []
        self._out = open(log, "w")  # noqa: SIM115 (closed in _read)
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self._out.write(line)
            self._out.flush()
        self._out.close()

    def context(self) -> str:
        return f"\n{self.log} (last lines):\n" + "\n".join(self.lines[-40:])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


# ---------------------------------------------------------------- Kafka Streams

STREAMS_PARTITIONS = 2
KEYS = 20


class CountApp(JavaProcess):
    """One StreamsCountApp instance."""

    def __init__(self, bootstrap: str, app: str, src: str, dst: str, state_dir: Path, log: Path):
        if not JAVA_JAR.is_file():
            pytest.fail(f"{JAVA_JAR} missing: run scripts/install-test-deps.sh", pytrace=False)
        internal = [f"topic.{k}={v}" for k, v in EAGER.items()]
        super().__init__([need_tool("java"), *JVM_FLAGS, "-cp", str(JAVA_JAR), "io.inkless.clients.StreamsCountApp",
                          bootstrap, app, src, dst, str(state_dir), *internal], log)

    def state(self) -> str | None:
        states = [ln.split()[1] for ln in self.lines if ln.startswith("STATE ")]
        return states[-1] if states else None

    def wait_running(self, timeout: float = 60) -> None:
        def running():
            if self.proc.poll() is not None or any(ln.startswith("ERROR") for ln in self.lines):
                pytest.fail(f"streams instance failed{self.context()}", pytrace=False)
            return self.state() == "RUNNING"
        wait_until("the streams instance is RUNNING", running, timeout, self.context)

    def restored(self) -> dict[int, int]:
        """Records restored per changelog partition."""
        got = {}
        for ln in self.lines:
            if ln.startswith("RESTORED "):
                _, _, part, n = ln.split()
                got[int(part)] = got.get(int(part), 0) + int(n)
        return got

    def close(self) -> None:
        """Closes stdin: the instance closes, leaving its group."""
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.kill()
                pytest.fail(f"streams instance did not close within 40 s{self.context()}", pytrace=False)
        assert "CLOSED" in self.lines, f"streams instance did not close cleanly{self.context()}"


def produce_keys(bootstrap: str, topic: str, rounds: int) -> None:
    """`rounds` records for each of the KEYS keys (the partitioner places each key)."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for r in range(rounds):
        for k in range(KEYS):
            p.produce(topic, key=f"key-{k:02d}", value=f"r{r}")
    assert p.flush(30) == 0, "records not delivered"


def latest_counts(bootstrap: str, topic: str) -> dict[str, list[int]]:
    """Every count written to the output topic, per key, in offset order."""
    got: dict[str, list[int]] = {}
    for _, _, k, v in sorted(read_all(bootstrap, topic), key=lambda r: (r[0], r[1])):
        got.setdefault(k.decode(), []).append(int(v.decode()))
    return got


def test_streams_restores_its_store_from_a_compacted_changelog(compacting, tmp_path):
    broker, admin_port = compacting
    bootstrap = broker.bootstrap
    run = uuid.uuid4().hex[:8]
    src, dst, app = f"counts-in-{run}", f"counts-out-{run}", f"counter-{run}"
    changelog = f"{app}-counts-changelog"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for t in (src, dst):
        admin.create_topics([NewTopic(t, STREAMS_PARTITIONS, 1)])[t].result(30)
    keys = {f"key-{k:02d}" for k in range(KEYS)}
    t0 = time.monotonic()

    a = CountApp(bootstrap, app, src, dst, tmp_path / "state-a", tmp_path / "streams-a.log")
    b = None
    try:
        a.wait_running()
        # 50 updates of every key's count, in 5 rounds of writes.
        for _ in range(5):
            produce_keys(bootstrap, src, 10)
        wait_until("the first instance counted 50 records of every key",
                   lambda: {k: c[-1] for k, c in latest_counts(bootstrap, dst).items()} == {k: 50 for k in keys},
                   60, a.context)
        conf = topic_configs(bootstrap, changelog)
        assert conf["cleanup.policy"] == "compact", conf
        assert conf["min.cleanable.dirty.ratio"] == EAGER["min.cleanable.dirty.ratio"], conf

        # The changelog had 50 records per key; the broker compacts it to the latest one.
        def compacted():
            recs = read_all(bootstrap, changelog)
            per_key = {k.decode(): int.from_bytes(v[-8:], "big") for _, _, k, v in recs}
            return recs if len(recs) == KEYS and per_key == {k: 50 for k in keys} else None

        recs = wait_until("the changelog is compacted to one record per key (count 50)", compacted, 60,
                          lambda: f" (changelog holds {len(read_all(bootstrap, changelog))} records)")
        assert compactions(admin_port) >= 1
        on_partition = {p: sum(1 for r in recs if r[0] == p) for p in range(STREAMS_PARTITIONS)}
        high = sum(high_watermark(bootstrap, changelog, p) for p in range(STREAMS_PARTITIONS))
        assert high == KEYS * 50, f"every update was written to the changelog: {high}"
        a.close()

        # A fresh instance with an empty state dir restores the store from the changelog.
        b = CountApp(bootstrap, app, src, dst, tmp_path / "state-b", tmp_path / "streams-b.log")
        b.wait_running()
        expected = {p: n for p, n in on_partition.items() if n}
        # Restoration may end after the instance reports RUNNING (Streams' state updater).
        wait_until("the fresh instance restored every changelog partition",
                   lambda: b.restored().keys() == expected.keys(), 30, b.context)
        restored = b.restored()
        assert restored == expected, \
            f"restored one record per key from the compacted changelog: {restored} vs {on_partition}"
        produce_keys(bootstrap, src, 3)
        wait_until("the second instance counted on from the restored counts to 53",
                   lambda: {k: c[-1] for k, c in latest_counts(bootstrap, dst).items()} == {k: 53 for k in keys},
                   60, b.context)
        counts = latest_counts(bootstrap, dst)
        for k, c in counts.items():
            assert c == list(range(1, 54)), f"{k}: counts never reset or repeat: {c}"
        measurement(f"STREAMS count restored from a compacted changelog ({KEYS * 50} updates -> "
                    f"{sum(restored.values())} records restored), test took {time.monotonic() - t0:.1f} s")
    finally:
        for inst in (a, b):
            if inst is not None:
                inst.kill()


# ---------------------------------------------------------------- Kafka Connect

CONNECTOR = "file-source"


class ConnectWorker(JavaProcess):
    """A distributed Kafka Connect worker (org.apache.kafka.connect.cli.ConnectDistributed)."""

    def __init__(self, libs: Path, props: Path, log4j: Path, port: int, log: Path):
        if not JAVA_JAR.is_file():
            pytest.fail(f"{JAVA_JAR} missing: run scripts/install-test-deps.sh", pytrace=False)
        super().__init__([need_tool("java"), *JVM_FLAGS, f"-Dlog4j2.configurationFile={log4j}",
                          "-cp", f"{libs}/*", "org.apache.kafka.connect.cli.ConnectDistributed", str(props)], log)
        self.url = f"http://127.0.0.1:{port}"

    def rest(self, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def wait_ready(self, timeout: float = 90) -> None:
        def ready():
            if self.proc.poll() is not None:
                pytest.fail(f"the Connect worker exited with {self.proc.returncode}{self.context()}", pytrace=False)
            try:
                return self.rest("GET", "/connectors")[0] == 200
            except OSError:
                return False
        wait_until("the Connect worker answers on its REST API", ready, timeout, self.context)

    def wait_task_running(self, timeout: float = 60) -> None:
        def running():
            code, body = self.rest("GET", f"/connectors/{CONNECTOR}/status")
            if code != 200:
                return None
            tasks = body["tasks"]
            if any(t["state"] == "FAILED" for t in tasks) or body["connector"]["state"] == "FAILED":
                pytest.fail(f"connector failed: {body}", pytrace=False)
            return body["connector"]["state"] == "RUNNING" and tasks and all(t["state"] == "RUNNING" for t in tasks)
        wait_until("the connector and its task are RUNNING", running, timeout, self.context)


def write_worker_config(tmp: Path, bootstrap: str, port: int, run: str) -> tuple[Path, Path, dict[str, str]]:
    plugins = tmp / "plugins"
    plugins.mkdir()
    (plugins / JAVA_JAR.name).symlink_to(JAVA_JAR)
    topics = {"config": f"connect-configs-{run}", "offset": f"connect-offsets-{run}", "status": f"connect-status-{run}"}
    props = {
        "bootstrap.servers": bootstrap,
        "group.id": f"connect-{run}",
        "listeners": f"http://127.0.0.1:{port}",
        "rest.advertised.host.name": "127.0.0.1",
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "value.converter": "org.apache.kafka.connect.storage.StringConverter",
        # Plugins from their ServiceLoader manifests, without scanning the classpath; the
        # connector from the Java client jar, isolated in its own class loader.
        "plugin.discovery": "service_load",
        "plugin.path": str(plugins),
        "offset.flush.interval.ms": "300",
        # A replacement worker gets the dead one's work at once (not after 5 minutes).
        "scheduled.rebalance.max.delay.ms": "0",
        "session.timeout.ms": "6000",
        "heartbeat.interval.ms": "1000",
        "offset.storage.partitions": "5",
        "status.storage.partitions": "2",
    }
    for kind, topic in topics.items():
        props[f"{kind}.storage.topic"] = topic
        props[f"{kind}.storage.replication.factor"] = "1"
        # KIP-605: further configs of the internal topics Connect creates.
        for k, v in EAGER.items():
            props[f"{kind}.storage.{k}"] = v
    path = tmp / "worker.properties"
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    log4j = tmp / "log4j2.properties"
    log4j.write_text(
        "status = warn\n"
        "appender.out.type = Console\nappender.out.name = OUT\n"
        "appender.out.layout.type = PatternLayout\nappender.out.layout.pattern = [%d] %p %m (%c)%n\n"
        "rootLogger.level = INFO\nrootLogger.appenderRef.out.ref = OUT\n"
        "logger.reflections.name = org.reflections\nlogger.reflections.level = ERROR\n")
    return path, log4j, topics


def append_lines(path: Path, start: int, n: int) -> int:
    with open(path, "a") as f:
        for i in range(start, start + n):
            f.write(f"line {i:05d}\n")
    return start + n


def copied(bootstrap: str, topic: str) -> list[str]:
    return [v.decode() for _, _, _, v in sorted(read_all(bootstrap, topic), key=lambda r: r[1])]


def keyed(bootstrap: str, topic: str, key_part: str) -> list[tuple[int, int, bytes, bytes | None]]:
    return [r for r in read_all(bootstrap, topic) if r[2] is not None and key_part.encode() in r[2]]


def test_connect_resumes_from_compacted_offsets_and_config_topics(compacting, kafka_libs, tmp_path):  # noqa: F811
    broker, admin_port = compacting
    bootstrap = broker.bootstrap
    run = uuid.uuid4().hex[:8]
    port = free_port()
    props, log4j, topics = write_worker_config(tmp_path, bootstrap, port, run)
    data_topic = f"file-lines-{run}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(data_topic, 1, 1)])[data_topic].result(30)
    source = tmp_path / "source.txt"
    source.write_text("")
    t0 = time.monotonic()

    w1 = ConnectWorker(kafka_libs, props, log4j, port, tmp_path / "worker-1.log")
    w2 = None
    try:
        w1.wait_ready()
        started = time.monotonic() - t0
        for kind, topic in topics.items():
            conf = topic_configs(bootstrap, topic)
            assert conf["cleanup.policy"] == "compact", (kind, conf)
            assert conf["min.cleanable.dirty.ratio"] == EAGER["min.cleanable.dirty.ratio"], (kind, conf)

        config = {"connector.class": "io.inkless.clients.LineSourceConnector",
                  "tasks.max": "1", "file": str(source), "topic": data_topic, "label": "first"}
        code, body = w1.rest("PUT", f"/connectors/{CONNECTOR}/config", config)
        assert code == 201, (code, body)
        w1.wait_task_running()
        # Lines in 5 chunks, each copied and its offset flushed before the next: the offsets
        # topic gets several records of the connector's one key.
        lines = 0
        for _ in range(5):
            lines = append_lines(source, lines, 100)
            n = lines
            wait_until(f"{n} lines are copied", lambda: len(copied(bootstrap, data_topic)) >= n, 30, w1.context)
            time.sleep(0.5)

        # A new config (same file, same topic): the config topic's records of the connector,
        # its task and their commit are superseded.
        config2 = {**config, "label": "second"}
        code, body = w1.rest("PUT", f"/connectors/{CONNECTOR}/config", config2)
        assert code == 200, (code, body)
        def reconfigured():
            code, tasks = w1.rest("GET", f"/connectors/{CONNECTOR}/tasks")
            return code == 200 and tasks and tasks[0]["config"].get("label") == "second"
        wait_until("the task has the new config", reconfigured, 30, w1.context)
        w1.wait_task_running()
        lines = append_lines(source, lines, 100)
        n = lines
        wait_until(f"{n} lines are copied", lambda: len(copied(bootstrap, data_topic)) >= n, 30, w1.context)
        size = source.stat().st_size

        def offset_flushed():
            recs = keyed(bootstrap, topics["offset"], CONNECTOR)
            return recs and json.loads(recs[-1][3])["position"] == size
        wait_until("the source offset of the last line is stored", offset_flushed, 30, w1.context)

        # The broker compacts the offsets topic to the latest offset, and the config topic to
        # the latest records of the connector and its task.
        def offsets_compacted():
            recs = keyed(bootstrap, topics["offset"], CONNECTOR)
            return len(recs) == 1 and json.loads(recs[0][3])["position"] == size
        wait_until("the offsets topic is compacted to one record of the connector", offsets_compacted, 60,
                   lambda: f" (records: {len(keyed(bootstrap, topics['offset'], CONNECTOR))})")
        part = keyed(bootstrap, topics["offset"], CONNECTOR)[0][0]
        flushes = high_watermark(bootstrap, topics["offset"], part)
        assert flushes >= 3, f"the offset was stored several times: {flushes} records"

        def configs_compacted():
            recs = read_all(bootstrap, topics["config"])
            names = [r[2].decode() for r in recs if r[2] is not None]
            return names if len(names) == len(set(names)) else None
        names = wait_until("the config topic is compacted to one record per key", configs_compacted, 60)
        assert f"connector-{CONNECTOR}" in names, names
        high = high_watermark(bootstrap, topics["config"], 0)
        assert high > len(names), f"the config topic had superseded records: {high} offsets, {names}"
        assert compactions(admin_port) >= 2

        w1.kill()
        killed = time.monotonic()
        lines = append_lines(source, lines, 150)

        w2 = ConnectWorker(kafka_libs, props, log4j, port, tmp_path / "worker-2.log")
        w2.wait_ready()
        code, body = w2.rest("GET", f"/connectors/{CONNECTOR}/config")
        assert code == 200 and {k: body[k] for k in config2} == config2, (code, body)
        w2.wait_task_running()
        n = lines
        wait_until(f"all {n} lines are copied", lambda: len(copied(bootstrap, data_topic)) >= n, 60, w2.context)
        resumed = time.monotonic() - killed
        time.sleep(2)  # anything copied twice would show now
        got = copied(bootstrap, data_topic)
        assert got == [f"line {i:05d}" for i in range(n)], \
            f"every line once, in order: {len(got)} records for {n} lines"
        measurement(f"CONNECT worker ready in {started:.1f} s; offsets partition compacted from {flushes} "
                    f"records to 1, config topic from {high} to {len(names)}; the replacement worker copied the "
                    f"lines appended while down {resumed:.1f} s after kill -9; test took {time.monotonic() - t0:.1f} s")
    finally:
        for w in (w1, w2):
            if w is not None:
                w.kill()
