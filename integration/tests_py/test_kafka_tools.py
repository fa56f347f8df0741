"""Apache Kafka's own command-line tools against the broker, with the output Kafka users
expect: kafka-topics, kafka-consumer-groups, kafka-configs, kafka-log-dirs,
kafka-get-offsets, kafka-delete-records, kafka-leader-election and kafka-transactions.

The tools are the Java main classes of Kafka's kafka-tools jar (Apache Kafka 4.4.0 from
Maven Central, resolved by `scripts/kafka-reference.sh fetch`, which the fixture runs: a
fresh machine gets the jars, and a failed resolve fails the tests). Each command is one
JVM (about a second with the class-data archive the fixture writes first), all against
the session's broker. With INKLESS_TEST_BOOTSTRAP set they run against that broker, e.g.
the reference Kafka of scripts/kafka-reference.sh, to check the expectations themselves.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
import warnings
from pathlib import Path

import pytest

from conftest import EXTERNAL, REPO, ClientRunner, need_tool

KAFKA_VERSION = os.environ.get("KAFKA_REF_VERSION", "4.4.0")
KAFKA_CACHE = Path(os.environ.get("KAFKA_REF_CACHE") or Path.home() / ".cache" / "inkless-kafka-ref")

# The kafka-*.sh scripts of a Kafka distribution run these classes.
TOOLS = {
    "kafka-topics": "org.apache.kafka.tools.TopicCommand",
    "kafka-consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "kafka-configs": "org.apache.kafka.tools.ConfigCommand",
    "kafka-log-dirs": "org.apache.kafka.tools.LogDirsCommand",
    "kafka-get-offsets": "org.apache.kafka.tools.GetOffsetShell",
    "kafka-delete-records": "org.apache.kafka.tools.DeleteRecordsCommand",
    "kafka-leader-election": "org.apache.kafka.tools.LeaderElectionCommand",
    "kafka-transactions": "org.apache.kafka.tools.TransactionsCommand",
}
# A short-lived client JVM: no JIT beyond C1, the small collector.
JVM_FLAGS = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xmx512m"]


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class KafkaTools:
    """Runs Kafka's tools against the broker, like the kafka-*.sh scripts do."""

    def __init__(self, clients: ClientRunner, libs: Path, archive: Path | None):
        self.clients = clients
        self.libs = libs
        self.java = need_tool("java")
        self.share = ["-Xshare:auto", f"-XX:SharedArchiveFile={archive}"] if archive else []

    def argv(self, tool: str, args: tuple[str, ...], jvm: list[str]) -> list[str]:
        return [self.java, *JVM_FLAGS, *jvm, "-cp", f"{self.libs}/*", TOOLS[tool],
                "--bootstrap-server", self.clients.bootstrap, *args]

    def run(self, tool: str, *args: str, jvm: list[str] | None = None) -> subprocess.CompletedProcess:
        """Runs a tool; whatever its exit status."""
        return self.clients.run(self.argv(tool, args, self.share if jvm is None else jvm),
                                timeout=180, what=f"{tool} {' '.join(args)}")

    def ok(self, tool: str, *args: str, stderr: bool = False) -> str:
        """Runs a tool that must succeed; returns its standard output (and error)."""
        r = self.run(tool, *args)
        self.clients.check(r, f"{tool} {' '.join(args)}")
        return r.stdout + r.stderr if stderr else r.stdout

    def fails(self, tool: str, *args: str) -> str:
        """Runs a tool that must fail; returns its output (stdout and stderr)."""
        r = self.run(tool, *args)
        assert r.returncode != 0, f"{tool} {' '.join(args)} succeeded:\n{r.stdout}"
        return r.stdout + r.stderr


