"""A multi-node, multi-AZ cluster: separate `inkless serve` processes on 127.0.0.x addresses
(3 AZs x 2 nodes), one PostgreSQL, one S3 server (moto), all started here.

1. Placement: every partition runs on exactly one node, Metadata's leaders and
   FindCoordinator agree with it from every node, brokers carry their AZ as rack.
2. The Java and librdkafka scenario programs produce and consume across the cluster.
3. Churn under load: an idempotent producer writes continuously to a 12-partition topic
   consumed by a group of a Java and a librdkafka member; one node is killed with -9, a new
   node joins, another leaves gracefully (SIGTERM). Every acknowledged record is consumed,
   each partition's records sit at offsets in produce order (SEQ == offset), and the time
   from each event until every partition answers produce and fetch again is printed as
   `CONVERGENCE ...` lines (run with -s).
4. A node cut off from the metadata store is fenced: once its partitions moved, a produce
   sent to it is refused, and nothing it held appears in the log; after the cut heals it
   rejoins and serves again.
5. A frozen node (SIGSTOP) whose partitions moved does not serve the requests that waited on
   its connections when it resumes: it closes those connections (or answers
   NOT_LEADER_OR_FOLLOWER), never answers from the state it held before (ADR 0009).
Nodes run without a data directory; the test checks none was created.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid

import pytest

import groupwire as wire
from cluster import LEASE_TTL_MS, Cluster, ClusterNode
from conftest import EXTERNAL, ClientRunner, measurement
from pgserver import PgServer
from s3server import CuttableProxy, MotoServer
from test_groups import GroupRun, KeyedProducer, create_topic, log, uniq

pytestmark = pytest.mark.skipif(bool(EXTERNAL), reason="starts its own cluster")

AZS = {1: "az1", 2: "az1", 3: "az2", 4: "az2", 5: "az3", 6: "az3"}
BUCKET = "inkless"


@pytest.fixture(scope="module")
def infra(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster-infra")
    pg = PgServer()
    pg.start()
    moto = MotoServer(root / "moto.log")
    moto.start()
    moto.create_bucket(BUCKET)
    yield pg, moto
    moto.stop()
    pg.stop()


@pytest.fixture
def cluster(infra, tmp_path):
    """A fresh six-node cluster (own database and bucket prefix) per test."""
    pg, moto = infra
    db = f"c_{uuid.uuid4().hex[:10]}"
    pg.create_database(db)
    c = Cluster(tmp_path, pg.url(db), moto.endpoint, BUCKET)
    c.s3["INKLESS__STORAGE__OBJECT_STORE"] = f"s3://{BUCKET}/{db}"
    c.pg, c.db = pg, db
    for node_id, az in AZS.items():
        c.add(node_id, az).start()
    c.wait_converged(expect_nodes=len(AZS))
    yield c
    failed = []
    for n in c.nodes.values():
        if n.alive():
            rc = n.stop()
            if rc != 0:
                failed.append(f"{n.name} exited with {rc}")
    for n in c.nodes.values():
        if n.data_dir.exists():
            failed.append(f"{n.name} created its data dir {n.data_dir}")
    assert not failed, failed


def partition_owners(c: Cluster) -> dict[str, list[int]]:
    """partition actor name -> nodes running it, from every live node's /actors (the tests'
    topics only: not the internal __consumer_offsets, which the first group creates)."""
    owners: dict[str, list[int]] = {}
    for n in c.live():
        for a in n.admin("/actors"):
            if a["kind"] == "partition" and a.get("topic") != "__consumer_offsets":
                owners.setdefault(a["name"], []).append(n.node_id)
    return owners


def group_nodes(c: Cluster, group: str) -> list[int]:
    """The live nodes running the coordinator of `group`."""
    return [n.node_id for n in c.live() if any(a["name"] == f"group/{group}" for a in n.admin("/actors"))]


def wait_placed(c: Cluster, total: int, timeout: float = 30) -> float:
    """Until every partition runs on exactly one live node; returns the seconds waited."""
    t0 = time.monotonic()
    while True:
        try:
            owners = partition_owners(c)
            if len(owners) == total and all(len(v) == 1 for v in owners.values()):
                return time.monotonic() - t0
        except OSError:
            pass
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"partitions not placed once each within {timeout}s: {owners}", pytrace=False)
        time.sleep(0.1)


def watch_placement(c: Cluster, total: int, t_event: float) -> dict[str, float]:
    """In the background, the seconds from t_event until every partition runs on exactly one
    live node again (the server side of convergence; clients then need their own retries)."""
    out: dict[str, float] = {}

    def run():
        time.sleep(0.05)  # let the event take effect first
        wait_placed(c, total, timeout=60)
        out["placed"] = time.monotonic() - t_event

    t = threading.Thread(target=run, daemon=True)
    t.start()
    out["thread"] = t  # type: ignore[assignment]
    return out


def probe(bootstrap: str, topic: str, partitions: int, t_event: float, timeout: float = 60) -> tuple[float, float]:
    """Produces one record to every partition and fetches each back, with fresh clients.
    Returns (seconds from t_event until the last produce was acknowledged, ... until the
    last record was fetched)."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "message.timeout.ms": int(timeout * 1000),
                  "retry.backoff.ms": 50, "retry.backoff.max.ms": 200, "linger.ms": 0,
                  "logger": _quiet})
    acked: dict[int, int] = {}
    errors: list[str] = []

    def cb(err, msg):
        if err is None:
            acked[msg.partition()] = msg.offset()
        else:
            errors.append(str(err))

    for part in range(partitions):
        p.produce(topic, value=b"probe", partition=part, on_delivery=cb)
    deadline = time.monotonic() + timeout
    while len(acked) + len(errors) < partitions and time.monotonic() < deadline:
        p.poll(0.02)
    t_produced = time.monotonic() - t_event
    assert not errors and len(acked) == partitions, f"probe produce failed: {errors[:5]}, acked {len(acked)}"
    cons = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe", "enable.auto.commit": False,
                     "fetch.wait.max.ms": 50, "retry.backoff.ms": 50, "logger": _quiet})
    cons.assign([TopicPartition(topic, part, off) for part, off in acked.items()])
    seen: set[int] = set()
    while len(seen) < partitions and time.monotonic() < deadline:
        m = cons.poll(0.05)
        if m is not None and m.error() is None and m.value() == b"probe":
            seen.add(m.partition())
    cons.close()
    assert len(seen) == partitions, f"probe fetched {len(seen)} of {partitions} partitions"
    return t_produced, time.monotonic() - t_event


