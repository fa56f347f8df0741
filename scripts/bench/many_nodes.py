#!/usr/bin/env python3
"""Many nodes sharing one PostgreSQL: membership, a mass crash, and what idle nodes cost.

    scripts/bench/many_nodes.sh --nodes 300 --partitions 3000 --kill 10
    BUILD=0 scripts/bench/many_nodes.sh --nodes 12 --partitions 600 --kill 3    # short

Starts PostgreSQL (initdb in a temp dir, max_connections sized for the nodes) and moto's S3
server as the cluster tests do, then NODES release `inkless serve` processes in cluster mode
on their own loopback addresses (integration/tests_py/cluster.py: 127.0.0.11, ... then
127.0.1.1, ...; AZs az1, az2, az3 in turn), each with a small block cache (8 MiB) and a pool
of two metadata-store connections. Phases, each printed as one line:

1. start:    every node launched together (32 at a time) until each listens, then
             "converge": until every node's /cluster names all NODES as live.
2. place:    one CreateTopics of PARTITIONS partitions (TOPICS topics) until the nodes
             together run each of them exactly once (their `inkless_partitions` gauges).
3. balance:  the spread rendezvous hashing gave (most partitions on a node over the mean,
             from the store), then until the balancer (ADR 0022; a round every
             --balance-interval-ms, 5 s here) brought it to 1.1 or less: its rounds' moves are
             its pins (`partition_pins.by_balancer`). --balance-interval-ms 0 turns it off.
4. idle:     after SETTLE seconds (70: longer than a node's epoch reads look back, ADR
             0025), IDLE seconds (30) of nothing: per node CPU (% of one core) and RSS; the
             metadata store's load (transactions, rows read and written per second, from
             pg_stat_database) and its connections; mesh connections per node (established
             TCP connections from or to a node's cluster listener, from `ss`).
5. crash:    kill -9 of KILL nodes at once (the last ones started, all AZs), until the
             last of their partitions is claimed by a survivor, on the store's clock, then until
             the survivors run every partition (the target is the lease TTL + 2 s; TTL 3 s and
             renewal every second unless --lease-ttl-ms / --lease-renew-ms say otherwise).
6. use:      one record to every partition and every partition read back from offset 0
             by franz-go (`franz-client fill`), on the survivors: the data path works.

Prints a RESULT_JSON line at the end. Exit status 1 if a phase timed out or a node died.
Every process started here is stopped on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Read by the test harness when placement imports it (placement also defaults INKLESS_BIN
# to the release binary and puts the harness on the path): 300 nodes start slowly.
os.environ.setdefault("INKLESS_TEST_START_TIMEOUT", "300")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from placement import BenchFailed, create_topics, fill, gauge, phase, rss_kib  # noqa: E402
from cluster import Cluster  # noqa: E402
from pgserver import PgServer  # noqa: E402
from s3server import MotoServer  # noqa: E402

AZS = ("az1", "az2", "az3")
POOL_SIZE = 2
CACHE_BYTES = 8 << 20
BLOCK_BYTES = 1 << 20
PG_STATS = ("xact_commit", "xact_rollback", "tup_returned", "tup_fetched", "tup_inserted", "tup_updated",
            "tup_deleted")


def psql(pg: PgServer, db: str, sql: str) -> str:
    r = subprocess.run(pg._cmd("psql", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", "-d", db,
                               "-tAc", sql), capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise BenchFailed(f"psql failed: {r.stderr}")
    return r.stdout.strip()


def pg_counters(pg: PgServer, db: str) -> dict[str, int]:
    row = psql(pg, db, f"SELECT {', '.join(PG_STATS)} FROM pg_stat_database WHERE datname = '{db}'")
    return dict(zip(PG_STATS, (int(x) for x in row.split("|"))))


def table_reads(pg: PgServer, db: str) -> dict[str, int]:
    """Rows read so far from each table by sequential scans (`<table> seq`) and through indexes
    (`<table> index`), and the sequential scans (`<table> scans`)."""
    out = psql(pg, db, "SELECT relname, seq_tup_read, coalesce(idx_tup_fetch, 0), seq_scan FROM pg_stat_user_tables")
    reads = {}
    for name, seq, idx, scans in (line.split("|") for line in out.splitlines() if line):
        reads.update({f"{name} seq": int(seq), f"{name} index": int(idx), f"{name} scans": int(scans)})
    return reads


STORE_NOW_MS = "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT"


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def cluster_addr(node) -> str:
    return node.extra_env["INKLESS__CLUSTER__LISTEN"]


def mesh_connections(nodes) -> list[int]:
    """Per node: its established TCP connections to or from a cluster listener (each
    session between two nodes counts once at each end)."""
    listeners = {cluster_addr(n) for n in nodes}
    by_pid = {n.proc.pid: 0 for n in nodes if n.alive()}
    out = subprocess.run(["ss", "-tnpH", "state", "established"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.split()
        local, peer = parts[2:4] if len(parts) > 4 else ("", "")
        pid = re.search(r"pid=(\d+)", line)
        if pid and int(pid.group(1)) in by_pid and (local in listeners or peer in listeners):
            by_pid[int(pid.group(1))] += 1
    return [by_pid.get(n.proc.pid, 0) for n in nodes]


def live_seen(node) -> int | None:
    try:
        with urllib.request.urlopen(f"http://{node.host}:{node.admin_port}/cluster", timeout=5) as r:
            return len(json.loads(r.read())["live"])
    except (OSError, ValueError, KeyError):
        return None


def running(node) -> int | None:
    """Partitions the node runs (its `inkless_partitions` gauge), None while it does not answer."""
    return gauge(node, "inkless_partitions")


def poll(what: str, nodes, probe, done, timeout: float, interval: float = 0.5) -> float:
    """Seconds until `done([probe(n) for n in nodes])`; BenchFailed on timeout or a dead node."""
    t0 = time.monotonic()
    last = None
    with ThreadPoolExecutor(32) as pool:
        while time.monotonic() - t0 < timeout:
            dead = [n.name for n in nodes if not n.alive()]
            if dead:
                raise BenchFailed(f"{what}: {dead} died; logs in {nodes[0].log_dir}")
            last = list(pool.map(probe, nodes))
            if done(last):
                return time.monotonic() - t0
            time.sleep(interval)
    raise BenchFailed(f"{what}: not done within {timeout:.0f} s (last {summary(last)})")


def summary(values) -> str:
    if not values:
        return "nothing"
    known = [v for v in values if v is not None]
    return f"{len(values) - len(known)} unanswered, min {min(known, default=None)}, max {max(known, default=None)}"


def spread(values: list[float]) -> dict:
    return {"min": round(min(values), 2), "mean": round(sum(values) / len(values), 2), "max": round(max(values), 2)}


def measure(args, pg: PgServer, db: str, cluster: Cluster, results: dict) -> None:
    n_nodes, total, timeout = args.nodes, args.partitions, args.timeout
    for i in range(1, n_nodes + 1):
        node = cluster.add(i, AZS[(i - 1) % len(AZS)])
        node.extra_env.update({"INKLESS__FETCH__CACHE_CAPACITY_BYTES": str(CACHE_BYTES),
                               "INKLESS__FETCH__CACHE_BLOCK_BYTES": str(BLOCK_BYTES),
                               "INKLESS__CLUSTER__LEASE_RENEW_INTERVAL_MS": str(args.lease_renew_ms),
                               "INKLESS__CLUSTER__LEASE_TTL_MS": str(args.lease_ttl_ms),
                               "INKLESS__CLUSTER__BALANCE": str(args.balance_interval_ms > 0).lower(),
                               "INKLESS__CLUSTER__BALANCE_INTERVAL_MS": str(max(args.balance_interval_ms, 100)),
                               "RUST_LOG": "warn"})
    nodes = list(cluster.nodes.values())
    t0 = time.monotonic()
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda n: n.start(), nodes))
    phase(results, "start", time.monotonic() - t0, f"{n_nodes} nodes launched until each listens")
    took = poll("converge", nodes, live_seen, lambda seen: all(s == n_nodes for s in seen), timeout)
    phase(results, "converge", time.monotonic() - t0, f"until every node lists all {n_nodes} as live "
          f"({took:.2f} s after the last one listened)")

    t0 = time.monotonic()
    create_topics(nodes[0].bootstrap, args.topics, total, timeout)
    poll("place", nodes, running, lambda c: None not in c and sum(c) == total, timeout)
    phase(results, "place", time.monotonic() - t0, f"{total} partitions in {args.topics} topics created until "
          f"the nodes run each once")
    balance(args, pg, db, results)

    idle(args, pg, db, nodes, results)

    victims = nodes[-args.kill:] if args.kill else []
    survivors = [n for n in nodes if n not in victims]
    crash(args, pg, db, victims, survivors, results)

    bootstrap = ",".join(n.bootstrap for n in survivors[:12])
    produced, fetched = fill(bootstrap, args.topics, total, timeout)
    phase(results, "produce_all", produced, f"one record to each of {total} partitions, all acknowledged")
    phase(results, "fetch_all", fetched, f"each of {total} partitions read from offset 0")
    mesh = mesh_connections(survivors)
    results["mesh_after_traffic"] = spread(mesh)
    print(f"{'mesh':<16} {max(mesh):9d}     connections per node at most after the traffic ({spread(mesh)}; "
          f"a full mesh: {len(survivors) - 1})", flush=True)


def top_statements(pg: PgServer, db: str, elapsed: float, n: int = 6) -> list[dict]:
    """The statements that touched the most buffers since the reset (pg_stat_statements)."""
    rows = psql(pg, db, "SELECT calls, shared_blks_hit + shared_blks_read, round(total_exec_time), "
                        "regexp_replace(left(query, 140), '\\s+', ' ', 'g') FROM pg_stat_statements "
                        f"ORDER BY shared_blks_hit + shared_blks_read DESC LIMIT {n}")
    out = []
    for line in rows.splitlines():
        calls, blocks, ms, query = line.split("|", 3)
        out.append({"calls_per_second": round(int(calls) / elapsed, 1),
                    "blocks_per_second": round(int(blocks) / elapsed),
                    "ms_per_second": round(float(ms) / elapsed, 1), "query": query})
    return out


def count_spread(pg: PgServer, db: str, n_nodes: int) -> tuple[float, int, int]:
    """(most partitions held by one node over the mean, the most, the fewest), from the store."""
    rows = psql(pg, db, "SELECT owner_node, count(*) FROM partitions WHERE owner_node >= 0 GROUP BY owner_node")
    counts = [int(line.split("|")[1]) for line in rows.splitlines() if "|" in line]
    counts += [0] * (n_nodes - len(counts))
    return max(counts) / (sum(counts) / n_nodes), max(counts), min(counts)


def balance(args, pg: PgServer, db: str, results: dict) -> None:
    """The spread hashing gave, then the balancer's work until the most loaded node holds at
    most 1.1 times the mean."""
    ratio, most, fewest = count_spread(pg, db, args.nodes)
    results["hashed_count_max_over_mean"] = round(ratio, 3)
    print(f"{'hashed':<16} {ratio:9.2f}     most partitions on a node over the mean ({most} most, {fewest} fewest, "
          f"mean {args.partitions / args.nodes:g})", flush=True)
    if args.balance_interval_ms <= 0:
        return
    t0 = time.monotonic()
    while ratio > 1.1:
        if time.monotonic() - t0 > args.timeout:
            raise BenchFailed(f"balance: still {ratio:.2f} after {args.timeout:.0f} s")
        time.sleep(1)
        ratio, most, fewest = count_spread(pg, db, args.nodes)
    pins = int(psql(pg, db, "SELECT count(*) FROM partition_pins WHERE by_balancer"))
    results["balanced_count_max_over_mean"] = round(ratio, 3)
    results["balancer_pins"] = pins
    phase(results, "balance", time.monotonic() - t0, f"until the most partitions on a node were {ratio:.2f} "
          f"times the mean ({most} most, {fewest} fewest; rounds every {args.balance_interval_ms / 1000:g} s); "
          f"{pins} balancer pins")


def crash(args, pg: PgServer, db: str, victims, survivors, results: dict) -> None:
    """kill -9 of the victims at once. Timed on the store's clock until the last of their
    partitions is claimed by a survivor (a survivor claims a partition as it starts its
    actor), watching the store rather than sweeping the metrics of hundreds of nodes, which
    takes seconds on this machine and loads it; then every survivor is asked what it runs."""
    total = args.partitions
    if not victims:
        return
    victim_ids = ",".join(str(v.node_id) for v in victims)
    unclaimed = f"SELECT count(*) FROM partitions WHERE owner_node IN ({victim_ids}, -1)"
    killed_ms = int(psql(pg, db, STORE_NOW_MS))
    t0 = time.monotonic()
    for v in victims:
        v.proc.send_signal(9)
    while int(psql(pg, db, unclaimed)):
        if time.monotonic() - t0 > args.timeout:
            raise BenchFailed(f"crash: partitions of the killed nodes unclaimed after {args.timeout:.0f} s")
        time.sleep(0.05)
    last_claim_ms = int(psql(pg, db, "SELECT max(epoch_changed_ms) FROM partitions"))
    phase(results, "crash", (last_claim_ms - killed_ms) / 1000,
          f"kill -9 of {len(victims)} nodes at once until the last of their partitions was claimed by one "
          f"of the other {len(survivors)} (store clock; lease TTL {args.lease_ttl_ms / 1000:g} s)")
    for v in victims:
        v.proc.wait(timeout=30)
    poll("crash_running", survivors, running, lambda c: None not in c and sum(c) == total, args.timeout, 0.1)
    phase(results, "crash_running", time.monotonic() - t0, f"kill -9 until a sweep of the survivors' metrics "
          f"found all {total} partitions running (an upper bound: the sweep starts after the claims)")


def idle(args, pg: PgServer, db: str, nodes, results: dict) -> None:
    """What the nodes and the metadata store do while nothing happens."""
    time.sleep(args.settle)
    ticks = os.sysconf("SC_CLK_TCK")
    before = {n.name: cpu_ticks(n.proc.pid) for n in nodes}
    psql(pg, db, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()")
    pg_before, tables_before, t0 = pg_counters(pg, db), table_reads(pg, db), time.monotonic()
    time.sleep(args.idle)
    elapsed = time.monotonic() - t0
    statements = top_statements(pg, db, elapsed)
    pg_after, tables_after = pg_counters(pg, db), table_reads(pg, db)
    by_table = {t: round((n - tables_before.get(t, 0)) / elapsed) for t, n in tables_after.items()}
    by_table = dict(sorted(((t, n) for t, n in by_table.items() if n), key=lambda x: -x[1])[:8])
    cpu = [100 * (cpu_ticks(n.proc.pid) - before[n.name]) / ticks / elapsed for n in nodes]
    rss = [rss_kib(n) / 1024 for n in nodes]
    mesh = mesh_connections(nodes)
    backends = int(psql(pg, db, f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}'"))
    rates = {k: round((pg_after[k] - pg_before[k]) / elapsed, 1) for k in PG_STATS}
    results["idle"] = {"cpu_percent": spread(cpu), "cpu_percent_total": round(sum(cpu), 1),
                       "rss_mib": spread(rss), "mesh_connections": spread(mesh), "pg_per_second": rates,
                       "pg_rows_read_per_second_by_table": by_table, "pg_connections": backends,
                       "pg_top_statements": statements}
    print(f"{'idle':<16} {elapsed:9.2f} s   CPU per node {spread(cpu)} % of a core (all: {sum(cpu):.0f} %); "
          f"RSS {spread(rss)} MiB", flush=True)
    print(f"{'mesh':<16} {max(mesh):9d}     connections per node at most ({spread(mesh)}; a full mesh: "
          f"{len(nodes) - 1})", flush=True)
    print(f"{'metadata store':<16} {rates['xact_commit']:9.0f} /s  transactions; rows read "
          f"{rates['tup_returned'] + rates['tup_fetched']:.0f}/s, written "
          f"{rates['tup_inserted'] + rates['tup_updated'] + rates['tup_deleted']:.0f}/s; {backends} connections; "
          f"rows read per table and second {by_table}",
          flush=True)
    for s in statements:
        print(f"{'  statement':<16} {s['calls_per_second']:9.1f} /s  {s['blocks_per_second']:.0f} blocks/s, "
              f"{s['ms_per_second']:.1f} ms/s: {s['query']}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=300)
    ap.add_argument("--partitions", type=int, default=3000)
    ap.add_argument("--topics", type=int, default=10)
    ap.add_argument("--kill", type=int, default=10, help="nodes killed at once (default 10)")
    ap.add_argument("--idle", type=float, default=30.0, help="seconds of the idle measurement (default 30)")
    ap.add_argument("--settle", type=float, default=70.0,
                    help="seconds between placement and the idle measurement (default 70)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds each phase may take (default 600)")
    ap.add_argument("--lease-renew-ms", type=int, default=1000, help="lease renewal interval (default 1000)")
    ap.add_argument("--lease-ttl-ms", type=int, default=3000, help="lease TTL (default 3000)")
    ap.add_argument("--balance-interval-ms", type=int, default=5000,
                    help="the balancer's round interval (default 5000; 0 turns the balancer off)")
    ap.add_argument("--out", help="directory for logs (default: a new temp dir, kept)")
    args = ap.parse_args()
    if not 0 <= args.kill < args.nodes:
        ap.error("--kill must leave at least one node")
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="inkless-many-nodes."))
    root.mkdir(parents=True, exist_ok=True)
    print(f"many_nodes: {args.nodes} nodes, {args.partitions} partitions; binary {os.environ['INKLESS_BIN']}; "
          f"logs in {root}", flush=True)
    results: dict = {"nodes": args.nodes, "partitions": args.partitions, "killed": args.kill,
                     "lease_renew_ms": args.lease_renew_ms, "lease_ttl_ms": args.lease_ttl_ms,
                     "balance_interval_ms": args.balance_interval_ms}
    pg = PgServer(max_connections=args.nodes * (POOL_SIZE + 1) + 50, statement_stats=True)
    moto = MotoServer(root / "moto.log")
    status = 0
    try:
        pg.start()
        pg.create_database("many")
        moto.start()
        moto.create_bucket("many")
        cluster = Cluster(root, pg.url("many") + f"&pool_size={POOL_SIZE}", moto.endpoint, "many")
        try:
            measure(args, pg, "many", cluster, results)
        finally:
            with ThreadPoolExecutor(32) as pool:
                list(pool.map(lambda n: n.kill9() if n.alive() else None, cluster.nodes.values()))
    except BenchFailed as e:
        print(f"FAILED: {e}", flush=True)
        status = 1
    finally:
        moto.stop()
        pg.stop()
    print("RESULT_JSON " + json.dumps(results), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
