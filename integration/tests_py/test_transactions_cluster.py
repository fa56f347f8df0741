"""Transactions in a 3-node cluster (PostgreSQL + an S3 server): `kill -9` of the node that
coordinates a transaction, and of a node that owns one of its partitions, in the middle of
the transaction, with librdkafka (the older transaction protocol) and Java (transaction
version 2, KIP-890). The producer finds the new coordinator, which resumes the
transaction from the metadata store; the markers reach the partitions' new owners, which
rebuilt their open transactions from the store. A read_committed consumer then reads every
committed record exactly once and no aborted one, and every partition's last stable offset
reaches its high watermark (no transaction left hanging).
"""

from __future__ import annotations

import socket
import struct
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cluster import Cluster
from conftest import EXTERNAL, JAVA_JAR, need_tool
from pgserver import PgServer
from s3server import MotoServer

pytestmark = pytest.mark.skipif(bool(EXTERNAL), reason="INKLESS_TEST_BOOTSTRAP is set: this test runs its own cluster")

BUCKET = "inkless-txn-cluster"
PARTITIONS = 3


@pytest.fixture
def cluster(tmp_path):
    pg = PgServer()
    pg.start()
    moto = MotoServer(tmp_path / "moto.log")
    moto.start()
    moto.create_bucket(BUCKET)
    db = f"t_{uuid.uuid4().hex[:10]}"
    pg.create_database(db)
    c = Cluster(tmp_path, pg.url(db), moto.endpoint, BUCKET)
    c.s3["INKLESS__TRANSACTIONS__ABORT_CHECK_INTERVAL_MS"] = "500"
    for node_id, az in {1: "az-a", 2: "az-b", 3: "az-c"}.items():
        c.add(node_id, az).start()
    c.wait_converged(expect_nodes=3)
    try:
        yield c
    finally:
        c.stop_all()
        moto.stop()
        pg.stop()


def _str(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def txn_coordinator(bootstrap: str, txn_id: str) -> int:
    """FindCoordinator v1 (key type 1, transaction) sent by hand: the coordinator's node id."""
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    body = struct.pack(">hhi", 10, 1, 7) + _str("txn-test") + _str(txn_id) + struct.pack(">b", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
        resp = s.recv(size, socket.MSG_WAITALL)
    _corr, _throttle, error = struct.unpack(">iih", resp[:10])
    assert error == 0, f"FindCoordinator error {error}"
    msg_len = struct.unpack(">h", resp[10:12])[0]
    at = 12 + max(msg_len, 0)
    return struct.unpack(">i", resp[at:at + 4])[0]


def partition_owner(c: Cluster, topic: str, partition: int) -> int:
    for n in c.live():
        for a in n.admin("/actors"):
            if a["kind"] == "partition" and a.get("topic") == topic and a["name"].endswith(f"/{partition}"):
                return n.node_id
    raise AssertionError(f"no live node runs {topic}/{partition}")


def read_committed(bootstrap: str, topic: str) -> list[str]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-r", "enable.partition.eof": True,
                  "isolation.level": "read_committed"})
    c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    got, eof = [], set()
    deadline = time.monotonic() + 60
    while len(eof) < PARTITIONS and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == -191:
                eof.add(m.partition())
            continue
        got.append(m.value().decode())
    c.close()
    assert len(eof) == PARTITIONS, "the consumer did not reach the end of every partition"
    return got


def wait_stable(bootstrap: str, topic: str, timeout: float = 60) -> None:
    """Every partition's last stable offset reaches its high watermark."""
    rc = Consumer({"bootstrap.servers": bootstrap, "group.id": "s", "isolation.level": "read_committed"})
    ru = Consumer({"bootstrap.servers": bootstrap, "group.id": "h", "isolation.level": "read_uncommitted"})
    deadline = time.monotonic() + timeout
    try:
        for p in range(PARTITIONS):
            while True:
                try:
                    lso = rc.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                    hwm = ru.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                    if lso == hwm:
                        break
                except Exception:  # a partition moving answers NOT_LEADER for a moment
                    pass
                assert time.monotonic() < deadline, f"partition {p}: LSO stays below the HWM"
                time.sleep(0.5)
    finally:
        rc.close()
        ru.close()


