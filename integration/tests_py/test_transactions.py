"""Kafka transactions end to end with real clients (ADR 0018): Java's transactional producer
(commit, abort, a fenced zombie, consume-transform-produce with sendOffsetsToTransaction),
confluent-kafka (librdkafka) and franz-go transactional producers, read_committed consumers,
and a producer that disappears mid-transaction being aborted after its timeout.

The broker of this module aborts timed-out transactions every 500 ms
(`transactions.abort_check_interval_ms`), so the timeout test is fast.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections import defaultdict

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import EXTERNAL, JAVA_JAR, ClientRunner, LocalBroker, free_port, need_tool, stop_and_check

JVM = ["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]


@pytest.fixture(scope="module")
def txn_broker(tmp_path_factory):
    if EXTERNAL:
        yield None
        return
    root = tmp_path_factory.mktemp("txn-broker")
    b = LocalBroker(root / "data", free_port(), root, name="txn-broker")
    b.extra_env["INKLESS__TRANSACTIONS__ABORT_CHECK_INTERVAL_MS"] = "500"
    b.start()
    yield b
    stop_and_check(b)


@pytest.fixture(scope="module")
def boot(txn_broker) -> str:
    return EXTERNAL if EXTERNAL else txn_broker.bootstrap


@pytest.fixture(scope="module")
def clients(boot, txn_broker, tmp_path_factory) -> ClientRunner:
    """Client programs against this module's broker."""
    return ClientRunner(boot, txn_broker, tmp_path_factory.mktemp("txn-clients"))


