"""A multi-node Inkless cluster for tests: separate `inkless serve` processes on their own
loopback addresses (127.0.0.11, .12, ...), sharing one PostgreSQL metadata store and one
S3 server (moto). Nodes run diskless: their data dir is never created."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from pathlib import Path

from conftest import LocalBroker, free_port
from s3server import s3_env

# Short enough for quick tests, the same as the defaults otherwise.
LEASE_RENEW_MS = 1000
LEASE_TTL_MS = 3000


def node_host(node_id: int) -> str:
    """127.0.0.<10 + id> up to .254, then on through 127.0.1.1, ... (all of 127/8 is loopback)."""
    n = 10 + node_id
    if n <= 254:
        return f"127.0.0.{n}"
    third, fourth = divmod(n - 255, 254)
    return f"127.0.{1 + third}.{1 + fourth}"


class ClusterNode(LocalBroker):
    def __init__(self, root: Path, node_id: int, az: str, metadata_url: str, s3: dict[str, str]):
        host = node_host(node_id)
        super().__init__(root / f"node-{node_id}-data", free_port(), root, host=host,
                         name=f"node-{node_id}", create_data_dir=False)
        self.node_id = node_id
        self.az = az
        self.admin_port = free_port()
        self.extra_env.update(s3)
        self.extra_env.update({
            "INKLESS__NODE__ID": str(node_id),
            "INKLESS__NODE__RACK": az,
            "INKLESS__CLUSTER__ENABLED": "true",
            "INKLESS__CLUSTER__LISTEN": f"{host}:{free_port()}",
            "INKLESS__CLUSTER__COOKIE": "inkless-test-cookie",
            "INKLESS__CLUSTER__LEASE_RENEW_INTERVAL_MS": str(LEASE_RENEW_MS),
            "INKLESS__CLUSTER__LEASE_TTL_MS": str(LEASE_TTL_MS),
            "INKLESS__STORAGE__METADATA": metadata_url,
            "INKLESS__ADMIN__LISTEN": f"{host}:{self.admin_port}",
            "INKLESS__PRODUCE__FLUSH_INTERVAL_MS": "20",
            "INKLESS__GROUPS__INITIAL_REBALANCE_DELAY_MS": "0",
        })

    def admin(self, path: str):
        with urllib.request.urlopen(f"http://{self.host}:{self.admin_port}{path}", timeout=10) as r:
            body = r.read()
        return json.loads(body) if path != "/metrics" else body.decode()

    def owned_partitions(self) -> int:
        return sum(1 for a in self.admin("/actors")
                   if a["kind"] == "partition" and a.get("topic") != "__consumer_offsets")


class Cluster:
    def __init__(self, root: Path, metadata_url: str, s3_endpoint: str, bucket: str):
        self.root = root
        self.metadata_url = metadata_url
        self.s3 = s3_env(s3_endpoint, bucket, "cluster", 20_000)
        self.nodes: dict[int, ClusterNode] = {}

    def add(self, node_id: int, az: str, metadata_url: str | None = None) -> ClusterNode:
        n = ClusterNode(self.root, node_id, az, metadata_url or self.metadata_url, self.s3)
        self.nodes[node_id] = n
        return n

    def live(self) -> list[ClusterNode]:
        return [n for n in self.nodes.values() if n.alive()]

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.live())

    def wait_converged(self, timeout: float = 30.0, expect_nodes: int | None = None) -> float:
        """Waits until every live node lists the same live set (from its lease view, via
        /actors ownership summing to all partitions is checked by the caller). If they do not,
        every node is killed before the error is raised: a fixture failing here never reaches
        its teardown, and a hung node would outlive the test run."""
        t0 = time.monotonic()
        want = expect_nodes or len(self.live())
        while time.monotonic() - t0 < timeout:
            try:
                views = [len(n.admin("/cluster")["live"]) for n in self.live()]
                if all(v == want for v in views):
                    return time.monotonic() - t0
            except OSError:
                pass
            time.sleep(0.1)
        for n in self.live():
            n.kill9()
        raise AssertionError(f"cluster did not converge to {want} nodes within {timeout}s")

    def stop_all(self) -> None:
        for n in self.nodes.values():
            if n.alive():
                n.stop()


def cluster_per_test(infra, tmp_path: Path, bucket: str, azs: dict[int, str], prefix: str,
                     env: dict[str, str] | None = None):
    """A fixture's body: a fresh cluster (its own database and bucket prefix) of one node per
    entry of `azs`, each with `env`, started and converged; after the test every node is
    stopped, and one that exits non-zero fails it."""
    pg, moto = infra
    db = f"{prefix}_{uuid.uuid4().hex[:10]}"
    pg.create_database(db)
    c = Cluster(tmp_path, pg.url(db), moto.endpoint, bucket)
    c.s3["INKLESS__STORAGE__OBJECT_STORE"] = f"s3://{bucket}/{db}"
    for node_id, az in azs.items():
        n = c.add(node_id, az)
        n.extra_env.update(env or {})
        n.start()
    c.wait_converged(expect_nodes=len(azs))
    yield c
    failed = [f"{n.name} exited with {rc}" for n in c.nodes.values() if n.alive() and (rc := n.stop()) != 0]
    assert not failed, failed

