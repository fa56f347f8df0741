"""Fetch against a slow object store: answers stay prompt, reads still progress.

A consumer catching up on data that is in no cache needs one GET per object its batches
are in. When the object store is slower than that (an overloaded S3 endpoint), a fetch used
to wait for every GET and could be answered after the client had given up on it (60 s for
librdkafka), so the client asked again and never got further. Now a fetch answers what was
read within `fetch.read_wait_ms` (or its max wait, if longer), from the first batch on;
the GETs still running finish into the cache, where the next fetch finds them.

The test: one partition whose 12 batches are in 12 objects, a broker restarted so its cache
is cold, GETs that take 1.5 s each and run one at a time (so reading all takes 18 s). Every
raw Fetch must be answered within a few seconds, and fetching from the next offset each
time must read every batch, in order, with its offsets.
"""

from __future__ import annotations

import time
import urllib.request

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import EXTERNAL, LocalBroker, free_port, stop_and_check
from groupwire import NONE, Conn, batch_offsets

pytestmark = pytest.mark.skipif(
    bool(EXTERNAL), reason="INKLESS_TEST_BOOTSTRAP is set: this test configures its own broker"
)

GET_SECONDS = 1.5
BATCHES = 12
SLOW_ENV = {
    "INKLESS__STORAGE__LATENCY__ENABLED": "true",
    "INKLESS__STORAGE__LATENCY__GET_P50_MS": str(GET_SECONDS * 1000),
    "INKLESS__STORAGE__LATENCY__GET_P99_MS": str(GET_SECONDS * 1000),
    "INKLESS__STORAGE__LATENCY__PUT_P50_MS": "0",
    "INKLESS__FETCH__MAX_CONCURRENT_GETS": "1",
    "INKLESS__FETCH__READ_WAIT_MS": "500",
    "INKLESS__MERGE__ENABLED": "false",
}


def partial_reads(admin_port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    line = 'inkless_fetch_partial_reads_total{reason="deadline"} '
    return next((int(float(x[len(line):])) for x in text.splitlines() if x.startswith(line)), 0)


def test_fetches_answer_promptly_and_progress_when_gets_are_slow(tmp_path):
    admin_port = free_port()
    broker = LocalBroker(tmp_path / "data", free_port(), tmp_path)
    broker.extra_env = {"INKLESS__ADMIN__LISTEN": f"127.0.0.1:{admin_port}"}
    broker.start()
    try:
        topic = "slow-reads"
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
        written = []
        with Conn(broker.bootstrap) as c:
            for i in range(BATCHES):
                # Each produce waits for its object's upload: one object per batch.
                err, base = c.produce(topic, 0, [f"b{i}-r{j}".encode() for j in range(5)])
                assert err == NONE, f"produce {i}: error {err}"
                written.append((base, base + 4))
        broker.stop()
        broker.extra_env.update(SLOW_ENV)
        broker.start()  # an empty cache

        read, slowest, started = [], 0.0, time.monotonic()
        with Conn(broker.bootstrap) as c:
            while len(read) < BATCHES and time.monotonic() - started < 120:
                t0 = time.monotonic()
                err, hwm, records = c.fetch(topic, 0, read[-1][1] + 1 if read else 0, max_wait_ms=100)
                slowest = max(slowest, time.monotonic() - t0)
                assert err == NONE, f"fetch error {err}"
                assert hwm == written[-1][1] + 1
                read += batch_offsets(records)
        took = time.monotonic() - started
        print(f"read {len(read)} batches in {took:.1f} s; slowest fetch {slowest:.2f} s")
        assert read == written, "every batch once, in order, with its offsets"
        # The GETs alone take BATCHES * GET_SECONDS = 18 s; one fetch waiting for all of
        # them (the old behaviour) would have taken that long.
        assert slowest < 5.0, f"a fetch took {slowest:.1f} s"
        assert took >= BATCHES * GET_SECONDS * 0.9, "the GETs really were slow"
        assert partial_reads(admin_port) > 0, "answers were cut at the read deadline"
    finally:
        stop_and_check(broker)