def create(boot: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": boot})
    for f in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        f.result(30)


def java(clients, *args: str, timeout: float = 120) -> list[str]:
    if not JAVA_JAR.is_file():
        pytest.fail(f"{JAVA_JAR} missing: run scripts/install-test-deps.sh", pytrace=False)
    argv = [need_tool("java"), *JVM, "-cp", str(JAVA_JAR), "io.inkless.clients.TxnClient", *args]
    r = clients.run(argv, timeout=timeout, what=f"TxnClient {args[0]}")
    clients.check(r, f"TxnClient {args[0]}")
    return r.stdout.splitlines()


def records(lines: list[str]) -> dict[int, list[tuple[int, str]]]:
    """REC lines of TxnClient consume, as partition -> [(offset, value)]."""
    out: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for line in lines:
        if line.startswith("REC "):
            _, p, o, v = line.split(" ", 3)
            out[int(p)].append((int(o), v))
    return out


def values(recs: dict[int, list[tuple[int, str]]]) -> list[str]:
    return [v for p in sorted(recs) for _, v in recs[p]]


def test_java_commit_and_abort_read_committed(clients, boot, topic):
    """Six transactions of 30 records over 3 partitions, every third one aborted: a
    read_committed consumer sees exactly the committed records, in production order per
    partition; a read_uncommitted one also sees the aborted ones (they are in the log)."""
    create(boot, topic, 3)
    out = java(clients, "produce", boot, topic, "java-txn", "6", "30")
    committed = [line.split(" ", 1)[1] for line in out if line.startswith("COMMITTED ")]
    assert len(committed) == 4 * 30 and "DONE" in out
    rc = records(java(clients, "consume", boot, topic, "read_committed"))
    assert sorted(values(rc)) == sorted(committed)
    for p, recs in rc.items():
        expected = [v for v in committed if int(v.split("-")[1]) % 3 == p]
        assert [v for _, v in recs] == expected, f"partition {p} out of order"
    ru = records(java(clients, "consume", boot, topic, "read_uncommitted"))
    aborted = [v for v in values(ru) if v not in set(committed)]
    assert len(aborted) == 2 * 30, "the aborted records are in the log, filtered by the consumer"


def test_java_zombie_is_fenced(clients, boot, topic):
    """A second producer with the same transactional.id fences the first: the zombie's
    commit fails, its records are aborted, the new producer's commit is visible."""
    create(boot, topic, 1)
    out = java(clients, "fence", boot, topic, "java-zombie")
    assert any(line.startswith("FENCED ") for line in out), out
    assert "FRESH COMMITTED" in out
    assert values(records(java(clients, "consume", boot, topic, "read_committed"))) == ["fresh"]


def test_consume_transform_produce(clients, boot, topic):
    """Java reads `in` in a group and writes upper-cased records to `out` in transactions
    with sendOffsetsToTransaction: `out` holds each input once and the group's committed
    offsets are the input's end."""
    src, dst, group = f"{topic}-in", f"{topic}-out", f"{topic}-g"
    create(boot, src, 2)
    create(boot, dst, 2)
    p = Producer({"bootstrap.servers": boot})
    for i in range(60):
        p.produce(src, key=f"k{i}", value=f"v{i}", partition=i % 2)
    assert p.flush(30) == 0
    out = java(clients, "ctp", boot, src, dst, group, "java-ctp", "60")
    assert "PROCESSED 60" in out
    got = values(records(java(clients, "consume", boot, dst, "read_committed")))
    assert sorted(got) == sorted(f"V{i}" for i in range(60))
    c = Consumer({"bootstrap.servers": boot, "group.id": group})
    committed = c.committed([TopicPartition(src, 0), TopicPartition(src, 1)], timeout=30)
    c.close()
    assert [tp.offset for tp in committed] == [30, 30]


def lso_and_hwm(boot: str, topic: str) -> tuple[int, int]:
    rc = Consumer({"bootstrap.servers": boot, "group.id": "lso", "isolation.level": "read_committed"})
    ru = Consumer({"bootstrap.servers": boot, "group.id": "hwm", "isolation.level": "read_uncommitted"})
    try:
        lso = rc.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
        hwm = ru.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
        return lso, hwm
    finally:
        rc.close()
        ru.close()


def test_abandoned_transaction_is_aborted_after_its_timeout(clients, boot, topic):
    """A producer that halts mid-transaction holds the last stable offset back until its
    transaction.timeout.ms passes; then the coordinator aborts it and the LSO moves on."""
    create(boot, topic, 1)
    p = Producer({"bootstrap.servers": boot})
    p.produce(topic, value="before", partition=0)
    assert p.flush(30) == 0
    assert "HUNG" in java(clients, "hang", boot, topic, "java-hang", "3000")
    lso, hwm = lso_and_hwm(boot, topic)
    assert (lso, hwm) == (1, 2), "the open transaction holds the LSO at its first offset"
    started = time.monotonic()
    while lso_and_hwm(boot, topic)[0] < 3:
        assert time.monotonic() - started < 30, "the timed-out transaction was not aborted"
        time.sleep(0.5)
    print(f"abandoned transaction aborted {time.monotonic() - started:.1f}s after the check")
    assert values(records(java(clients, "consume", boot, topic, "read_committed"))) == ["before"]


def test_confluent_kafka_transactions(boot, topic):
    """librdkafka: a committed and an aborted transaction; its read_committed consumer (the
    default isolation of librdkafka) reads the committed records only."""
    create(boot, topic, 2)
    p = Producer({"bootstrap.servers": boot, "transactional.id": "rdkafka-txn"})
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(20):
        p.produce(topic, key=f"k{i}", value=f"c{i}", partition=i % 2)
    p.commit_transaction(30)
    p.begin_transaction()
    for i in range(10):
        p.produce(topic, key=f"k{i}", value=f"a{i}", partition=i % 2)
    p.flush(30)
    p.abort_transaction(30)
    p.begin_transaction()
    p.produce(topic, value="last", partition=0)
    p.commit_transaction(30)
    c = Consumer({"bootstrap.servers": boot, "group.id": f"{topic}-g", "auto.offset.reset": "earliest",
                  "enable.partition.eof": True})
    c.assign([TopicPartition(topic, 0, 0), TopicPartition(topic, 1, 0)])
    got, eof = [], set()
    deadline = time.monotonic() + 30
    while len(eof) < 2 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == -191:  # _PARTITION_EOF
                eof.add(m.partition())
                continue
            raise KafkaException(m.error())
        got.append(m.value().decode())
    c.close()
    assert sorted(got) == sorted([f"c{i}" for i in range(20)] + ["last"])


def test_a_topic_deleted_mid_transaction_does_not_hold_the_producer(boot, topic):
    """A transaction over two topics, one deleted before its markers are written: the
    commit completes on the topic that is left, and the producer's next transaction runs
    (markers for a partition that no longer exists are not waited for)."""
    doomed, kept = f"{topic}-doomed", f"{topic}-kept"
    create(boot, doomed, 1)
    create(boot, kept, 1)
    p = Producer({"bootstrap.servers": boot, "transactional.id": f"{topic}-txn"})
    p.init_transactions(30)
    p.begin_transaction()
    p.produce(doomed, value="gone", partition=0)
    p.produce(kept, value="first", partition=0)
    p.flush(30)
    admin = AdminClient({"bootstrap.servers": boot})
    admin.delete_topics([doomed])[doomed].result(30)
    p.commit_transaction(30)
    p.begin_transaction()
    p.produce(kept, value="second", partition=0)
    p.commit_transaction(60)
    c = Consumer({"bootstrap.servers": boot, "group.id": f"{topic}-g", "auto.offset.reset": "earliest",
                  "isolation.level": "read_committed"})
    c.assign([TopicPartition(kept, 0, 0)])
    got: list[str] = []
    deadline = time.monotonic() + 30
    while len(got) < 2 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value().decode())
    c.close()
    assert got == ["first", "second"]