@pytest.fixture(scope="session")
def kafka_libs() -> Path:
    """Kafka's jars, resolved from Maven Central by scripts/kafka-reference.sh."""
    script = REPO / "scripts" / "kafka-reference.sh"
    r = subprocess.run([str(script), "fetch"], capture_output=True, text=True, timeout=1800,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        pytest.fail(f"{script} fetch failed (exit {r.returncode}):\n{r.stderr[-4000:]}", pytrace=False)
    libs = KAFKA_CACHE / KAFKA_VERSION / "libs"
    for jar in ("kafka-tools", "kafka_2.13", "kafka-clients"):
        if not list(libs.glob(f"{jar}-{KAFKA_VERSION}.jar")):
            pytest.fail(f"{jar}-{KAFKA_VERSION}.jar missing in {libs} after fetch", pytrace=False)
    return libs


@pytest.fixture(scope="module")
def kt(clients, kafka_libs, tmp_path_factory) -> KafkaTools:
    """The tools, with a class-data archive of a first run (halves each JVM's start)."""
    archive = tmp_path_factory.mktemp("kafka-tools") / "tools.jsa"
    tools = KafkaTools(clients, kafka_libs, None)
    r = tools.run("kafka-topics", "--list", jvm=[f"-XX:ArchiveClassesAtExit={archive}"])
    clients.check(r, "kafka-topics --list (writing the class-data archive)")
    return KafkaTools(clients, kafka_libs, archive if archive.is_file() else None)


# ---------------------------------------------------------------- helpers

def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)


def produce(bootstrap: str, topic: str, counts: dict[int, int], ts: int | None = None) -> None:
    """`counts[p]` records to partition p; timestamps ts, ts+1, ... when given."""
    from confluent_kafka import Producer

    prod = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for p, n in counts.items():
        for i in range(n):
            kw = {} if ts is None else {"timestamp": ts + i}
            prod.produce(topic, key=f"k{i}".encode(), value=f"value {p}:{i}".encode(), partition=p, **kw)
    assert prod.flush(60) == 0, "records not delivered"


def consume_and_commit(bootstrap: str, topic: str, group: str, total: int) -> None:
    """Consumes `total` records of `topic` in `group`, commits them and leaves."""
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    got, deadline = 0, time.monotonic() + 60
    while got < total:
        assert time.monotonic() < deadline, f"consumed {got} of {total} records"
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got += 1
    c.commit(asynchronous=False)
    c.close()


def table(out: str, *columns: str) -> list[list[str]]:
    """The rows under the header line that starts with `columns`, split on whitespace."""
    lines = out.splitlines()
    n = len(columns)
    start = next((i for i, line in enumerate(lines) if tuple(line.split()[:n]) == columns), None)
    assert start is not None, f"no table with columns {columns} in:\n{out}"
    rows = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        rows.append(line.split())
    return rows


