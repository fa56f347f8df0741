"""Key compaction of compacted topics against a real S3 API server (moto).

- 100,000 records over 1,000 keys, every 10th key deleted by a tombstone at the end: once
  compacted, a consumer from the beginning sees exactly the latest value of every key at the
  offset it was written at, offsets increasing, tombstones of the deleted keys until
  `delete.retention.ms`, then nothing of them; the high watermark does not move; the bucket
  holds fewer bytes and fewer objects.
- A record without a key to a compacted topic gets INVALID_RECORD and changes nothing.
- Invalid compaction configs get INVALID_CONFIG.
"""

from __future__ import annotations

import time
import urllib.parse
import urllib.request
import uuid
import xml.etree.ElementTree as ET

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   NewTopic)

from conftest import EXTERNAL
from lifecycle import metric, s3_broker, wait_until
from s3server import MotoServer

pytestmark = pytest.mark.skipif(
    bool(EXTERNAL), reason="INKLESS_TEST_BOOTSTRAP is set: these tests configure their own broker"
)

BUCKET = "inkless-compact"
PREFIX = "compact"
KEYS = 1_000
RECORDS = 100_000
COMPACT_ENV = {
    "INKLESS__COMPACT__INTERVAL_MS": "300",
    "INKLESS__COMPACT__MIN_AGE_MS": "1000",
    "INKLESS__MERGE__ENABLED": "false",
    "INKLESS__STORAGE__COLLECT_INTERVAL_MS": "300",
    "INKLESS__STORAGE__OBJECT_DELETE_DELAY_MS": "1000",
    "INKLESS__STORAGE__ORPHAN_SCAN_INTERVAL_MS": "2000",
    "INKLESS__STORAGE__ORPHAN_MIN_AGE_MS": "30000",
}


@pytest.fixture
def compacting(tmp_path):
    with s3_broker(tmp_path, BUCKET, PREFIX, COMPACT_ENV) as running:
        yield running


def bucket(moto: MotoServer) -> tuple[int, int]:
    """(objects, bytes) under the broker's prefix."""
    ns = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}
    count, size, token = 0, 0, None
    while True:
        query = {"list-type": "2", "prefix": f"{PREFIX}/"}
        if token:
            query["continuation-token"] = token
        url = f"{moto.endpoint}/{BUCKET}?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(url, timeout=10) as r:
            root = ET.fromstring(r.read())
        for c in root.findall("s3:Contents", ns):
            count += 1
            size += int(c.findtext("s3:Size", "0", ns))
        token_el = root.find("s3:NextContinuationToken", ns)
        if token_el is None or not token_el.text:
            return count, size
        token = token_el.text


def produce_history(bootstrap: str, topic: str) -> dict[str, tuple[int, str | None]]:
    """Writes RECORDS records over KEYS keys (the last write of every 10th key is a
    tombstone); returns each key's last write: (offset, value)."""
    prod = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                     "compression.type": "lz4", "linger.ms": 5})
    errors: list[str] = []
    prod_cb = lambda err, _msg: err is not None and errors.append(str(err))  # noqa: E731
    last: dict[str, tuple[int, str | None]] = {}
    for i in range(RECORDS):
        k = i % KEYS
        key = f"k{k:04d}"
        value = None if i >= RECORDS - KEYS and k % 10 == 0 else f"v{i}-".ljust(40, "x")
        prod.produce(topic, key=key.encode(), value=value and value.encode(), partition=0,
                     on_delivery=prod_cb)
        last[key] = (i, value)
        if i % 5_000 == 0:
            prod.poll(0)
    assert prod.flush(60) == 0
    assert not errors, errors[:5]
    return last


