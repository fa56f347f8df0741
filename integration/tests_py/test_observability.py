"""Operations: the alert rules pass promtool (syntax and unit tests), every alert links an
existing runbook, and every metric that an alert expression or a Grafana dashboard query
names is exported by a broker that produced and consumed a little."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import REPO, LocalBroker, free_port, need_tool, stop_and_check
from lifecycle import wait_until

PROMETHEUS = REPO / "configs" / "prometheus"
GRAFANA = REPO / "configs" / "grafana"
METRIC = re.compile(r"\binkless_[a-z0-9_]+\b")


def rule_files() -> list[Path]:
    files = sorted(PROMETHEUS.glob("*.yml"))
    assert files, f"no rule files in {PROMETHEUS}"
    return files


def test_alert_rules_pass_promtool():
    promtool = need_tool("promtool")
    for f in rule_files():
        r = subprocess.run([promtool, "check", "rules", str(f)], capture_output=True, text=True)
        assert r.returncode == 0, f"promtool check rules {f}:\n{r.stdout}{r.stderr}"
    tests = sorted((PROMETHEUS / "tests").glob("*.yml"))
    assert tests, "no promtool unit tests"
    r = subprocess.run([promtool, "test", "rules", *map(str, tests)], capture_output=True, text=True)
    assert r.returncode == 0, f"promtool test rules:\n{r.stdout}{r.stderr}"


def alerts() -> list[dict]:
    """Every alert rule, read through promtool's own parser (no YAML library needed)."""
    out = []
    for f in rule_files():
        text = f.read_text()
        for m in re.finditer(r"- alert: (\w+)\n(.*?)(?=\n      - alert:|\n  - name:|\Z)", text, re.S):
            out.append({"alert": m.group(1), "body": m.group(2), "file": f.name})
    assert out, "no alerts found"
    return out


def test_every_alert_links_an_existing_runbook():
    for a in alerts():
        m = re.search(r'runbook_url: "([^"]+)"', a["body"])
        assert m, f"{a['alert']} has no runbook_url"
        assert m.group(1) == f"docs/operations/{a['alert']}.md", m.group(1)
        assert (REPO / m.group(1)).is_file(), f"runbook {m.group(1)} missing"


def dashboard_queries() -> list[str]:
    queries = []

    def walk(panels):
        for p in panels:
            queries.extend(t["expr"] for t in p.get("targets", []) if t.get("expr"))
            walk(p.get("panels", []))

    for f in sorted(GRAFANA.glob("*.json")):
        d = json.loads(f.read_text())
        walk(d["panels"])
        for v in d.get("templating", {}).get("list", []):
            q = v.get("query")
            queries.append(q.get("query", "") if isinstance(q, dict) else str(q or ""))
    assert queries, "no dashboard queries"
    return queries


def exported_names(page: str) -> set[str]:
    """Names of the samples on a scrape, and of every declared family (a family without
    series yet, e.g. restarts before any restart, still counts as exported), with the
    series names a histogram family implies."""
    names = set()
    for line in page.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind == "histogram":
                names.update(name + s for s in ("_bucket", "_sum", "_count"))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, 1)[0])
    return names


def scrape(admin: str) -> str:
    with urllib.request.urlopen(f"http://{admin}/metrics", timeout=10) as r:
        assert r.headers["content-type"].startswith("text/plain"), r.headers["content-type"]
        return r.read().decode()


