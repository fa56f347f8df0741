"""Durable, fenced consumer groups (ADR 0020), in a cluster of `inkless serve` processes on
one PostgreSQL and one S3 server (moto), with real clients.

1. A librdkafka (confluent-kafka) group and a Java group of two members each (classic
   protocol; and a Java group of the consumer protocol, KIP-848), consuming
   a 6-partition topic while a producer writes to it, stay Stable with the SAME generation
   and the same members (a) when their coordinator moves (a fourth node joins and wins the
   group by placement) and (b) across a graceful restart (SIGTERM, start) of their
   coordinator's node: no member sees a revocation or a new assignment, they keep
   consuming, the generation probed on the wire is unchanged (classic), no topic partition runs on
   two nodes at once (every node's /actors, sampled throughout), no partition is owned by
   two members at once, and every acknowledged record is consumed.
2. A stale coordinator's offset commit is refused: the coordinator's node is frozen
   (SIGSTOP) until another node takes the group over (which loads it: the member's
   heartbeat is accepted there in the same generation); an OffsetCommit that waited on the
   frozen node's connection is refused when it resumes (NOT_COORDINATOR, or the connection
   closed), and the committed offset is the one from before.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid

import pytest

import groupwire as wire
from cluster import Cluster
from conftest import EXTERNAL, ClientRunner, measurement
from test_cluster import BUCKET, infra  # noqa: F401 (fixture)
from test_groups import GroupRun, KeyedProducer, committed_offsets, create_topic, log, uniq

pytestmark = pytest.mark.skipif(bool(EXTERNAL), reason="starts its own cluster")

AZS = {1: "az1", 2: "az2", 3: "az3"}
JOINER = (4, "az1")
PARTITIONS = 6
SESSION_TIMEOUT_S = 6
NOT_COORDINATOR = 16


@pytest.fixture
def cluster(infra, tmp_path):
    """A fresh three-node cluster (own database and bucket prefix) per test; node 4 is
    configured but not started."""
    pg, moto = infra
    db = f"d_{uuid.uuid4().hex[:10]}"
    pg.create_database(db)
    c = Cluster(tmp_path, pg.url(db), moto.endpoint, BUCKET)
    c.s3["INKLESS__STORAGE__OBJECT_STORE"] = f"s3://{BUCKET}/{db}"
    for node_id, az in AZS.items():
        c.add(node_id, az).start()
    c.add(*JOINER)
    c.wait_converged(expect_nodes=len(AZS))
    yield c
    for n in c.nodes.values():
        if n.proc is not None and n.proc.poll() is None:
            os.kill(n.proc.pid, signal.SIGCONT)
    failed = [f"{n.name} exited with {rc}" for n in c.nodes.values() if n.alive() and (rc := n.stop()) != 0]
    assert not failed, failed


# ---------------------------------------------------------------- placement and probes

_M = (1 << 64) - 1


def _fnv1a(a: bytes, b: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in a + b"\xff" + b:
        h = ((h ^ byte) * 0x100000001B3) & _M
    return h


def _mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M
    return z ^ (z >> 31)


def group_owner(group: str, nodes: list[int]) -> int:
    """The coordinator rendezvous hashing gives `group` among `nodes`
    (actors/src/cluster/placement.rs; the test checks the cluster agrees)."""
    key = _fnv1a(b"group", group.encode())
    return max(nodes, key=lambda n: (_mix(key ^ _mix(n)), -n))


def group_for(owners: dict[tuple[int, ...], int], prefix: str) -> str:
    """A group id that placement gives to owners[live set] for every live set listed."""
    for _ in range(10_000):
        g = uniq(prefix)
        if all(group_owner(g, list(live)) == want for live, want in owners.items()):
            return g
    raise AssertionError(f"no group id with owners {owners}")


def coordinators(c: Cluster, group: str) -> list[int]:
    """The live nodes running the coordinator of `group` (their /actors)."""
    out = []
    for n in c.live():
        try:
            if any(a["name"] == f"group/{group}" for a in n.admin("/actors")):
                out.append(n.node_id)
        except OSError:
            pass
    return out


def wait_coordinator(c: Cluster, group: str, node_id: int, what: str, timeout: float = 30) -> float:
    t0 = time.monotonic()
    while (running := coordinators(c, group)) != [node_id]:
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"{what}: group {group} runs on {running}, not on node {node_id} within {timeout} s",
                        pytrace=False)
        time.sleep(0.1)
    return time.monotonic() - t0


def probe_generation(node, group: str, member_id: str, timeout: float = 30) -> int:
    """The group's generation as its coordinator sees it for `member_id`: the one generation
    a Heartbeat is accepted in (a wrong one gets ILLEGAL_GENERATION)."""
    deadline = time.monotonic() + timeout
    with wire.Conn(node.bootstrap, timeout=10) as conn:
        while True:
            errors = {}
            for gen in range(1, 40):
                err = conn.heartbeat(group, gen, member_id)
                if err == wire.NONE:
                    return gen
                errors[gen] = err
                if err != wire.ILLEGAL_GENERATION:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"no generation of {group} accepts member {member_id} at node {node.node_id}: "
                            f"{errors}", pytrace=False)
            time.sleep(0.2)


def describe(bootstrap: str, group: str):
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})  # held until the answer comes
    return admin.describe_consumer_groups([group])[group].result(30)


class OwnerSampler(threading.Thread):
    """Samples every live node's /actors until stopped; records any topic partition that
    runs on two nodes in two samples in a row (one sample reads the nodes one after the
    other, so a move can show a partition on both nodes of one sample)."""

    def __init__(self, c: Cluster, topic: str):
        super().__init__(daemon=True)
        self.c, self.topic = c, topic
        self.halt = threading.Event()
        self.twice: list[str] = []
        self.samples = 0

    def sample(self) -> dict[str, list[int]]:
        owners: dict[str, list[int]] = {}
        for n in self.c.live():
            try:
                actors = n.admin("/actors")
            except OSError:
                continue
            for a in actors:
                if a["kind"] == "partition" and a.get("topic") == self.topic:
                    owners.setdefault(a["name"], []).append(n.node_id)
        return {p: nodes for p, nodes in owners.items() if len(nodes) > 1}

    def run(self) -> None:
        while not self.halt.is_set():
            if self.sample() and (again := self.sample()):
                self.twice.append(f"{time.strftime('%H:%M:%S')} {again}")
            self.samples += 1
            time.sleep(0.1)


class Baseline:
    """What must not change: the generation (classic protocol), the members, their
    assignment events."""

    def __init__(self, c: Cluster, run: GroupRun, group: str, coordinator: int, classic: bool):
        self.classic = classic
        d = describe(c.bootstrap, group)
        assert d.state.name == "STABLE", f"group {group} is {d.state}"
        self.members = sorted(m.member_id for m in d.members)
        assert len(self.members) == 2, f"members {self.members}"
        # The consumer protocol has no generation a Heartbeat could probe: its members'
        # epochs show in their assignment events, which must not change either.
        self.generation = probe_generation(c.nodes[coordinator], group, self.members[0]) if classic else None
        self.events = self.assignment_events(run)

    @staticmethod
    def assignment_events(run: GroupRun) -> dict[str, list[str]]:
        return {n: [f"{e.kind} {e.parts}" for e in m.events if e.kind in ("ASSIGNED", "REVOKED", "LOST")]
                for n, m in run.members.items()}

    def check(self, c: Cluster, run: GroupRun, group: str, coordinator: int, what: str) -> None:
        d = describe(c.bootstrap, group)
        members = sorted(m.member_id for m in d.members)
        assert (d.state.name, members) == ("STABLE", self.members), \
            f"after {what}: group {d.state} with members {members}, before STABLE with {self.members}"
        for m in self.members if self.classic else []:
            gen = probe_generation(c.nodes[coordinator], group, m)
            assert gen == self.generation, f"after {what}: generation {gen} for {m}, before {self.generation}"
        events = self.assignment_events(run)
        assert events == self.events, f"after {what}: the members rebalanced: {events}, before {self.events}\n" \
                                      f"{run.describe()}"


def hold_consuming(run: GroupRun, seconds: float, what: str) -> None:
    """Lets the group consume for `seconds` (longer than a session timeout, so a member the
    coordinator lost track of would be expired) and checks that every partition advanced."""
    with run.cond:
        before = dict(run.max_seen)
    run.hold(seconds, {"m1", "m2"})
    with run.cond:
        stuck = [p for p in range(PARTITIONS) if run.max_seen.get(p, -1) <= before.get(p, -1)]
    assert not stuck, f"after {what}: partitions {stuck} were not consumed for {seconds} s\n{run.describe()}"


# ---------------------------------------------------------------- 1. moves and restarts

@pytest.mark.parametrize("client,protocol", [("confluent-kafka", "classic"), ("java", "classic"),
                                             ("java", "consumer")])
def test_a_group_stays_stable_across_a_coordinator_move_and_a_restart(cluster, tmp_path, client, protocol):
    c = cluster
    joiner = JOINER[0]
    three = tuple(sorted(AZS))
    # A group that node 4 wins when it joins: its coordinator moves from `first` to node 4.
    group = group_for({three + (joiner,): joiner}, f"durable-{client}")
    first = group_owner(group, list(three))
    topic = uniq("durable")
    create_topic(c.bootstrap, topic, PARTITIONS)
    producer = KeyedProducer(c.bootstrap, topic, PARTITIONS, nodes_restart=True)
    producer.start()
    env = {"GROUP_PROTOCOL": protocol}
    if protocol == "classic":
        env["GROUP_ASSIGNOR"] = "range"
    run = GroupRun(ClientRunner(c.bootstrap, None, tmp_path), topic, group, tmp_path, client, env,
                   partitions=PARTITIONS)
    sampler = OwnerSampler(c, topic)
    try:
        run.start("m1", "m2")
        run.wait_stable({"m1", "m2"}, "2 members join", 90)
        wait_coordinator(c, group, first, "group formed")
        run.hold(2.0, {"m1", "m2"})
        base = Baseline(c, run, group, first, protocol == "classic")
        kept = f"generation {base.generation}" if base.classic else "members"
        log(f"group {group}: generation {base.generation}, members {base.members}, coordinator node {first}")
        sampler.start()

        # (b) A coordinator move: node 4 joins and takes the group over.
        t0 = time.monotonic()
        c.nodes[joiner].start()
        c.wait_converged(expect_nodes=4)
        wait_coordinator(c, group, joiner, "node 4 joined")
        moved = time.monotonic() - t0
        hold_consuming(run, SESSION_TIMEOUT_S + 2, "the move to node 4")
        base.check(c, run, group, joiner, "the move to node 4")
        measurement(f"DURABLE GROUP {client} {protocol}: coordinator moved node {first} -> {joiner} within {moved:.2f} s "
                    f"of starting node {joiner}; {kept} kept, no rebalance")

        # (a) A graceful restart of the coordinator's node.
        t0 = time.monotonic()
        assert c.nodes[joiner].stop() == 0
        wait_coordinator(c, group, first, "node 4 stopped")
        away = time.monotonic() - t0
        hold_consuming(run, 3, "node 4 stopped")
        t1 = time.monotonic()
        c.nodes[joiner].start()
        c.wait_converged(expect_nodes=4)
        wait_coordinator(c, group, joiner, "node 4 restarted")
        back = time.monotonic() - t1
        hold_consuming(run, SESSION_TIMEOUT_S + 2, "the restart of node 4")
        base.check(c, run, group, joiner, "the restart of node 4")
        measurement(f"DURABLE GROUP {client} {protocol}: graceful restart of coordinator node {joiner}: the group ran on "
                    f"node {first} {away:.2f} s after SIGTERM, back on node {joiner} {back:.2f} s after its "
                    f"start; {kept} kept, no rebalance")

        ends = producer.finish()
        run.wait_consumed(ends, 60)
        for m in run.members.values():
            m.terminate()
    finally:
        sampler.halt.set()
        producer.halt.set()
        for m in run.members.values():
            if m.proc.poll() is None:
                m.proc.kill()
                m.proc.wait(10)
    sampler.join(10)
    assert sampler.samples > 10, f"only {sampler.samples} samples of /actors"
    assert not sampler.twice, f"partitions running on two nodes at once: {sampler.twice[:10]}"
    stats = run.check(ends)
    committed = committed_offsets(c.bootstrap, group, topic, PARTITIONS)
    assert {p: o for p, (o, _) in committed.items()} == ends, \
        f"committed offsets {committed} != end offsets {ends} after the members closed"
    log(f"{stats['records']} records, {stats['redelivered']} redelivered, {sampler.samples} /actors samples")


# ---------------------------------------------------------------- 2. a stale coordinator

def committed(node, group: str, topic: str) -> int:
    return committed_offsets(node.bootstrap, group, topic, 1)[0][0]


def commit_at_coordinator(c: Cluster, group: str, gen: int, member: str, topic: str, offset: int) -> None:
    """Commits at whichever node coordinates the group (the resumed node may win it back)."""
    deadline = time.monotonic() + 30
    while True:
        answers = []
        for n in c.live():
            with wire.Conn(n.bootstrap, timeout=10) as conn:
                ans = conn.offset_commit(group, gen, member, topic, {0: offset})
            if ans == {0: wire.NONE}:
                return
            answers.append((n.node_id, ans))
        assert all(a == {0: NOT_COORDINATOR} for _, a in answers), f"commit of {offset}: {answers}"
        assert time.monotonic() < deadline, f"no node took the commit of {offset}: {answers}"
        time.sleep(0.2)


def test_a_stale_coordinators_offset_commit_is_refused(cluster):
    c = cluster
    topic = uniq("stale")
    create_topic(c.bootstrap, topic, 1)
    group = uniq("stale-g")
    victim = c.nodes[group_owner(group, list(AZS))]
    heir = c.nodes[group_owner(group, [n for n in AZS if n != victim.node_id])]
    # A member of the wire: joins, syncs, commits 5 at the coordinator.
    with wire.Conn(victim.bootstrap) as conn:
        j = conn.join_group(group, topics=(topic,))
        assert j["error"] == wire.MEMBER_ID_REQUIRED, j
        member = j["member_id"]
        j = conn.join_group(group, member, topics=(topic,))
        assert j["error"] == wire.NONE, j
        gen = j["generation"]
        s = conn.sync_group(group, gen, member, assignments={member: wire.assignment({topic: [0]})})
        assert s["error"] == wire.NONE, s
        # (UNKNOWN_TOPIC_OR_PARTITION until the node's catalog has the new topic.)
        deadline = time.monotonic() + 15
        while (ans := conn.offset_commit(group, gen, member, topic, {0: 5})) != {0: wire.NONE}:
            assert time.monotonic() < deadline, f"commit at the coordinator: {ans}"
            time.sleep(0.2)
    assert coordinators(c, group) == [victim.node_id]
    waiting = wire.Conn(victim.bootstrap, timeout=30)
    try:
        os.kill(victim.proc.pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        # The heir takes the group over once the victim's lease ran out, and loads it: the
        # member's heartbeat is accepted there, in the same generation.
        deadline = frozen_at + 30
        with wire.Conn(heir.bootstrap, timeout=10) as conn:
            while (err := conn.heartbeat(group, gen, member)) != wire.NONE:
                assert err == NOT_COORDINATOR, f"heartbeat at the heir: error {err}"
                assert time.monotonic() < deadline, "the group was not taken over within 30 s"
                time.sleep(0.2)
        moved = time.monotonic() - frozen_at
        # An OffsetCommit that waited on the frozen coordinator's connection...
        answer: list = []

        def ask():
            try:
                corr = waiting.send(wire.OFFSET_COMMIT, 7,
                                    wire.Conn.offset_commit_body(group, gen, member, topic, {0: 99}))
                answer.append(wire.Conn.offset_commit_answer(waiting.receive(corr)))
            except (OSError, ValueError) as e:  # closed by the node
                answer.append(e)

        asker = threading.Thread(target=ask)
        asker.start()
        time.sleep(0.5)
        os.kill(victim.proc.pid, signal.SIGCONT)
        asker.join(20)
        assert answer, "the resumed node neither answered nor closed the connection within 20 s"
        if isinstance(answer[0], Exception):
            outcome = f"its connection closed ({answer[0]})"
        else:
            assert answer[0] == {0: NOT_COORDINATOR}, f"the stale coordinator answered {answer[0]}"
            outcome = "NOT_COORDINATOR"
        # ...changed nothing: the heir serves the offset from before, and the member commits there.
        assert committed(heir, group, topic) == 5
        commit_at_coordinator(c, group, gen, member, topic, 7)
        assert committed(heir, group, topic) == 7
        # Which refused it: the store (the stale owner epoch) or the node (its lease renewal
        # had already stopped the coordinator); either way nothing changed.
        by = "the store refused the stale owner epoch" if "coordinated elsewhere now" in \
            victim.log_path.read_text(errors="replace") else "the node had dropped its coordinator"
        measurement(f"STALE COORDINATOR node {victim.node_id}: group moved {moved:.2f} s after SIGSTOP, "
                    f"kept generation {gen}; the stale commit got {outcome} ({by})")
    finally:
        os.kill(victim.proc.pid, signal.SIGCONT)
        waiting.close()
