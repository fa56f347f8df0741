"""The data lifecycle against a real S3 API server (moto): retention, DeleteRecords and
DeleteTopics free their objects, orphans are collected.

- Retention by time (`retention.ms`) and by size (`retention.bytes`), by whole batches: the
  log start offset rises, ListOffsets(earliest) follows, librdkafka and Java consumers that
  ask for an offset below it are reset by `auto.offset.reset` and read exactly what is left.
- Objects whose batches were all retired leave the S3 listing after the grace period.
- Objects no commit ever named (orphans) are deleted by the listing sweep, also after a
  `kill -9` and restart; every acknowledged record still reads back.
- A `kill -9` in the middle of deleting a topic's objects: after the restart the rest are
  deleted at once (the new collector takes over the marks its predecessor left unconfirmed),
  and nothing another topic references is touched.
"""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import EXTERNAL, need_tool
from lifecycle import s3_broker, wait_until
from s3server import MotoServer
from test_kafka_tools import JVM_FLAGS, kafka_libs  # noqa: F401  (a fixture)

pytestmark = pytest.mark.skipif(
    bool(EXTERNAL), reason="INKLESS_TEST_BOOTSTRAP is set: these tests configure their own broker"
)

BUCKET = "inkless-life"
PREFIX = "life"
LIFECYCLE_ENV = {
    "INKLESS__RETENTION__CHECK_INTERVAL_MS": "300",
    "INKLESS__STORAGE__COLLECT_INTERVAL_MS": "300",
    "INKLESS__STORAGE__OBJECT_DELETE_DELAY_MS": "1000",
    "INKLESS__STORAGE__ORPHAN_SCAN_INTERVAL_MS": "1000",
    "INKLESS__STORAGE__ORPHAN_MIN_AGE_MS": "3000",
}


@pytest.fixture(scope="module")
def life(tmp_path_factory):
    with s3_broker(tmp_path_factory.mktemp("lifecycle"), BUCKET, PREFIX, LIFECYCLE_ENV) as (broker, moto, _):
        yield broker, moto


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create(bootstrap: str, topic: str, partitions: int, configs: dict[str, str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1, config=configs)])[topic].result(30)


