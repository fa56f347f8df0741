"""The operator's tools against a running three-node cluster (PostgreSQL and S3, one node
per AZ): `inkless topics` and `inkless groups` print what Kafka's kafka-topics and
kafka-consumer-groups print for the same state (both run here, the Kafka 4.4.0 jars of
test_kafka_tools.py); `--reset-offsets` plans without `--execute` and commits with it, and
refuses a group with members; `inkless cluster drain` moves every partition and group
coordinator off a node, which stays empty (a restart included) until `--cancel`, while a
producer running throughout loses no acknowledged record; and the admin endpoint's web
view, loaded in headless Chromium, shows every node's tree, partition actors, and filters
by name (a screenshot is kept in the test's tmp dir)."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from cluster import Cluster
from conftest import EXTERNAL, broker_binary, measurement
from test_cluster import BUCKET, group_nodes, infra, wait_placed  # noqa: F401 (fixture)
from test_groups import create_topic
from test_kafka_tools import JVM_FLAGS, TOOLS, kafka_libs  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(bool(EXTERNAL), reason="starts its own cluster")

AZS = {1: "az1", 2: "az2", 3: "az3"}


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def ops_cluster(infra, tmp_path_factory):  # noqa: F811 (the fixture imported above)
    pg, moto = infra
    db = f"ops_{uuid.uuid4().hex[:10]}"
    pg.create_database(db)
    c = Cluster(tmp_path_factory.mktemp("ops"), pg.url(db), moto.endpoint, BUCKET)
    c.s3["INKLESS__STORAGE__OBJECT_STORE"] = f"s3://{BUCKET}/{db}"
    for node_id, az in AZS.items():
        c.add(node_id, az).start()
    c.wait_converged(expect_nodes=len(AZS))
    yield c
    for n in c.nodes.values():
        if n.alive():
            assert n.stop() == 0, f"{n.name} did not stop cleanly"


class Tools:
    """`inkless` and Kafka's tools, both against node 1's listener."""

    def __init__(self, c: Cluster, libs: Path):
        self.c = c
        self.libs = libs
        self.java = shutil.which("java")
        assert self.java, "java not found (scripts/install-test-deps.sh installs it)"
        self.bootstrap = c.nodes[1].bootstrap
        self.admin = f"{c.nodes[1].host}:{c.nodes[1].admin_port}"

    def inkless(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(broker_binary()), *args], capture_output=True, text=True,
                              timeout=180, stdin=subprocess.DEVNULL)

    def ours(self, command: str, *args: str) -> subprocess.CompletedProcess:
        return self.inkless(command, "--bootstrap-server", self.bootstrap, *args)

    def kafka(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        argv = [self.java, *JVM_FLAGS, "-cp", f"{self.libs}/*", TOOLS[tool],
                "--bootstrap-server", self.bootstrap, *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)


def ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, f"{r.args} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def fails(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 1, f"{r.args} exited {r.returncode}, not 1:\n{r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


@pytest.fixture(scope="module")
def tools(ops_cluster, kafka_libs) -> Tools:  # noqa: F811
    return Tools(ops_cluster, kafka_libs)


def without_leaders(describe: str) -> list[str]:
    """kafka-topics --describe lines with the Leader, Replicas and Isr values masked (the
    AZ-local leader depends on which node answered Metadata) and checked to be one node."""
    out = []
    for line in describe.splitlines():
        fields = line.split("\t")
        values = {f.partition(": ")[0]: f.partition(": ")[2] for f in fields}
        if "Leader" in values:
            assert values["Leader"] in {"1", "2", "3"} and values["Replicas"] == values["Isr"] == values["Leader"], line
            fields = [f if f.split(":")[0] not in ("Leader", "Replicas", "Isr") else f.split(":")[0] + ": *"
                      for f in fields]
        out.append("\t".join(fields))
    return out


# ---------------------------------------------------------------- inkless topics

def test_topics_print_what_kafka_topics_prints(tools):
    topic = uniq("ops-topics")
    out = ok(tools.ours("topics", "--create", "--topic", topic, "--partitions", "3",
                        "--config", "retention.ms=86400000", "--config", "cleanup.policy=delete"))
    assert out == f"Created topic {topic}.\n"
    err = fails(tools.ours("topics", "--create", "--topic", topic))
    assert f"Topic '{topic}' already exists." in err and "TOPIC_ALREADY_EXISTS" in err, err

    assert set(ok(tools.ours("topics", "--list")).splitlines()) == \
        set(ok(tools.kafka("kafka-topics", "--list")).splitlines())
    assert topic in ok(tools.ours("topics", "--list")).splitlines()

    ours = ok(tools.ours("topics", "--describe", "--topic", topic))
    theirs = ok(tools.kafka("kafka-topics", "--describe", "--topic", topic))
    print(f"inkless topics --describe:\n{ours}kafka-topics --describe:\n{theirs}")
    assert ours.splitlines()[0] == theirs.splitlines()[0], (ours, theirs)
    assert "retention.ms=86400000" in ours.splitlines()[0]
    assert without_leaders(ours) == without_leaders(theirs)
    assert len(ours.splitlines()) == 4

    assert ok(tools.ours("topics", "--alter", "--topic", topic, "--partitions", "5")) == ""
    ours = ok(tools.ours("topics", "--describe", "--topic", topic))
    assert "\tPartitionCount: 5\t" in ours
    # The other nodes see the new partitions at their next topic refresh (as Kafka's brokers
    # see a change once its metadata reaches them): kafka-topics may ask one of them first.
    deadline = time.monotonic() + 30
    while "\tPartitionCount: 5\t" not in (theirs := ok(tools.kafka("kafka-topics", "--describe", "--topic", topic))):
        assert time.monotonic() < deadline, f"kafka-topics still describes the old count 30 s later:\n{theirs}"
        time.sleep(1)
    assert without_leaders(ours) == without_leaders(theirs)
    err = fails(tools.ours("topics", "--alter", "--topic", topic, "--partitions", "2"))
    assert f"The topic {topic} currently has 5 partition(s); 2 would not be an increase." in err, err

    # Every topic: the same lines as kafka-topics --describe without --topic.
    assert without_leaders(ok(tools.ours("topics", "--describe"))) == \
        without_leaders(ok(tools.kafka("kafka-topics", "--describe")))

    assert ok(tools.ours("topics", "--delete", "--topic", topic)) == ""
    deadline = time.monotonic() + 30
    while topic in ok(tools.kafka("kafka-topics", "--list")).splitlines():
        assert time.monotonic() < deadline, f"{topic} still listed 30 s after --delete"
        time.sleep(1)
    assert f"Topic '{topic}' does not exist as expected" in fails(tools.ours("topics", "--describe", "--topic", topic))
    assert f"Topic '{topic}' does not exist as expected" in fails(tools.ours("topics", "--delete", "--topic", topic))
    r = tools.ours("topics", "--describe", "--list")
    assert r.returncode == 2 and "cannot be used with" in r.stderr, r.stderr


# ---------------------------------------------------------------- inkless groups

def produce(bootstrap: str, topic: str, per_partition: int, partitions: int) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for part in range(partitions):
        for i in range(per_partition):
            p.produce(topic, value=f"{part}:{i}".encode(), partition=part)
    assert p.flush(60) == 0, "records not delivered"


def commit_offsets(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Commits offsets for a group without members (retried while the group's coordinator
    does not know the new topic yet: nodes re-read topics created elsewhere periodically)."""
    from confluent_kafka import KafkaError, KafkaException

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    deadline = time.monotonic() + 20
    try:
        while True:
            try:
                c.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
                return
            except KafkaException as e:
                if e.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        c.close()


