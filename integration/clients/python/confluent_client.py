#!/usr/bin/env python3
"""The scenario (../SCENARIO.md) with confluent-kafka (librdkafka).

Producer: enable.idempotence=true, acks=all, compression from
SCENARIO_COMPRESSION. Consumer: assign() + OFFSET_BEGINNING, no commits.
librdkafka insists on a group.id for a Consumer; with assign() and
enable.auto.commit=false it joins no group and commits nothing (it may still
look up the group coordinator in the background; errors from that are logged,
not fatal).
"""

from __future__ import annotations

import sys
import time

from confluent_kafka import (
    TIMESTAMP_CREATE_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

import scenario

CLIENT = "confluent-kafka"


def log_error(err: KafkaError) -> None:
    # Transient errors (connection refused during a restart, coordinator
    # lookups) are reported here; librdkafka retries them by itself.
    print(f"{CLIENT}: client error: {err}", file=sys.stderr)
    if err.fatal():
        raise KafkaException(err)


def create_topic(a: scenario.Args) -> None:
    admin = AdminClient({"bootstrap.servers": a.bootstrap, "error_cb": log_error})
    futs = admin.create_topics(
        [NewTopic(a.topic, num_partitions=a.partitions, replication_factor=1)],
        operation_timeout=a.timeout,
        request_timeout=a.timeout,
    )
    futs[a.topic].result(timeout=a.timeout)


def wait_topic(client, a: scenario.Args) -> None:
    deadline = time.monotonic() + a.timeout
    last = None
    while time.monotonic() < deadline:
        try:
            md = client.list_topics(a.topic, timeout=10)
        except KafkaException as e:  # e.g. broker still starting: retry until the deadline
            last = e
            time.sleep(0.5)
            continue
        t = md.topics.get(a.topic)
        if t is not None and t.error is None and len(t.partitions) == a.partitions and all(
            p.leader >= 0 for p in t.partitions.values()
        ):
            return
        last = t.error if t is not None else "absent"
        time.sleep(0.2)
    raise scenario.ScenarioError(
        f"{CLIENT}: topic {a.topic} not ready with {a.partitions} partitions after {a.timeout}s (last: {last})"
    )


def produce(a: scenario.Args) -> None:
    p = Producer(
        {
            "bootstrap.servers": a.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": a.compression,
            "linger.ms": 5,
            "error_cb": log_error,
        }
    )
    wait_topic(p, a)
    failures: list[str] = []
    delivered = [0]

    def on_delivery(err, msg, rec: scenario.Record) -> None:
        if err is not None:
            failures.append(f"record {rec.index}: delivery failed: {err}")
        elif msg.partition() != rec.partition:
            failures.append(f"record {rec.index}: delivered to partition {msg.partition()}, expected {rec.partition}")
        else:
            delivered[0] += 1

    for rec in scenario.records(a):
        while True:
            try:
                p.produce(
                    a.topic,
                    key=rec.key,
                    value=rec.value,
                    partition=rec.partition,
                    timestamp=rec.timestamp,
                    headers=rec.headers,
                    on_delivery=lambda err, msg, rec=rec: on_delivery(err, msg, rec),
                )
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    remaining = p.flush(a.timeout)
    if remaining:
        raise scenario.ScenarioError(f"{CLIENT}: {remaining} records still undelivered after {a.timeout}s")
    if failures:
        raise scenario.ScenarioError(f"{CLIENT}: {len(failures)} delivery failures, first: {failures[0]}")
    if delivered[0] != a.count:
        raise scenario.ScenarioError(f"{CLIENT}: {delivered[0]} delivered, expected {a.count}")


def consume(a: scenario.Args) -> None:
    c = Consumer(
        {
            "bootstrap.servers": a.bootstrap,
            "group.id": f"inkless-test-unused-{a.topic}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "error_cb": log_error,
        }
    )
    try:
        wait_topic(c, a)
        v = scenario.Verifier(a, CLIENT)
        ends = {}
        for p in range(a.partitions):
            _low, high = c.get_watermark_offsets(TopicPartition(a.topic, p), timeout=a.timeout)
            ends[p] = high
        v.check_end_offsets(ends)
        c.assign([TopicPartition(a.topic, p, 0) for p in range(a.partitions)])
        deadline = time.monotonic() + a.timeout
        while not v.done():
            if time.monotonic() > deadline:
                raise scenario.ScenarioError(
                    f"{CLIENT}: timed out after {a.timeout}s with {v.total}/{a.count} records; per partition {v.next_pos}"
                )
            for m in c.consume(num_messages=500, timeout=0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(m.error())
                ts_type, ts = m.timestamp()
                if ts_type != TIMESTAMP_CREATE_TIME:
                    raise scenario.ScenarioError(
                        f"{CLIENT}: partition {m.partition()} offset {m.offset()}: timestamp type {ts_type}, expected CreateTime"
                    )
                v.check(m.partition(), m.offset(), m.key(), m.value(), ts, m.headers())
        v.finish()
    finally:
        c.close()


def run(a: scenario.Args) -> None:
    if a.produce:
        if a.create:
            create_topic(a)
        produce(a)
    if a.consume:
        consume(a)


if __name__ == "__main__":
    scenario.main_wrapper(CLIENT, run)