def describe_topic(kt: KafkaTools, topic: str, *extra: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """kafka-topics --describe of one topic: its header fields and one dict per partition."""
    out = kt.ok("kafka-topics", "--describe", "--topic", topic, *extra)

    def fields(line: str) -> dict[str, str]:
        return {k.strip(): v.strip() for k, _, v in (f.partition(":") for f in line.strip().split("\t"))}

    lines = [line for line in out.splitlines() if line.strip()]
    assert lines and lines[0].startswith(f"Topic: {topic}\t"), out
    return fields(lines[0]), [fields(line) for line in lines[1:]]


def offsets(kt: KafkaTools, *args: str) -> dict[str, int]:
    """kafka-get-offsets output (`topic:partition:offset` lines) as {"topic:partition": offset}."""
    out = kt.ok("kafka-get-offsets", *args)
    got = {}
    for line in out.splitlines():
        tp, _, off = line.rpartition(":")
        got[tp] = int(off)
    return got


# ---------------------------------------------------------------- kafka-topics

def test_kafka_topics(kt, bootstrap):
    topic = uniq("tools-topics")
    out = kt.ok("kafka-topics", "--create", "--topic", topic, "--partitions", "3",
                "--replication-factor", "1", "--config", "retention.ms=86400000")
    assert out.strip() == f"Created topic {topic}.", out
    assert f"Topic '{topic}' already exists." in kt.fails("kafka-topics", "--create", "--topic", topic)
    assert topic in kt.ok("kafka-topics", "--list").splitlines()

    head, parts = describe_topic(kt, topic)
    assert (head["PartitionCount"], head["ReplicationFactor"]) == ("3", "1"), head
    assert "retention.ms=86400000" in head["Configs"].split(","), head
    assert len(head["TopicId"]) == 22, head
    assert [p["Partition"] for p in parts] == ["0", "1", "2"], parts
    for p in parts:
        assert p["Topic"] == topic and p["Leader"].isdigit(), p
        assert p["Replicas"] == p["Leader"] and p["Isr"] == p["Leader"], p
        # Empty (not "N/A"): the tool described the topic with DescribeTopicPartitions.
        assert (p["Elr"], p["LastKnownElr"]) == ("", ""), p

    assert kt.ok("kafka-topics", "--alter", "--topic", topic, "--partitions", "5").strip() == ""
    # One partition per DescribeTopicPartitions response: the tool pages with the cursor.
    head, parts = describe_topic(kt, topic, "--partition-size-limit-per-response", "1")
    assert head["PartitionCount"] == "5" and [p["Partition"] for p in parts] == ["0", "1", "2", "3", "4"]
    out = kt.fails("kafka-topics", "--alter", "--topic", topic, "--partitions", "2")
    assert f"InvalidPartitionsException: The topic {topic} currently has 5 partition(s); 2 would not be an increase." in out
    for flag in ("--under-replicated-partitions", "--unavailable-partitions", "--under-min-isr-partitions"):
        assert topic not in kt.ok("kafka-topics", "--describe", "--topic", topic, flag), flag

    assert kt.ok("kafka-topics", "--delete", "--topic", topic).strip() == ""
    deadline = time.monotonic() + 30
    while topic in kt.ok("kafka-topics", "--list").splitlines():
        assert time.monotonic() < deadline, f"{topic} still listed 30 s after --delete"
        time.sleep(1)
    assert f"Topic '{topic}' does not exist as expected" in kt.fails("kafka-topics", "--describe", "--topic", topic)


# ---------------------------------------------------------------- kafka-configs

def test_kafka_configs(kt, bootstrap):
    topic = uniq("tools-configs")
    create_topic(bootstrap, topic, 1)
    entity = ("--entity-type", "topics", "--entity-name", topic)

    def dynamic() -> dict[str, str]:
        out = kt.ok("kafka-configs", *entity, "--describe")
        lines = out.splitlines()
        assert lines[0] == f"Dynamic configs for topic {topic} are:", out
        got = {}
        for line in lines[1:]:
            # "  retention.ms=1000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=1000}"
            kv, sensitive, synonyms = line.strip().split(" ", 2)
            name, _, value = kv.partition("=")
            assert sensitive == "sensitive=false", line
            assert synonyms.startswith(f"synonyms={{DYNAMIC_TOPIC_CONFIG:{name}={value}"), line
            got[name] = value
        return got

    assert dynamic() == {}
    out = kt.ok("kafka-configs", *entity, "--alter", "--add-config", "retention.ms=1000,cleanup.policy=compact")
    assert out.strip() == f"Completed updating config for topic {topic}.", out
    assert dynamic() == {"retention.ms": "1000", "cleanup.policy": "compact"}
    assert kt.ok("kafka-configs", *entity, "--alter", "--delete-config", "retention.ms").strip() == \
        f"Completed updating config for topic {topic}."
    assert dynamic() == {"cleanup.policy": "compact"}
    out = kt.fails("kafka-configs", *entity, "--alter", "--add-config", "retention.ms=soon")
    assert "InvalidConfigurationException: Invalid value soon for configuration retention.ms" in out, out
    assert dynamic() == {"cleanup.policy": "compact"}

    every = kt.ok("kafka-configs", *entity, "--describe", "--all")
    assert every.splitlines()[0] == f"All configs for topic {topic} are:", every
    assert any(line.startswith("  retention.ms=604800000 sensitive=false synonyms={") for line in every.splitlines()), every
    assert "  cleanup.policy=compact sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:cleanup.policy=compact" in every
    assert f"The topic '{topic}-nope' doesn't exist" in kt.ok(
        "kafka-configs", "--entity-type", "topics", "--entity-name", f"{topic}-nope", "--describe")


def test_legacy_alter_configs_replaces_the_set(kt, bootstrap):
    """AlterConfigs (the API before IncrementalAlterConfigs; librdkafka's alter_configs):
    the configs sent replace the topic's whole set, as kafka-configs then shows."""
    from confluent_kafka.admin import AdminClient, ConfigResource

    topic = uniq("tools-legacy")
    create_topic(bootstrap, topic, 1)
    kt.ok("kafka-configs", "--entity-type", "topics", "--entity-name", topic, "--alter",
          "--add-config", "retention.ms=1000,cleanup.policy=compact")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # it is the legacy API we test
        fs = admin.alter_configs([ConfigResource("topic", topic, set_config={"retention.bytes": "12345"})])
    for f in fs.values():
        assert f.result(30) is None
    out = kt.ok("kafka-configs", "--entity-type", "topics", "--entity-name", topic, "--describe")
    assert [line.split(" ")[2] for line in out.splitlines()[1:]] == ["retention.bytes=12345"], out


# ---------------------------------------------------------------- kafka-consumer-groups

def test_kafka_consumer_groups(kt, bootstrap):
    from confluent_kafka import Consumer

    topic, group, active = uniq("tools-groups"), uniq("g-tools"), uniq("g-tools-active")
    create_topic(bootstrap, topic, 3)
    produce(bootstrap, topic, {0: 10, 1: 10, 2: 10})
    consume_and_commit(bootstrap, topic, group, 30)
    cg = "kafka-consumer-groups"
    assert group in kt.ok(cg, "--list").splitlines()
    assert [group, "Empty"] in table(kt.ok(cg, "--list", "--state"), "GROUP")

    out = kt.ok(cg, "--describe", "--group", group, stderr=True)
    assert f"Consumer group '{group}' has no active members." in out
    rows = table(out, "GROUP", "TOPIC")
    assert sorted(rows) == [[group, topic, str(p), "10", "10", "0", "-", "-", "-"] for p in range(3)], out

    # A member that is in the group: --members, --state, and a reset is refused.
    member = Consumer({"bootstrap.servers": bootstrap, "group.id": active, "client.id": "tools-member",
                       "auto.offset.reset": "earliest"})
    try:
        member.subscribe([topic])
        deadline = time.monotonic() + 30
        while not member.assignment():
            assert time.monotonic() < deadline, "the member got no assignment in 30 s"
            member.poll(0.2)
        rows = table(kt.ok(cg, "--describe", "--group", active, "--members"), "GROUP")
        assert len(rows) == 1 and rows[0][0] == active, rows
        assert rows[0][1].startswith("tools-member-") and rows[0][2:] == ["/127.0.0.1", "tools-member", "3"], rows
        rows = table(kt.ok(cg, "--describe", "--group", active, "--state"), "GROUP")
        assert rows[0][0] == active and rows[0][-3:] == ["range", "Stable", "1"], rows
        # (The tool exits 0 all the same.)
        out = kt.ok(cg, "--reset-offsets", "--group", active, "--to-earliest", "--all-topics", "--execute",
                    stderr=True)
        assert f"Assignments can only be reset if the group '{active}' is inactive, but the current state is Stable." in out
    finally:
        member.close()

    def new_offsets(out: str) -> dict[int, int]:
        rows = table(out, "GROUP")
        assert all(r[:2] == [group, topic] for r in rows), out
        return {int(r[2]): int(r[3]) for r in rows}

    reset = (cg, "--group", group, "--reset-offsets")
    assert new_offsets(kt.ok(*reset, "--to-earliest", "--topic", topic, "--dry-run")) == {0: 0, 1: 0, 2: 0}
    assert new_offsets(kt.ok(*reset, "--to-offset", "4", "--topic", f"{topic}:1", "--execute")) == {1: 4}
    assert new_offsets(kt.ok(*reset, "--shift-by", "-2", "--all-topics", "--execute")) == {0: 8, 1: 2, 2: 8}
    rows = table(kt.ok(cg, "--describe", "--group", group), "GROUP", "TOPIC")
    assert sorted((int(r[2]), r[3], r[4], r[5]) for r in rows) == \
        [(0, "8", "10", "2"), (1, "2", "10", "8"), (2, "8", "10", "2")], rows

    out = kt.ok(cg, "--delete-offsets", "--group", group, "--topic", f"{topic}:2")
    assert f"Request succeeded for deleting offsets from group {group}." in out
    assert table(out, "TOPIC") == [[topic, "2", "Successful"]], out
    out = kt.ok(cg, "--delete", "--group", group)
    assert f"Deletion of requested consumer groups ('{group}') was successful." in out
    assert group not in kt.ok(cg, "--list").splitlines()
    out = kt.ok(cg, "--delete", "--group", group, stderr=True)  # (exit status 0 all the same)
    assert f"Group '{group}' could not be deleted due to: org.apache.kafka.common.errors.GroupIdNotFoundException" in out


# ---------------------------------------------------------------- kafka-get-offsets, kafka-delete-records

def test_kafka_get_offsets_and_delete_records(kt, bootstrap, tmp_path):
    topic = uniq("tools-offsets")
    create_topic(bootstrap, topic, 3)
    ts = (int(time.time() * 1000) - 3_600_000) // 1000 * 1000
    produce(bootstrap, topic, {0: 10, 1: 4}, ts=ts)
    tp = lambda p: f"{topic}:{p}"  # noqa: E731
    assert offsets(kt, "--topic", topic) == {tp(0): 10, tp(1): 4, tp(2): 0}
    assert offsets(kt, "--topic", topic, "--time", "earliest") == {tp(0): 0, tp(1): 0, tp(2): 0}
    assert offsets(kt, "--topic-partitions", f"{topic}:1", "--time", "-1") == {tp(1): 4}
    # The first record at or after a timestamp; none after the last one.
    assert offsets(kt, "--topic-partitions", f"{topic}:0", "--time", str(ts + 6)) == {tp(0): 6}
    assert offsets(kt, "--topic-partitions", f"{topic}:0", "--time", str(ts + 60_000)) == {}

    spec = tmp_path / "delete.json"
    spec.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": topic, "partition": 0, "offset": 6},
        {"topic": topic, "partition": 1, "offset": -1},  # -1: up to the high watermark
    ]}))
    out = kt.ok("kafka-delete-records", "--offset-json-file", str(spec))
    lines = out.splitlines()
    assert lines[:2] == ["Executing records delete operation", "Records delete operation completed:"], out
    assert sorted(lines[2:]) == [f"partition: {topic}-0\tlow_watermark: 6", f"partition: {topic}-1\tlow_watermark: 4"], out
    assert offsets(kt, "--topic", topic, "--time", "earliest") == {tp(0): 6, tp(1): 4, tp(2): 0}
    assert offsets(kt, "--topic", topic, "--time", "latest") == {tp(0): 10, tp(1): 4, tp(2): 0}

    spec.write_text(json.dumps({"version": 1, "partitions": [{"topic": topic, "partition": 0, "offset": 99}]}))
    out = kt.ok("kafka-delete-records", "--offset-json-file", str(spec))
    assert f"partition: {topic}-0\terror: org.apache.kafka.common.errors.OffsetOutOfRangeException" in out, out