def produce(bootstrap: str, topic: str, counts: dict[int, int], tag: str, ts: int | None = None,
            size: int = 100, one_batch_each: bool = False) -> None:
    """`counts[p]` records `tag-p-i` to partition p (values padded to `size` bytes)."""
    conf = {"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True}
    if one_batch_each:
        conf["batch.num.messages"] = 1
    prod = Producer(conf)
    for p, n in counts.items():
        for i in range(n):
            value = f"{tag}-{p}-{i}".ljust(size, ".").encode()
            kw = {} if ts is None else {"timestamp": ts + i}
            prod.produce(topic, key=f"k{i}".encode(), value=value, partition=p, **kw)
    assert prod.flush(60) == 0, "records not delivered"


def watermarks(bootstrap: str, topic: str, partitions: int) -> dict[int, tuple[int, int]]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused"})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in range(partitions)}
    finally:
        c.close()


def consume_from_zero(bootstrap: str, topic: str, partitions: int, expect: int) -> list[str]:
    """librdkafka asked for offset 0 of every partition, reset to earliest by the broker's
    OFFSET_OUT_OF_RANGE; returns the values read (waits a little for anything extra)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": uniq("g"), "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got: list[str] = []
    deadline = time.monotonic() + 30
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is None:
            if len(got) >= expect and time.monotonic() - quiet_since > 1.5:
                break
            continue
        quiet_since = time.monotonic()
        if not m.error():
            got.append(m.value().decode().rstrip("."))
    c.close()
    return got


def java_consume_from_zero(libs, bootstrap: str, topic: str, partition: int, expect: int) -> list[str]:
    """Kafka's own console consumer (the Java client) at offset 0 with auto.offset.reset=earliest."""
    java = need_tool("java")
    argv = [java, *JVM_FLAGS, "-cp", f"{libs}/*", "org.apache.kafka.tools.consumer.ConsoleConsumer",
            "--bootstrap-server", bootstrap, "--topic", topic, "--partition", str(partition),
            "--offset", "0", "--command-property", "auto.offset.reset=earliest",
            "--max-messages", str(expect), "--timeout-ms", "30000"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"console consumer failed:\n{r.stdout}\n{r.stderr[-3000:]}"
    return [line.rstrip(".") for line in r.stdout.splitlines() if line]


def objects(moto: MotoServer) -> set[str]:
    return set(moto.list_keys(BUCKET, PREFIX + "/"))


def test_retention_by_time(life, kafka_libs):
    broker, moto = life
    bootstrap = broker.bootstrap
    topic = uniq("by-time")
    create(bootstrap, topic, 2, {"retention.ms": "600000"})
    before = objects(moto)
    # An hour old: expired on arrival. Then current records, which stay.
    produce(bootstrap, topic, {0: 30, 1: 20}, "old", ts=int(time.time() * 1000) - 3_600_000)
    old_objects = objects(moto) - before
    assert old_objects, "the old records were written to S3"
    produce(bootstrap, topic, {0: 10, 1: 5}, "new")
    wait_until("earliest follows retention",
               lambda: watermarks(bootstrap, topic, 2) == {0: (30, 40), 1: (20, 25)})

    got = consume_from_zero(bootstrap, topic, 2, 15)
    want = [f"new-0-{i}" for i in range(10)] + [f"new-1-{i}" for i in range(5)]
    assert sorted(got) == sorted(want)
    assert java_consume_from_zero(kafka_libs, bootstrap, topic, 0, 10) == [f"new-0-{i}" for i in range(10)]

    wait_until("the expired objects leave the bucket", lambda: not (objects(moto) & old_objects))
    assert objects(moto) - before, "the objects of the retained records stay"


def test_retention_by_size(life, kafka_libs):
    broker, moto = life
    bootstrap = broker.bootstrap
    topic = uniq("by-size")
    create(bootstrap, topic, 1, {"retention.bytes": "20000"})
    produce(bootstrap, topic, {0: 40}, "rec", size=1000, one_batch_each=True)

    def kept():
        # Settled: the same over a few retention passes.
        low, high = watermarks(bootstrap, topic, 1)[0]
        time.sleep(1)
        return high - low if low > 0 and (low, high) == watermarks(bootstrap, topic, 1)[0] else None

    # Batches of a little over 1,000 bytes: the oldest go while 20,000 bytes remain.
    n = wait_until("retention.bytes retires the oldest batches", kept)
    assert 19 <= n <= 20, f"{n} batches kept"
    want = [f"rec-0-{i}" for i in range(40 - n, 40)]
    assert consume_from_zero(bootstrap, topic, 1, n) == want
    assert java_consume_from_zero(kafka_libs, bootstrap, topic, 0, n) == want


def test_delete_records_and_delete_topics_free_their_objects(life):
    broker, moto = life
    bootstrap = broker.bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    kept, gone = uniq("kept"), uniq("deleted")
    create(bootstrap, kept, 2, {})
    before = objects(moto)
    produce(bootstrap, kept, {0: 20, 1: 20}, "a")
    written = objects(moto) - before
    assert written
    futures = admin.delete_records([TopicPartition(kept, 0, 20), TopicPartition(kept, 1, 20)])
    for f in futures.values():
        f.result(30)
    assert watermarks(bootstrap, kept, 2) == {0: (20, 20), 1: (20, 20)}
    wait_until("DeleteRecords frees its objects", lambda: not (objects(moto) & written))

    create(bootstrap, gone, 3, {})
    before = objects(moto)
    produce(bootstrap, gone, {0: 10, 1: 10, 2: 10}, "b")
    written = objects(moto) - before
    assert written
    admin.delete_topics([gone])[gone].result(30)
    wait_until("DeleteTopics frees its objects", lambda: not (objects(moto) & written))


def test_orphans_are_collected_also_after_kill_9(life):
    broker, moto = life
    bootstrap = broker.bootstrap
    topic = uniq("survivor")
    create(bootstrap, topic, 2, {})
    before = objects(moto)
    produce(bootstrap, topic, {0: 50, 1: 50}, "live")
    live_objects = objects(moto) - before
    orphans = {f"{PREFIX}/wal/orphan-{uuid.uuid4()}", f"{PREFIX}/merged/orphan-{uuid.uuid4()}"}
    for key in orphans:
        moto.put_object(BUCKET, key, b"never committed")
    wait_until("the orphans are collected", lambda: not (objects(moto) & orphans))

    # A crash leaves orphans too; they are collected after the restart.
    late = f"{PREFIX}/wal/orphan-{uuid.uuid4()}"
    moto.put_object(BUCKET, late, b"never committed")
    broker.kill9()
    broker.start()
    wait_until("the orphan is collected after a restart", lambda: late not in objects(moto))
    assert live_objects <= objects(moto), "no object with live data was deleted"
    got = consume_from_zero(bootstrap, topic, 2, 100)
    assert sorted(got) == sorted(f"live-{p}-{i}" for p in range(2) for i in range(50))


@pytest.fixture
def slow_deleting(tmp_path):
    """A broker that deletes 4 objects a second, so that a kill lands mid-deletion."""
    env = {**LIFECYCLE_ENV, "INKLESS__STORAGE__MAX_OBJECT_DELETES_PER_SECOND": "4"}
    with s3_broker(tmp_path, BUCKET, PREFIX, env) as (broker, moto, _):
        yield broker, moto


def test_kill_9_during_deletion_leaves_nothing_behind_and_loses_nothing(slow_deleting):
    broker, moto = slow_deleting
    bootstrap = broker.bootstrap
    doomed, kept = uniq("doomed"), uniq("kept")
    create(bootstrap, doomed, 1, {})
    create(bootstrap, kept, 2, {})
    before = objects(moto)
    for i in range(24):  # a producer each time: one object each
        produce(bootstrap, doomed, {0: 5}, f"doomed{i}")
    doomed_objects = objects(moto) - before
    assert len(doomed_objects) >= 12, f"expected an object per flush, got {len(doomed_objects)}"
    produce(bootstrap, kept, {0: 50, 1: 50}, "live")
    kept_objects = objects(moto) - before - doomed_objects

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.delete_topics([doomed])[doomed].result(30)
    wait_until("the deletion is under way",
               lambda: 0 < len(doomed_objects & objects(moto)) <= len(doomed_objects) - 3, timeout=60)
    broker.kill9()
    left = doomed_objects & objects(moto)
    assert left, "the kill came after the deletion finished"
    broker.start()
    wait_until("every object of the deleted topic is gone after the restart",
               lambda: not (doomed_objects & objects(moto)), timeout=30)
    assert kept_objects <= objects(moto), "an object another topic references was deleted"
    got = consume_from_zero(bootstrap, kept, 2, 100)
    assert sorted(got) == sorted(f"live-{p}-{i}" for p in range(2) for i in range(50))
