"""100 idempotent producers on one partition at once (issue 16), mixed clients: Java
(kafka-clients), librdkafka (confluent_kafka) and franz-go, each producer its own producer id,
acks=all. Every acknowledged record is in the partition exactly once, each producer's records
in the order it sent them, no producer sees an error (OUT_OF_ORDER_SEQUENCE among them), and
the partition's producer state (DescribeProducers) holds exactly one entry per producer.

INKLESS_MANY_RECORDS (default 300) sets the records per producer; the run prints
`MANY_PRODUCERS ...` with the throughput (run with -s, or see the summary).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from conftest import JAVA_JAR, ClientRunner, measurement, need_tool
from test_groups import create_topic

MIX = {"java": 34, "franz-go": 33, "confluent-kafka": 33}
RECORDS = int(os.environ.get("INKLESS_MANY_RECORDS", "300"))
LINE = re.compile(r'^PRODUCER (\S+) acked (\d+) errors (\d+) first-error "(.*)"$')


def commands(runner: ClientRunner, topic: str) -> dict[str, list[str]]:
    java = [need_tool("java"), "-cp", str(JAVA_JAR), "io.inkless.clients.ManyProducers", "produce"]
    common = [runner.bootstrap, topic, "0"]
    return {
        "java": java + common + [str(MIX["java"]), str(RECORDS), "java"],
        "franz-go": runner.go_cmd() + ["many-producers"] + common + [str(MIX["franz-go"]), str(RECORDS), "franz"],
        "confluent-kafka": runner.python_cmd("many_producers.py") + common
        + [str(MIX["confluent-kafka"]), str(RECORDS), "rdkafka"],
    }


def read_partition(bootstrap: str, topic: str, expect: int) -> list[str]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{topic}", "enable.auto.commit": False})
    values: list[str] = []
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 120
        while len(values) < expect and time.monotonic() < deadline:
            for m in c.consume(1000, 1.0):
                assert m.error() is None, m.error()
                values.append(m.value().decode())
        # Anything beyond what was acknowledged would be a duplicate: read a little longer.
        for m in c.consume(1000, 2.0):
            values.append(m.value().decode())
    finally:
        c.close()
    return values


def test_one_hundred_producers_on_one_partition(clients: ClientRunner, topic):
    create_topic(clients.bootstrap, topic, 1)
    cmds = commands(clients, topic)  # builds the Go client before the clock starts
    t0 = time.monotonic()
    with ThreadPoolExecutor(len(cmds)) as pool:
        runs = dict(zip(cmds, pool.map(lambda argv: subprocess.run(argv, capture_output=True, text=True,
                                                                         timeout=600), cmds.values())))
    took = time.monotonic() - t0
    acked: dict[str, int] = {}
    for client, r in runs.items():
        lines = [m.groups() for m in map(LINE.match, r.stdout.splitlines()) if m]
        assert len(lines) == MIX[client], f"{client} exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
        bad = [(n, first) for n, _, errors, first in lines if int(errors)]
        assert not bad, f"{client}: producers with errors: {bad[:5]}"
        assert r.returncode == 0, f"{client} exited {r.returncode}:\n{r.stderr[-3000:]}"
        acked.update({n: int(a) for n, a, _, _ in lines})
    assert all(a == RECORDS for a in acked.values()), {n: a for n, a in acked.items() if a != RECORDS}
    total = sum(acked.values())

    values = read_partition(clients.bootstrap, topic, total)
    assert len(values) == total, f"{len(values)} records in the partition, {total} acknowledged"
    seqs: dict[str, list[int]] = {}
    for v in values:
        name, seq = v.rsplit(":", 1)
        seqs.setdefault(name, []).append(int(seq))
    assert set(seqs) == set(acked), set(seqs) ^ set(acked)
    wrong = {n: s[:10] for n, s in seqs.items() if s != list(range(RECORDS))}
    assert not wrong, f"producers whose records are missing, repeated or out of order: {list(wrong.items())[:3]}"

    r = subprocess.run([need_tool("java"), "-cp", str(JAVA_JAR), "io.inkless.clients.ManyProducers", "describe",
                        clients.bootstrap, topic, "0"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    active = int(re.search(r"ACTIVE_PRODUCERS (\d+)", r.stdout).group(1))
    assert active == len(acked), f"{active} producer states for {len(acked)} producers"
    measurement(f"MANY_PRODUCERS {len(acked)} producers ({MIX}) x {RECORDS} records on one partition: "
                f"{total} acknowledged in {took:.1f} s ({total / took:.0f} records/s incl. client start-up), "
                f"all read back once and in order; {active} producer states")