# ---------------------------------------------------------------- kafka-log-dirs

def test_kafka_log_dirs(kt, bootstrap):
    topic = uniq("tools-logdirs")
    create_topic(bootstrap, topic, 2)
    produce(bootstrap, topic, {0: 20})
    leader = describe_topic(kt, topic)[1][0]["Leader"]

    def sizes(*extra: str) -> dict[str, int]:
        out = kt.ok("kafka-log-dirs", "--describe", "--topic-list", topic, *extra)
        lines = out.splitlines()
        assert lines[0] == "Querying brokers for log directories information", out
        assert lines[1].startswith("Received log directory information from brokers "), out
        doc = json.loads(lines[-1])
        assert doc["version"] == 1 and [b["broker"] for b in doc["brokers"]] == [int(leader)], doc
        dirs = doc["brokers"][0]["logDirs"]
        assert len(dirs) == 1 and dirs[0]["error"] is None and dirs[0]["logDir"], dirs
        if not EXTERNAL:
            assert dirs[0]["logDir"].startswith("file:///"), "the pseudo log dir is the object store's URL"
        got = {}
        for p in dirs[0]["partitions"]:
            assert (p["offsetLag"], p["isFuture"]) == (0, False), p
            got[p["partition"]] = p["size"]
        return got

    first = sizes()
    assert set(first) == {f"{topic}-0", f"{topic}-1"}, first
    assert first[f"{topic}-0"] > 20 * len(b"value 0:00") and first[f"{topic}-1"] == 0, first
    produce(bootstrap, topic, {1: 5})
    second = sizes("--broker-list", leader)
    assert second[f"{topic}-0"] == first[f"{topic}-0"] and second[f"{topic}-1"] > 5 * len(b"value 1:0"), second


