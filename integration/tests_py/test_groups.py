"""Consumer groups and committed offsets, end to end with real clients.

1. Rebalances (one test per client/protocol/assignor; the Java classic
   consumer with range and cooperative-sticky, plus roundrobin and sticky when
   INKLESS_TEST_GROUPS_ALL_ASSIGNORS=1): a 6-partition topic, a
   producer writing keyed records continuously (value "P:SEQ", SEQ counting per
   partition); three members of one group, a fourth joins, one leaves
   (SIGTERM -> close), one is SIGKILLed and its partitions move after the
   session timeout. Every member process logs its assignment events and every
   consumed (partition, offset) with wall-clock timestamps
   (integration/clients/GROUPS.md). Asserted: no two members own a partition at
   the same time (the killed member's ownership ends at its kill), every record
   a member got lies inside one of its ownership intervals, every produced
   record was consumed (per partition the union of consumed offsets is
   0..end-1, no gap), the value matches the offset, and the group's committed
   offsets equal the end offsets after the last members closed. The rebalance
   durations (event -> all partitions owned again by the expected members) are
   printed (run with -s) as `REBALANCE ...` lines.
2. Committed offsets survive kill -9 of the broker (local broker only).
3. The Java AdminClient calls behind kafka-consumer-groups.sh.
4. Bad input on the wire (groupwire.py): INVALID_SESSION_TIMEOUT,
   UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, GROUP_MAX_SIZE_REACHED,
   FENCED_INSTANCE_ID.

Broker settings these tests rely on (GROUP_SETTINGS below): the module starts
its own broker with them as INKLESS__GROUPS__<KEY> variables (which
scripts/kafka-reference.sh `serve` maps to Kafka's group.<key>). With
INKLESS_TEST_BOOTSTRAP the external broker must have them already, e.g. for
the reference Kafka:

    KAFKA_REF_EXTRA_PROPS="$(python3 integration/tests_py/test_groups.py)" \\
        scripts/kafka-reference.sh start /tmp/kref 29192
    INKLESS_TEST_BOOTSTRAP=127.0.0.1:29192 python3 -m pytest -v integration/tests_py/test_groups.py
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

import groupwire as wire
from conftest import (
    EXTERNAL,
    JAVA_JAR,
    PY_CLIENTS,
    ClientRunner,
    LocalBroker,
    free_port,
    measurement,
    need_tool,
    stop_and_check,
    tail,
)

# group.<key> in Kafka, [groups] <key with `.` -> `_`> in Inkless.
GROUP_SETTINGS = {
    "initial.rebalance.delay.ms": "0",
    "min.session.timeout.ms": "6000",
    "max.session.timeout.ms": "1800000",
    # The rebalance tests have at most 4 members at once; the bad-input test
    # expects the 5th to be refused.
    "max.size": "4",
    # KIP-848 (group.protocol=consumer): session timeout and heartbeat interval
    # are broker settings there.
    "consumer.session.timeout.ms": "6000",
    "consumer.heartbeat.interval.ms": "1000",
}
# Kafka bounds the two KIP-848 settings above by minimums (45000 and 5000 by
# default) that Inkless does not have; scripts/kafka-reference.sh `serve` lowers
# them by itself, an external Kafka needs them in its server.properties.
KAFKA_ONLY_SETTINGS = {
    "consumer.min.session.timeout.ms": GROUP_SETTINGS["consumer.session.timeout.ms"],
    "consumer.min.heartbeat.interval.ms": GROUP_SETTINGS["consumer.heartbeat.interval.ms"],
}
MAX_SIZE = int(GROUP_SETTINGS["max.size"])
SESSION_TIMEOUT_MS = 6000
PARTITIONS = 6


def group_env() -> dict[str, str]:
    return {"INKLESS__GROUPS__" + k.replace(".", "_").upper(): v for k, v in GROUP_SETTINGS.items()}


def now_ms() -> int:
    return int(time.time() * 1000)


def log(msg: str) -> None:
    sys.stdout.write(f"{time.strftime('%H:%M:%S')} {msg}\n")
    sys.stdout.flush()


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def gbroker(tmp_path_factory):
    """The broker of this module: external, or a local one with GROUP_SETTINGS."""
    if EXTERNAL:
        yield None
        return
    root = tmp_path_factory.mktemp("groups-broker")
    b = LocalBroker(root / "data", free_port(), root)
    b.extra_env.update(group_env())
    b.start()
    yield b
    stop_and_check(b)


@pytest.fixture(scope="module")
def gbootstrap(gbroker) -> str:
    return EXTERNAL if EXTERNAL else gbroker.bootstrap


@pytest.fixture(scope="module")
def gclients(gbootstrap, gbroker, tmp_path_factory) -> ClientRunner:
    return ClientRunner(gbootstrap, gbroker, tmp_path_factory.mktemp("group-clients"))


@pytest.fixture(autouse=True)
def _gbroker_alive(request):
    if "gbroker" in request.fixturenames or "gbootstrap" in request.fixturenames:
        b = request.getfixturevalue("gbroker")
        if b is not None and not b.alive():
            pytest.fail(f"the module's broker is not running any more: {b.describe()}", pytrace=False)
    yield


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic].result(timeout=60)
    # Wait until the metadata shows every partition with a leader.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        t = admin.list_topics(topic, timeout=10).topics.get(topic)
        if t is not None and t.error is None and len(t.partitions) == partitions and all(
                p.leader >= 0 for p in t.partitions.values()):
            return
        time.sleep(0.2)
    pytest.fail(f"topic {topic} not ready within 30 s", pytrace=False)


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, tuple[int, str | None]]:
    """OffsetFetch through a consumer that joins nothing."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
        return {tp.partition: (tp.offset, tp.metadata) for tp in tps}
    finally:
        c.close()


# ---------------------------------------------------------------- producer