def test_bad_transactional_requests_get_kafka_errors(boot, topic):
    """A timeout above transaction.max.timeout.ms is refused (INVALID_TRANSACTION_TIMEOUT)."""
    create(boot, topic, 1)
    p = Producer({"bootstrap.servers": boot, "transactional.id": "too-long",
                  "transaction.timeout.ms": 1_000_000})
    with pytest.raises(KafkaException) as e:
        p.init_transactions(20)
    assert "INVALID_TRANSACTION_TIMEOUT" in str(e.value) or "timeout" in str(e.value).lower(), e.value


def test_franz_go_transactions(clients, boot, topic):
    """franz-go: commit 20, abort 10 (flushed first), commit 5; its read_committed consumer
    reads exactly the 25 committed records, in order, and nothing after them."""
    create(boot, topic, 1)
    r = clients.run([*clients.go_cmd(), "txn", boot, topic, "franz-txn"], what="franz-go txn")
    clients.check(r, "franz-go txn")
    got = [line.split(" ", 2)[2] for line in r.stdout.splitlines() if line.startswith("REC ")]
    assert got == [f"g0-{i}" for i in range(20)] + [f"g2-{i}" for i in range(5)]


class CountApp:
    """One StreamsCountApp (integration/clients/java) with exactly_once_v2."""

    def __init__(self, boot: str, app: str, src: str, dst: str, state_dir, log_path):
        argv = [need_tool("java"), *JVM, "-cp", str(JAVA_JAR), "io.inkless.clients.StreamsCountApp",
                boot, app, src, dst, str(state_dir), "processing.guarantee=exactly_once_v2",
                "commit.interval.ms=200"]
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def wait_running(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not any(ln == "STATE RUNNING" for ln in self.lines):
            if self.proc.poll() is not None or any(ln.startswith("ERROR") for ln in self.lines):
                pytest.fail(f"streams instance failed: {self.lines[-20:]}", pytrace=False)
            assert time.monotonic() < deadline, f"streams instance not RUNNING: {self.lines[-20:]}"
            time.sleep(0.2)

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)
        self.log.close()


def counts_by_key(boot: str, topic: str, partitions: int) -> dict[str, list[int]]:
    """Every count of OUT per key, read_committed, in offset order."""
    c = Consumer({"bootstrap.servers": boot, "group.id": f"{topic}-reader", "enable.partition.eof": True,
                  "isolation.level": "read_committed"})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out: dict[str, list[int]] = defaultdict(list)
    eof: set[int] = set()
    deadline = time.monotonic() + 30
    while len(eof) < partitions and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == -191:
                eof.add(m.partition())
            continue
        out[m.key().decode()].append(int(m.value().decode()))
    c.close()
    return out


