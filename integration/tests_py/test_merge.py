"""Merging of small objects against a real S3 API server (moto).

- A tailing consumer and a catching-up consumer read exactly the acknowledged records, in
  order, while the merger rewrites the produce objects (`wal/`) into per-partition objects
  (`seg/`); the produce objects then leave the bucket, and batch rows become fewer.
- `kill -9` of the broker again and again while it merges: every acknowledged record still
  reads back, identical and in order; no referenced object is missing.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import EXTERNAL
from lifecycle import metric, s3_broker, wait_until
from s3server import MotoServer

pytestmark = pytest.mark.skipif(
    bool(EXTERNAL), reason="INKLESS_TEST_BOOTSTRAP is set: these tests configure their own broker"
)

BUCKET = "inkless-merge"
PREFIX = "merge"
PARTITIONS = 4
MERGE_ENV = {
    "INKLESS__MERGE__INTERVAL_MS": "300",
    "INKLESS__MERGE__MIN_AGE_MS": "1000",
    "INKLESS__MERGE__MAX_DELAY_MS": "1500",
    "INKLESS__MERGE__TARGET_OBJECT_BYTES": "262144",
    "INKLESS__MERGE__MAX_ROW_BYTES": "32768",
    "INKLESS__STORAGE__COLLECT_INTERVAL_MS": "300",
    "INKLESS__STORAGE__OBJECT_DELETE_DELAY_MS": "1000",
    "INKLESS__STORAGE__ORPHAN_SCAN_INTERVAL_MS": "2000",
    "INKLESS__STORAGE__ORPHAN_MIN_AGE_MS": "30000",
}


@pytest.fixture
def merging(tmp_path):
    with s3_broker(tmp_path, BUCKET, PREFIX, MERGE_ENV) as running:
        yield running


def create(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)


class Producing(threading.Thread):
    """Produces `p-i` records round robin over the partitions until stopped; remembers what
    was acknowledged, per partition, in order."""

    def __init__(self, bootstrap: str, topic: str):
        super().__init__(daemon=True)
        self.bootstrap, self.topic = bootstrap, topic
        self.acked: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
        self.stop = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        prod = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True,
                         "linger.ms": 2, "message.timeout.ms": 60000})

        def done(err, msg):
            if err is None:
                self.acked[msg.partition()].append(msg.value().decode().rstrip("."))
            else:
                self.errors.append(str(err))

        i = 0
        while not self.stop.is_set():
            p = i % PARTITIONS
            prod.produce(self.topic, value=f"{p}-{i}".ljust(300, ".").encode(), key=b"k", partition=p,
                         on_delivery=done)
            prod.poll(0)
            i += 1
            if i % 200 == 0:
                time.sleep(0.02)
        prod.flush(60)


def read_all(bootstrap: str, topic: str, want: dict[int, list[str]], timeout: float = 60) -> dict[int, list[str]]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    got: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(len(got[p]) < len(want[p]) for p in want):
        m = c.poll(0.2)
        if m is not None and not m.error():
            got[m.partition()].append(m.value().decode().rstrip("."))
    c.close()
    return got


def keys(moto: MotoServer, kind: str) -> set[str]:
    return set(moto.list_keys(BUCKET, f"{PREFIX}/{kind}/"))


def test_consumers_read_correct_data_while_the_merger_runs(merging):
    broker, moto, admin_port = merging
    topic = f"merged-{uuid.uuid4().hex[:8]}"
    create(broker.bootstrap, topic)
    tail = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "tail", "enable.auto.commit": False})
    tail.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    tailed: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    producing = Producing(broker.bootstrap, topic)
    producing.start()
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:
        m = tail.poll(0.1)
        if m is not None and not m.error():
            tailed[m.partition()].append(m.value().decode().rstrip("."))
    producing.stop.set()
    producing.join(90)
    acked = producing.acked
    assert not producing.errors, producing.errors[:5]
    total = sum(len(v) for v in acked.values())
    assert total > 1000
    while any(len(tailed[p]) < len(acked[p]) for p in acked):
        m = tail.poll(1.0)
        if m is None:
            break
        if not m.error():
            tailed[m.partition()].append(m.value().decode().rstrip("."))
    tail.close()
    assert tailed == acked, "the tailing consumer read exactly the acknowledged records, in order"
    assert metric(admin_port, "inkless_merger_merges_total") > 0, "merges ran while producing"

    # Everything gets merged: the produce objects leave the bucket.
    wait_until("every produce object is merged and deleted", lambda: not keys(moto, "wal"))
    assert keys(moto, "seg"), "merged objects hold the data"
    rows = metric(admin_port, "inkless_merger_replaced_rows_total")
    merges = metric(admin_port, "inkless_merger_merges_total")
    assert rows > merges, f"{rows} rows merged by {merges} merges"
    assert read_all(broker.bootstrap, topic, acked) == acked, "a catching-up consumer reads it all"


def test_kill_9_during_merges_loses_nothing(merging):
    broker, moto, _ = merging
    topic = f"killed-{uuid.uuid4().hex[:8]}"
    create(broker.bootstrap, topic)
    acked: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    for round_ in range(4):
        producing = Producing(broker.bootstrap, topic)
        producing.start()
        time.sleep(3.5)  # past min_age: the merger is rewriting by now
        producing.stop.set()
        producing.join(90)
        for p in range(PARTITIONS):
            acked[p] += producing.acked[p]
        time.sleep(0.2 * round_)
        broker.kill9()
        broker.start()
    got = read_all(broker.bootstrap, topic, acked)
    assert got == acked, "every acknowledged record reads back, in order, once"
    wait_until("every produce object is merged after the crashes", lambda: not keys(moto, "wal"))
    assert read_all(broker.bootstrap, topic, acked) == acked


def test_list_offsets_by_timestamp_stays_exact_after_merging(merging):
    """Merged rows hold many batches: a timestamp lookup still finds the exact record."""
    broker, moto, admin_port = merging
    topic = f"times-{uuid.uuid4().hex[:8]}"
    create(broker.bootstrap, topic)
    base = int(time.time() * 1000) - 60_000
    prod = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0, "batch.num.messages": 7,
                     "compression.type": "none"})
    for i in range(300):
        prod.produce(topic, value=f"v{i}".encode(), key=b"k", partition=0, timestamp=base + i)
        if i % 50 == 49:
            prod.flush(30)
    assert prod.flush(30) == 0
    wait_until("the topic's produce objects are merged", lambda: not keys(moto, "wal"))
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "times"})
    try:
        for i in (0, 1, 6, 7, 150, 299):
            found = c.offsets_for_times([TopicPartition(topic, 0, base + i)], timeout=10)[0]
            assert found.offset == i, f"timestamp {base + i}: offset {found.offset}, want {i}"
        after = c.offsets_for_times([TopicPartition(topic, 0, base + 300)], timeout=10)[0]
        assert after.offset in (-1, 300), after
    finally:
        c.close()
