#!/usr/bin/env python3
"""The scenario (../SCENARIO.md) with kafka-python.

Producer: acks=all, enable_idempotence=True. Consumer: group_id=None,
assign() + seek_to_beginning(), no commits.
"""

from __future__ import annotations

import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

import scenario

CLIENT = "kafka-python"


def create_topic(a: scenario.Args) -> None:
    admin = KafkaAdminClient(bootstrap_servers=a.bootstrap, request_timeout_ms=int(a.timeout * 1000))
    try:
        resp = admin.create_topics(
            [NewTopic(a.topic, num_partitions=a.partitions, replication_factor=1)],
            timeout_ms=int(a.timeout * 1000),
        )
        # kafka-python 3 raises on error codes itself; double-check anyway.
        topics = resp.get("topics", []) if isinstance(resp, dict) else []
        for t in topics:
            if t.get("error_code", 0) != 0:
                raise scenario.ScenarioError(f"{CLIENT}: CreateTopics {a.topic}: {t.get('error_code')} {t.get('error_message')}")
    finally:
        admin.close()


def wait_topic(client, a: scenario.Args) -> None:
    deadline = time.monotonic() + a.timeout
    parts = None
    while time.monotonic() < deadline:
        parts = client.partitions_for(a.topic) if isinstance(client, KafkaProducer) else client.partitions_for_topic(a.topic)
        if parts is not None and len(parts) == a.partitions:
            return
        time.sleep(0.2)
    raise scenario.ScenarioError(f"{CLIENT}: topic {a.topic} has partitions {parts}, expected {a.partitions}")


def produce(a: scenario.Args) -> None:
    p = KafkaProducer(
        bootstrap_servers=a.bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        compression_type=None if a.compression == "none" else a.compression,
    )
    try:
        wait_topic(p, a)
        futures = []
        for rec in scenario.records(a):
            f = p.send(
                a.topic,
                key=rec.key,
                value=rec.value,
                partition=rec.partition,
                timestamp_ms=rec.timestamp,
                headers=rec.headers,
            )
            futures.append((rec, f))
        p.flush(timeout=a.timeout)
        for rec, f in futures:
            md = f.get(timeout=a.timeout)
            if md.partition != rec.partition:
                raise scenario.ScenarioError(
                    f"{CLIENT}: record {rec.index} delivered to partition {md.partition}, expected {rec.partition}"
                )
    finally:
        p.close(timeout=a.timeout)


def consume(a: scenario.Args) -> None:
    c = KafkaConsumer(
        bootstrap_servers=a.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        wait_topic(c, a)
        tps = [TopicPartition(a.topic, p) for p in range(a.partitions)]
        c.assign(tps)
        c.seek_to_beginning()
        v = scenario.Verifier(a, CLIENT)
        ends = c.end_offsets(tps)
        v.check_end_offsets({tp.partition: off for tp, off in ends.items()})
        deadline = time.monotonic() + a.timeout
        while not v.done():
            if time.monotonic() > deadline:
                raise scenario.ScenarioError(
                    f"{CLIENT}: timed out after {a.timeout}s with {v.total}/{a.count} records; per partition {v.next_pos}"
                )
            batches = c.poll(timeout_ms=500, max_records=1000)
            for tp in sorted(batches, key=lambda t: t.partition):
                for m in batches[tp]:
                    if m.timestamp_type != 0:
                        raise scenario.ScenarioError(
                            f"{CLIENT}: partition {m.partition} offset {m.offset}: timestamp type {m.timestamp_type}, expected CreateTime (0)"
                        )
                    v.check(m.partition, m.offset, m.key, m.value, m.timestamp, m.headers)
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
