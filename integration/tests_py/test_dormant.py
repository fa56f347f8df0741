"""Dormant partitions (ADR 0024) with real clients: an idle partition's actor stops, the
node keeps serving the partition, and the next produce or read starts it again where it
left off, with the same leader epoch.

The broker runs with `partitions.idle_stop_ms` = 500: after a librdkafka idempotent
producer writes to every partition and the partitions go dormant (the admin gauge says so),
the test checks what clients see of a dormant partition (Metadata leader epochs, ListOffsets
through the admin client, a consumer at the end of the log) and then that the same producer
goes on (no OUT_OF_ORDER_SEQUENCE, offsets continue) and a consumer reads every record once,
in order.
"""

from __future__ import annotations

import time
import urllib.request

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from conftest import EXTERNAL, LocalBroker, free_port, stop_and_check

pytestmark = pytest.mark.skipif(
    bool(EXTERNAL), reason="INKLESS_TEST_BOOTSTRAP is set: this test configures its own broker"
)

PARTITIONS = 4
PER_ROUND = 50


def gauge(admin_port: int, name: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return next(int(float(x.split()[1])) for x in text.splitlines() if x.startswith(name + " "))


def wait_dormant(admin_port: int, at_least: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while gauge(admin_port, "inkless_partitions_dormant") < at_least:
        assert time.monotonic() < deadline, f"fewer than {at_least} partitions went dormant in {timeout} s"
        time.sleep(0.2)


def produce_round(p: Producer, topic: str, round_no: int) -> dict[int, list[int]]:
    """PER_ROUND records per partition; the acknowledged offsets by partition."""
    acked: dict[int, list[int]] = {}
    errors: list[str] = []

    def done(err, msg) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            acked.setdefault(msg.partition(), []).append(msg.offset())

    for partition in range(PARTITIONS):
        for i in range(PER_ROUND):
            p.produce(topic, f"r{round_no}-p{partition}-{i}".encode(), partition=partition, on_delivery=done)
    assert p.flush(30) == 0, "every record answered"
    assert not errors, errors[:5]
    return acked


def leader_epochs(bootstrap: str, topic: str) -> list[int]:
    """The partitions' leader epochs in Metadata (kafka-python's admin client shows them)."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        t = admin.describe_topics([topic])[0]
        by_index = {p["partition_index"]: p["leader_epoch"] for p in t["partitions"]}
        return [by_index[i] for i in range(PARTITIONS)]
    finally:
        admin.close()


def test_idle_partitions_sleep_and_wake_where_they_left_off(tmp_path):
    admin_port = free_port()
    broker = LocalBroker(tmp_path / "data", free_port(), tmp_path)
    broker.extra_env = {"INKLESS__ADMIN__LISTEN": f"127.0.0.1:{admin_port}",
                        "INKLESS__PARTITIONS__IDLE_STOP_MS": "500"}
    broker.start()
    try:
        topic = "dormant"
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
        producer = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True,
                             "linger.ms": 5})
        first = produce_round(producer, topic, 1)
        assert all(first[p] == list(range(PER_ROUND)) for p in range(PARTITIONS)), first
        epochs = leader_epochs(broker.bootstrap, topic)
        wait_dormant(admin_port, PARTITIONS)

        # Dormant: Metadata, ListOffsets and a read at the end answer without waking them.
        assert leader_epochs(broker.bootstrap, topic) == epochs
        specs = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(PARTITIONS)}
        ends = {tp.partition: f.result(10).offset for tp, f in admin.list_offsets(specs).items()}
        assert ends == {p: PER_ROUND for p in range(PARTITIONS)}
        tail = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "dormant-tail",
                         "enable.auto.commit": False})
        tail.assign([TopicPartition(topic, p, PER_ROUND) for p in range(PARTITIONS)])
        assert tail.consume(100, timeout=2.0) == []
        tail.close()
        assert gauge(admin_port, "inkless_partitions_dormant") >= PARTITIONS, "still dormant"

        # The same idempotent producer goes on: its sequence survived the sleep.
        second = produce_round(producer, topic, 2)
        assert all(second[p] == list(range(PER_ROUND, 2 * PER_ROUND)) for p in range(PARTITIONS)), second
        assert leader_epochs(broker.bootstrap, topic) == epochs, "a wake is not a leader change"
        ends = {tp.partition: f.result(10).offset for tp, f in admin.list_offsets(specs).items()}
        assert ends == {p: 2 * PER_ROUND for p in range(PARTITIONS)}

        # Asleep again, then read from the start: every record once, in order (the reads wake
        # the partitions).
        wait_dormant(admin_port, PARTITIONS)
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "dormant-read",
                      "enable.auto.commit": False})
        c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        got: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(PARTITIONS)}
        deadline = time.monotonic() + 30
        while sum(len(v) for v in got.values()) < 2 * PER_ROUND * PARTITIONS and time.monotonic() < deadline:
            for m in c.consume(500, timeout=1.0):
                assert m.error() is None, m.error()
                got[m.partition()].append((m.offset(), m.value()))
        c.close()
        for p in range(PARTITIONS):
            want = [(o, f"r{1 + o // PER_ROUND}-p{p}-{o % PER_ROUND}".encode()) for o in range(2 * PER_ROUND)]
            assert got[p] == want, f"partition {p}: {got[p][:3]}... ({len(got[p])} records)"
    finally:
        stop_and_check(broker)