class KeyedProducer(threading.Thread):
    """Writes one record to every partition every `tick` seconds: key "key-P",
    value "P:SEQ" with SEQ the partition's own sequence number. Idempotent,
    acks=all, so SEQ must equal the offset. With `nodes_restart`, client errors that are not
    fatal (a connection refused by a node that is restarting) are not failures; delivery
    failures always are."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, tick: float = 0.05,
                 nodes_restart: bool = False):
        super().__init__(daemon=True)
        from confluent_kafka import Producer

        self.topic = topic
        self.partitions = partitions
        self.tick = tick
        self.producer = Producer({
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "error_cb": lambda e: None if nodes_restart and not e.fatal() else self.errors.append(
                f"client error: {e}"),
        })
        self.next_seq = [0] * partitions
        self.delivered: dict[int, dict[int, int]] = {p: {} for p in range(partitions)}
        self.errors: list[str] = []
        self.halt = threading.Event()

    def _cb(self, p: int, seq: int):
        def cb(err, msg):
            if err is not None:
                self.errors.append(f"partition {p} seq {seq}: {err}")
            else:
                self.delivered[p][msg.offset()] = seq
        return cb

    def run(self) -> None:
        nxt = time.monotonic()
        while not self.halt.is_set():
            for p in range(self.partitions):
                seq = self.next_seq[p]
                self.next_seq[p] += 1
                self.producer.produce(self.topic, key=f"key-{p}".encode(), value=f"{p}:{seq}".encode(),
                                      partition=p, on_delivery=self._cb(p, seq))
            self.producer.poll(0)
            nxt += self.tick
            time.sleep(max(0.0, nxt - time.monotonic()))

    def finish(self) -> dict[int, int]:
        """Stops, flushes, checks the acks; returns the end offset per partition."""
        self.halt.set()
        self.join(10)
        left = self.producer.flush(60)
        assert left == 0, f"{left} records not acknowledged within 60 s"
        assert not self.errors, f"producer errors: {self.errors[:10]}"
        ends = {}
        for p in range(self.partitions):
            d = self.delivered[p]
            n = self.next_seq[p]
            assert sorted(d) == list(range(n)), f"partition {p}: acked offsets are not 0..{n - 1}"
            bad = [(o, s) for o, s in d.items() if o != s]
            assert not bad, f"partition {p}: record with SEQ s got offset o != s: {bad[:10]}"
            ends[p] = n
        self.producer = None  # destroys the librdkafka handle (no reconnect noise later)
        return ends


# ---------------------------------------------------------------- members

@dataclass
class Event:
    kind: str  # START ASSIGNED REVOKED LOST REC CLOSING CLOSED ERROR KILLED EXIT
    ts: int
    parts: tuple[int, ...] = ()
    offset: int = -1
    seq: int = -1
    text: str = ""


class Member:
    """One group-member process; its stdout is the event log of GROUPS.md."""

    def __init__(self, run: "GroupRun", name: str, argv: list[str], env: dict[str, str]):
        self.run = run
        self.name = name
        self.argv = argv
        self.events: list[Event] = []
        self.owned: set[int] = set()
        self.started = False
        self.ended = False  # ownership over (CLOSING, killed, exited)
        self.log_path = run.dir / f"{name}.log"
        self.err_path = run.dir / f"{name}.err"
        full_env = dict(os.environ)
        full_env.update(env)
        self.spawned_at = now_ms()
        self.proc = subprocess.Popen(argv, env=full_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=open(self.err_path, "wb"), text=True, bufsize=1)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _add(self, ev: Event) -> None:
        with self.run.cond:
            self.events.append(ev)
            if ev.kind == "START":
                self.started = True
            elif ev.kind == "ASSIGNED":
                self.owned |= set(ev.parts)
            elif ev.kind in ("REVOKED", "LOST"):
                self.owned -= set(ev.parts)
            elif ev.kind in ("CLOSING", "KILLED", "EXIT"):
                self.owned.clear()
                self.ended = True
            elif ev.kind == "REC":
                self.run.max_seen[ev.parts[0]] = max(self.run.max_seen.get(ev.parts[0], -1), ev.offset)
            self.run.cond.notify_all()

    def _read(self) -> None:
        with open(self.log_path, "w", buffering=1) as f:
            for line in self.proc.stdout:
                f.write(line)
                w = line.split()
                if not w:
                    continue
                try:
                    kind, ts = w[0], int(w[1])
                    if kind in ("ASSIGNED", "REVOKED", "LOST"):
                        parts = () if w[2] == "-" else tuple(int(x) for x in w[2].split(","))
                        self._add(Event(kind, ts, parts))
                    elif kind == "REC":
                        self._add(Event(kind, ts, (int(w[2]),), int(w[3]), int(w[4])))
                    else:
                        self._add(Event(kind, ts, text=" ".join(w[2:])))
                except (IndexError, ValueError):
                    self._add(Event("ERROR", now_ms(), text=f"unparsable line {line.strip()!r}"))
        self.proc.wait()
        self._add(Event("EXIT", now_ms(), text=str(self.proc.returncode)))

    def kill(self) -> int:
        t = now_ms()
        self._add(Event("KILLED", t))
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        return t

    def terminate(self, timeout: float = 60) -> int:
        t = now_ms()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            pytest.fail(f"member {self.name} did not exit within {timeout}s of SIGTERM\n{self.describe()}",
                        pytrace=False)
        self.reader.join(10)
        assert rc == 0, f"member {self.name} exited with {rc} after SIGTERM\n{self.describe()}"
        return t

    def describe(self) -> str:
        lines = [ln for ln in tail(self.log_path, 400).splitlines() if not ln.startswith("REC ")][-30:]
        return (f"--- {self.name} events (REC lines left out), {self.log_path}:\n" + "\n".join(lines)
                + f"\n--- {self.name} stderr:\n{tail(self.err_path, 30)}")


class GroupRun:
    """Members of one group on one topic, the shared view of who owns what."""

    def __init__(self, clients: ClientRunner, topic: str, group: str, tmp: Path, client: str, env: dict[str, str],
                 partitions: int = PARTITIONS):
        self.partitions = partitions
        self.clients = clients
        self.topic = topic
        self.group = group
        self.dir = tmp
        self.client = client
        self.env = env
        self.cond = threading.Condition()
        self.members: dict[str, Member] = {}
        self.max_seen: dict[int, int] = {}

    def argv(self, name: str) -> list[str]:
        b, t, g = self.clients.bootstrap, self.topic, self.group
        if self.client == "java":
            need_tool("java")
            if not JAVA_JAR.is_file():
                pytest.fail(f"{JAVA_JAR} missing: run scripts/install-test-deps.sh", pytrace=False)
            return [need_tool("java"), "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp",
                    str(JAVA_JAR), "io.inkless.clients.GroupClient", "member", b, t, g, name]
        if self.client == "confluent-kafka":
            return [sys.executable, str(PY_CLIENTS / "confluent_group_member.py"), b, t, g, name]
        if self.client == "kafka-python":
            return [sys.executable, str(PY_CLIENTS / "kafka_python_group_member.py"), b, t, g, name]
        if self.client == "franz-go":
            return self.clients.go_cmd() + ["group-member", b, t, g, name]
        raise ValueError(self.client)

    def start(self, *names: str) -> None:
        for n in names:
            self.members[n] = Member(self, n, self.argv(n), self.env)

    def describe(self) -> str:
        owned = {n: sorted(m.owned) for n, m in self.members.items()}
        return f"owned now: {owned}\n" + "\n".join(m.describe() for m in self.members.values()) + \
            self.clients._broker_info()

    def _stable(self, expected: set[str]) -> bool:
        seen: set[int] = set()
        for n, m in self.members.items():
            if n in expected:
                if not m.owned or m.ended or (seen & m.owned):
                    return False
                seen |= m.owned
            elif m.owned:
                return False
        return seen == set(range(self.partitions))

    def wait_stable(self, expected: set[str], what: str, timeout: float) -> float:
        t0 = time.monotonic()
        with self.cond:
            while not self._stable(expected):
                for n, m in self.members.items():
                    if n in expected and m.ended:
                        pytest.fail(f"{what}: member {n} ended unexpectedly\n{self.describe()}", pytrace=False)
                left = t0 + timeout - time.monotonic()
                if left <= 0:
                    pytest.fail(f"{what}: group not stable with members {sorted(expected)} within {timeout}s\n"
                                f"{self.describe()}", pytrace=False)
                self.cond.wait(min(left, 0.5))
        return time.monotonic() - t0

    def wait_consumed(self, ends: dict[int, int], timeout: float) -> None:
        t0 = time.monotonic()
        with self.cond:
            while any(self.max_seen.get(p, -1) < ends[p] - 1 for p in ends):
                left = t0 + timeout - time.monotonic()
                if left <= 0:
                    pytest.fail(f"not all records consumed within {timeout}s: last offsets seen {self.max_seen}, "
                                f"ends {ends}\n{self.describe()}", pytrace=False)
                self.cond.wait(min(left, 0.5))

    def hold(self, seconds: float, expected: set[str]) -> None:
        """Let the group consume for a while; fail early if a member dies."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for n in expected:
                if self.members[n].ended:
                    pytest.fail(f"member {n} ended unexpectedly\n{self.describe()}", pytrace=False)
            time.sleep(0.1)

    # ---- analysis after the run ----

    def intervals(self) -> dict[str, dict[int, list[list[int]]]]:
        """member -> partition -> [[start, end], ...] from its own events."""
        out: dict[str, dict[int, list[list[int]]]] = {}
        for n, m in self.members.items():
            open_: dict[int, int] = {}
            iv: dict[int, list[list[int]]] = {}
            for ev in m.events:
                if ev.kind == "ASSIGNED":
                    for p in ev.parts:
                        open_.setdefault(p, ev.ts)
                elif ev.kind in ("REVOKED", "LOST"):
                    for p in ev.parts:
                        if p in open_:
                            iv.setdefault(p, []).append([open_.pop(p), ev.ts])
                elif ev.kind in ("CLOSING", "KILLED", "EXIT"):
                    for p, s in open_.items():
                        iv.setdefault(p, []).append([s, ev.ts])
                    open_.clear()
            assert not open_, f"{n}: ownership of {sorted(open_)} never ended"
            out[n] = iv
        return out

    def check(self, ends: dict[int, int]) -> dict[str, int]:
        errors: list[str] = []
        for n, m in self.members.items():
            for ev in m.events:
                if ev.kind == "ERROR":
                    errors.append(f"{n}: ERROR {ev.text}")
        iv = self.intervals()
        # 1. No overlapping ownership between members.
        for p in range(self.partitions):
            spans = sorted((s, e, n) for n in iv for s, e in iv[n].get(p, []))
            for i, (s1, e1, n1) in enumerate(spans):
                for s2, e2, n2 in spans[i + 1:]:
                    if s2 >= e1:
                        break
                    if n1 != n2:
                        errors.append(f"partition {p}: {n1} owned it [{s1}, {e1}] and {n2} [{s2}, {e2}] overlapping "
                                      f"by {e1 - s2} ms")
        # 2. Records only inside the member's ownership; 3. value matches offset; 4. no gaps.
        seen: dict[int, set[int]] = {p: set() for p in range(self.partitions)}
        deliveries = 0
        for n, m in self.members.items():
            outside = 0
            for ev in m.events:
                if ev.kind != "REC":
                    continue
                p = ev.parts[0]
                deliveries += 1
                seen[p].add(ev.offset)
                if ev.seq != ev.offset:
                    errors.append(f"{n}: partition {p} offset {ev.offset} has SEQ {ev.seq}")
                if not any(s <= ev.ts <= e for s, e in iv[n].get(p, [])):
                    outside += 1
                    if outside <= 5:
                        errors.append(f"{n}: record {p}@{ev.offset} consumed at {ev.ts} outside its ownership "
                                      f"{iv[n].get(p, [])}")
        for p in range(self.partitions):
            missing = sorted(set(range(ends[p])) - seen[p])
            if missing:
                errors.append(f"partition {p}: {len(missing)} of {ends[p]} records never consumed, first {missing[:10]}")
            beyond = sorted(o for o in seen[p] if o >= ends[p])
            if beyond:
                errors.append(f"partition {p}: consumed offsets beyond the end {ends[p]}: {beyond[:10]}")
        if errors:
            pytest.fail("group run check failed:\n  " + "\n  ".join(errors[:40]) + "\n" + self.describe(), pytrace=False)
        total = sum(ends.values())
        return {"records": total, "deliveries": deliveries, "redelivered": deliveries - total}

    def replay_rebalance(self, t_event: int, expected: set[str]) -> int | None:
        """ms from t_event until, in the merged event timeline, every partition
        is owned by exactly one of `expected` and each of them owns some."""
        evs = sorted(((ev.ts, i, n, ev) for n, m in self.members.items() for i, ev in enumerate(m.events)
                      if ev.kind in ("ASSIGNED", "REVOKED", "LOST", "CLOSING", "KILLED", "EXIT")),
                     key=lambda x: (x[0], x[1]))
        owned: dict[str, set[int]] = {n: set() for n in self.members}
        ended: set[str] = set()

        def stable() -> bool:
            seen: set[int] = set()
            for n in self.members:
                if n in expected:
                    if not owned[n] or n in ended or seen & owned[n]:
                        return False
                    seen |= owned[n]
                elif owned[n]:
                    return False
            return seen == set(range(self.partitions))

        for ts, _, n, ev in evs:
            if ev.kind == "ASSIGNED":
                owned[n] |= set(ev.parts)
            elif ev.kind in ("REVOKED", "LOST"):
                owned[n] -= set(ev.parts)
            else:
                owned[n].clear()
                ended.add(n)
            if ts >= t_event and stable():
                return ts - t_event
        return None


