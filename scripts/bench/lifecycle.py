#!/usr/bin/env python3
"""Object-store requests over the whole life of data, and what merging saves a catch-up read.

One broker on the embedded default (local files + SQLite), restarted between phases so that
every read phase starts with a cold cache:

  write     produce N MiB over P partitions (merging off), a tailing consumer reading along
  before    a catch-up consumer reads everything from the beginning (produce objects)
  merge     merging on, until no produce object is left
  after     the same catch-up read (merged objects)
  delete    retention.ms=1: everything is retired and its objects deleted

Prints the requests of each phase (PUT, GET, DELETE, LIST pages) per GiB, and the GETs of the
catch-up reads against one GET per cache block.

  scripts/bench/lifecycle.sh                      # 1 GiB over 100 partitions
  BUILD=0 scripts/bench/lifecycle.sh --mib 64     # short version
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

BLOCK = 4 * 1024 * 1024
VALUE = 8 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, binary: Path, workdir: Path):
        self.binary, self.workdir = binary, workdir
        self.port, self.admin = free_port(), free_port()
        self.proc: subprocess.Popen | None = None
        self.runs = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, **env: str) -> None:
        full = dict(os.environ)
        full.update({
            "INKLESS__KAFKA__LISTEN": self.bootstrap,
            "INKLESS__ADMIN__LISTEN": f"127.0.0.1:{self.admin}",
            "INKLESS__STORAGE__DATA_DIR": str(self.workdir / "data"),
            "INKLESS__RETENTION__MS": "-1",
            "INKLESS__LOG__LEVEL": "warn",
        })
        full.update({k.upper(): v for k, v in env.items()})
        log = open(self.workdir / f"broker-{self.runs}.log", "wb")
        self.runs += 1
        self.proc = subprocess.Popen([str(self.binary), "serve"], cwd=self.workdir, env=full,
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"broker did not start; see {self.workdir}")
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the broker process so far."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def counters(self) -> dict[str, int]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/metrics", timeout=10) as r:
            text = r.read().decode()
        out = {}
        for name in ["put_requests", "get_requests", "deleted_objects", "get_bytes", "put_bytes"]:
            m = re.search(rf"^inkless_object_store_{name}_total (\d+)$", text, re.M)
            out[name] = int(m.group(1)) if m else 0
        m = re.search(r"^inkless_merger_merges_total (\d+)$", text, re.M)
        out["merges"] = int(m.group(1)) if m else 0
        out["cpu_ms"] = int(self.cpu_seconds() * 1000)
        return out


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after}


def produce(bootstrap: str, topic: str, partitions: int, total: int) -> int:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "batch.size": 1_000_000,
                  "acks": "all", "enable.idempotence": True})
    payload = os.urandom(VALUE)
    n = total // VALUE
    for i in range(n):
        while True:
            try:
                p.produce(topic, value=payload, partition=i % partitions)
                break
            except BufferError:
                p.poll(0.05)
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(300) == 0
    return n


def catch_up(bootstrap: str, topic: str, partitions: int, records: int) -> float:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "catch-up", "enable.auto.commit": False,
                  "fetch.max.bytes": 52428800, "max.partition.fetch.bytes": 1048576})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got, t0 = 0, time.monotonic()
    while got < records and time.monotonic() - t0 < 600:
        for m in c.consume(1000, 1.0):
            if not m.error():
                got += 1
    c.close()
    assert got >= records, f"read {got} of {records}"
    return time.monotonic() - t0


def files_under(d: Path) -> int:
    return sum(1 for _ in d.rglob("*") if _.is_file()) if d.exists() else 0


def wait_for(what: str, check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting until {what}")
        time.sleep(0.5)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--partitions", type=int, default=100)
    ap.add_argument("--object-mib", type=float, default=0,
                    help="seal produce objects at this size (a slower producer's objects; default: "
                         "the broker's produce.max_object_bytes, which a fast producer reaches)")
    args = ap.parse_args()
    binary = Path(os.environ["INKLESS_BIN"])
    work = Path(tempfile.mkdtemp(prefix="inkless-lifecycle-"))
    objects = work / "data" / "objects"
    broker = Broker(binary, work)
    topic, total = "lifecycle", args.mib * 1024 * 1024
    phases: list[tuple[str, dict[str, int], float]] = []
    off = {"INKLESS__MERGE__ENABLED": "false"}
    write = dict(off)
    if args.object_mib:
        write["INKLESS__PRODUCE__MAX_OBJECT_BYTES"] = str(int(args.object_mib * 2**20))
    try:
        broker.start(**write)
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.create_topics([NewTopic(topic, args.partitions, 1)])[topic].result(30)
        c0 = broker.counters()
        t0 = time.monotonic()
        records = produce(broker.bootstrap, topic, args.partitions, total)
        phases.append(("write", delta(broker.counters(), c0), time.monotonic() - t0))
        wal_objects = files_under(objects / "wal")
        broker.stop()

        broker.start(**off)
        c0 = broker.counters()
        took = catch_up(broker.bootstrap, topic, args.partitions, records)
        phases.append(("catch-up before merging", delta(broker.counters(), c0), took))
        broker.stop()

        broker.start(INKLESS__MERGE__INTERVAL_MS="500", INKLESS__MERGE__MIN_AGE_MS="0",
                     INKLESS__MERGE__MAX_DELAY_MS="0", INKLESS__MERGE__MAX_BYTES_PER_SECOND="1073741824",
                     INKLESS__MERGE__MAX_REQUEST_SHARE="1",
                     INKLESS__STORAGE__COLLECT_INTERVAL_MS="1000", INKLESS__STORAGE__OBJECT_DELETE_DELAY_MS="1000")
        c0, t0 = broker.counters(), time.monotonic()
        wait_for("every produce object is merged and deleted", lambda: files_under(objects / "wal") == 0, 900)
        phases.append(("merge", delta(broker.counters(), c0), time.monotonic() - t0))
        seg_objects = files_under(objects / "seg")
        broker.stop()

        broker.start(**off)
        c0 = broker.counters()
        took = catch_up(broker.bootstrap, topic, args.partitions, records)
        phases.append(("catch-up after merging", delta(broker.counters(), c0), took))

        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        res = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"retention.ms": "1"})
        for f in admin.alter_configs([res]).values():
            f.result(30)
        broker.stop()
        broker.start(INKLESS__RETENTION__CHECK_INTERVAL_MS="500", INKLESS__STORAGE__COLLECT_INTERVAL_MS="500",
                     INKLESS__STORAGE__OBJECT_DELETE_DELAY_MS="1000", **off)
        c0, t0 = broker.counters(), time.monotonic()
        wait_for("retention deletes every object", lambda: files_under(objects) == 0, 600)
        phases.append(("delete by retention", delta(broker.counters(), c0), time.monotonic() - t0))
        broker.stop()
    finally:
        broker.stop()

    gib = total / 2**30
    print(f"\n{args.mib} MiB in {records} records of {VALUE} B over {args.partitions} partitions; "
          f"{wal_objects} produce objects, {seg_objects} merged objects; block {BLOCK // 2**20} MiB")
    print(f"{'phase':26} {'seconds':>8} {'CPU s/GiB':>9} {'PUT':>7} {'GET':>7} {'DELETE':>7} "
          f"{'PUT/GiB':>8} {'GET/GiB':>8} {'DEL/GiB':>8}")
    for name, d, secs in phases:
        print(f"{name:26} {secs:8.1f} {d['cpu_ms'] / 1000 / gib:9.2f} {d['put_requests']:7} {d['get_requests']:7} "
              f"{d['deleted_objects']:7} {d['put_requests'] / gib:8.0f} {d['get_requests'] / gib:8.0f} "
              f"{d['deleted_objects'] / gib:8.0f}")
    ideal = total / BLOCK
    before = phases[1][1]["get_requests"]
    after = phases[3][1]["get_requests"]
    per_partition = args.partitions * -(-total // args.partitions // BLOCK)
    print(f"catch-up GETs: before merging {before}, after {after} ({(1 - after / max(before, 1)) * 100:.0f}% fewer); "
          f"one GET per block would be {ideal:.0f}: after/ideal = {after / ideal:.2f}; "
          f"one GET per block of each partition's data would be {per_partition}: after/that = {after / per_partition:.2f}")
    print("LIST: the orphan sweep lists once per start and per orphan_scan_interval_ms (1 request per 1,000 objects)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