def wait_counts(boot: str, topic: str, keys: int, final: int, timeout: float = 120) -> dict[str, list[int]]:
    deadline = time.monotonic() + timeout
    while True:
        got = counts_by_key(boot, topic, 2)
        if len(got) == keys and all(v and v[-1] == final for v in got.values()):
            return got
        assert time.monotonic() < deadline, f"counts did not reach {final}: {dict(got)}"
        time.sleep(1)


def test_kafka_streams_exactly_once_v2_survives_kill_9(boot, topic, tmp_path):
    """Kafka Streams with processing.guarantee=exactly_once_v2 counts records per key; its
    instance is killed with SIGKILL and a new one (empty state dir: it restores the store
    from the changelog, read_committed) goes on. Every key's counts in OUT, read
    committed, are exactly 1, 2, ..., N: nothing counted twice, nothing lost."""
    src, dst, app = f"{topic}-in", f"{topic}-out", f"{topic}-app"
    create(boot, src, 2)
    create(boot, dst, 2)
    keys, rounds = 10, 4
    p = Producer({"bootstrap.servers": boot})

    def produce_round():
        for k in range(keys):
            p.produce(src, key=f"key{k}", value="x")
        assert p.flush(30) == 0

    first = CountApp(boot, app, src, dst, tmp_path / "s1", tmp_path / "streams-1.log")
    first.wait_running()
    for _ in range(rounds // 2):
        produce_round()
    wait_counts(boot, dst, keys, rounds // 2)
    produce_round()
    time.sleep(0.3)
    first.kill9()
    second = CountApp(boot, app, src, dst, tmp_path / "s2", tmp_path / "streams-2.log")
    try:
        second.wait_running()
        produce_round()
        got = wait_counts(boot, dst, keys, rounds)
    finally:
        if second.proc.poll() is None:
            second.kill9()
    for k, counts in got.items():
        assert counts == list(range(1, rounds + 1)), f"{k}: {counts}"


def test_kill_9_after_the_decision_completes_the_markers_on_restart(tmp_path):
    """The broker dies (kill -9) right after EndTxn answered: the commit decision is
    durable (PrepareCommit) but the markers wait in a produce buffer flushed every 3 s, so
    they are lost with the process. The restarted broker's coordinator finds the Prepare
    state and writes them: the records become visible to read_committed, all of them."""
    if EXTERNAL:
        pytest.skip("kills its own broker")
    b = LocalBroker(tmp_path / "data", free_port(), tmp_path, name="txn-crash")
    b.extra_env["INKLESS__PRODUCE__FLUSH_INTERVAL_MS"] = "3000"
    b.start()
    try:
        boot = b.bootstrap
        topic = "crash-txn"
        create(boot, topic, 1)
        p = Producer({"bootstrap.servers": boot, "transactional.id": "crash-txn"})
        p.init_transactions(30)
        p.begin_transaction()
        for i in range(10):
            p.produce(topic, value=f"v{i}", partition=0)
        assert p.flush(30) == 0
        p.commit_transaction(30)
        lso, hwm = lso_and_hwm(boot, topic)
        b.kill9()
        assert (lso, hwm) == (0, 10), "the markers were still in the produce buffer"
        b.start()
        started = time.monotonic()
        while lso_and_hwm(boot, topic)[0] < 11:
            assert time.monotonic() - started < 30, "the restarted coordinator did not write the markers"
            time.sleep(0.3)
        c = Consumer({"bootstrap.servers": boot, "group.id": "crash", "enable.partition.eof": True})
        c.assign([TopicPartition(topic, 0, 0)])
        got = []
        while True:
            m = c.poll(10)
            assert m is not None, "no end of partition"
            if m.error():
                break
            got.append(m.value().decode())
        c.close()
        assert got == [f"v{i}" for i in range(10)]
    finally:
        stop_and_check(b)