def read_from_start(bootstrap: str, topic: str) -> list[tuple[int, str, str | None]]:
    """(offset, key, value) of everything from offset 0 to the high watermark."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    _, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    c.assign([TopicPartition(topic, 0, 0)])
    out: list[tuple[int, str, str | None]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out or out[-1][0] < high - 1):
        m = c.poll(0.5)
        if m is not None and not m.error():
            v = m.value()
            out.append((m.offset(), m.key().decode(), v.decode() if v is not None else None))
    c.close()
    return out


def alter(admin: AdminClient, topic: str, configs: dict[str, str]) -> None:
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in configs.items()])
    admin.incremental_alter_configs([res])[res].result(30)


def test_compaction_keeps_the_latest_value_of_every_key(compacting):
    broker, moto, admin_port = compacting
    topic = f"compacted-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    # Not compacted while writing (a ratio of 1 is never exceeded), so the bucket's size
    # before compaction can be measured.
    configs = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "1",
               "delete.retention.ms": "6000"}
    admin.create_topics([NewTopic(topic, 1, 1, config=configs)])[topic].result(30)
    last = produce_history(broker.bootstrap, topic)
    time.sleep(1.5)
    objects_before, bytes_before = bucket(moto)
    assert metric(admin_port, "inkless_compactor_compactions_total") == 0

    alter(admin, topic, {"min.cleanable.dirty.ratio": "0.5", "max.compaction.lag.ms": "3000"})
    live = {k: v for k, (_, v) in last.items() if v is not None}
    deleted = {k for k, (_, v) in last.items() if v is None}
    assert len(live) == 900 and len(deleted) == 100

    def compacted():
        got = read_from_start(broker.bootstrap, topic)
        return got if len(got) == KEYS else None

    got = wait_until("the topic is compacted to one record per key", compacted, timeout=60)
    offsets = [o for o, _, _ in got]
    assert offsets == sorted(set(offsets)), "offsets strictly increase"
    assert {k: (o, v) for o, k, v in got} == last, "each key's last write, at its offset"
    assert metric(admin_port, "inkless_compactor_compactions_total") >= 1

    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "wm"})
    assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, RECORDS)
    c.close()

    def tombstones_gone():
        got = read_from_start(broker.bootstrap, topic)
        return got if {k for _, k, _ in got} == set(live) else None

    got = wait_until("the tombstones are gone after delete.retention.ms", tombstones_gone, 60)
    assert {k: v for _, k, v in got} == live, "exactly the latest value of every live key"
    offsets = [o for o, _, _ in got]
    assert offsets == sorted(set(offsets))

    def shrunk():
        n, size = bucket(moto)
        return (n, size) if size * 5 < bytes_before and n < objects_before else None

    n, size = wait_until("the bucket shrinks", shrunk, 30)
    print(f"bucket before compaction: {objects_before} objects, {bytes_before} B; after: {n}, {size} B")


def test_keyless_records_to_a_compacted_topic_are_refused(compacting):
    broker, _, _ = compacting
    topic = f"keyless-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config={"cleanup.policy": "compact,delete"})])[topic].result(30)
    prod = Producer({"bootstrap.servers": broker.bootstrap, "retries": 0})
    outcome: list[KafkaError | None] = []
    prod.produce(topic, key=b"a", value=b"1", partition=0, on_delivery=lambda e, m: outcome.append(e))
    prod.flush(30)
    prod.produce(topic, value=b"no key", partition=0, on_delivery=lambda e, m: outcome.append(e))
    prod.flush(30)
    assert outcome[0] is None
    assert outcome[1] is not None and outcome[1].code() == KafkaError.INVALID_RECORD, outcome
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "wm"})
    assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 1), "nothing else changed"
    c.close()


BAD_CONFIGS = [
    ("cleanup.policy", "shred"),
    ("min.cleanable.dirty.ratio", "1.5"),
    ("min.cleanable.dirty.ratio", "often"),
    ("max.compaction.lag.ms", "0"),
    ("min.compaction.lag.ms", "-1"),
    ("delete.retention.ms", "-5"),
]


def test_invalid_compaction_configs_are_refused(compacting):
    broker, _, _ = compacting
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = f"bad-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, 1, 1, config={"cleanup.policy": "compact"})])[topic].result(30)
    for name, value in BAD_CONFIGS:
        other = f"bad-{uuid.uuid4().hex[:8]}"
        with pytest.raises(KafkaException) as e:
            admin.create_topics([NewTopic(other, 1, 1, config={name: value})])[other].result(30)
        assert e.value.args[0].code() == KafkaError.INVALID_CONFIG, (name, value)
        with pytest.raises(KafkaException) as e:
            alter(admin, topic, {name: value})
        assert e.value.args[0].code() == KafkaError.INVALID_CONFIG, (name, value)
    # Kafka refuses a minimum compaction lag above the maximum, on create and on alter.
    conflict = {"min.compaction.lag.ms": "60000", "max.compaction.lag.ms": "1000"}
    other = f"bad-{uuid.uuid4().hex[:8]}"
    with pytest.raises(KafkaException) as e:
        admin.create_topics([NewTopic(other, 1, 1, config=conflict)])[other].result(30)
    assert e.value.args[0].code() == KafkaError.INVALID_CONFIG
    alter(admin, topic, {"max.compaction.lag.ms": "1000"})
    with pytest.raises(KafkaException) as e:
        alter(admin, topic, {"min.compaction.lag.ms": "60000"})
    assert e.value.args[0].code() == KafkaError.INVALID_CONFIG
