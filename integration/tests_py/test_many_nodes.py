"""The short version of scripts/bench/many_nodes.py: a dozen nodes sharing one PostgreSQL
converge, run every partition once, are balanced by the balancer (ADR 0022) to at most 1.1
times the mean number of partitions per node, lose three nodes at once and have the survivors serve
every partition again, and a record produced to every partition is read back. The numbers
(idle CPU, metadata-store load, mesh connections) are printed as a measurement."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXTERNAL, broker_binary, measurement

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench" / "many_nodes.py"
NODES, PARTITIONS, KILLED = 12, 600, 3


@pytest.mark.skipif(bool(EXTERNAL), reason="starts its own cluster")
def test_a_dozen_nodes_converge_and_survive_losing_three_at_once(tmp_path):
    env = dict(os.environ, INKLESS_BIN=str(broker_binary()))
    r = subprocess.run([sys.executable, str(SCRIPT), "--nodes", str(NODES), "--partitions", str(PARTITIONS),
                        "--kill", str(KILLED), "--idle", "10", "--settle", "0", "--timeout", "120",
                        "--balance-interval-ms", "1000", "--out", str(tmp_path)],
                       env=env, capture_output=True, text=True, timeout=900)
    lines = [line for line in r.stdout.splitlines() if line.startswith("RESULT_JSON ")]
    assert r.returncode == 0 and lines, f"exit {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    result = json.loads(lines[-1].split(" ", 1)[1])
    measurement(f"MANY_NODES {json.dumps(result)}")
    # Every phase ran: the survivors serve every partition (the script waits for it) and
    # franz-go read back the record it produced to each.
    for phase in ("converge", "place", "balance", "crash", "produce_all", "fetch_all"):
        assert phase in result, result
    assert result["balanced_count_max_over_mean"] <= 1.1, result
    idle = result["idle"]
    # Sessions are dialled on demand: none while nothing is sent, only to the peers talked to after.
    assert idle["mesh_connections"]["max"] < NODES - 1, idle
    assert result["mesh_after_traffic"]["max"] <= NODES - 1, result
    assert idle["pg_connections"] <= NODES * 3, idle
