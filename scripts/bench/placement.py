#!/usr/bin/env python3
"""Placement and hand-off of many partitions in a cluster on PostgreSQL and an S3 server.

    scripts/bench/placement.sh                      # 10,000 partitions (builds first)
    BUILD=0 scripts/bench/placement.sh --partitions 500 --topics 5

Starts PostgreSQL (initdb in a temp dir) and moto's S3 server exactly as the cluster tests
do (integration/tests_py: pgserver.py, s3server.py, cluster.py), then NODES release
`inkless serve` nodes in cluster mode on 127.0.0.100, .101, ... (node ids 90, 91, ...; AZs
az1, az2, az3 in turn), and measures, by polling each node's `inkless_partitions` gauge on
its admin /metrics:

1. create:  node A alone; one CreateTopics request for all topics (PARTITIONS in total,
            spread evenly over TOPICS topics) until A runs every partition. Then the
            Metadata latency (a raw Metadata v1 request for all topics, from sending it to
            the last byte of the answer; median and max of 5) and A's memory per partition
            (RSS growth since before the topics existed, divided by PARTITIONS; the
            partitions are dormant then, ADR 0024: claimed, no actor until used).
2. place:   A is stopped (SIGTERM) and started again; from the start of the process
            until it runs every partition (Node::place at startup). The SIGTERM before
            it is reported as "leave_alone".
3. join:    the other NODES - 1 nodes start together; from their start until all nodes
            together run every partition, each some, and the counts stop changing.
   use:     one record produced to every partition (franz-go, idempotent, acks=all;
            "produce_all"), then every partition read from offset 0 by one assigned
            consumer ("fetch_all"; `franz-client fill`); the nodes' RSS before
            (partitions dormant: placed, not used yet) and after (woken by the produce).
4. crash:   kill -9 of the last node; from the signal until the others run every
            partition (the lease TTL, 3 s, is part of it); then it is started again and
            "rejoin" is timed until all nodes run every partition, each some.
5. leave:   A leaves gracefully (SIGTERM); from the signal until the others run every
            partition.

Prints one line per phase and a RESULT_JSON line. Exit status 1 if a phase timed out or a
node died. Every process started here is stopped on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "integration" / "tests_py"

# The test harness reads these when it is imported: the release binary, and enough time
# for a node that runs many partitions to stop.
os.environ.setdefault(
    "INKLESS_BIN",
    str(Path(os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache" / "inkless-target")
        / "release" / "inkless"),
)
os.environ.setdefault("INKLESS_TEST_STOP_TIMEOUT", "600")
os.environ.setdefault("INKLESS_TEST_START_TIMEOUT", "120")
sys.path.insert(0, str(TESTS))

from cluster import Cluster  # noqa: E402
from groupwire import Conn, i32  # noqa: E402
from pgserver import PgServer  # noqa: E402
from s3server import MotoServer  # noqa: E402

# Node ids whose hosts (127.0.0.{10 + id}) are 127.0.0.100, .101, ...
NODE_A = 90
METADATA = 3  # API key
AZS = ("az1", "az2", "az3")
POLL_S = 0.05


class BenchFailed(Exception):
    """A phase did not finish in time, or a node died."""


def gauge(node, name: str) -> int | None:
    """A label-less gauge of the node's admin /metrics, or None while its admin endpoint
    does not answer (it starts serving once the node's first placement is done)."""
    url = f"http://{node.host}:{node.admin_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            body = r.read().decode()
    except OSError:
        return None
    for line in body.splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    return None


def running(node) -> int | None:
    """The partitions the node serves (its `inkless_partitions` gauge), or None."""
    return gauge(node, "inkless_partitions")


def wait_until(what: str, done, nodes, timeout: float) -> float:
    """Polls `done(counts)` (counts: one gauge per node, None if it did not answer) until it
    is true; returns the seconds it took."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < timeout:
        for n in nodes:
            if not n.alive():
                raise BenchFailed(f"{what}: {n.name} died; log {n.log_path}")
        counts = [running(n) for n in nodes]
        last = counts
        if done(counts):
            return time.monotonic() - t0
        time.sleep(POLL_S)
    raise BenchFailed(f"{what}: not done within {timeout:.0f} s (last counts {last})")


def create_topics(bootstrap: str, topics: int, total: int, timeout: float) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": int(min(timeout, 300) * 1000)})
    new = [NewTopic(name, partitions, 1) for name, partitions in topic_sizes(topics, total)]
    futures = admin.create_topics(new, request_timeout=timeout, operation_timeout=timeout)
    for name, f in futures.items():
        f.result(timeout=timeout)


def topic_sizes(topics: int, total: int) -> list[tuple[str, int]]:
    """(name, partitions) of each topic `create_topics` makes."""
    per, extra = divmod(total, topics)
    return [(f"placement-{i}", per + (1 if i < extra else 0)) for i in range(topics)]


# franz-go puts every partition a broker leads into one Produce request; librdkafka sends
# one request per partition, so 100,000 partitions would measure its request rate.
FRANZ = ROOT / "integration" / "clients" / "go" / "bin" / "franz-client"


def fill(bootstrap: str, topics: int, total: int, timeout: float) -> tuple[float, float]:
    """One record to every partition (idempotent, acks=all), then every partition read
    from offset 0 (`franz-client fill`); the seconds of each, as the client measured them."""
    if not FRANZ.exists():
        raise BenchFailed(f"{FRANZ} is missing: run scripts/install-test-deps.sh")
    specs = [f"{name}:{partitions}" for name, partitions in topic_sizes(topics, total)]
    r = subprocess.run([str(FRANZ), "fill", bootstrap, str(int(timeout)), *specs],
                       capture_output=True, text=True, timeout=timeout + 60)
    took = {line.split()[0]: float(line.split()[2]) for line in r.stdout.splitlines()
            if line.startswith(("PRODUCED ", "FETCHED "))}
    if r.returncode != 0 or len(took) != 2:
        raise BenchFailed(f"franz-client fill exited {r.returncode}: {r.stdout.strip()} {r.stderr.strip()[-500:]}")
    return took["PRODUCED"], took["FETCHED"]


def phase(results: dict, name: str, seconds: float, note: str) -> None:
    results[name] = round(seconds, 3)
    print(f"{name:<16} {seconds:9.2f} s   {note}", flush=True)


def rss_kib(node) -> int:
    for line in Path(f"/proc/{node.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchFailed(f"no VmRSS for {node.name}")


def metadata_seconds(node) -> float:
    """One raw Metadata v1 request for every topic: seconds from sending it to the last
    byte of its answer."""
    with Conn(node.bootstrap, client_id="placement", timeout=120) as c:
        t0 = time.monotonic()
        c.request(METADATA, 1, i32(-1))  # null topics: all of them
        return time.monotonic() - t0


def settle(nodes, timeout: float, quiet: float = 1.0) -> tuple[float, list]:
    """Until every node's gauge stops changing for `quiet` seconds; returns when it last
    changed (time.monotonic()) and the counts then."""
    last, since, t0 = None, time.monotonic(), time.monotonic()
    while time.monotonic() - t0 < timeout:
        counts = [running(n) for n in nodes]
        if counts != last:
            last, since = counts, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
        time.sleep(POLL_S)
    return since, last


def run(args, root: Path, results: dict) -> None:
    pg = PgServer()
    moto = MotoServer(root / "moto.log")
    try:
        pg.start()
        pg.create_database("placement")
        moto.start()
        moto.create_bucket("placement")
        cluster = Cluster(root, pg.url("placement"), moto.endpoint, "placement")
        try:
            measure(args, cluster, results)
        finally:
            cluster.stop_all()
    finally:
        moto.stop()
        pg.stop()


def measure(args, cluster: Cluster, results: dict) -> None:
    total, timeout = args.partitions, args.timeout
    a = cluster.add(NODE_A, AZS[0])
    a.start()
    wait_until("start A", lambda c: c[0] is not None, [a], timeout)
    rss_before = rss_kib(a)

    t0 = time.monotonic()
    create_topics(a.bootstrap, args.topics, total, timeout)
    answered = time.monotonic() - t0
    wait_until("create", lambda c: c[0] == total, [a], timeout)
    phase(results, "create", time.monotonic() - t0,
          f"{args.topics} topics, {total} partitions on one node (CreateTopics answered after {answered:.2f} s)")
    settle([a], timeout)
    rss_after = rss_kib(a)
    per_partition = (rss_after - rss_before) / total
    results["kib_per_partition"] = round(per_partition, 2)
    print(f"{'memory':<16} {per_partition:9.2f} KiB per partition (RSS {rss_before / 1024:.0f} -> "
          f"{rss_after / 1024:.0f} MiB)", flush=True)
    took = sorted(metadata_seconds(a) for _ in range(5))
    results["metadata_ms_median"], results["metadata_ms_max"] = round(took[2] * 1e3, 1), round(took[-1] * 1e3, 1)
    print(f"{'metadata':<16} {took[2] * 1e3:9.1f} ms  median of 5 Metadata requests for all {total} partitions "
          f"(max {took[-1] * 1e3:.1f} ms)", flush=True)

    t0 = time.monotonic()
    rc = a.stop()
    if rc != 0:
        raise BenchFailed(f"A exited with {rc} after SIGTERM; log {a.log_path}")
    phase(results, "leave_alone", time.monotonic() - t0, f"SIGTERM of the only node until it exited ({total} partitions)")

    t0 = time.monotonic()
    a.start()
    wait_until("place", lambda c: c[0] == total, [a], timeout)
    phase(results, "place", time.monotonic() - t0, f"node start until it runs all {total} partitions")

    others = [cluster.add(NODE_A + i, AZS[i % len(AZS)]) for i in range(1, args.nodes)]
    nodes = [a, *others]
    served_all = lambda c: None not in c and sum(c) == total  # noqa: E731
    all_run = lambda c: served_all(c) and min(c) > 0  # noqa: E731
    t0 = time.monotonic()
    for n in others:
        n.start()
    wait_until("join", all_run, nodes, timeout)
    # Nodes start one after the other: a sum of all partitions can be a passing state.
    # The join is over when the counts stop changing (3 s: more than a lease renewal).
    settled, counts = settle(nodes, timeout, quiet=3.0)
    phase(results, "join", settled - t0,
          f"{len(others)} node(s) started until all {len(nodes)} run all {total} partitions and "
          f"the counts stop changing ({counts}; max/mean {max(counts) * len(counts) / total:.2f})")
    results["spread_on_join"] = counts
    use(results, nodes, args)

    victim = others[-1]
    survivors = [n for n in nodes if n is not victim]
    t0 = time.monotonic()
    victim.proc.send_signal(9)
    victim.proc.wait(timeout=30)
    wait_until("crash", served_all, survivors, timeout)
    phase(results, "crash", time.monotonic() - t0,
          f"kill -9 of {victim.name} until the other {len(survivors)} run all {total} partitions")
    t0 = time.monotonic()
    victim.start()
    wait_until("rejoin", all_run, nodes, timeout)
    phase(results, "rejoin", time.monotonic() - t0, f"{victim.name} restarted until all {len(nodes)} run all")

    t0 = time.monotonic()
    a.proc.send_signal(15)
    wait_until("leave", served_all, others, timeout)
    phase(results, "leave", time.monotonic() - t0,
          f"SIGTERM of {a.name} until the other {len(others)} run all {total} partitions")
    rc = a.proc.wait(timeout=timeout)
    if rc != 0:
        raise BenchFailed(f"A exited with {rc} after SIGTERM; log {a.log_path}")


def use(results: dict, nodes, args) -> None:
    """Produce one record to every partition, then read every partition from the start;
    the memory of the nodes before (every partition dormant) and after (every partition
    awake)."""
    total, timeout = args.partitions, args.timeout
    bootstrap = ",".join(n.bootstrap for n in nodes)
    dormant = sum(gauge(n, "inkless_partitions_dormant") or 0 for n in nodes)
    rss_idle = sum(rss_kib(n) for n in nodes)
    produced, fetched = fill(bootstrap, args.topics, total, timeout)
    phase(results, "produce_all", produced,
          f"one record to each of {total} partitions, all acknowledged ({dormant} dormant before)")
    phase(results, "fetch_all", fetched, f"each of {total} partitions read from offset 0")
    # Served minus dormant (both count the internal __consumer_offsets partitions too).
    awake = sum((running(n) or 0) - (gauge(n, "inkless_partitions_dormant") or 0) for n in nodes)
    rss_awake = sum(rss_kib(n) for n in nodes)
    results["kib_per_awake_partition"] = round((rss_awake - rss_idle) / max(awake, 1), 2)
    print(f"{'memory':<16} {rss_idle / 1024:9.0f} MiB on {len(nodes)} nodes with {dormant} partitions dormant; "
          f"{rss_awake / 1024:.0f} MiB with {awake} awake ({results['kib_per_awake_partition']} KiB per woken "
          f"partition)", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--partitions", type=int, default=10_000, help="partitions in total (default 10000)")
    p.add_argument("--topics", type=int, default=10, help="topics they are spread over (default 10)")
    p.add_argument("--nodes", type=int, default=2, help="nodes at the end (default 2)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds each phase may take (default 900)")
    p.add_argument("--out", help="directory for logs (default: a new temp dir, kept)")
    args = p.parse_args()
    if args.partitions < args.topics or args.topics < 1:
        p.error("need at least one partition per topic")
    if not 2 <= args.nodes <= 9:
        p.error("--nodes: 2 to 9")
    root = Path(args.out or tempfile.mkdtemp(prefix="inkless-placement."))
    root.mkdir(parents=True, exist_ok=True)
    print(f"placement: {args.partitions} partitions in {args.topics} topics; binary "
          f"{os.environ['INKLESS_BIN']}; logs in {root}", flush=True)
    results: dict = {"partitions": args.partitions, "topics": args.topics}
    status = 0
    try:
        run(args, root, results)
    except BenchFailed as e:
        print(f"placement: FAILED: {e}", file=sys.stderr)
        status = 1
    except BaseException as e:  # pytest.fail() from the harness raises a BaseException
        if isinstance(e, KeyboardInterrupt):
            raise
        print(f"placement: FAILED: {e}", file=sys.stderr)
        status = 1
    print("RESULT_JSON " + json.dumps(results), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