class _Quiet:
    """librdkafka logs every refused connection to a stopped node; keep test output short."""

    def log(self, *args, **kwargs):
        pass


_quiet = _Quiet()


def report(what: str, produced: float, fetched: float, placed: dict | None = None) -> None:
    if placed is not None:
        placed["thread"].join(60)
        what += f" (partitions placed again after {placed.get('placed', float('nan')):.2f} s)"
    measurement(f"CONVERGENCE {what}: every partition answered produce after {produced:.2f} s, "
                f"fetch after {fetched:.2f} s")


# ---------------------------------------------------------------- tests

def leader_epochs(node, topic: str) -> dict[int, int]:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=node.bootstrap)
    try:
        t = admin.describe_topics([topic])[0]
        return {p["partition_index"]: p["leader_epoch"] for p in t["partitions"]}
    finally:
        admin.close()


def check_leader_epochs_follow_moves(cluster: Cluster, topic: str, running: dict[int, int]) -> None:
    """Leader epochs (ADR 0012): every node reports each partition's owner epoch (a node
    other than the owner after its catalog refresh); after the owner of partition 0 leaves,
    its partitions report higher epochs and the others keep theirs."""
    deadline = time.monotonic() + 15
    while True:
        seen = [leader_epochs(n, topic) for n in cluster.live()]
        if all(s == seen[0] for s in seen) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert all(s == seen[0] for s in seen), f"nodes disagree on leader epochs: {seen}"
    before = seen[0]
    assert all(e > 0 for e in before.values()), before
    leaver = cluster.nodes[running[0]]
    moved = {p for p, n in running.items() if n == leaver.node_id}
    assert leaver.stop() == 0
    wait_placed(cluster, len(running))
    deadline = time.monotonic() + 15
    while True:
        after = leader_epochs(cluster.live()[0], topic)
        grew = {p for p in running if after[p] > before[p]}
        if grew == moved or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert grew == moved, f"epochs before {before}, after {after}; moved {sorted(moved)}"


