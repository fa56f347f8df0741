"""The metrics of a running six-node cluster (PostgreSQL and S3): every node reports the
same live set and a fresh lease, each partition's offsets come from exactly one node, a
group's lag from its coordinator only, and the union of the nodes' scrapes exports every
metric the dashboard and the alerts name."""

from __future__ import annotations

import re
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer

from cluster import Cluster
from conftest import EXTERNAL
from test_cluster import AZS, BUCKET, group_nodes, infra, wait_placed  # noqa: F401 (fixture)
from test_groups import create_topic, uniq
from test_observability import alerts, dashboard_queries, exported_names, METRIC

pytestmark = pytest.mark.skipif(bool(EXTERNAL), reason="starts its own cluster")

PARTITIONS = 6


@pytest.fixture
def metered_cluster(infra, tmp_path):  # noqa: F811 (the fixture imported above)
    pg, moto = infra
    db = f"m_{uuid.uuid4().hex[:10]}"
    pg.create_database(db)
    c = Cluster(tmp_path, pg.url(db), moto.endpoint, BUCKET)
    c.s3["INKLESS__STORAGE__OBJECT_STORE"] = f"s3://{BUCKET}/{db}"
    for node_id, az in AZS.items():
        n = c.add(node_id, az)
        n.extra_env["INKLESS__ADMIN__METRICS_REFRESH_INTERVAL_MS"] = "300"
        n.extra_env["INKLESS__STORAGE__COLLECT_INTERVAL_MS"] = "300"
        n.start()
    c.wait_converged(expect_nodes=len(AZS))
    yield c
    for n in c.nodes.values():
        if n.alive():
            assert n.stop() == 0, f"{n.name} did not stop cleanly"


def samples(page: str, name: str) -> list[tuple[str, float]]:
    return [(m.group(1) or "", float(m.group(2)))
            for m in re.finditer(rf"^{name}(\{{[^}}]*\}})? (\S+)$", page, re.M)]


def test_cluster_metrics_agree_across_nodes(metered_cluster):
    c = metered_cluster
    topic, group = uniq("metered"), uniq("g-metered")
    create_topic(c.bootstrap, topic, PARTITIONS)
    wait_placed(c, PARTITIONS)
    p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all"})
    for i in range(PARTITIONS * 50):
        p.produce(topic, value=b"v%d" % i, partition=i % PARTITIONS)
    assert p.flush(60) == 0
    consumer = Consumer({"bootstrap.servers": c.bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got = 0
    while got < PARTITIONS * 20:
        m = consumer.poll(10)
        assert m is not None and m.error() is None, m and m.error()
        got += 1
    consumer.commit(asynchronous=False)
    consumer.close()

    deadline = time.monotonic() + 30
    while True:
        pages = {n.node_id: n.admin("/metrics") for n in c.live()}
        lag_nodes = [i for i, page in pages.items() if f'group="{group}"' in page]
        if lag_nodes or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(lag_nodes) == 1, f"lag of {group} from nodes {lag_nodes}: one coordinator expected"
    assert group_nodes(c, group) in ([], lag_nodes), "lag comes from the group's coordinator"

    for node_id, page in pages.items():
        assert samples(page, "inkless_cluster_live_nodes") == [("", len(AZS))], node_id
        assert samples(page, "inkless_cluster_lease_valid") == [("", 1)], node_id
        [(_, age)] = samples(page, "inkless_cluster_lease_age_seconds")
        assert 0 <= age < 3, f"node {node_id} renewed its lease {age} s ago"
        [(_, renewals)] = samples(page, "inkless_cluster_lease_renewals_total")
        assert renewals >= 1
        pool = samples(page, "inkless_metadata_store_pool_max_connections")
        assert pool and pool[0][1] > 0, "PostgreSQL's pool is reported"
    ends = [(labels, v) for page in pages.values()
            for labels, v in samples(page, "inkless_log_end_offset") if f'topic="{topic}"' in labels]
    assert sorted(ends) == sorted((f'{{topic="{topic}",partition="{i}"}}', 50.0) for i in range(PARTITIONS)), \
        "each partition's log end offset is reported once, by its owner"
    acquired = sum(v for page in pages.values()
                   for labels, v in samples(page, "inkless_partition_ownership_changes_total")
                   if 'change="acquired"' in labels)
    assert acquired >= PARTITIONS

    exported = set().union(*(exported_names(page) for page in pages.values()))
    used = {n for q in dashboard_queries() for n in METRIC.findall(q)}
    used |= {n for a in alerts() for n in METRIC.findall(a["body"])}
    assert used <= exported, f"named but not exported by the cluster: {sorted(used - exported)}"
