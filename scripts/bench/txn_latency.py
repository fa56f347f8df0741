#!/usr/bin/env python3
"""Transaction latency with librdkafka (confluent-kafka) against a running broker.

    scripts/bench/txn_latency.py BOOTSTRAP [TRANSACTIONS] [RECORDS_PER_TXN]

One transactional producer writes TRANSACTIONS transactions (default 100) of
RECORDS_PER_TXN records (default 100, 100 bytes each) over 3 partitions of a new topic
and commits each. Prints the time commit_transaction takes (EndTxn answers once the
decision is durable) and the time from commit_transaction's start until every
partition's last stable offset (ListOffsets, read_committed) is past the transaction's
markers, i.e. until read_committed consumers can read it.
"""

import sys
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 3


def quantile(xs: list[float], f: float) -> float:
    return sorted(xs)[int(f * (len(xs) - 1))] * 1000


def main() -> None:
    boot = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    m = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    topic = f"txn-bench-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": boot})
    for f in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        f.result(30)
    p = Producer({"bootstrap.servers": boot, "transactional.id": topic, "linger.ms": 5})
    p.init_transactions(30)
    rc = Consumer({"bootstrap.servers": boot, "group.id": topic, "isolation.level": "read_committed"})
    commit, visible = [], []
    t0 = time.monotonic()
    for t in range(n):
        p.begin_transaction()
        for i in range(m):
            p.produce(topic, value=b"x" * 100, partition=i % PARTITIONS)
        p.flush(30)
        start = time.monotonic()
        p.commit_transaction(30)
        commit.append(time.monotonic() - start)
        # Each transaction adds m records and one marker per partition.
        while True:
            lsos = [rc.get_watermark_offsets(TopicPartition(topic, q), timeout=10)[1] for q in range(PARTITIONS)]
            if sum(lsos) >= (t + 1) * (m + PARTITIONS):
                break
        visible.append(time.monotonic() - start)
    total = time.monotonic() - t0
    rc.close()
    print(f"{n} transactions x {m} records over {PARTITIONS} partitions in {total:.1f}s ({n * m / total:.0f} records/s)")
    print(f"commit_transaction: p50 {quantile(commit, .5):.1f} ms, p99 {quantile(commit, .99):.1f} ms")
    print(f"commit to LSO past the markers: p50 {quantile(visible, .5):.1f} ms, p99 {quantile(visible, .99):.1f} ms")


if __name__ == "__main__":
    main()
