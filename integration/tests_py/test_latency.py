"""Send-to-poll latency: a producer stamps each record with its send time and a
consumer polling concurrently measures when it sees it."""

from __future__ import annotations

import struct
import threading
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import measurement

RECORDS = 300
INTERVAL_S = 0.01
P99_LIMIT_S = 2.0  # the seed's bar for end-to-end latency


def test_send_to_poll_latency(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(timeout=60)

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"inkless-test-unused-{topic}",  # required by librdkafka; never joined
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "fetch.wait.max.ms": 100,
        }
    )
    latencies: list[float] = []
    errors: list[str] = []
    stop = threading.Event()
    assigned = threading.Event()

    def consume() -> None:
        try:
            deadline = time.monotonic() + 60
            while True:
                md = consumer.list_topics(topic, timeout=10).topics.get(topic)
                if md is not None and md.error is None and len(md.partitions) == 2:
                    break
                if time.monotonic() > deadline:
                    errors.append("topic metadata not ready")
                    return
                time.sleep(0.1)
            consumer.assign([TopicPartition(topic, p, 0) for p in range(2)])
            assigned.set()
            while not stop.is_set() and len(latencies) < RECORDS:
                for m in consumer.consume(num_messages=100, timeout=0.1):
                    now = time.monotonic_ns()
                    if m.error():
                        if m.error().code() != KafkaError._PARTITION_EOF:
                            errors.append(str(m.error()))
                        continue
                    if m.key() == b"warmup":
                        continue
                    (sent,) = struct.unpack(">q", m.value()[:8])
                    latencies.append((now - sent) / 1e9)
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))
        finally:
            assigned.set()

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    assert assigned.wait(70), "consumer never got its assignment"

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    delivery_errors: list[str] = []

    def on_delivery(err, _msg) -> None:
        if err is not None:
            delivery_errors.append(str(err))

    # Warm up first (connection, InitProducerId, metadata) so that the numbers
    # measure the steady state, not the producer's start.
    for p in range(2):
        producer.produce(topic, key=b"warmup", value=b"", partition=p, on_delivery=on_delivery)
    assert producer.flush(60) == 0, "warm-up records undelivered after 60 s"

    for i in range(RECORDS):
        payload = struct.pack(">q", time.monotonic_ns()) + f"latency-{i}".encode()
        producer.produce(topic, key=str(i).encode(), value=payload, partition=i % 2, on_delivery=on_delivery)
        producer.poll(0)
        time.sleep(INTERVAL_S)
    assert producer.flush(60) == 0, "records still undelivered after 60 s"
    assert not delivery_errors, f"delivery errors: {delivery_errors[:5]}"

    t.join(timeout=90)
    stop.set()
    t.join(timeout=10)
    consumer.close()
    assert not errors, f"consumer errors: {errors[:5]}"
    assert len(latencies) == RECORDS, f"consumer saw {len(latencies)} of {RECORDS} records"

    s = sorted(latencies)

    def pct(q: float) -> float:
        return s[min(len(s) - 1, int(q * len(s)))]

    measurement(f"LATENCY send-to-poll over {RECORDS} records: p50 {pct(0.50) * 1000:.1f} ms, "
                f"p99 {pct(0.99) * 1000:.1f} ms, max {s[-1] * 1000:.1f} ms")
    assert pct(0.99) < P99_LIMIT_S, f"p99 latency {pct(0.99):.2f}s >= {P99_LIMIT_S}s"