def run_rebalance_scenario(gclients: ClientRunner, tmp_path: Path, client: str, env: dict[str, str],
                           label: str) -> None:
    bootstrap = gclients.bootstrap
    topic = uniq(f"grp-{label}")
    group = uniq(f"g-{label}")
    create_topic(bootstrap, topic, PARTITIONS)
    kill_timeout = SESSION_TIMEOUT_MS / 1000 + 30
    producer = KeyedProducer(bootstrap, topic, PARTITIONS)
    producer.start()
    run = GroupRun(gclients, topic, group, tmp_path, client, env)
    try:
        run.start("m1", "m2", "m3")
        with run.cond:
            run.cond.wait_for(lambda: all(run.members[n].started or run.members[n].ended for n in run.members), 60)
        # from the moment the last of the three is running
        t0 = max((e.ts for m in run.members.values() for e in m.events if e.kind == "START"), default=now_ms())
        run.wait_stable({"m1", "m2", "m3"}, "3 members join", 60)
        run.hold(1.0, {"m1", "m2", "m3"})

        run.start("m4")
        with run.cond:
            run.cond.wait_for(lambda: run.members["m4"].started or run.members["m4"].ended, 60)
        t_join = next((e.ts for e in run.members["m4"].events if e.kind == "START"), now_ms())
        run.wait_stable({"m1", "m2", "m3", "m4"}, "4th member joins", 60)
        run.hold(1.0, {"m1", "m2", "m3", "m4"})

        t_leave = run.members["m2"].terminate()
        run.wait_stable({"m1", "m3", "m4"}, "m2 leaves", 60)
        run.hold(1.0, {"m1", "m3", "m4"})

        t_kill = run.members["m3"].kill()
        run.wait_stable({"m1", "m4"}, "m3 killed", kill_timeout)
        run.hold(1.0, {"m1", "m4"})

        ends = producer.finish()
        run.wait_consumed(ends, 30)
        for n in ("m1", "m4"):
            run.members[n].terminate()
    finally:
        producer.halt.set()
        for m in run.members.values():
            if m.proc.poll() is None:
                m.proc.kill()
                m.proc.wait(10)
    stats = run.check(ends)
    committed = committed_offsets(bootstrap, group, topic, PARTITIONS)
    assert {p: o for p, (o, _) in committed.items()} == ends, \
        f"committed offsets {committed} != end offsets {ends} after all members closed"

    durations = {
        "form": run.replay_rebalance(t0, {"m1", "m2", "m3"}),
        "join": run.replay_rebalance(t_join, {"m1", "m2", "m3", "m4"}),
        "leave": run.replay_rebalance(t_leave, {"m1", "m3", "m4"}),
        "kill": run.replay_rebalance(t_kill, {"m1", "m4"}),
    }
    measurement(
        f"REBALANCE {label}: form(3 members, from the last START)={durations['form']} ms join={durations['join']} ms "
        f"leave={durations['leave']} ms kill={durations['kill']} ms (session timeout {SESSION_TIMEOUT_MS} ms); "
        f"{stats['records']} records, {stats['redelivered']} redelivered")