def produce_and_consume(bootstrap: str, topic: str, group: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    p = Producer({"bootstrap.servers": bootstrap})
    for i in range(200):
        p.produce(topic, key=str(i).encode(), value=b"x" * 100, partition=i % 2)
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got = 0
    try:
        while got < 100:
            m = c.poll(10)
            assert m is not None, f"no record after {got}"
            assert m.error() is None, m.error()
            got += 1
        c.commit(asynchronous=False)
    finally:
        c.close()


@pytest.fixture(scope="module")
def scraped(tmp_path_factory) -> tuple[str, str]:
    """A broker with an admin endpoint, after a little produce and consume: its scrape
    (once lag and the collector's counts are in) and its admin address."""
    tmp = tmp_path_factory.mktemp("observability")
    admin = f"127.0.0.1:{free_port()}"
    b = LocalBroker(tmp / "data", free_port(), tmp)
    b.extra_env = {
        "INKLESS__ADMIN__LISTEN": admin,
        "INKLESS__ADMIN__METRICS_REFRESH_INTERVAL_MS": "300",
        "INKLESS__STORAGE__COLLECT_INTERVAL_MS": "300",
    }
    b.start()
    try:
        group = f"g-{uuid.uuid4().hex[:8]}"
        produce_and_consume(b.bootstrap, f"obs-{uuid.uuid4().hex[:8]}", group)
        page = wait_until(
            "consumer lag and stored bytes are exported",
            lambda: (lambda p: p if f'group="{group}"' in p
                     and "\ninkless_metadata_live_object_bytes " in p else None)(scrape(admin)),
            timeout=30,
        )
        yield page, admin
    finally:
        stop_and_check(b)


def test_dashboards_and_alerts_name_only_exported_metrics(scraped):
    page, _ = scraped
    exported = exported_names(page)
    used = {}
    for q in dashboard_queries():
        for name in METRIC.findall(q):
            used.setdefault(name, f"dashboard query {q!r}")
    for a in alerts():
        expr = re.search(r"expr: (\|\n.*?|.*?)\n        (for|labels):", a["body"], re.S)
        assert expr, a
        for name in METRIC.findall(expr.group(1)):
            used.setdefault(name, f"alert {a['alert']}")
    missing = {n: where for n, where in used.items() if n not in exported}
    assert not missing, f"named but not exported: {missing}"
    assert len(used) >= 30, sorted(used)


def test_scrape_has_the_operators_families(scraped):
    page, admin = scraped
    produce = re.findall(
        r'^inkless_produce_stage_duration_seconds_count\{stage="(\w+)"\} (\d+)$', page, re.M)
    assert {s for s, n in produce if int(n) > 0} == {"buffer_wait", "object_put", "metadata_commit", "ack"}, produce
    assert re.search(r'^inkless_log_end_offset\{topic="obs-\w+",partition="[01]"\} 100$', page, re.M), page
    assert re.search(r'^inkless_consumergroup_lag\{group="g-\w+",topic="obs-\w+",partition="\d"\} \d+$', page, re.M)
    assert re.search(r'^inkless_object_store_requests_total\{operation="put"\} [1-9]', page, re.M)
    assert re.search(r'^inkless_metadata_store_request_duration_seconds_count\{operation="commit_appends"\} [1-9]', page, re.M)
    actors = re.search(r'^inkless_actors\{kind="partition"\} (\d+)$', page, re.M)
    assert actors and int(actors.group(1)) >= 2, page
    assert re.search(r"^inkless_connections \d+$", page, re.M)
    # OpenMetrics for scrapers that ask for it (exemplars later), Prometheus text otherwise.
    req = urllib.request.Request(f"http://{admin}/metrics",
                                 headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.headers["content-type"].startswith("application/openmetrics-text")
        assert r.read().decode().rstrip().endswith("# EOF")


def test_admin_routes_keep_their_answers(scraped):
    """The admin endpoint on axum answers as the hand-written one did: plain text health,
    JSON trees and cluster view, 404 for anything else, one request per connection."""
    _, admin = scraped
    with urllib.request.urlopen(f"http://{admin}/health", timeout=10) as r:
        assert r.read() == b"ok\n"
        assert r.headers["connection"] == "close"
    with urllib.request.urlopen(f"http://{admin}/actors", timeout=10) as r:
        assert r.headers["content-type"] == "application/json"
        tree = json.loads(r.read())
    assert tree[0]["parent"] is None and tree[0]["kind"] == "node-supervisor"
    assert any(a["kind"] == "partition" and a.get("topic", "").startswith("obs-") for a in tree)
    with urllib.request.urlopen(f"http://{admin}/cluster", timeout=10) as r:
        view = json.loads(r.read())
    assert view["me_live"] is True and view["live"] == [view["node_id"]]
    with urllib.request.urlopen(f"http://{admin}/cluster/actors", timeout=10) as r:
        trees = json.loads(r.read())
    assert list(trees) == [str(view["node_id"])] and isinstance(trees[str(view["node_id"])], list)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://{admin}/no-such-page", timeout=10)
    assert e.value.code == 404 and e.value.read() == b"not found\n"


def test_per_partition_series_stop_at_the_cap(tmp_path):
    """With admin.partition_metrics_max=2 a node exports two partitions' log series and
    counts the rest as dropped."""
    admin = f"127.0.0.1:{free_port()}"
    b = LocalBroker(tmp_path / "data", free_port(), tmp_path)
    b.extra_env = {"INKLESS__ADMIN__LISTEN": admin, "INKLESS__ADMIN__PARTITION_METRICS_MAX": "2"}
    b.start()
    try:
        topic = f"capped-{uuid.uuid4().hex[:8]}"
        client = AdminClient({"bootstrap.servers": b.bootstrap})
        client.create_topics([NewTopic(topic, 5, 1)])[topic].result(30)

        def capped():
            page = scrape(admin)
            running = re.search(r"^inkless_partitions (\d+)$", page, re.M)
            dropped = re.search(r'^inkless_metrics_series_dropped\{family="partition"\} (\d+)$', page, re.M)
            if running and int(running.group(1)) >= 5 and dropped:
                return page, int(running.group(1)), int(dropped.group(1))
            return None

        page, running, dropped = wait_until("the topic's partitions run", capped, timeout=30)
        assert len(re.findall(r"^inkless_log_end_offset\{", page, re.M)) == 2, page
        assert len(re.findall(r"^inkless_log_size_bytes\{", page, re.M)) == 2
        assert dropped == running - 2
    finally:
        stop_and_check(b)


DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
CONFIG_NAME = re.compile(
    r"`((?:node|kafka|storage|produce|fetch|retention|merge|compact|transactions|groups|admin"
    r"|cluster|log)\.[a-z0-9_.]+)`"
)


def test_documentation_links_resolve():
    """Every relative link of the README and docs/ names a file that exists."""
    broken = []
    for doc in DOCS:
        for target in LINK.findall(doc.read_text()):
            path = target.split("#", 1)[0]
            if not path or re.match(r"^[a-z]+:", path):
                continue
            if not (doc.parent / path).exists():
                broken.append(f"{doc.relative_to(REPO)}: {target}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_runbooks_name_only_existing_settings():
    """`section.key` settings the runbooks tell operators to change exist
    (configs/single-node.toml lists every key)."""
    import tomllib

    config = tomllib.loads((REPO / "configs" / "single-node.toml").read_text())
    unknown = []
    for doc in sorted((REPO / "docs" / "operations").glob("*.md")):
        for name in CONFIG_NAME.findall(doc.read_text()):
            node = config
            for part in name.split("."):
                if not isinstance(node, dict) or part not in node:
                    unknown.append(f"{doc.name}: {name}")
                    break
                node = node[part]
    assert not unknown, "settings that do not exist:\n" + "\n".join(unknown)
