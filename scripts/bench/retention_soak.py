#!/usr/bin/env python3
"""Storage stays bounded under retention: a steady producer into a topic with a short
`retention.ms`, against a real S3 API server (moto), for a given time.

Every interval it prints the bucket's object count and bytes, the metadata store's batch rows
and objects (live, dead, marked deleted) and the objects deleted so far: under retention they
reach a plateau. At the end the producer stops, retention drops to 1 ms, and the time to
retire what is left gives the deletion throughput, compared with the ingest rate.

  scripts/bench/retention_soak.sh                          # 30 minutes, retention 2 min
  BUILD=0 scripts/bench/retention_soak.sh --minutes 3 --retention-s 30 --interval-s 15
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import boto3
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

BUCKET, PREFIX = "soak", "inkless"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"{what} did not start")
            time.sleep(0.1)


def metrics(admin: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {m.group(1): int(float(m.group(2))) for m in re.finditer(r"^(inkless_\w+) ([0-9.e+]+)$", text, re.M)}


def bucket(s3) -> tuple[int, int]:
    count = size = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=PREFIX + "/"):
        for o in page.get("Contents", []):
            count += 1
            size += o["Size"]
    return count, size


class SteadyProducer(threading.Thread):
    def __init__(self, bootstrap: str, topic: str, rate: float, partitions: int):
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.rate, self.partitions = bootstrap, topic, rate, partitions
        self.stop = threading.Event()
        self.sent = 0
        self.failed = 0

    def run(self) -> None:
        p = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 20, "enable.idempotence": True})
        value = os.urandom(1024)
        t0, i = time.monotonic(), 0

        def done(err, _m):
            if err is None:
                self.sent += len(value)
            else:
                self.failed += 1

        while not self.stop.is_set():
            due = t0 + i * len(value) / self.rate
            now = time.monotonic()
            if due > now:
                p.poll(min(due - now, 0.05))
                continue
            try:
                p.produce(self.topic, value=value, partition=i % self.partitions, on_delivery=done)
                i += 1
            except BufferError:
                p.poll(0.05)
        p.flush(60)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--retention-s", type=int, default=120)
    ap.add_argument("--interval-s", type=int, default=60)
    ap.add_argument("--mb-per-s", type=float, default=2.0)
    ap.add_argument("--partitions", type=int, default=16)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="inkless-soak-"))
    moto_port, kafka, admin = free_port(), free_port(), free_port()
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
                            stdout=open(work / "moto.log", "wb"), stderr=subprocess.STDOUT)
    wait_port(moto_port, moto, "moto")
    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{moto_port}", region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    s3.create_bucket(Bucket=BUCKET)
    env = dict(os.environ)
    env.update({
        "INKLESS__KAFKA__LISTEN": f"127.0.0.1:{kafka}", "INKLESS__ADMIN__LISTEN": f"127.0.0.1:{admin}",
        "INKLESS__STORAGE__DATA_DIR": str(work / "data"),
        "INKLESS__STORAGE__OBJECT_STORE": f"s3://{BUCKET}/{PREFIX}",
        "INKLESS__STORAGE__S3__ENDPOINT": f"http://127.0.0.1:{moto_port}",
        "INKLESS__STORAGE__S3__REGION": "us-east-1", "INKLESS__STORAGE__S3__ACCESS_KEY_ID": "test",
        "INKLESS__STORAGE__S3__SECRET_ACCESS_KEY": "test", "INKLESS__STORAGE__S3__PATH_STYLE": "true",
        "INKLESS__STORAGE__S3__ALLOW_HTTP": "true", "INKLESS__LOG__LEVEL": "warn",
        # Merging within the retention window, so that the merged objects are retired too.
        "INKLESS__MERGE__MIN_AGE_MS": str(args.retention_s * 1000 // 4),
        "INKLESS__MERGE__MAX_DELAY_MS": str(args.retention_s * 1000 // 3),
        "INKLESS__MERGE__INTERVAL_MS": "10000",
    })
    broker = subprocess.Popen([os.environ["INKLESS_BIN"], "serve"], cwd=work, env=env,
                              stdout=open(work / "broker.log", "wb"), stderr=subprocess.STDOUT)
    try:
        wait_port(kafka, broker, "broker")
        bootstrap = f"127.0.0.1:{kafka}"
        adm = AdminClient({"bootstrap.servers": bootstrap})
        adm.create_topics([NewTopic("soak", args.partitions, 1,
                                    config={"retention.ms": str(args.retention_s * 1000)})])["soak"].result(30)
        producer = SteadyProducer(bootstrap, "soak", args.mb_per_s * 1e6, args.partitions)
        producer.start()
        print(f"{args.mb_per_s} MB/s into {args.partitions} partitions, retention.ms {args.retention_s * 1000}, "
              f"{args.minutes} min; work dir {work}")
        print(f"{'min':>5} {'sent MB':>8} {'bucket objs':>11} {'bucket MB':>9} {'rows':>7} {'live':>5} "
              f"{'dead':>5} {'marked':>6} {'deleted':>7} {'merges':>6}")
        t0 = time.monotonic()
        while time.monotonic() - t0 < args.minutes * 60:
            time.sleep(args.interval_s)
            m = metrics(admin)
            objs, size = bucket(s3)
            print(f"{(time.monotonic() - t0) / 60:5.1f} {producer.sent / 1e6:8.1f} {objs:11} {size / 1e6:9.1f} "
                  f"{m.get('inkless_metadata_batch_rows', 0):7} {m.get('inkless_metadata_live_objects', 0):5} "
                  f"{m.get('inkless_metadata_dead_objects', 0):5} {m.get('inkless_metadata_deleted_objects', 0):6} "
                  f"{m.get('inkless_object_store_deleted_objects_total', 0):7} "
                  f"{m.get('inkless_merger_merges_total', 0):6}", flush=True)
        producer.stop.set()
        producer.join(120)
        ingest = producer.sent / (time.monotonic() - t0)
        # Deletion throughput: retire everything left at once.
        _, left = bucket(s3)
        res = ConfigResource(ConfigResource.Type.TOPIC, "soak", incremental_configs=[
            ConfigEntry("retention.ms", "1", incremental_operation=AlterConfigOpType.SET)])
        for f in adm.incremental_alter_configs([res]).values():
            f.result(30)
        t1 = time.monotonic()
        while bucket(s3)[0] > 0 and time.monotonic() - t1 < 600:
            time.sleep(1)
        took = time.monotonic() - t1
        print(f"ingest {ingest / 1e6:.2f} MB/s ({producer.failed} failed sends); the {left / 1e6:.1f} MB left were "
              f"retired and deleted in {took:.1f} s, including the check interval (30 s) and the grace period "
              f"(60 s): {left / took / 1e6:.2f} MB/s")
    finally:
        broker.send_signal(signal.SIGTERM)
        broker.wait(60)
        moto.terminate()


if __name__ == "__main__":
    main()