# ---------------------------------------------------------------- 1. rebalances

# roundrobin and sticky add ~50 s; INKLESS_TEST_GROUPS_ALL_ASSIGNORS=1 runs them too.
JAVA_CLASSIC_ASSIGNORS = ["range", "cooperative-sticky"] + (
    ["roundrobin", "sticky"] if os.environ.get("INKLESS_TEST_GROUPS_ALL_ASSIGNORS") == "1" else [])


@pytest.mark.parametrize("assignor", JAVA_CLASSIC_ASSIGNORS)
def test_rebalance_java_classic(gclients, tmp_path, assignor):
    run_rebalance_scenario(gclients, tmp_path, "java", {"GROUP_PROTOCOL": "classic", "GROUP_ASSIGNOR": assignor},
                           f"java-classic-{assignor}")


def test_rebalance_java_consumer_protocol(gclients, tmp_path):
    """KIP-848 (group.protocol=consumer): broker-side assignment, ConsumerGroupHeartbeat."""
    run_rebalance_scenario(gclients, tmp_path, "java", {"GROUP_PROTOCOL": "consumer"}, "java-consumer")


@pytest.mark.parametrize("assignor", ["range", "cooperative-sticky"])
def test_rebalance_librdkafka(gclients, tmp_path, assignor):
    run_rebalance_scenario(gclients, tmp_path, "confluent-kafka", {"GROUP_ASSIGNOR": assignor},
                           f"librdkafka-{assignor}")


def test_rebalance_franz_go(gclients, tmp_path):
    """franz-go's default group balancer (cooperative-sticky)."""
    run_rebalance_scenario(gclients, tmp_path, "franz-go", {}, "franz-go-cooperative-sticky")


def test_rebalance_kafka_python(gclients, tmp_path):
    run_rebalance_scenario(gclients, tmp_path, "kafka-python", {"GROUP_ASSIGNOR": "range"}, "kafka-python-range")


# ---------------------------------------------------------------- 2. kill -9 of the broker

def consume_all(bootstrap: str, group: str, topic: str, want: int, timeout: float = 60):
    """Subscribes in `group` (no auto-commit) until `want` records arrived;
    returns (consumer, records as (partition, offset, value))."""
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "session.timeout.ms": SESSION_TIMEOUT_MS,
                  "heartbeat.interval.ms": 1000})
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        for m in c.consume(num_messages=500, timeout=0.5):
            if m.error() is None:
                got.append((m.partition(), m.offset(), m.value().decode()))
    # Nothing more must come (e.g. duplicates).
    extra_deadline = time.monotonic() + 1.0
    while time.monotonic() < extra_deadline:
        for m in c.consume(num_messages=500, timeout=0.2):
            if m.error() is None:
                got.append((m.partition(), m.offset(), m.value().decode()))
    return c, got


