#!/usr/bin/env python3
"""Soak test: continuous produce and consume against a running broker, checking every record.

    python3 integration/soak/soak.py --bootstrap 127.0.0.1:9092 --minutes 10

One idempotent producer (acks=all) writes records whose value carries (partition, sequence,
send time); one consumer reads every partition from the start with assign(). At the end
(and every report interval) it checks that each partition's records arrived exactly once and
in order, and prints throughput and send-to-poll latency. Exit status 0 only when every
acknowledged record was consumed once, in order. Not part of CI (it runs for minutes).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--rate", type=int, default=2000, help="records per second")
    ap.add_argument("--value-bytes", type=int, default=512)
    ap.add_argument("--report-secs", type=int, default=60)
    a = ap.parse_args()

    topic = f"soak-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    for f in admin.create_topics([NewTopic(topic, a.partitions, 1)]).values():
        f.result(timeout=30)

    acked: dict[int, int] = {p: 0 for p in range(a.partitions)}  # records acked per partition
    errors: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    pad = "x" * max(0, a.value_bytes - 64)

    def on_delivery(err, msg):
        if err is not None:
            with lock:
                errors.append(f"delivery: {err}")
            return
        with lock:
            acked[msg.partition()] += 1

    def produce():
        p = Producer({"bootstrap.servers": a.bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5})
        seq = {q: 0 for q in range(a.partitions)}
        start = time.monotonic()
        sent = 0
        end = start + a.minutes * 60
        while time.monotonic() < end and not stop.is_set():
            due = int((time.monotonic() - start) * a.rate)
            while sent < due:
                q = sent % a.partitions
                v = json.dumps({"p": q, "s": seq[q], "t": time.time()}) + pad
                while True:
                    try:
                        p.produce(topic, value=v.encode(), partition=q, on_delivery=on_delivery)
                        break
                    except BufferError:
                        p.poll(0.05)
                seq[q] += 1
                sent += 1
            p.poll(0.005)
        if p.flush(60) != 0:
            with lock:
                errors.append("producer flush left records undelivered")

    consumed: dict[int, int] = {q: 0 for q in range(a.partitions)}
    latencies: list[float] = []

    def consume():
        c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": "soak-unused", "enable.auto.commit": False,
                      "fetch.wait.max.ms": 100})
        c.assign([TopicPartition(topic, q, 0) for q in range(a.partitions)])
        while not stop.is_set():
            m = c.poll(0.2)
            if m is None or m.error():
                continue
            d = json.loads(m.value()[: m.value().index(b"}") + 1])
            q = m.partition()
            with lock:
                if d["p"] != q or d["s"] != consumed[q]:
                    errors.append(f"partition {q}: expected sequence {consumed[q]}, got {d}")
                consumed[q] = d["s"] + 1
                latencies.append((time.time() - d["t"]) * 1000)
        c.close()

    pt = threading.Thread(target=produce)
    ct = threading.Thread(target=consume)
    pt.start()
    ct.start()
    t0 = time.monotonic()
    last = t0
    while pt.is_alive():
        pt.join(timeout=1)
        if time.monotonic() - last >= a.report_secs:
            last = time.monotonic()
            with lock:
                lat = latencies[:]
                latencies.clear()
                print(f"[{last - t0:7.0f}s] acked={sum(acked.values())} consumed={sum(consumed.values())} "
                      f"e2e p50={percentile(lat, 50):.1f}ms p99={percentile(lat, 99):.1f}ms errors={len(errors)}",
                      flush=True)
    # Let the consumer catch up with everything acknowledged.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with lock:
            if all(consumed[q] >= acked[q] for q in acked):
                break
        time.sleep(0.5)
    time.sleep(2)
    stop.set()
    ct.join()
    total_acked = sum(acked.values())
    total_consumed = sum(consumed.values())
    ok = not errors and all(consumed[q] == acked[q] for q in acked)
    print(f"RESULT topic={topic} minutes={a.minutes} acked={total_acked} consumed={total_consumed} "
          f"errors={len(errors)} ok={ok}")
    for e in errors[:20]:
        print("ERROR", e)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