def test_placement_metadata_and_coordinators_agree(cluster):
    from kafka.admin import KafkaAdminClient

    topic = uniq("placed")
    create_topic(cluster.bootstrap, topic, 24)
    wait_placed(cluster, 24)
    owners = partition_owners(cluster)
    assert len({n[0] for n in owners.values()}) >= 4, f"24 partitions placed on too few nodes: {owners}"
    from confluent_kafka.admin import AdminClient

    running = {int(name.rsplit("/", 1)[1]): nodes[0] for name, nodes in owners.items()}
    placed = dict(running)
    for n in cluster.live():
        md = AdminClient({"bootstrap.servers": n.bootstrap}).list_topics(topic, timeout=10)
        assert sorted(md.brokers) == sorted(AZS), f"{n.name}: brokers {sorted(md.brokers)}"
        leaders = {p: md.topics[topic].partitions[p].leader for p in range(24)}
        assert leaders == running, f"{n.name}: leaders {leaders} != running {running}"
    # With the client.id hint inkless_az=<az>, whatever node is asked, every leader is in
    # that AZ, and is the owner when the owner is there.
    for az in ("az1", "az2", "az3"):
        for n in cluster.live():
            md = AdminClient({"bootstrap.servers": n.bootstrap,
                              "client.id": f"probe,inkless_az={az}"}).list_topics(topic, timeout=10)
            leaders = {p: md.topics[topic].partitions[p].leader for p in range(24)}
            for p, leader in leaders.items():
                assert AZS[leader] == az, f"{n.name}: partition {p} led by {leader} in {AZS[leader]}, not {az}"
                if AZS[running[p]] == az:
                    assert leader == running[p], f"{n.name}: partition {p} not led by its owner in {az}"
    # The operator's view: every node with its AZ, and the partitions where they run.
    import subprocess

    from conftest import broker_binary

    n1 = cluster.nodes[1]
    out = subprocess.run([str(broker_binary()), "cluster", "status", "--admin", f"{n1.host}:{n1.admin_port}"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    sys.stdout.write(out.stdout)
    for node_id, az in AZS.items():
        row = next((ln for ln in out.stdout.splitlines() if ln.split()[:2] == [str(node_id), az]), None)
        assert row is not None and " true " in row, f"node {node_id} missing or not live:\n{out.stdout}"
        owned = sum(1 for nodes in owners.values() if nodes[0] == node_id)
        assert (f"partition={owned}" in row) if owned else ("partition=" not in row), row
    # Racks are the nodes' AZs (DescribeCluster).
    admin = KafkaAdminClient(bootstrap_servers=cluster.nodes[1].bootstrap)
    try:
        brokers = admin.describe_cluster()["brokers"]
        assert {b["broker_id"]: b["rack"] for b in brokers} == AZS
    finally:
        admin.close()
    # FindCoordinator: every node names the same coordinator, the node running the group.
    from confluent_kafka import Consumer

    group = uniq("placed-g")
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    deadline = time.monotonic() + 30
    while not c.assignment() and time.monotonic() < deadline:
        c.poll(0.2)
    assert c.assignment(), "consumer got no assignment"
    running = [n.node_id for n in cluster.live()
               if any(a["name"] == f"group/{group}" for a in n.admin("/actors"))]
    assert len(running) == 1, f"group {group} runs on {running}"
    for n in cluster.live():
        admin_n = AdminClient({"bootstrap.servers": n.bootstrap})
        desc = admin_n.describe_consumer_groups([group])[group].result(10)
        assert desc.coordinator.id == running[0], f"{n.name} names {desc.coordinator.id}, runs on {running[0]}"
    c.close()
    # Last: a node leaves.
    check_leader_epochs_follow_moves(cluster, topic, placed)


def test_java_and_librdkafka_clients_across_the_cluster(cluster, tmp_path):
    runner = ClientRunner(cluster.bootstrap, None, tmp_path)
    for client in ("java", "confluent-kafka"):
        topic = uniq(f"scenario-{client}")
        r = runner.run(runner.cmd(client) + [cluster.bootstrap, topic, "6", "600"], what=client)
        assert r.returncode == 0 and "OK" in r.stdout, f"{client} failed:\n{r.stdout}\n{r.stderr[-3000:]}"


def test_crash_join_and_leave_keep_every_acknowledged_record(cluster, tmp_path):
    partitions = 12
    topic = uniq("churn")
    group = uniq("churn-g")
    create_topic(cluster.bootstrap, topic, partitions)
    wait_placed(cluster, partitions)
    bootstrap = cluster.bootstrap
    producer = KeyedProducer(bootstrap, topic, partitions, tick=0.05)
    producer.start()
    runner = ClientRunner(bootstrap, None, tmp_path)
    runs = []
    for client in ("java", "confluent-kafka"):
        run = GroupRun(runner, topic, group, tmp_path / client, client, {}, partitions=partitions)
        run.dir.mkdir()
        run.start(f"{client}-member")
        runs.append(run)
    try:
        time.sleep(5)
        # 1. kill -9 the node that runs the most partitions.
        owners = partition_owners(cluster)
        counts: dict[int, int] = {}
        for nodes in owners.values():
            counts[nodes[0]] = counts.get(nodes[0], 0) + 1
        victim = cluster.nodes[max(counts, key=counts.get)]
        log(f"kill -9 {victim.name} running {counts[victim.node_id]} of {partitions} partitions")
        t = time.monotonic()
        victim.kill9()
        placed = watch_placement(cluster, partitions, t)
        report(f"crash of {victim.name} (lease ttl {LEASE_TTL_MS} ms)",
               *probe(cluster.bootstrap, topic, partitions, t), placed)
        wait_placed(cluster, partitions)
        time.sleep(2)

        # 2. A new node joins in the victim's AZ.
        newcomer = cluster.add(7, victim.az)
        t = time.monotonic()
        newcomer.start()
        cluster.wait_converged(expect_nodes=len(AZS))
        placed = wait_placed(cluster, partitions)
        produced, fetched = probe(cluster.bootstrap, topic, partitions, t)
        report(f"join of {newcomer.name} (placement settled {time.monotonic() - t - fetched + placed:.2f} s)",
               produced, fetched)
        assert newcomer.owned_partitions() > 0 or all(
            n != 7 for nodes in partition_owners(cluster).values() for n in nodes), "placement ignores the newcomer"
        time.sleep(2)

        # 3. Graceful leave of the node coordinating the group (its coordinator moves too).
        coordinators = group_nodes(cluster, group)
        assert len(coordinators) == 1, f"group {group} runs on {coordinators}"
        leaver = cluster.nodes[coordinators[0]]
        if leaver.node_id == 7:
            leaver = next(n for n in cluster.live() if n.node_id != 7 and n.owned_partitions() > 0)
        log(f"SIGTERM {leaver.name} running {leaver.owned_partitions()} partitions and "
            f"{'the group' if leaver.node_id == coordinators[0] else 'no group'}")
        t = time.monotonic()
        leaver.proc.send_signal(15)
        placed = watch_placement(cluster, partitions, t)
        produced, fetched = probe(cluster.bootstrap, topic, partitions, t)
        report(f"graceful leave of {leaver.name}", produced, fetched, placed)
        assert leaver.proc.wait(30) == 0, f"{leaver.name} exited non-zero after SIGTERM"
        wait_placed(cluster, partitions)
        time.sleep(3)
        moved = group_nodes(cluster, group)
        assert len(moved) == 1 and moved[0] != leaver.node_id, f"group coordinator runs on {moved}"
    finally:
        producer.halt.set()
        producer.join(10)
        left = producer.producer.flush(60)
    assert left == 0, f"{left} records not acknowledged within 60 s"
    failed = [e for e in producer.errors if not e.startswith("client error")]
    assert not failed, f"produce failures: {failed[:10]}"
    # acked[p]: offset -> SEQ. The probes wrote to the same topic, so offsets have gaps;
    # within a partition, SEQ must grow with the offset (produce order) and all be acked.
    acked = producer.delivered
    for p in range(partitions):
        seqs = [acked[p][o] for o in sorted(acked[p])]
        assert seqs == list(range(producer.next_seq[p])), \
            f"partition {p}: records not acknowledged once each in produce order: {seqs[:20]}..."
    log(f"produced and acknowledged {sum(producer.next_seq)} records")
    # Both members together consumed every acknowledged record (at least once), each at the
    # offset it was acknowledged with.
    deadline = time.monotonic() + 90
    while True:
        consumed: dict[tuple[int, int], int] = {}
        for run in runs:
            for m in run.members.values():
                for ev in list(m.events):
                    if ev.kind == "REC":
                        consumed[(ev.parts[0], ev.offset)] = ev.seq
        missing = [(p, o) for p in range(partitions) for o in acked[p] if (p, o) not in consumed]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for run in runs:
        for m in run.members.values():
            m.terminate()
    assert not missing, f"{len(missing)} acknowledged records never consumed by the group, first {missing[:10]}\n" + \
        "\n".join(run.describe() for run in runs)
    wrong = [(p, o, s, consumed[(p, o)]) for p in range(partitions) for o, s in acked[p].items()
             if consumed[(p, o)] != s]
    assert not wrong, f"consumed records differ from the acknowledged ones (p, offset, acked SEQ, got): {wrong[:10]}"


def test_node_cut_from_the_metadata_store_is_fenced(cluster):
    pg = cluster.pg
    proxy = CuttableProxy(pg.port)
    try:
        cut = cluster.add(8, "az1", metadata_url=pg.url(cluster.db, port=proxy.port))
        cut.start()
        cluster.wait_converged(expect_nodes=len(AZS) + 1)
        partitions = 24
        topic = uniq("fenced")
        create_topic(cluster.bootstrap, topic, partitions)
        wait_placed(cluster, partitions)
        mine = sorted(int(name.rsplit("/", 1)[1]) for name, nodes in partition_owners(cluster).items()
                      if nodes == [8])
        assert mine, "node 8 got no partition of 24; placement is broken"
        p = mine[0]
        with wire.Conn(cut.bootstrap) as conn:
            err, base = conn.produce(topic, p, [b"before-cut"])
            assert err == 0, f"produce to the owner before the cut: error {err}"

        proxy.cut()
        t = time.monotonic()
        # The other nodes take over node 8's partitions once its lease runs out.
        others = [n for n in cluster.live() if n.node_id != 8]
        deadline = t + 30
        while time.monotonic() < deadline:
            owners = {}
            for n in others:
                for a in n.admin("/actors"):
                    if a["kind"] == "partition" and a.get("topic") != "__consumer_offsets":
                        owners[int(a["name"].rsplit("/", 1)[1])] = n.node_id
            if all(q in owners for q in mine):
                break
            time.sleep(0.1)
        else:
            pytest.fail("node 8's partitions did not move within 30 s of the cut", pytrace=False)
        measurement(f"FENCING node 8 cut from the metadata store: its {len(mine)} partitions moved "
                    f"{time.monotonic() - t:.2f} s after the cut")
        # Node 8 is partitioned away: whatever it believes, it must not acknowledge.
        with wire.Conn(cut.bootstrap, timeout=30) as conn:
            err, _ = conn.produce(topic, p, [b"stale-owner"], timeout_ms=5000)
        assert err != 0, "a node cut from the metadata store acknowledged a produce after its partitions moved"
        # The new owner serves the partition: the earlier record is there, the refused one is not.
        from confluent_kafka import Consumer, TopicPartition

        bootstrap = ",".join(n.bootstrap for n in others)
        cons = Consumer({"bootstrap.servers": bootstrap, "group.id": "fence-check", "enable.auto.commit": False})
        cons.assign([TopicPartition(topic, p, 0)])
        values = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and b"before-cut" not in values:
            m = cons.poll(0.2)
            if m is not None and m.error() is None:
                values.append(m.value())
        time.sleep(1)
        while (m := cons.poll(0.5)) is not None:
            if m.error() is None:
                values.append(m.value())
        cons.close()
        assert values == [b"before-cut"], f"partition {p} holds {values}"

        # The cut heals: node 8 renews its lease, rejoins, and serves again.
        proxy.restore()
        cluster.wait_converged(expect_nodes=len(AZS) + 1, timeout=30)
        wait_placed(cluster, partitions)
        produced, fetched = probe(cluster.bootstrap, topic, partitions, time.monotonic())
        log(f"after the cut healed every partition answered produce in {produced:.2f} s")
    finally:
        proxy.close()


def test_a_frozen_node_answers_not_leader_when_it_resumes(cluster):
    partitions = 12
    topic = uniq("frozen")
    create_topic(cluster.bootstrap, topic, partitions)
    wait_placed(cluster, partitions)
    owners = partition_owners(cluster)
    p, (victim_id,) = next((int(name.rsplit("/", 1)[1]), nodes) for name, nodes in sorted(owners.items()))
    victim = cluster.nodes[victim_id]
    with wire.Conn(victim.bootstrap) as conn:
        err, _ = conn.produce(topic, p, [b"before-freeze"])
        assert err == 0, f"produce to the owner before the freeze: error {err}"
    waiting = wire.Conn(victim.bootstrap, timeout=30)
    try:
        os.kill(victim.proc.pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        # The others take the partition over and extend its log past what the victim knew.
        other = next(n for n in cluster.live() if n is not victim)
        deadline = frozen_at + 30
        while True:
            with wire.Conn(other.bootstrap, timeout=10) as c:
                err, _ = c.produce(topic, p, [b"after-takeover"], timeout_ms=2000)
            if err == 0:
                break
            assert time.monotonic() < deadline, f"partition {p} was not taken over within 30 s (error {err})"
            time.sleep(0.2)
        moved = time.monotonic() - frozen_at
        # A request that waited on the frozen node's connection...
        answer: list = []

        def ask():
            try:
                answer.append(waiting.latest_offset(topic, p))
            except (OSError, ValueError) as e:  # closed by the node
                answer.append(e)

        asker = threading.Thread(target=ask)
        asker.start()
        time.sleep(0.5)
        resumed_at = time.monotonic()
        os.kill(victim.proc.pid, signal.SIGCONT)
        asker.join(20)
        waited = time.monotonic() - resumed_at
        assert answer, "the resumed node neither answered nor closed the connection within 20 s"
        # ...is refused at once, not answered from the high watermark the node held (1).
        if isinstance(answer[0], Exception):
            outcome = f"its connection closed ({answer[0]})"
        else:
            err, offset = answer[0]
            assert err == 6, f"the resumed node answered error {err} offset {offset}, not NOT_LEADER_OR_FOLLOWER"
            outcome = "NOT_LEADER_OR_FOLLOWER"
        measurement(f"FROZEN node {victim_id}: its partition moved {moved:.2f} s after SIGSTOP; on SIGCONT "
                    f"a waiting request got {outcome} after {waited:.2f} s")
    finally:
        os.kill(victim.proc.pid, signal.SIGCONT)
        waiting.close()


def object_store_counts(nodes: list[ClusterNode]) -> dict[str, int]:
    out = {"put": 0, "get": 0, "put_bytes": 0}
    names = {"inkless_object_store_put_requests_total": "put", "inkless_object_store_get_requests_total": "get",
             "inkless_object_store_put_bytes_total": "put_bytes"}
    for n in nodes:
        for line in n.admin("/metrics").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] in names:
                out[names[parts[0]]] += int(parts[1])
    return out


def test_each_object_block_is_read_once_per_az(cluster):
    """Producers of one AZ write through that AZ's nodes (client.id hint), consumers of each
    AZ read through their AZ's nodes (hint and client.rack): every AZ reads a block from the
    object store at most once, and a second pass reads nothing from it."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    partitions, count = 6, 3000
    topic = uniq("azcache")
    create_topic(cluster.bootstrap, topic, partitions)
    wait_placed(cluster, partitions)
    by_az: dict[str, list[ClusterNode]] = {}
    for n in cluster.live():
        by_az.setdefault(n.az, []).append(n)
    az1 = ",".join(n.bootstrap for n in by_az["az1"])
    p = Producer({"bootstrap.servers": az1, "client.id": "cache-test,inkless_az=az1", "acks": "all",
                  "linger.ms": 20, "enable.idempotence": True, "logger": _quiet})
    for i in range(count):
        p.produce(topic, value=b"%06d-" % i + b"x" * 500, partition=i % partitions)
        if i % 100 == 99:  # many objects, so that blocks spread over the AZs' shards
            assert p.flush(60) == 0
    written = object_store_counts(cluster.live())
    block = 4 * 1024 * 1024
    max_blocks = written["put"] + written["put_bytes"] // block
    log(f"produced {count} records in {written['put']} objects ({written['put_bytes']} bytes)")

    gets: dict[str, list[int]] = {}
    for rnd in range(2):
        for az, nodes in sorted(by_az.items()):
            before = object_store_counts(nodes)["get"]
            c = Consumer({"bootstrap.servers": ",".join(n.bootstrap for n in nodes),
                          "client.id": f"cache-test,inkless_az={az}", "client.rack": az,
                          "group.id": f"cache-{az}-{rnd}", "enable.auto.commit": False, "logger": _quiet})
            c.assign([TopicPartition(topic, q, 0) for q in range(partitions)])
            got = 0
            deadline = time.monotonic() + 60
            while got < count and time.monotonic() < deadline:
                m = c.poll(0.2)
                if m is not None and m.error() is None:
                    got += 1
            c.close()
            assert got == count, f"{az} round {rnd}: consumed {got} of {count}"
            gets.setdefault(az, []).append(object_store_counts(nodes)["get"] - before)
    measurement(f"AZ-CACHE object GETs per AZ (first pass, second pass): {gets}; objects written "
                f"{written['put']}, blocks at most {max_blocks}")
    for az, (first, second) in gets.items():
        assert first <= max_blocks, f"{az} read {first} blocks of at most {max_blocks}: a block was read twice"
        assert second == 0, f"{az} read {second} blocks again on the second pass"
    assert gets["az2"][0] > 0 and gets["az3"][0] > 0, f"reads did not go through each AZ's own cache: {gets}"