@pytest.mark.skipif(
    bool(EXTERNAL),
    reason="INKLESS_TEST_BOOTSTRAP is set: the broker is external, so this test cannot kill -9 and restart it",
)
def test_committed_offsets_survive_broker_kill9(tmp_path):
    from confluent_kafka import Producer, TopicPartition

    broker = LocalBroker(tmp_path / "data", free_port(), tmp_path)
    broker.extra_env.update(group_env())
    broker.start()
    try:
        bootstrap = broker.bootstrap
        topic, group, group2 = uniq("kill9-offsets"), uniq("g-kill9"), uniq("g-kill9-second")
        parts, per = 3, 100
        create_topic(bootstrap, topic, parts)
        prod = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
        for i in range(per):
            for p in range(parts):
                prod.produce(topic, key=f"key-{p}".encode(), value=f"{p}:{i}".encode(), partition=p)
        assert prod.flush(60) == 0
        del prod

        log("consuming and committing")
        c, got = consume_all(bootstrap, group, topic, parts * per)
        assert len(got) == parts * per, f"got {len(got)} of {parts * per} records before the commit"
        # Two commits: the later one must win after the restart.
        c.commit(offsets=[TopicPartition(topic, p, 10 + p, metadata=f"first-{p}") for p in range(parts)],
                 asynchronous=False)
        final = {0: 40, 1: 73, 2: per}
        c.commit(offsets=[TopicPartition(topic, p, o, metadata=f"m-{p}-{o}") for p, o in final.items()],
                 asynchronous=False)
        c.close()  # auto-commit is off: closing commits nothing more
        # A second group with a member still in it when the broker dies.
        c2, got2 = consume_all(bootstrap, group2, topic, parts * per)
        c2.commit(offsets=[TopicPartition(topic, p, 5) for p in range(parts)], asynchronous=False)
        before = committed_offsets(bootstrap, group, topic, parts)
        assert before == {p: (o, f"m-{p}-{o}") for p, o in final.items()}

        log("kill -9 of the broker")
        broker.kill9()
        assert broker.proc.returncode == -9
        c2.close()  # its LeaveGroup went nowhere
        broker.start()  # same data dir, same port

        log("restarted")
        after = committed_offsets(bootstrap, group, topic, parts)
        assert after == before, f"committed offsets after kill -9 + restart {after} != before {before}"
        want = sum(per - o for o in final.values())
        c, got = consume_all(bootstrap, group, topic, want)
        c.close()
        by_p: dict[int, list[int]] = {}
        for p, o, v in got:
            by_p.setdefault(p, []).append(o)
            assert v == f"{p}:{o}", f"record {p}@{o} has value {v!r}"
        for p, o in final.items():
            assert by_p.get(p, []) == list(range(o, per)), \
                f"partition {p}: after restart consumed {by_p.get(p, [])[:10]}..., expected {o}..{per - 1}"
        # The second group resumes at 5 once its dead member is gone (session timeout).
        log("second group")
        c2, got2 = consume_all(bootstrap, group2, topic, parts * (per - 5), timeout=SESSION_TIMEOUT_MS / 1000 + 60)
        c2.close()
        log("done")
        firsts = {p: min(o for q, o, _ in got2 if q == p) for p in range(parts)}
        assert firsts == {p: 5 for p in range(parts)}, f"second group resumed at {firsts}, expected 5"
        assert len(got2) == parts * (per - 5), f"second group got {len(got2)} records, want {parts * (per - 5)}"
    finally:
        if broker.alive():
            stop_and_check(broker)


# ---------------------------------------------------------------- 3. Admin API

