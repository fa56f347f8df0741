#!/usr/bin/env python3
"""The scenario (../SCENARIO.md) with aiokafka.

Producer: enable_idempotence=True (implies acks=all). Consumer: group_id=None,
assign() + seek_to_beginning(), no commits.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

import scenario

CLIENT = "aiokafka"


async def create_topic(a: scenario.Args) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=a.bootstrap, request_timeout_ms=int(a.timeout * 1000))
    await admin.start()
    try:
        resp = await admin.create_topics(
            [NewTopic(a.topic, num_partitions=a.partitions, replication_factor=1)],
            timeout_ms=int(a.timeout * 1000),
        )
        for t in resp.topic_errors:
            name, code = t[0], t[1]
            if code != 0:
                raise scenario.ScenarioError(f"{CLIENT}: CreateTopics {name}: error code {code}: {t}")
    finally:
        await admin.close()


async def wait_topic(get_parts, a: scenario.Args) -> None:
    deadline = time.monotonic() + a.timeout
    parts = None
    while time.monotonic() < deadline:
        parts = await get_parts()
        if parts is not None and len(parts) == a.partitions:
            return
        await asyncio.sleep(0.2)
    raise scenario.ScenarioError(f"{CLIENT}: topic {a.topic} has partitions {parts}, expected {a.partitions}")


async def produce(a: scenario.Args) -> None:
    p = AIOKafkaProducer(
        bootstrap_servers=a.bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        compression_type=None if a.compression == "none" else a.compression,
        request_timeout_ms=int(a.timeout * 1000),
    )
    await p.start()
    try:
        await wait_topic(lambda: p.partitions_for(a.topic), a)
        futs = []
        for rec in scenario.records(a):
            fut = await p.send(
                a.topic,
                key=rec.key,
                value=rec.value,
                partition=rec.partition,
                timestamp_ms=rec.timestamp,
                headers=rec.headers,
            )
            futs.append((rec, fut))
        await p.flush()
        for rec, fut in futs:
            md = await asyncio.wait_for(fut, a.timeout)
            if md.partition != rec.partition:
                raise scenario.ScenarioError(
                    f"{CLIENT}: record {rec.index} delivered to partition {md.partition}, expected {rec.partition}"
                )
    finally:
        await p.stop()


async def consume(a: scenario.Args) -> None:
    c = AIOKafkaConsumer(
        bootstrap_servers=a.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await c.start()
    try:

        async def parts():
            await c._client.force_metadata_update()  # noqa: SLF001 - no public refresh call
            return c.partitions_for_topic(a.topic)

        await wait_topic(parts, a)
        tps = [TopicPartition(a.topic, p) for p in range(a.partitions)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        v = scenario.Verifier(a, CLIENT)
        ends = await c.end_offsets(tps)
        v.check_end_offsets({tp.partition: off for tp, off in ends.items()})
        deadline = time.monotonic() + a.timeout
        while not v.done():
            if time.monotonic() > deadline:
                raise scenario.ScenarioError(
                    f"{CLIENT}: timed out after {a.timeout}s with {v.total}/{a.count} records; per partition {v.next_pos}"
                )
            batches = await c.getmany(timeout_ms=500, max_records=1000)
            for tp in sorted(batches, key=lambda t: t.partition):
                for m in batches[tp]:
                    if m.timestamp_type != 0:
                        raise scenario.ScenarioError(
                            f"{CLIENT}: partition {m.partition} offset {m.offset}: timestamp type {m.timestamp_type}, expected CreateTime (0)"
                        )
                    v.check(m.partition, m.offset, m.key, m.value, m.timestamp, m.headers)
        v.finish()
    finally:
        await c.stop()


async def run_async(a: scenario.Args) -> None:
    if a.produce:
        if a.create:
            await create_topic(a)
        await produce(a)
    if a.consume:
        await consume(a)


def run(a: scenario.Args) -> None:
    asyncio.run(run_async(a))


if __name__ == "__main__":
    scenario.main_wrapper(CLIENT, run)
