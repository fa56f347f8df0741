"""`inkless storage check` against a real S3 API server (moto) and the SQLite store of a
running broker: it reports exactly the batches whose object was deleted behind the broker's
back and the object planted without a commit, exits non-zero while problems are left,
`--repair` deletes the orphan, `--repair --drop-missing` raises the log start past the lost
batches at a partition's start, and a clean store reports nothing and exits 0.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import EXTERNAL, LocalBroker, free_port, stop_and_check
from s3server import MotoServer, s3_env

pytestmark = pytest.mark.skipif(
    bool(EXTERNAL), reason="INKLESS_TEST_BOOTSTRAP is set: this test configures its own broker"
)

BUCKET = "inkless-check"
PREFIX = "chk"
TOPIC = "checked"


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("storage-check")
    moto = MotoServer(tmp / "moto.log")
    moto.start()
    moto.create_bucket(BUCKET)
    broker = LocalBroker(tmp / "data", free_port(), tmp)
    broker.extra_env = s3_env(moto.endpoint, BUCKET, PREFIX, 10_000)
    broker.start()
    try:
        yield broker, moto
    finally:
        try:
            stop_and_check(broker)
        finally:
            moto.stop()


def keys(moto: MotoServer) -> set[str]:
    return set(moto.list_keys(BUCKET, PREFIX + "/"))


def produce_one_object(broker: LocalBroker, moto: MotoServer, partition: int, tag: str) -> str:
    """Five records to `partition`, flushed; returns the key of the one new object."""
    before = keys(moto)
    prod = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5, "enable.idempotence": True})
    for i in range(5):
        prod.produce(TOPIC, value=f"{tag}-{i}".encode(), partition=partition)
    assert prod.flush(60) == 0, "records not delivered"
    new = keys(moto) - before
    assert len(new) == 1, new
    return new.pop()


def check(broker: LocalBroker, *flags: str) -> tuple[int, dict]:
    """Runs `inkless storage check --json` with the broker's configuration."""
    env = {"INKLESS__STORAGE__DATA_DIR": str(broker.data_dir), **broker.extra_env}
    r = subprocess.run(
        [str(broker.binary), "storage", "check", "--json", "--min-orphan-age-ms", "0", *flags],
        cwd=broker.data_dir.parent, env=env, capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode in (0, 1), f"check could not run ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.returncode, json.loads(r.stdout)


def assert_clean(report: dict) -> None:
    assert report["bad_batches"] == []
    assert report["orphans"] == []
    assert report["wrong_live_bytes"] == []
    assert report["holes"] == []
    assert report["problems_left"] == 0


def test_storage_check_finds_and_repairs(checked):
    broker, moto = checked
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(TOPIC, 2, 1)])[TOPIC].result(30)
    produce_one_object(broker, moto, 0, "a")
    lost = produce_one_object(broker, moto, 1, "b")
    produce_one_object(broker, moto, 0, "c")

    rc, report = check(broker)
    assert rc == 0, report
    assert_clean(report)
    assert report["batches"] >= 3 and report["objects_listed"] == 3

    # An object deleted behind the broker's back, and one no commit ever named.
    moto.delete_object(BUCKET, lost)
    orphan = f"{PREFIX}/wal/planted-orphan"
    moto.put_object(BUCKET, orphan, b"not a produce object")
    rc, report = check(broker)
    assert rc == 1, report
    bad = report["bad_batches"]
    assert bad and {(b["topic"], b["partition"], b["object_key"], b["object_size"]) for b in bad} == {
        (TOPIC, 1, lost.removeprefix(PREFIX + "/"), None)
    }, bad
    assert [o["key"] for o in report["orphans"]] == ["wal/planted-orphan"], report["orphans"]
    assert report["wrong_live_bytes"] == [] and report["holes"] == []
    assert report["problems_left"] == len(bad) + 1

    # --repair deletes the orphan; the lost batches cannot be repaired.
    rc, report = check(broker, "--repair")
    assert rc == 1, report
    assert report["repairs"]["orphans_deleted"] == ["wal/planted-orphan"]
    assert orphan not in keys(moto)
    assert report["problems_left"] == len(bad)

    # --drop-missing: the lost batches are partition 1's first, so its log start rises past them.
    rc, report = check(broker, "--repair", "--drop-missing")
    assert rc == 0, report
    raised = report["repairs"]["log_starts_raised"]
    assert [(p, start) for _, p, start in raised] == [(1, max(b["last_offset"] for b in bad) + 1)]

    rc, report = check(broker)
    assert rc == 0, report
    assert_clean(report)