def open_transaction(bootstrap: str, txn_id: str, topic: str, tag: str) -> tuple[Producer, list[str]]:
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, "transaction.timeout.ms": 60000,
                  "socket.timeout.ms": 10000})
    p.init_transactions(60)
    p.begin_transaction()
    values = [f"{tag}-{i}" for i in range(30)]
    for i, v in enumerate(values):
        p.produce(topic, value=v, partition=i % PARTITIONS)
    assert p.flush(60) == 0
    return p, values


def test_kill_9_of_the_coordinator_and_of_a_partition_owner_mid_transaction(cluster):
    c = cluster
    topic = f"txn-cluster-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    for f in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        f.result(30)
    expected: list[str] = []

    # 1. The coordinator dies between the records and the commit.
    p, values = open_transaction(c.bootstrap, "tx-coord", topic, "a")
    victim = txn_coordinator(c.bootstrap, "tx-coord")
    c.nodes[victim].kill9()
    p.commit_transaction(60)
    expected += values
    survivor = txn_coordinator(c.bootstrap, "tx-coord")
    assert survivor != victim
    c.nodes[victim].start()
    c.wait_converged(expect_nodes=3)

    # 2. A node owning one of the transaction's partitions (not its coordinator) dies. The
    # transactional id is picked so that its coordinator is not the only owner.
    owners = {partition_owner(c, topic, q) for q in range(PARTITIONS)}
    txn_id = next(t for t in (f"tx-owner-{i}" for i in range(100))
                  if owners - {txn_coordinator(c.bootstrap, t)})
    coordinator = txn_coordinator(c.bootstrap, txn_id)
    p2, values = open_transaction(c.bootstrap, txn_id, topic, "b")
    victim = min(owners - {coordinator})
    c.nodes[victim].kill9()
    p2.commit_transaction(60)
    expected += values

    # 3. The coordinator dies with a transaction the producer then aborts.
    p3, aborted = open_transaction(c.bootstrap, "tx-abort", topic, "c")
    victim3 = txn_coordinator(c.bootstrap, "tx-abort")
    c.nodes[victim3].kill9()
    p3.abort_transaction(60)

    wait_stable(c.bootstrap, topic)
    got = read_committed(c.bootstrap, topic)
    assert sorted(got) == sorted(expected), "every committed record once, no aborted one"
    assert not set(aborted) & set(got)


class HeldTransaction:
    """A Java producer (transaction version 2: partitions added by Produce v12, an epoch
    bump per EndTxn v5) holding a transaction open until told to commit or abort."""

    def __init__(self, bootstrap: str, topic: str, txn_id: str, tag: str, count: int):
        argv = [need_tool("java"), "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp",
                str(JAVA_JAR), "io.inkless.clients.TxnClient", "held", bootstrap, topic, txn_id, str(count), tag]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.values = [f"{tag}-{i}" for i in range(count)]
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line == "SENT", f"the Java producer did not send: {line} {self.proc.stderr.read() if line == '' else ''}"

    def end(self, what: str) -> None:
        out, err = self.proc.communicate(what + "\n", timeout=120)
        assert self.proc.returncode == 0 and f"DONE {what}" in out, f"{out}\n{err[-3000:]}"


def test_java_transaction_version_2_survives_kill_9_of_its_coordinator(cluster):
    """Java's producer runs transaction version 2; its coordinator is killed between its
    records and its commit (then, for another transaction, its abort)."""
    c = cluster
    topic = f"txn-tv2-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    for f in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        f.result(30)
    committed = HeldTransaction(c.bootstrap, topic, "java-tv2-c", "j", 30)
    victim = txn_coordinator(c.bootstrap, "java-tv2-c")
    c.nodes[victim].kill9()
    committed.end("commit")
    c.nodes[victim].start()
    c.wait_converged(expect_nodes=3)
    aborted = HeldTransaction(c.bootstrap, topic, "java-tv2-a", "x", 30)
    c.nodes[txn_coordinator(c.bootstrap, "java-tv2-a")].kill9()
    aborted.end("abort")
    wait_stable(c.bootstrap, topic)
    got = read_committed(c.bootstrap, topic)
    assert sorted(got) == sorted(committed.values)