# ---------------------------------------------------------------- kafka-leader-election

def test_kafka_leader_election(kt, bootstrap, tmp_path):
    topic = uniq("tools-election")
    create_topic(bootstrap, topic, 2)
    le = "kafka-leader-election"
    # Every partition is led by its preferred (only) replica: nothing to elect or report.
    out = kt.ok(le, "--election-type", "preferred", "--all-topic-partitions")
    assert out.strip() == "", out
    out = kt.ok(le, "--election-type", "preferred", "--topic", topic, "--partition", "1")
    assert out.strip() == f"Valid replica already elected for partitions {topic}-1", out
    spec = tmp_path / "election.json"
    spec.write_text(json.dumps({"partitions": [{"topic": topic, "partition": 0}, {"topic": topic, "partition": 1}]}))
    out = kt.ok(le, "--election-type", "unclean", "--path-to-json-file", str(spec))
    prefix = "Valid replica already elected for partitions "
    assert out.startswith(prefix) and sorted(out[len(prefix):].strip().split(", ")) == [f"{topic}-0", f"{topic}-1"], out
    out = kt.fails(le, "--election-type", "preferred", "--topic", f"{topic}-nope", "--partition", "0")
    assert (f"Error completing leader election (PREFERRED) for partition: {topic}-nope-0: "
            f"org.apache.kafka.common.errors.UnknownTopicOrPartitionException") in out, out
    assert "1 replica(s) could not be elected" in out, out