class JavaAdmin:
    """io.inkless.clients.GroupClient admin: one JSON answer per command line."""

    def __init__(self, bootstrap: str, err_path: Path):
        if not JAVA_JAR.is_file():
            pytest.fail(f"{JAVA_JAR} missing: run scripts/install-test-deps.sh", pytrace=False)
        self.err_path = err_path
        self.proc = subprocess.Popen(
            [need_tool("java"), "-cp", str(JAVA_JAR), "io.inkless.clients.GroupClient", "admin", bootstrap],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(err_path, "wb"), text=True, bufsize=1)
        assert self._line() == "READY"

    def _line(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            pytest.fail(f"Java admin exited ({self.proc.poll()}); stderr:\n{tail(self.err_path)}", pytrace=False)
        return line.strip()

    def __call__(self, cmd: str):
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        ans = json.loads(self._line())
        log(f"admin {cmd} -> {json.dumps(ans)[:3000]}")
        return ans

    def ok(self, cmd: str):
        ans = self(cmd)
        assert "ok" in ans, f"admin `{cmd}` failed: {ans}"
        return ans["ok"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def assert_no_such_group(ans: dict) -> None:
    """describeConsumerGroups of a group that does not exist: Kafka 4.x answers
    GROUP_ID_NOT_FOUND to ConsumerGroupDescribe and to DescribeGroups v6, which
    the admin client reports as GroupIdNotFoundException; a broker whose
    DescribeGroups stops at v5 describes the group as Dead with no members,
    as Kafka before 4.0 did. Both are accepted."""
    if "error" in ans:
        assert ans["error"] == "GroupIdNotFoundException", ans
    else:
        assert (ans["ok"]["state"], ans["ok"]["members"]) == ("Dead", []), ans


def test_admin_consumer_groups(gclients, tmp_path):
    from confluent_kafka import Producer

    bootstrap = gclients.bootstrap
    topic = uniq("admin-groups")
    ga, gk, ge, gnone = uniq("g-admin-active"), uniq("g-admin-kip848"), uniq("g-admin-empty"), uniq("g-admin-none")
    create_topic(bootstrap, topic, 3)
    prod = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(30):
        prod.produce(topic, value=f"{i % 3}:{i // 3}".encode(), partition=i % 3)
    assert prod.flush(60) == 0
    del prod

    active = GroupRun(gclients, topic, ga, tmp_path, "java", {"GROUP_PROTOCOL": "classic", "GROUP_ASSIGNOR": "range"})
    kip848 = GroupRun(gclients, topic, gk, tmp_path, "java", {"GROUP_PROTOCOL": "consumer"})
    admin = JavaAdmin(bootstrap, tmp_path / "admin.err")
    try:
        active.start("ga-m1")
        kip848.start("gk-m1")
        # GE: created by an admin offset reset of a group that does not exist yet.
        res = admin.ok(f"alter {ge} {topic} 0:3,1:4,2:5")
        assert res == {"0": {"ok": None}, "1": {"ok": None}, "2": {"ok": None}}

        for run in (active, kip848):
            # one member owns all 3 partitions; wait until it consumed and committed everything
            with run.cond:
                assert run.cond.wait_for(lambda: all(run.max_seen.get(p, -1) >= 9 for p in range(3)), 60), \
                    run.describe()
        deadline = time.monotonic() + 30
        while True:
            oa, ok_ = admin.ok(f"offsets {ga}"), admin.ok(f"offsets {gk}")
            if all([(o["partition"], o["offset"]) for o in x] == [(0, 10), (1, 10), (2, 10)] for x in (oa, ok_)):
                break
            assert time.monotonic() < deadline, f"committed offsets of {ga} / {gk} not 10,10,10: {oa} / {ok_}"
            time.sleep(0.5)
        assert all(o["topic"] == topic for o in oa + ok_)

        # list, with and without a state filter
        def listed(ans):
            return {g["group"]: g for g in ans if g["group"] in (ga, gk, ge, gnone)}

        everything = listed(admin.ok("list"))
        assert set(everything) == {ga, gk, ge}, everything
        assert everything[ga]["state"] == "Stable" and everything[ga]["type"] == "Classic"
        assert everything[gk]["state"] == "Stable" and everything[gk]["type"] == "Consumer"
        assert everything[ge]["state"] == "Empty" and everything[ge]["type"] == "Classic"
        assert set(listed(admin.ok("list Stable"))) == {ga, gk}
        assert set(listed(admin.ok("list Empty"))) == {ge}
        assert set(listed(admin.ok("list Stable,Empty"))) == {ga, gk, ge}
        assert set(listed(admin.ok("list Dead"))) == set()

        # describe
        d = admin.ok(f"describe {ga} {gk} {ge} {gnone}")
        a = d[ga]["ok"]
        assert (a["state"], a["type"], a["assignor"], a["simple"]) == ("Stable", "Classic", "range", False), a
        assert len(a["members"]) == 1 and a["members"][0]["client_id"] == "ga-m1", a
        assert a["members"][0]["assignment"] == [[topic, 0], [topic, 1], [topic, 2]], a
        assert a["members"][0]["member_id"].startswith("ga-m1-"), a
        k = d[gk]["ok"]
        assert (k["state"], k["type"], k["assignor"]) == ("Stable", "Consumer", "uniform"), k
        assert len(k["members"]) == 1 and k["members"][0]["client_id"] == "gk-m1", k
        assert k["members"][0]["assignment"] == [[topic, 0], [topic, 1], [topic, 2]], k
        e = d[ge]["ok"]
        assert (e["state"], e["members"]) == ("Empty", []), e
        assert_no_such_group(d[gnone])

        # offsets of the empty group, with the metadata the admin client wrote
        oe = admin.ok(f"offsets {ge}")
        assert [(o["partition"], o["offset"], o["metadata"]) for o in oe] == [(0, 3, "admin"), (1, 4, "admin"), (2, 5, "admin")]

        # alter: refused while the group has members, accepted when it is empty
        r = admin(f"alter {ga} {topic} 0:0")
        assert r.get("error") == "UnknownMemberIdException", r
        r = admin(f"alter {gk} {topic} 0:0")
        assert r.get("error") == "UnknownMemberIdException", r
        admin.ok(f"alter {ge} {topic} 0:1,1:2,2:9")
        assert [(o["partition"], o["offset"]) for o in admin.ok(f"offsets {ge}")] == [(0, 1), (1, 2), (2, 9)]

        # delete offsets: refused for a topic the group is subscribed to
        r = admin(f"delete-offsets {ga} {topic} 0")
        assert r.get("error") == "GroupSubscribedToTopicException", r
        assert r["partitions"]["0"]["error"] == "GroupSubscribedToTopicException", r
        r = admin(f"delete-offsets {gk} {topic} 0")
        assert r.get("error") == "GroupSubscribedToTopicException", r
        admin.ok(f"delete-offsets {ge} {topic} 0,1")
        assert [(o["partition"], o["offset"]) for o in admin.ok(f"offsets {ge}")] == [(2, 9)]

        # delete groups: refused while members are in, then fine once they left
        r = admin.ok(f"delete {ga} {gk} {ge}")
        assert r[ga]["error"] == "GroupNotEmptyException", r
        assert r[gk]["error"] == "GroupNotEmptyException", r
        assert r[ge] == {"ok": None}, r
        assert set(listed(admin.ok("list"))) == {ga, gk}

        active.members["ga-m1"].terminate()
        kip848.members["gk-m1"].terminate()
        deadline = time.monotonic() + 30
        while set(listed(admin.ok("list Empty"))) != {ga, gk}:
            assert time.monotonic() < deadline, "groups not Empty 30 s after their members left"
            time.sleep(0.5)
        r = admin.ok(f"delete {ga} {gk} {ge}")
        assert r[ga] == {"ok": None} and r[gk] == {"ok": None}, r
        assert r[ge]["error"] == "GroupIdNotFoundException", r
        assert set(listed(admin.ok("list"))) == set()
        assert admin.ok(f"offsets {ga}") == []
        d = admin.ok(f"describe {ga}")
        assert_no_such_group(d[ga])
    finally:
        admin.close()
        for run in (active, kip848):
            for m in run.members.values():
                if m.proc.poll() is None:
                    m.proc.kill()
                    m.proc.wait(10)


# ---------------------------------------------------------------- 4. bad input on the wire

def test_group_errors_on_the_wire(gbootstrap):
    from confluent_kafka import Consumer

    topic = uniq("wire-groups")
    create_topic(gbootstrap, topic, 2)
    with wire.Conn(gbootstrap) as c:
        versions = c.api_versions()
        for api, v in wire.USED_VERSIONS.items():
            lo, hi = versions.get(api, (None, None))
            assert lo is not None and lo <= v <= hi, f"API {api} v{v} not advertised: {versions.get(api)}"

        g = uniq("g-wire")
        # session timeout out of [group.min.session.timeout.ms, group.max.session.timeout.ms]
        lo_ms, hi_ms = int(GROUP_SETTINGS["min.session.timeout.ms"]), int(GROUP_SETTINGS["max.session.timeout.ms"])
        for st in (lo_ms - 1, 1000, hi_ms + 1):
            r = c.join_group(g, session_timeout_ms=st, topics=(topic,))
            assert r["error"] == wire.INVALID_SESSION_TIMEOUT, (st, r)

        # a dynamic member: MEMBER_ID_REQUIRED, then in with generation 1 as leader
        r = c.join_group(g, topics=(topic,))
        assert r["error"] == wire.MEMBER_ID_REQUIRED and r["member_id"], r
        mid = r["member_id"]
        r = c.join_group(g, member_id=mid, topics=(topic,))
        assert (r["error"], r["generation"], r["leader"], r["member_id"], r["protocol"]) == (0, 1, mid, mid, "range"), r
        assert [m["member_id"] for m in r["members"]] == [mid], r
        gen = r["generation"]
        r = c.sync_group(g, gen, mid, assignments={mid: wire.assignment({topic: [0, 1]})})
        assert r["error"] == 0 and r["assignment"] == wire.assignment({topic: [0, 1]}), r
        assert c.heartbeat(g, gen, mid) == 0

        # unknown member
        assert c.heartbeat(g, gen, "no-such-member") == wire.UNKNOWN_MEMBER_ID
        assert c.join_group(g, member_id="no-such-member", topics=(topic,))["error"] == wire.UNKNOWN_MEMBER_ID
        assert c.offset_commit(g, gen, "no-such-member", topic, {0: 1}) == {0: wire.UNKNOWN_MEMBER_ID}
        assert c.heartbeat(uniq("g-wire-nonexistent"), 1, "no-such-member") == wire.UNKNOWN_MEMBER_ID

        # wrong generation
        assert c.offset_commit(g, gen + 1, mid, topic, {0: 1}) == {0: wire.ILLEGAL_GENERATION}
        assert c.offset_commit(g, gen - 1, mid, topic, {0: 1}) == {0: wire.ILLEGAL_GENERATION}
        assert c.heartbeat(g, gen + 1, mid) == wire.ILLEGAL_GENERATION
        # the right one
        assert c.offset_commit(g, gen, mid, topic, {0: 7, 1: 8}) == {0: 0, 1: 0}
        assert {p: o for p, (o, _) in committed_offsets(gbootstrap, g, topic, 2).items()} == {0: 7, 1: 8}
        # a "simple" commit (no member, generation -1) into a group with members
        assert c.offset_commit(g, -1, "", topic, {0: 1}) == {0: wire.UNKNOWN_MEMBER_ID}
        r = c.leave_group(g, [(mid, None)])
        assert r["error"] == 0 and [m["error"] for m in r["members"]] == [0], r

    # static member replaced: the old instance is fenced
    g = uniq("g-wire-static")
    with wire.Conn(gbootstrap) as old, wire.Conn(gbootstrap) as new:
        r = old.join_group(g, instance_id="inst-1", topics=(topic,))
        assert r["error"] == 0 and r["generation"] == 1, r
        a, gen = r["member_id"], r["generation"]
        assert old.sync_group(g, gen, a, "inst-1", {a: wire.assignment({topic: [0, 1]})})["error"] == 0
        assert old.heartbeat(g, gen, a, "inst-1") == 0
        r = new.join_group(g, instance_id="inst-1", topics=(topic,))
        assert r["error"] == 0 and r["member_id"] != a, r
        b, gen_b = r["member_id"], r["generation"]
        assert old.heartbeat(g, gen, a, "inst-1") == wire.FENCED_INSTANCE_ID
        assert old.offset_commit(g, gen, a, topic, {0: 1}, "inst-1") == {0: wire.FENCED_INSTANCE_ID}
        assert old.sync_group(g, gen, a, "inst-1", {})["error"] == wire.FENCED_INSTANCE_ID
        assert old.join_group(g, member_id=a, instance_id="inst-1", topics=(topic,))["error"] == wire.FENCED_INSTANCE_ID
        r = old.leave_group(g, [(a, "inst-1")])
        assert [m["error"] for m in r["members"]] == [wire.FENCED_INSTANCE_ID], r
        # the new instance is fine
        assert new.sync_group(g, gen_b, b, "inst-1", {})["error"] == 0
        assert new.heartbeat(g, gen_b, b, "inst-1") == 0
        r = new.leave_group(g, [(b, "inst-1")])
        assert r["error"] == 0 and [m["error"] for m in r["members"]] == [0], r

    # group.max.size: MAX_SIZE real members, then one more is refused
    g = uniq("g-wire-max")
    consumers = [Consumer({"bootstrap.servers": gbootstrap, "group.id": g, "client.id": f"max-{i}",
                           "session.timeout.ms": SESSION_TIMEOUT_MS, "heartbeat.interval.ms": 1000,
                           "partition.assignment.strategy": "range"}) for i in range(MAX_SIZE)]
    stop = threading.Event()
    joined: set[int] = set()

    def poll_loop(i, cons):
        cons.subscribe([topic], on_assign=lambda *_: joined.add(i))
        while not stop.is_set():
            cons.poll(0.2)

    threads = [threading.Thread(target=poll_loop, args=(i, cons), daemon=True) for i, cons in enumerate(consumers)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 60
        while len(joined) < MAX_SIZE:
            assert time.monotonic() < deadline, f"only {len(joined)} of {MAX_SIZE} members got an assignment"
            time.sleep(0.1)
        time.sleep(1.0)  # let the last rebalance settle
        with wire.Conn(gbootstrap) as c:
            r = c.join_group(g, topics=(topic,))
            assert r["error"] == wire.GROUP_MAX_SIZE_REACHED, r
            r = c.join_group(g, instance_id="static-extra", topics=(topic,))
            assert r["error"] == wire.GROUP_MAX_SIZE_REACHED, r
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        for cons in consumers:
            cons.close()


if __name__ == "__main__":
    # The reference Kafka's extra properties: KAFKA_REF_EXTRA_PROPS="$(python3 test_groups.py)"
    print(",".join(f"group.{k}={v}" for k, v in {**GROUP_SETTINGS, **KAFKA_ONLY_SETTINGS}.items()))


def test_pipelined_requests_take_effect_in_order(gbootstrap):
    """Kafka handles a connection's requests one at a time: 100 OffsetCommits sent back to
    back, then an OffsetFetch, on one connection, and the fetch answers the last commit;
    a ListOffsets pipelined behind Produces sees them."""
    topic = uniq("pipelined")
    create_topic(gbootstrap, topic, 1)
    for attempt in range(5):
        g = uniq("g-pipelined")
        with wire.Conn(gbootstrap) as c:
            sent = [c.send(wire.OFFSET_COMMIT, 7, wire.Conn.offset_commit_body(g, -1, "", topic, {0: o}))
                    for o in range(1, 101)]
            fetch = c.send(wire.OFFSET_FETCH, 1, wire.string(g) + wire.array([wire.string(topic) + wire.array([wire.i32(0)])]))
            for corr in sent:
                assert wire.Conn.offset_commit_answer(c.receive(corr)) == {0: 0}
            r = c.receive(fetch)
            parts = r.array(lambda x: (x.string(), x.array(lambda y: (y.i32(), y.i64(), y.string(), y.i16()))))
            assert parts == [(topic, [(0, 100, "", 0)])], f"attempt {attempt}: OffsetFetch overtook the commits: {parts}"
        with wire.Conn(gbootstrap) as c:
            produced = [c.send(wire.PRODUCE, 3, wire.Conn.produce_body(topic, 0, [b"x"])) for _ in range(5)]
            listed = c.send(wire.LIST_OFFSETS, 1, wire.i32(-1) + wire.array([wire.string(topic) + wire.array([wire.i32(0) + wire.i64(-1)])]))
            bases = [wire.Conn.produce_answer(c.receive(corr)) for corr in produced]
            assert all(err == 0 for err, _ in bases), bases
            r = c.receive(listed)
            (_, ((_, err, _, end),)), = r.array(lambda t: (t.string(), t.array(lambda p: (p.i32(), p.i16(), p.i64(), p.i64()))))
            assert err == 0 and end == bases[-1][1] + 1, f"ListOffsets answered {end} before the produces before it: {bases}"



ASYNC_COMMITS = 300


def produce_values(bootstrap: str, topic: str, n: int) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(n):
        p.produce(topic, value=str(i).encode(), partition=0)
    assert p.flush(30) == 0


def test_librdkafka_async_commits_end_at_the_last_one(gbootstrap):
    """A librdkafka consumer commits each record's next offset asynchronously (many commits
    in flight on its coordinator connection), then closes: the group's committed offset is
    the last one it committed, not an earlier one that overtook it."""
    from confluent_kafka import Consumer, TopicPartition

    topic, group = uniq("async-rd"), uniq("g-async-rd")
    create_topic(gbootstrap, topic, 1)
    produce_values(gbootstrap, topic, ASYNC_COMMITS)
    c = Consumer({"bootstrap.servers": gbootstrap, "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, 0, 0)])
    last, deadline = 0, time.monotonic() + 60
    while last < ASYNC_COMMITS and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            last = m.offset() + 1
            c.commit(offsets=[TopicPartition(topic, 0, last)], asynchronous=True)
    c.close()
    assert last == ASYNC_COMMITS, f"read {last} of {ASYNC_COMMITS}"
    assert committed_offsets(gbootstrap, group, topic, 1)[0][0] == ASYNC_COMMITS


def test_java_async_commits_end_at_the_last_one(gbootstrap):
    """The same with the Java consumer's commitAsync (its close() completes the commits in
    flight)."""
    topic, group = uniq("async-java"), uniq("g-async-java")
    create_topic(gbootstrap, topic, 1)
    produce_values(gbootstrap, topic, ASYNC_COMMITS)
    if not JAVA_JAR.is_file():
        pytest.fail(f"{JAVA_JAR} missing: run scripts/install-test-deps.sh", pytrace=False)
    r = subprocess.run([need_tool("java"), "-cp", str(JAVA_JAR), "io.inkless.clients.GroupClient",
                        "async-commit", gbootstrap, topic, group, str(ASYNC_COMMITS)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr[-2000:]}"
    assert f"LAST {ASYNC_COMMITS}" in r.stdout
    assert committed_offsets(gbootstrap, group, topic, 1)[0][0] == ASYNC_COMMITS


def test_pipelined_join_sync_and_leave_take_effect_in_order(gbootstrap):
    """A stable group's only member (static) sends JoinGroup, SyncGroup and LeaveGroup back to
    back on one connection. Taken in order, the JoinGroup completes the next generation at
    once (the leader rejoined and is alone), the SyncGroup of that generation gets the
    leader's assignment, and the LeaveGroup leaves: a SyncGroup overtaking the JoinGroup
    would be refused with ILLEGAL_GENERATION or REBALANCE_IN_PROGRESS."""
    topic = uniq("pipelined-join")
    create_topic(gbootstrap, topic, 1)
    for attempt in range(5):
        g, instance = uniq("g-pipelined-join"), f"static-{attempt}"
        with wire.Conn(gbootstrap) as c:
            first = c.join_group(g, instance_id=instance, topics=(topic,), session_timeout_ms=10_000)
            assert first["error"] == wire.NONE, first
            me, gen = first["member_id"], first["generation"]
            assignment = wire.assignment({topic: [0]})
            assert c.sync_group(g, gen, me, instance, {me: assignment})["error"] == wire.NONE
            join = c.send(wire.JOIN_GROUP, 5, wire.Conn.join_group_body(
                g, me, 10_000, 10_000, instance, (topic,)))
            sync = c.send(wire.SYNC_GROUP, 3, wire.Conn.sync_group_body(
                g, gen + 1, me, instance, {me: assignment}))
            leave = c.send(wire.LEAVE_GROUP, 3, wire.string(g) + wire.array([wire.string(me) + wire.string(instance)]))
            rejoined = wire.Conn.join_group_answer(c.receive(join))
            assert (rejoined["error"], rejoined["generation"]) == (wire.NONE, gen + 1), f"attempt {attempt}: {rejoined}"
            synced = wire.Conn.sync_group_answer(c.receive(sync))
            assert (synced["error"], synced["assignment"]) == (wire.NONE, assignment), f"attempt {attempt}: {synced}"
            r = c.receive(leave)
            r.i32()
            assert r.i16() == wire.NONE
