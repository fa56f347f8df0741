"""The data lifecycle in a three-node cluster (PostgreSQL + moto): merging, retention and
object deletion running on every node while nodes are killed with `kill -9`.

Every acknowledged record reads back once, in order; every produce object ends up merged and
deleted; and `inkless storage check` finds no batch whose object is missing, no orphan, and
no wrong live-byte count.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from cluster import Cluster
from conftest import EXTERNAL, broker_binary
from pgserver import PgServer
from s3server import MotoServer
from lifecycle import wait_until
from test_merge import PARTITIONS, Producing, read_all

pytestmark = pytest.mark.skipif(bool(EXTERNAL), reason="INKLESS_TEST_BOOTSTRAP is set: this test runs its own cluster")

BUCKET = "inkless-life-cluster"
FAST_LIFECYCLE = {
    "INKLESS__MERGE__INTERVAL_MS": "300",
    "INKLESS__MERGE__MIN_AGE_MS": "1000",
    "INKLESS__MERGE__MAX_DELAY_MS": "1500",
    "INKLESS__MERGE__TARGET_OBJECT_BYTES": "262144",
    "INKLESS__MERGE__MAX_ROW_BYTES": "32768",
    "INKLESS__RETENTION__CHECK_INTERVAL_MS": "300",
    "INKLESS__STORAGE__COLLECT_INTERVAL_MS": "300",
    "INKLESS__STORAGE__OBJECT_DELETE_DELAY_MS": "1000",
    "INKLESS__STORAGE__ORPHAN_SCAN_INTERVAL_MS": "2000",
    "INKLESS__STORAGE__ORPHAN_MIN_AGE_MS": "30000",
}


@pytest.fixture
def cluster(tmp_path):
    pg = PgServer()
    pg.start()
    moto = MotoServer(tmp_path / "moto.log")
    moto.start()
    moto.create_bucket(BUCKET)
    db = f"l_{uuid.uuid4().hex[:10]}"
    pg.create_database(db)
    c = Cluster(tmp_path, pg.url(db), moto.endpoint, BUCKET)
    c.s3.update(FAST_LIFECYCLE)
    for node_id, az in {1: "az-a", 2: "az-b", 3: "az-c"}.items():
        c.add(node_id, az).start()
    c.wait_converged(expect_nodes=3)
    try:
        yield c, moto, pg.url(db)
    finally:
        c.stop_all()
        moto.stop()
        pg.stop()


def storage_check(c: Cluster, metadata_url: str) -> dict:
    node = next(iter(c.nodes.values()))
    env = {**node.extra_env, "INKLESS__STORAGE__METADATA": metadata_url}
    r = subprocess.run([str(broker_binary()), "storage", "check", "--json"], capture_output=True, text=True,
                       timeout=120, env={**os.environ, **env}, stdin=subprocess.DEVNULL)
    assert r.returncode in (0, 1), f"storage check failed to run:\n{r.stderr[-3000:]}"
    return {"exit": r.returncode, **json.loads(r.stdout)}


def test_kill_9_in_a_cluster_while_merging_and_deleting(cluster):
    c, moto, metadata_url = cluster
    topic = f"life-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1, config={"retention.ms": "-1"})])[topic].result(30)
    acked: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    for victim in (2, 3, 2):
        producing = Producing(c.bootstrap, topic)
        producing.start()
        time.sleep(3)  # past min_age: merges and deletions are under way on every node
        c.nodes[victim].kill9()
        time.sleep(2)
        c.nodes[victim].start()
        time.sleep(1)
        producing.stop.set()
        producing.join(120)
        assert not producing.errors, producing.errors[:5]
        for p in range(PARTITIONS):
            acked[p] += producing.acked[p]
    c.wait_converged(expect_nodes=3)
    assert sum(map(len, acked.values())) > 1000
    got = read_all(c.bootstrap, topic, acked, timeout=90)
    assert got == acked, "every acknowledged record reads back once, in order"

    wait_until("every produce object is merged and deleted",
               lambda: not moto.list_keys(BUCKET, "cluster/wal/"), timeout=90)
    report = wait_until("storage check finds nothing wrong",
                        lambda: (r := storage_check(c, metadata_url))["exit"] == 0 and r, timeout=60)
    assert report["exit"] == 0, report
    assert read_all(c.bootstrap, topic, acked, timeout=90) == acked
