#!/usr/bin/env python3
"""Consumer-group member (../GROUPS.md) with kafka-python.

    kafka_python_group_member.py BOOTSTRAP TOPIC GROUP NAME

Env: GROUP_ASSIGNOR (range | roundrobin | sticky), GROUP_SESSION_TIMEOUT_MS,
GROUP_HEARTBEAT_INTERVAL_MS, GROUP_INSTANCE_ID. Auto-commit every second
(kafka-python also commits before a rebalance and on close).
"""

from __future__ import annotations

import logging
import sys
import time

from kafka import ConsumerRebalanceListener, KafkaConsumer
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from kafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor

import group_common as g

ASSIGNORS = {
    "range": RangePartitionAssignor,
    "roundrobin": RoundRobinPartitionAssignor,
    "sticky": StickyPartitionAssignor,
}


class Listener(ConsumerRebalanceListener):
    def on_partitions_revoked(self, revoked):
        if revoked:
            g.out(f"REVOKED {g.now_ms()} {g.parts(tp.partition for tp in revoked)}")

    def on_partitions_assigned(self, assigned):
        g.out(f"ASSIGNED {g.now_ms()} {g.parts(tp.partition for tp in assigned)}")

    def on_partitions_lost(self, lost):
        if lost:
            g.out(f"LOST {g.now_ms()} {g.parts(tp.partition for tp in lost)}")


def main() -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka.coordinator").setLevel(logging.INFO)
    bootstrap, topic, group, name = g.args()
    assignor = g.env("GROUP_ASSIGNOR", "range")
    kw = {}
    if g.env("GROUP_INSTANCE_ID", ""):
        kw["group_instance_id"] = g.env("GROUP_INSTANCE_ID", "")
    stop = g.Stop()
    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id=name,
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        auto_commit_interval_ms=1000,
        session_timeout_ms=int(g.env("GROUP_SESSION_TIMEOUT_MS", "6000")),
        heartbeat_interval_ms=int(g.env("GROUP_HEARTBEAT_INTERVAL_MS", "1000")),
        # kafka-python waits 305 s for a response by default. Once, a group leader was seen
        # to wait on its own SyncGroup answer forever, although the broker had completed the
        # generation and the other members had their assignments. With 10 s it times out,
        # reconnects and rejoins, as the Java client (30 s) would.
        request_timeout_ms=max(10_000, int(g.env("GROUP_SESSION_TIMEOUT_MS", "6000")) + 1_000),
        partition_assignment_strategy=[ASSIGNORS[assignor]],
        **kw,
    )
    # Load the topic's metadata first: a kafka-python group leader without it
    # assigns nothing ("No partition metadata for topic"), and a member left
    # with an empty first assignment was once seen never to rejoin.
    deadline = time.monotonic() + 30
    while not c.partitions_for_topic(topic):
        if time.monotonic() > deadline:
            sys.stderr.write(f"{name}: no metadata for {topic} within 30 s\n")
            return 1
        time.sleep(0.1)
    g.out(f"START {g.now_ms()} {name} kafka-python/classic/{assignor}")
    c.subscribe([topic], listener=Listener())
    while not stop.flag:
        batch = c.poll(timeout_ms=200, max_records=200)
        t = g.now_ms()
        lines = [f"REC {t} {r.partition} {r.offset} {g.seq_of(r.value)}" for recs in batch.values() for r in recs]
        if lines:
            g.out("\n".join(lines))
    g.out(f"CLOSING {g.now_ms()}")
    c.close()  # commits the consumed positions, leaves the group
    g.out(f"CLOSED {g.now_ms()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
