#!/usr/bin/env python3
"""Produce and end-to-end latency with and without merging running.

One release broker on the embedded default, started twice: merging off, then merging on
with settings that keep it busy (every second, batches older than 5 s). Each run: a
producer at a fixed rate (acks=all, idempotent, linger 5 ms) over P partitions measures
each record's acknowledgement latency; a consumer tailing the topic measures send-to-poll
latency from a timestamp in the value. Prints p50/p99/max of both, per run, and the
merger's work during the run.

  BUILD=0 INKLESS_BIN=$CARGO_TARGET_DIR/release/inkless scripts/bench/merge_latency.py
  scripts/bench/merge_latency.py --seconds 60 --mb-per-s 20 --partitions 50
"""

from __future__ import annotations

import argparse
import os
import re
import struct
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from lifecycle import Broker  # scripts/bench/lifecycle.py

BUSY_MERGER = {"INKLESS__MERGE__INTERVAL_MS": "1000", "INKLESS__MERGE__MIN_AGE_MS": "5000",
               "INKLESS__MERGE__MAX_DELAY_MS": "5000", "INKLESS__STORAGE__COLLECT_INTERVAL_MS": "1000",
               "INKLESS__STORAGE__OBJECT_DELETE_DELAY_MS": "5000"}


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def merged_bytes(admin: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10) as r:
        m = re.search(r"^inkless_merger_written_bytes_total (\d+)$", r.read().decode(), re.M)
    return int(m.group(1)) if m else 0


def run(broker: Broker, seconds: float, rate: float, partitions: int, size: int) -> dict:
    topic = f"lat-{os.getpid()}-{broker.runs}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
    acks: list[float] = []
    e2e: list[float] = []
    stop = threading.Event()

    def consume() -> None:
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "lat", "enable.auto.commit": False,
                      "fetch.wait.max.ms": 100})
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        while not stop.is_set():
            for m in c.consume(500, 0.2):
                if not m.error():
                    e2e.append(time.time() - struct.unpack(">d", m.value()[:8])[0])
        c.close()

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5})
    pad = os.urandom(size - 8)
    t0, i = time.monotonic(), 0
    before = merged_bytes(broker.admin)
    while time.monotonic() - t0 < seconds:
        due = t0 + i * size / rate
        now = time.monotonic()
        if due > now:
            p.poll(min(due - now, 0.01))
            continue
        sent = time.monotonic()
        p.produce(topic, value=struct.pack(">d", time.time()) + pad, partition=i % partitions,
                  on_delivery=lambda err, _m, sent=sent: err is None and acks.append(time.monotonic() - sent))
        i += 1
    p.flush(60)
    time.sleep(2)
    stop.set()
    reader.join(30)
    return {"records": i, "acks": acks, "e2e": e2e, "merged": merged_bytes(broker.admin) - before}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--mb-per-s", type=float, default=20)
    ap.add_argument("--partitions", type=int, default=50)
    ap.add_argument("--size", type=int, default=1024)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="inkless-merge-latency-"))
    rows = []
    for name, env in [("merging off", {"INKLESS__MERGE__ENABLED": "false"}), ("merging on", BUSY_MERGER)]:
        broker = Broker(Path(os.environ["INKLESS_BIN"]), work / name.replace(" ", "-"))
        (work / name.replace(" ", "-")).mkdir()
        broker.start(**env)
        try:
            r = run(broker, args.seconds, args.mb_per_s * 1e6, args.partitions, args.size)
        finally:
            broker.stop()
        rows.append((name, r))
    print(f"\n{args.mb_per_s} MB/s of {args.size} B records over {args.partitions} partitions for {args.seconds} s")
    print(f"{'run':12} {'records':>8} {'merged MB':>9} {'ack p50':>8} {'ack p99':>8} {'ack max':>8} "
          f"{'e2e p50':>8} {'e2e p99':>8} {'e2e max':>8}  (ms)")
    for name, r in rows:
        a, e = r["acks"], r["e2e"]
        print(f"{name:12} {r['records']:8} {r['merged'] / 1e6:9.1f} {pct(a, 50) * 1e3:8.1f} {pct(a, 99) * 1e3:8.1f} "
              f"{max(a, default=0) * 1e3:8.1f} {pct(e, 50) * 1e3:8.1f} {pct(e, 99) * 1e3:8.1f} {max(e, default=0) * 1e3:8.1f}")


if __name__ == "__main__":
    main()