def table(out: str) -> list[list[str]]:
    """The rows under the first header line (GROUP ...), split on whitespace."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("GROUP "))
    return [line.split() for line in lines[start + 1:] if line.strip()]


def new_offsets(out: str) -> dict[int, int]:
    return {int(r[2]): int(r[3]) for r in table(out)}


def test_groups_print_what_kafka_consumer_groups_prints(tools):
    topic, group, active = uniq("ops-groups"), uniq("g-ops"), uniq("g-ops-active")
    create_topic(tools.bootstrap, topic, 3)
    produce(tools.bootstrap, topic, 10, 3)
    commit_offsets(tools.bootstrap, group, topic, {0: 10, 1: 7, 2: 10})

    ours = set(ok(tools.ours("groups", "--list")).splitlines())
    assert group in ours and ours == set(ok(tools.kafka("kafka-consumer-groups", "--list")).splitlines())

    # --describe of a group without members: the same table, the same note on stderr.
    ours = tools.ours("groups", "--describe", "--group", group)
    theirs = tools.kafka("kafka-consumer-groups", "--describe", "--group", group)
    print(f"inkless groups --describe:{ours.stdout}kafka-consumer-groups --describe:{theirs.stdout}")
    assert ok(ours) == ok(theirs)
    assert f"Consumer group '{group}' has no active members." in ours.stderr
    assert sorted(table(ours.stdout)) == [[group, topic, "0", "10", "10", "0", "-", "-", "-"],
                                          [group, topic, "1", "7", "10", "3", "-", "-", "-"],
                                          [group, topic, "2", "10", "10", "0", "-", "-", "-"]]

    nope = uniq("g-nope")
    assert f"Consumer group '{nope}' does not exist." in fails(tools.ours("groups", "--describe", "--group", nope))
    assert f"Consumer group '{nope}' does not exist." in ok(tools.kafka("kafka-consumer-groups", "--describe",
                                                                       "--group", nope))

    # --reset-offsets: a dry run (explicit or by default) plans and changes nothing.
    for mode in (["--dry-run"], []):
        args = ["--reset-offsets", "--group", group, "--topic", topic, "--to-earliest", *mode]
        ours = tools.ours("groups", *args)
        theirs = tools.kafka("kafka-consumer-groups", *args)
        assert sorted(ok(ours).splitlines()) == sorted(ok(theirs).splitlines())
        assert new_offsets(ours.stdout) == {0: 0, 1: 0, 2: 0}
        assert ("WARN: No action will be performed" in ours.stderr) == (mode == [])
    assert new_offsets_now(tools, group) == {0: 10, 1: 7, 2: 10}, "a dry run changed offsets"
    for spec in (["--to-datetime", "2000-01-01T00:00:00.000"], ["--to-datetime", "2999-01-01T00:00:00.000"],
                 ["--to-latest"], ["--to-offset", "4"], ["--shift-by", "-3"], ["--shift-by", "50"]):
        args = ["--reset-offsets", "--group", group, "--all-topics", "--dry-run", *spec]
        ours, theirs = ok(tools.ours("groups", *args)), ok(tools.kafka("kafka-consumer-groups", *args))
        assert sorted(ours.splitlines()) == sorted(theirs.splitlines()), (spec, ours, theirs)

    # --execute commits the plan.
    out = ok(tools.ours("groups", "--reset-offsets", "--group", group, "--topic", f"{topic}:1",
                        "--to-offset", "4", "--execute"))
    assert new_offsets(out) == {1: 4}
    out = ok(tools.ours("groups", "--reset-offsets", "--group", group, "--all-topics", "--shift-by", "-2", "--execute"))
    assert new_offsets(out) == {0: 8, 1: 2, 2: 8}
    assert new_offsets_now(tools, group) == {0: 8, 1: 2, 2: 8}
    ours = tools.ours("groups", "--describe", "--group", group)
    assert ok(ours) == ok(tools.kafka("kafka-consumer-groups", "--describe", "--group", group))

    # A group with a member: described like Kafka does, and a reset is refused (exit 1).
    member = Consumer({"bootstrap.servers": tools.bootstrap, "group.id": active, "client.id": "ops-member",
                       "auto.offset.reset": "earliest"})
    try:
        member.subscribe([topic])
        deadline = time.monotonic() + 30
        while not member.assignment():
            assert time.monotonic() < deadline, "the member got no assignment in 30 s"
            member.poll(0.2)
        member.commit(offsets=[TopicPartition(topic, 0, 5)], asynchronous=False)
        ours = ok(tools.ours("groups", "--describe", "--group", active))
        theirs = ok(tools.kafka("kafka-consumer-groups", "--describe", "--group", active))
        print(f"with a member:{ours}{theirs}")
        assert ours == theirs
        rows = table(ours)
        assert len(rows) == 3 and all(r[-1] == "ops-member" and r[-2] == "/127.0.0.1" for r in rows), rows
        for mode in ("--execute", "--dry-run"):
            err = fails(tools.ours("groups", "--reset-offsets", "--group", active, "--all-topics",
                                   "--to-earliest", mode))
            assert f"Assignments can only be reset if the group '{active}' is inactive, " \
                   "but the current state is Stable." in err, err
    finally:
        member.close()
    # Usage errors exit 2: two specs, or none.
    r = tools.ours("groups", "--reset-offsets", "--group", group, "--topic", topic, "--shift-by", "1", "--to-latest")
    assert r.returncode == 2 and "cannot be used with" in r.stderr, r.stderr
    r = tools.ours("groups", "--reset-offsets", "--group", group, "--topic", topic)
    assert r.returncode == 2 and "--to-earliest" in r.stderr, r.stderr


def new_offsets_now(tools: Tools, group: str) -> dict[int, int]:
    return {int(r[2]): int(r[3]) for r in table(ok(tools.ours("groups", "--describe", "--group", group)))}


# ---------------------------------------------------------------- inkless cluster drain

def running(c: Cluster, node_id: int, kind: str) -> list[str]:
    return [a["name"] for a in c.nodes[node_id].admin("/actors") if a["kind"] == kind]


class Traffic:
    """An idempotent producer (acks=all) writing numbered records to every partition until
    stopped; remembers what was acknowledged."""

    def __init__(self, bootstrap: str, topic: str, partitions: int):
        self.topic, self.partitions = topic, partitions
        self.producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                                  "linger.ms": 5, "message.timeout.ms": 60_000})
        self.acked: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(partitions)}
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def delivered(self, err, msg) -> None:
        if err is not None:
            self.errors.append(str(err))
        else:
            self.acked[msg.partition()].append((msg.offset(), msg.value()))

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            self.producer.produce(self.topic, value=b"rec:%d" % i, partition=i % self.partitions,
                                  on_delivery=self.delivered)
            self.producer.poll(0)
            i += 1
            time.sleep(0.002)
        assert self.producer.flush(60) == 0

    def read_back(self, bootstrap: str) -> dict[int, list[tuple[int, bytes]]]:
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": uniq("g-readback"),
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.assign([TopicPartition(self.topic, p, 0) for p in range(self.partitions)])
        want = sum(len(v) for v in self.acked.values())
        got: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(self.partitions)}
        deadline = time.monotonic() + 60
        while sum(len(v) for v in got.values()) < want and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got[m.partition()].append((m.offset(), m.value()))
        c.close()
        return got


def test_drain_moves_everything_off_a_node_until_cancelled(ops_cluster, tools):
    c = ops_cluster
    topic, partitions = uniq("ops-drain"), 9
    create_topic(c.bootstrap, topic, partitions)
    groups = [uniq("g-drain") for _ in range(6)]
    for g in groups:
        commit_offsets(c.bootstrap, g, topic, {0: 0})
    # The node with most of this topic's partitions is drained.
    node = max(AZS, key=lambda n: sum(1 for a in c.nodes[n].admin("/actors")
                                      if a["kind"] == "partition" and a.get("topic") == topic))
    assert running(c, node, "partition"), "the chosen node runs partitions"

    traffic = Traffic(c.bootstrap, topic, partitions)
    traffic.thread.start()
    time.sleep(2)
    had = (len(running(c, node, "partition")), len(running(c, node, "group")))
    t0 = time.monotonic()
    out = ok(tools.inkless("cluster", "drain", "--admin", tools.admin, "--node", str(node)))
    took = time.monotonic() - t0
    print(out)
    assert f"Node {node} is draining." in out and f"Node {node} is drained" in out, out
    assert running(c, node, "partition") == [] and running(c, node, "group") == []
    assert c.nodes[1].admin("/cluster")["draining"] == [node]
    status = ok(tools.inkless("cluster", "status", "--admin", tools.admin))
    assert f"draining (inkless cluster drain): [{node}]" in status, status
    # Drained again: nothing changes, the tool says so.
    assert "(it already was)" in ok(tools.inkless("cluster", "drain", "--admin", tools.admin, "--node", str(node),
                                                  "--no-wait"))

    # It takes nothing new: a new topic and new groups go elsewhere, and every partition
    # still runs exactly once.
    fresh = uniq("ops-drain-new")
    create_topic(c.bootstrap, fresh, 12)
    for g in (uniq("g-drain-new") for _ in range(6)):
        commit_offsets(c.bootstrap, g, fresh, {0: 0})
        assert node not in group_nodes(c, g), f"group {g} went to the draining node"
    time.sleep(3)  # three lease renewals
    assert running(c, node, "partition") == [] and running(c, node, "group") == []

    # A restart keeps the mark: the node comes back empty.
    n = c.nodes[node]
    assert n.stop() == 0
    n.start()
    c.wait_converged(expect_nodes=len(AZS))
    time.sleep(3)
    assert running(c, node, "partition") == [] and running(c, node, "group") == []

    out = ok(tools.inkless("cluster", "drain", "--admin", tools.admin, "--node", str(node), "--cancel"))
    assert f"Node {node} is no longer draining." in out, out
    deadline = time.monotonic() + 30
    while not running(c, node, "partition"):
        assert time.monotonic() < deadline, "the node took no partition back within 30 s"
        time.sleep(0.2)
    assert c.nodes[1].admin("/cluster")["draining"] == []

    traffic.stop.set()
    traffic.thread.join(90)
    assert not traffic.errors, traffic.errors[:5]
    got = traffic.read_back(c.bootstrap)
    acked = sum(len(v) for v in traffic.acked.values())
    for p in range(partitions):
        missing = set(traffic.acked[p]) - set(got[p])
        assert not missing, f"partition {p}: {len(missing)} acknowledged records not read back"
        assert [o for o, _ in got[p]] == sorted(o for o, _ in got[p]), f"partition {p} out of order"
    measurement(f"DRAIN node {node} of 3: {took:.1f} s from the command to an empty node "
                f"(it ran {had[0]} partitions, {had[1]} group coordinators); {acked} records acknowledged "
                "meanwhile by an idempotent producer, all read back")

    # Draining the last node that is not draining is refused.
    for other in AZS:
        if other != 3:
            ok(tools.inkless("cluster", "drain", "--admin", tools.admin, "--node", str(other), "--no-wait"))
    err = fails(tools.inkless("cluster", "drain", "--admin", tools.admin, "--node", "3", "--no-wait"))
    assert "409" in err and "last live node" in err, err
    for other in AZS:
        ok(tools.inkless("cluster", "drain", "--admin", tools.admin, "--node", str(other), "--cancel"))
    wait_placed_everywhere(c)


def wait_placed_everywhere(c: Cluster, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not all(running(c, n, "partition") for n in AZS):
        assert time.monotonic() < deadline, "not every node runs partitions again"
        time.sleep(0.2)


# ---------------------------------------------------------------- the web view

def test_web_view_in_headless_chromium(ops_cluster, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    c = ops_cluster
    for n in c.live():
        tree = n.admin("/actors")
        ids = [a["id"] for a in tree]
        print(f"node {n.node_id}: {len(ids)} actors, {len(set(ids))} ids, "
              f"self-parented {[a['id'] for a in tree if a['parent'] == a['id']]}")
    shown, other = uniq("webview-shown"), uniq("webview-other")
    create_topic(c.bootstrap, shown, 4)
    create_topic(c.bootstrap, other, 4)
    chromium, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_bin, "chromium and chromedriver (scripts/install-test-deps.sh installs them)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1600"):
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(driver_bin), options=options)
    node = c.nodes[2]
    try:
        browser.get(f"http://{node.host}:{node.admin_port}/ui")
        wait = WebDriverWait(browser, 30, poll_frequency=0.2)

        def actors(kind: str | None = None, visible: bool | None = None) -> list[str]:
            # Read in one script: the page redraws every second, element handles go stale.
            sel = "li.actor" + (f'[data-kind="{kind}"]' if kind else "")
            found = browser.execute_script(
                "return [...document.querySelectorAll(arguments[0])]"
                ".map(e => [e.dataset.name, e.offsetParent !== null])", sel)
            return [name for name, shown_ in found if visible is None or shown_ == visible]

        def placement() -> list[list[str]]:
            return browser.execute_script(
                "return [...document.querySelectorAll('#placement tbody tr')].map(r => "
                "[r.dataset.az, r.dataset.node, r.querySelector('.partition-count').textContent, "
                "document.querySelectorAll('#node-' + r.dataset.node + ' li[data-kind=node-supervisor]').length])")

        def status() -> str:
            return browser.execute_script("return document.getElementById('status').textContent")

        # Every node, with its AZ, and its tree with partition actors.
        try:
            wait.until(lambda b: len(placement()) == 3 and
                       len([a for a in actors("partition") if f"({shown})" in a]) == 4)
        except Exception:
            pytest.fail(f"page shows {placement()}, status {status()!r}, "
                        f"partitions {actors('partition')[:10]}", pytrace=False)
        rows = placement()
        assert sorted((az, n, trees) for az, n, _, trees in rows) == [("az1", "1", 1), ("az2", "2", 1), ("az3", "3", 1)]
        # Each node's partitions sit under its partition manager, directly below the node.
        nesting = browser.execute_script(
            "return [...document.querySelectorAll('li[data-kind=partition]')].map(li => "
            "[li.parentElement.closest('li.actor').dataset.kind, "
            "li.parentElement.closest('li.actor').parentElement.closest('li.actor').dataset.kind])")
        assert nesting and all(n == ["partition-manager", "node-supervisor"] for n in nesting), nesting
        assert sum(int(count) for _, _, count, _ in rows) >= 8, rows
        assert "asked node 2" in status()

        # Search: only matching actors (and their supervisors) stay visible.
        box = browser.find_element(By.ID, "search")
        box.send_keys(shown)
        wait.until(lambda b: not any(f"({other})" in a for a in actors("partition", visible=True)))
        visible = actors("partition", visible=True)
        assert len(visible) == 4 and all(f"({shown})" in a for a in visible), visible
        assert "index-writer" in actors(visible=False)
        assert set(actors("partition-manager", visible=True)) == {"partition-manager"}
        shot = tmp_path / "inkless-ui-filtered.png"
        browser.save_screenshot(str(shot))

        # Live updates: a topic created now appears without reloading, still filtered out.
        late = uniq("webview-late")
        create_topic(c.bootstrap, late, 2)
        box.clear()
        box.send_keys("webview-")
        wait.until(lambda b: len([a for a in actors("partition", visible=True) if f"({late})" in a]) == 2)
        assert len(actors("partition", visible=True)) == 10
        browser.find_element(By.ID, "search").clear()
        browser.execute_script("document.getElementById('search').dispatchEvent(new Event('input'))")
        wait.until(lambda b: len(actors(visible=False)) == 0)
        full = tmp_path / "inkless-ui.png"
        browser.save_screenshot(str(full))
    finally:
        browser.quit()
    assert full.stat().st_size > 10_000 and shot.stat().st_size > 10_000
    measurement(f"WEB VIEW screenshots (headless Chromium): {full} {shot}")
