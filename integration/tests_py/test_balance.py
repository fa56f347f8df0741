"""Balanced placement (ADR 0022) in a three-node cluster (one PostgreSQL, one S3 server, as
test_cluster.py), with the balancer's round every second.

1. By count: 12 partitions that rendezvous hashing spreads unevenly end up four per node,
   moved by the balancer's pins while an idempotent librdkafka producer (acks=all) writes to
   every partition; every acknowledged record is read back at its offset.
2. By load: two partitions of one node are made hot (records as fast as the producer goes);
   the balancer moves one of them away, and the counts stay within the limit.
Printed as `BALANCE ...` lines (run with -s): the per-node counts before and after, the
moves, and the imbalance the balancer reports (`inkless_placement_imbalance`).
"""

from __future__ import annotations

import re
import threading
import time
import uuid

import pytest

from cluster import Cluster, cluster_per_test
from conftest import EXTERNAL, measurement
from test_cluster import BUCKET, _quiet, infra, partition_owners, wait_placed  # noqa: F401 (fixture)
from test_durable_groups import _fnv1a, _mix
from test_groups import create_topic

pytestmark = pytest.mark.skipif(bool(EXTERNAL), reason="starts its own cluster")

AZS = {1: "az1", 2: "az2", 3: "az3"}
PARTITIONS = 12


@pytest.fixture
def cluster(infra, tmp_path):
    """A fresh three-node cluster, one node per AZ, balancing every second."""
    yield from cluster_per_test(infra, tmp_path, BUCKET, AZS, "b", {"INKLESS__CLUSTER__BALANCE_INTERVAL_MS": "1000"})


def running(cluster: Cluster) -> dict[int, int]:
    """partition -> node running it."""
    return {int(name.rsplit("/", 1)[1]): nodes[0] for name, nodes in partition_owners(cluster).items()}


def per_node(placed: dict[int, int]) -> dict[int, int]:
    counts = {n: 0 for n in AZS}
    for node in placed.values():
        counts[node] += 1
    return counts


def metric(cluster: Cluster, name: str) -> dict[str, float]:
    """labels -> value of `name`, summed over the nodes."""
    out: dict[str, float] = {}
    for n in cluster.live():
        for labels, value in re.findall(rf"^{name}(\{{[^}}]*\}})? (\S+)$", n.admin("/metrics"), re.M):
            out[labels] = out.get(labels, 0.0) + float(value)
    return out


def wait_for(what: str, check, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = check()
            if got:
                return got
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{what} not within {timeout}s"
        time.sleep(0.2)


class Writer:
    """An idempotent librdkafka producer writing to `partitions` until stopped; remembers
    every acknowledged (partition, offset, value)."""

    def __init__(self, bootstrap: str, topic: str, partitions: list[int], size: int, pause: float):
        from confluent_kafka import Producer

        self.p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                           "linger.ms": 5, "message.timeout.ms": 60_000, "logger": _quiet})
        self.topic, self.partitions, self.size, self.pause = topic, partitions, size, pause
        self.acked: list[tuple[int, int, bytes]] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        def cb(err, msg):
            if err is None:
                self.acked.append((msg.partition(), msg.offset(), msg.value()))
            else:
                self.errors.append(str(err))

        i = 0
        while not self.stop.is_set():
            part = self.partitions[i % len(self.partitions)]
            value = f"{part}-{i}-".encode().ljust(self.size, b"x")
            try:
                self.p.produce(self.topic, value=value, partition=part, on_delivery=cb)
            except BufferError:
                self.p.poll(0.05)
                continue
            i += 1
            self.p.poll(0)
            if self.pause:
                time.sleep(self.pause)
        self.p.flush(60)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(90)
        assert not self.errors, self.errors[:5]


def read_back(bootstrap: str, topic: str, acked: list[tuple[int, int, bytes]]) -> None:
    """Every acknowledged record is at its offset."""
    from confluent_kafka import Consumer, TopicPartition

    want: dict[tuple[int, int], bytes] = {(p, o): v for p, o, v in acked}
    ends: dict[int, int] = {}
    for p, o, _ in acked:
        ends[p] = max(ends.get(p, -1), o)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "balance-check", "enable.auto.commit": False,
                  "logger": _quiet})
    c.assign([TopicPartition(topic, p, 0) for p in ends])
    seen: dict[tuple[int, int], bytes] = {}
    done: set[int] = set()
    deadline = time.monotonic() + 120
    while len(done) < len(ends) and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None or m.error() is not None:
            continue
        seen[(m.partition(), m.offset())] = m.value()
        if m.offset() >= ends[m.partition()]:
            done.add(m.partition())
    c.close()
    missing = [k for k, v in want.items() if seen.get(k) != v]
    assert not missing, f"{len(missing)} of {len(want)} acknowledged records not read back, e.g. {missing[:5]}"