def test_kafka_transactions(kt, bootstrap):
    """kafka-transactions list / describe / describe-producers (ListTransactions,
    DescribeTransactions, DescribeProducers) show an open transaction, then its commit."""
    from confluent_kafka import Producer

    topic, txn_id = uniq("tools-txn"), uniq("txn-tools")
    create_topic(bootstrap, topic, 2)
    prod = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id,
                     "transaction.timeout.ms": 60000})
    prod.init_transactions(30)
    prod.begin_transaction()
    for i in range(3):
        prod.produce(topic, value=f"v{i}".encode(), partition=1)
    assert prod.flush(30) == 0, "records not delivered"

    tx = "kafka-transactions"
    rows = table(kt.ok(tx, "list"), "TransactionalId", "Coordinator", "ProducerId", "TransactionState")
    mine = [r for r in rows if r[0] == txn_id]
    assert len(mine) == 1 and mine[0][3] == "Ongoing", rows
    producer_id = mine[0][2]

    def describe() -> dict[str, str]:
        lines = kt.ok(tx, "describe", "--transactional-id", txn_id).splitlines()
        at = next(i for i, line in enumerate(lines) if line.startswith("CoordinatorId"))
        return {k.strip(): v.strip() for k, v in zip(lines[at].split("\t"), lines[at + 1].split("\t"))}

    d = describe()
    assert (d["TransactionalId"], d["ProducerId"], d["TransactionState"]) == \
        (txn_id, producer_id, "Ongoing"), d
    assert d["TransactionTimeoutMs"] == "60000", d
    assert d["TopicPartitions"] == f"{topic}-1", d

    rows = table(kt.ok(tx, "describe-producers", "--topic", topic, "--partition", "1"),
                 "ProducerId", "ProducerEpoch")
    assert [r[0] for r in rows] == [producer_id], rows
    # ProducerId ProducerEpoch LatestCoordinatorEpoch LastSequence LastTimestamp
    # CurrentTransactionStartOffset: three records from sequence 0, the transaction from offset 0.
    assert rows[0][3] == "2" and rows[0][5] == "0", rows

    prod.commit_transaction(30)
    assert describe()["TransactionState"] == "CompleteCommit"
    rows = table(kt.ok(tx, "describe-producers", "--topic", topic, "--partition", "1"),
                 "ProducerId", "ProducerEpoch")
    assert rows[0][5] == "None", rows
    assert "failed because the ID could not be found" in \
        kt.fails(tx, "describe", "--transactional-id", uniq("nope"))
