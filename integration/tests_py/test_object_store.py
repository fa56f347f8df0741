"""The object store path against a real S3 API server (moto), and object-store failures.

- Records go through an `s3://` object store (path-style, custom endpoint, credentials).
- When the store is unreachable, uploads retry with backoff; an outage shorter than the
  upload timeout is invisible to producers.
- When it stays down, producers get KAFKA_STORAGE_ERROR within their request timeout, and
  nothing of the failed writes ever becomes visible to consumers.
"""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import EXTERNAL, LocalBroker, free_port, stop_and_check
from s3server import CuttableProxy, MotoServer, s3_env

pytestmark = pytest.mark.skipif(
    bool(EXTERNAL), reason="INKLESS_TEST_BOOTSTRAP is set: these tests configure their own broker's object store"
)

UPLOAD_TIMEOUT_MS = 4000


@pytest.fixture
def s3_broker(tmp_path):
    moto = MotoServer(tmp_path / "moto.log")
    moto.start()
    moto.create_bucket("inkless-test")
    proxy = CuttableProxy(moto.port)
    broker = LocalBroker(tmp_path / "data", free_port(), tmp_path)
    broker.extra_env = s3_env(f"http://127.0.0.1:{proxy.port}", "inkless-test", "cluster-a", UPLOAD_TIMEOUT_MS)
    broker.start()
    try:
        yield broker, proxy
    finally:
        proxy.restore()
        try:
            stop_and_check(broker)
        finally:
            proxy.close()
            moto.stop()


def create(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        f.result(timeout=30)


def produce(bootstrap: str, topic: str, values: list[str], **conf) -> list[KafkaError | None]:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2, **conf})
    results: list[KafkaError | None] = []
    for v in values:
        p.produce(topic, value=v.encode(), key=v.encode(), on_delivery=lambda err, _m: results.append(err))
    p.flush(60)
    assert len(results) == len(values), "every record got a delivery report"
    return results


def consume_all(bootstrap: str, topic: str, partitions: int, expect: int, timeout: float = 30.0) -> list[str]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got: list[str] = []
    deadline = time.monotonic() + timeout
    idle_since = time.monotonic()
    while time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is None:
            # Keep polling a little after reaching `expect` to catch anything extra.
            if len(got) >= expect and time.monotonic() - idle_since > 2:
                break
            continue
        if m.error():
            continue
        got.append(m.value().decode())
        idle_since = time.monotonic()
    c.close()
    return got


def test_records_round_trip_through_s3(s3_broker, topic):
    broker, _ = s3_broker
    create(broker.bootstrap, topic, 3)
    values = [f"v{i}" for i in range(500)]
    assert produce(broker.bootstrap, topic, values, **{"enable.idempotence": True}) == [None] * 500
    got = consume_all(broker.bootstrap, topic, 3, 500)
    assert sorted(got) == sorted(values)


def test_short_outage_is_retried_and_invisible(s3_broker, topic):
    broker, proxy = s3_broker
    create(broker.bootstrap, topic, 1)
    proxy.cut()
    threading.Timer(1.5, proxy.restore).start()  # well inside the upload timeout
    values = [f"during-{i}" for i in range(50)]
    t0 = time.monotonic()
    assert produce(broker.bootstrap, topic, values, acks="all") == [None] * 50
    assert time.monotonic() - t0 >= 1.0, "the produce waited for the store to come back"
    assert consume_all(broker.bootstrap, topic, 1, 50) == values


def test_long_outage_fails_producers_and_leaks_nothing(s3_broker, topic):
    broker, proxy = s3_broker
    create(broker.bootstrap, topic, 1)
    before = [f"before-{i}" for i in range(20)]
    assert produce(broker.bootstrap, topic, before) == [None] * 20

    proxy.cut()
    t0 = time.monotonic()
    failed = produce(
        broker.bootstrap, topic, [f"lost-{i}" for i in range(20)],
        **{"request.timeout.ms": 15000, "message.timeout.ms": 20000, "retries": 0},
    )
    elapsed = time.monotonic() - t0
    assert all(e is not None for e in failed), failed
    assert {e.code() for e in failed} == {KafkaError.KAFKA_STORAGE_ERROR}, failed
    assert elapsed < 15, f"producers heard back within their request timeout ({elapsed:.1f}s)"

    proxy.restore()
    after = [f"after-{i}" for i in range(20)]
    assert produce(broker.bootstrap, topic, after) == [None] * 20
    assert consume_all(broker.bootstrap, topic, 1, 40) == before + after