def moves(cluster: Cluster) -> int:
    return round(sum(metric(cluster, "inkless_balancer_moves_total").values()))


def settled(cluster: Cluster) -> tuple[dict[int, int], int]:
    """The placement and the balancer's moves so far, once neither changed for 1.5 s (more
    than a round and its hand-offs take here)."""
    last = (running(cluster), moves(cluster))
    while True:
        time.sleep(1.5)
        now = (running(cluster), moves(cluster))
        if now == last and len(now[0]) == PARTITIONS:
            return now
        last = now


def hashed_owner(topic_id: uuid.UUID, partition: int, nodes: list[int]) -> int:
    """The node rendezvous hashing gives a partition (actors/src/cluster/placement.rs)."""
    key = _fnv1a(topic_id.bytes, partition.to_bytes(4, "big", signed=True))
    return max(nodes, key=lambda n: (_mix(key ^ _mix(n)), -n))


def test_the_balancer_evens_out_counts_then_load_and_loses_nothing(cluster):
    topic = f"balanced-{uuid.uuid4().hex[:6]}"
    create_topic(cluster.bootstrap, topic, PARTITIONS)
    wait_placed(cluster, PARTITIONS)
    topic_id = uuid.UUID(next(iter(partition_owners(cluster))).split("/")[1])
    hashed = {p: hashed_owner(topic_id, p, list(AZS)) for p in range(PARTITIONS)}
    writer = Writer(cluster.bootstrap, topic, list(range(PARTITIONS)), 100, 0.002)

    # 1. By count: four per node, moving only what hashing put over the mean (a few KB/s
    # of records are not worth balancing by load).
    t0 = time.monotonic()
    wait_for("four partitions per node",
             lambda: per_node(running(cluster)) == {n: PARTITIONS // len(AZS) for n in AZS}, 60)
    took = time.monotonic() - t0
    balanced, moved = settled(cluster)
    changed = sum(1 for p, n in balanced.items() if hashed[p] != n)
    excess = sum(max(0, c - PARTITIONS // len(AZS)) for c in per_node(hashed).values())
    measurement(f"BALANCE by count: hashing placed {per_node(hashed)}, balanced to 4 each within {took:.1f} s "
                f"of the topic's placement with {moved} moves ({changed} partitions away from their hashed node; "
                f"the excess over the mean was {excess})")
    assert moved == changed == excess, "as few moves as the excess over the mean"
    writer.finish()

    # 2. By load: two partitions of one node made hot.
    placed = running(cluster)
    node = next(n for n in AZS if sum(1 for v in placed.values() if v == n) >= 2)
    hot = [p for p, n in sorted(placed.items()) if n == node][:2]
    hot_writer = Writer(cluster.bootstrap, topic, hot, 4096, 0)
    t0 = time.monotonic()

    def hot_apart():
        now = running(cluster)
        return len({now.get(p) for p in hot}) == 2 and len(now) == PARTITIONS and now

    after = wait_for("the hot partitions on two nodes", hot_apart, 60)
    took = time.monotonic() - t0
    counts = per_node(after)
    time.sleep(3)  # a few more rounds: counts are evened out again around the hot ones
    counts_later = per_node(running(cluster))
    imbalance = {k: round(v, 2) for k, v in metric(cluster, "inkless_placement_imbalance").items()}
    hot_writer.finish()
    measurement(f"BALANCE by load: partitions {hot} of node {node} made hot ({len(hot_writer.acked)} records of "
                f"4 KiB); apart after {took:.1f} s; counts {counts}, 3 s later {counts_later}; "
                f"imbalance reported {imbalance}")
    assert max(counts_later.values()) <= 5, counts_later
    read_back(cluster.bootstrap, topic, writer.acked + hot_writer.acked)
