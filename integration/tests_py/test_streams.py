"""Kafka Streams (the real kafka-streams jar) on the broker: a killed instance is replaced.

Two instances of one application (integration/clients/java StreamsApp: IN upper-cased to
OUT, session timeout 10 s) share a 4-partition input. One is killed with SIGKILL, so it
never leaves the group (as with Streams' default close()). The other must take over its
partitions once the dead member's session times out, whatever state the group is in, and
process what is written after the kill.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from conftest import JAVA_JAR, need_tool
from test_groups import create_topic

PARTITIONS = 4
SESSION_TIMEOUT = 10.0
# The survivor must have taken over within the session timeout plus a rebalance and the
# JVM's first poll; far less than the 300 s max.poll.interval.ms a stuck rebalance waits.
TAKEOVER_LIMIT = SESSION_TIMEOUT + 20.0


class Instance:
    """One StreamsApp process and the states it printed."""

    def __init__(self, bootstrap: str, app: str, src: str, dst: str, state_dir: Path):
        if not JAVA_JAR.is_file():
            pytest.fail(f"{JAVA_JAR} missing: run scripts/install-test-deps.sh", pytrace=False)
        self.proc = subprocess.Popen(
            [need_tool("java"), "-cp", str(JAVA_JAR), "io.inkless.clients.StreamsApp",
             bootstrap, app, src, dst, str(state_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def state(self) -> str | None:
        states = [ln.split()[1] for ln in self.lines if ln.startswith("STATE ")]
        return states[-1] if states else None

    def wait_running(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.state() != "RUNNING":
            if self.proc.poll() is not None or any(ln.startswith("ERROR") for ln in self.lines):
                pytest.fail(f"streams instance failed: {self.lines}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"streams instance not RUNNING within {timeout}s: {self.lines}", pytrace=False)
            time.sleep(0.1)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def produce(bootstrap: str, topic: str, values: list[str]) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i, v in enumerate(values):
        p.produce(topic, key=f"k{i}", value=v, partition=i % PARTITIONS)
    assert p.flush(30) == 0, "records not delivered"


class OutputReader(threading.Thread):
    """Reads every partition of OUT from the start, collecting values."""

    def __init__(self, bootstrap: str, topic: str):
        super().__init__(daemon=True)
        from confluent_kafka import Consumer, TopicPartition

        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex}",
                                  "enable.auto.commit": False})
        self.consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        self.seen: set[str] = set()
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            m = self.consumer.poll(0.2)
            if m is not None and m.error() is None:
                self.seen.add(m.value().decode())
        self.consumer.close()

    def wait_for(self, values: set[str], timeout: float) -> float | None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if values <= self.seen:
                return time.monotonic() - t0
            time.sleep(0.1)
        return None


def test_a_killed_streams_instance_is_replaced_within_the_session_timeout(bootstrap, topic, tmp_path):
    src, dst, app = f"{topic}-in", f"{topic}-out", f"app-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, src, PARTITIONS)
    create_topic(bootstrap, dst, PARTITIONS)
    a = Instance(bootstrap, app, src, dst, tmp_path / "a")
    b = None
    reader = OutputReader(bootstrap, dst)
    reader.start()
    try:
        a.wait_running()
        b = Instance(bootstrap, app, src, dst, tmp_path / "b")
        b.wait_running()
        a.wait_running()
        before = [f"before-{i}" for i in range(40)]
        produce(bootstrap, src, before)
        assert reader.wait_for({v.upper() for v in before}, 60) is not None, "the pair processes records"

        a.kill()
        killed = time.monotonic()
        after = [f"after-{i}" for i in range(40)]
        produce(bootstrap, src, after)
        took = reader.wait_for({v.upper() for v in after}, TAKEOVER_LIMIT + 30)
        assert took is not None, f"the survivor never processed every partition; it printed {b.lines}"
        takeover = time.monotonic() - killed
        print(f"\nSTREAMS takeover after kill -9 of one of two instances: {takeover:.1f} s "
              f"(session timeout {SESSION_TIMEOUT:.0f} s)")
        assert takeover < TAKEOVER_LIMIT, f"takeover took {takeover:.1f} s"
    finally:
        reader.halt.set()
        reader.join(10)
        for inst in (a, b):
            if inst is not None:
                inst.kill()
