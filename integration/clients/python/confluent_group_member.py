#!/usr/bin/env python3
"""Consumer-group member (../GROUPS.md) with confluent-kafka (librdkafka).

    confluent_group_member.py BOOTSTRAP TOPIC GROUP NAME

Env: GROUP_ASSIGNOR (range | roundrobin | cooperative-sticky), GROUP_PROTOCOL
(classic | consumer), GROUP_SESSION_TIMEOUT_MS, GROUP_HEARTBEAT_INTERVAL_MS,
GROUP_INSTANCE_ID. Auto-commit every second (librdkafka also commits on
revoke and close).
"""

from __future__ import annotations

import sys

from confluent_kafka import Consumer, KafkaError

import group_common as g


def main() -> int:
    bootstrap, topic, group, name = g.args()
    protocol = g.env("GROUP_PROTOCOL", "classic")
    assignor = g.env("GROUP_ASSIGNOR", "range")
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "client.id": name,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": True,
        "auto.commit.interval.ms": 1000,
        "error_cb": lambda err: sys.stderr.write(f"{name}: client error: {err}\n"),
    }
    if protocol == "classic":
        conf.update({
            "partition.assignment.strategy": assignor,
            "session.timeout.ms": int(g.env("GROUP_SESSION_TIMEOUT_MS", "6000")),
            "heartbeat.interval.ms": int(g.env("GROUP_HEARTBEAT_INTERVAL_MS", "1000")),
        })
    else:
        conf["group.protocol"] = "consumer"
    if g.env("GROUP_INSTANCE_ID", ""):
        conf["group.instance.id"] = g.env("GROUP_INSTANCE_ID", "")
    stop = g.Stop()
    c = Consumer(conf)

    def on_assign(_c, ps):
        g.out(f"ASSIGNED {g.now_ms()} {g.parts(p.partition for p in ps)}")

    def on_revoke(_c, ps):
        if ps:
            g.out(f"REVOKED {g.now_ms()} {g.parts(p.partition for p in ps)}")

    def on_lost(_c, ps):
        if ps:
            g.out(f"LOST {g.now_ms()} {g.parts(p.partition for p in ps)}")

    g.out(f"START {g.now_ms()} {name} confluent-kafka/{protocol}/{assignor}")
    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
    rc = 0
    while not stop.flag:
        msgs = c.consume(num_messages=200, timeout=0.2)
        t = g.now_ms()
        lines = []
        for m in msgs:
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    sys.stderr.write(f"{name}: consume error: {m.error()}\n")
                continue
            lines.append(f"REC {t} {m.partition()} {m.offset()} {g.seq_of(m.value())}")
        if lines:
            g.out("\n".join(lines))
    g.out(f"CLOSING {g.now_ms()}")
    c.close()  # commits the consumed positions, leaves the group
    g.out(f"CLOSED {g.now_ms()}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
