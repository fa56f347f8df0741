"""Broker cost per fetch of a wide consumer, with and without incremental fetch sessions.

`measure()` starts one broker (its own data dir and admin endpoint), creates a topic of
PARTITIONS partitions and runs `fetchbench` (franz-go, ../clients/go/fetchbench) twice for
SECONDS each: once with fetch sessions, once with them disabled. For each run it reports
the Fetch requests the broker answered, the incremental ones among them, and the broker's
CPU time per fetch (utime + stime of the process, from /proc).

Run as a benchmark (prints the numbers):
    python3 integration/tests_py/fetch_sessions.py BINARY PARTITIONS SECONDS
The test suite runs a short version (test_fetch_sessions.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from conftest import GO_DIR, LocalBroker, free_port  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat; after the ")" they are the 12th and 13th.
    return (int(fields[11]) + int(fields[12])) / TICKS


def metric(text: str, name: str, labels: str = "") -> float:
    m = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def build_fetchbench(out_dir: Path) -> Path:
    out = out_dir / "fetchbench"
    r = subprocess.run(["go", "build", "-o", str(out), "./fetchbench"], cwd=GO_DIR,
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"go build of fetchbench failed (run scripts/install-test-deps.sh):\n{r.stderr}")
    return out


class Run:
    """What one fetchbench run cost the broker."""

    def __init__(self, sessions: bool, fetches: float, incremental: float, cpu: float,
                 cached_partitions: float, output: str):
        self.sessions = sessions
        self.fetches = fetches
        self.incremental = incremental
        self.cpu = cpu
        self.cached_partitions = cached_partitions
        self.output = output

    @property
    def cpu_us_per_fetch(self) -> float:
        return self.cpu / self.fetches * 1e6 if self.fetches else float("nan")

    def __str__(self) -> str:
        mode = "sessions   " if self.sessions else "no sessions"
        return (f"{mode}: {self.fetches:7.0f} fetches ({self.incremental:7.0f} incremental), "
                f"broker CPU {self.cpu:6.2f} s = {self.cpu_us_per_fetch:8.0f} us/fetch, "
                f"session partitions cached {self.cached_partitions:.0f}")


def run_once(broker: LocalBroker, admin: str, bench: Path, topic: str, partitions: int,
             seconds: int, sessions: bool) -> Run:
    def metrics() -> str:
        with urllib.request.urlopen(f"http://{admin}/metrics", timeout=10) as r:
            return r.read().decode()

    before = metrics()
    cpu0 = cpu_seconds(broker.proc.pid)
    r = subprocess.run([str(bench), broker.bootstrap, topic, str(partitions), str(seconds),
                        "sessions" if sessions else "nosessions"],
                       capture_output=True, text=True, timeout=seconds + 300)
    cpu = cpu_seconds(broker.proc.pid) - cpu0
    after = metrics()
    if r.returncode != 0:
        raise RuntimeError(f"fetchbench failed:\n{r.stdout}\n{r.stderr}")
    fetch = 'inkless_requests_total'
    return Run(
        sessions,
        metric(after, fetch, '{api="Fetch"}') - metric(before, fetch, '{api="Fetch"}'),
        metric(after, "inkless_fetch_incremental_requests_total")
        - metric(before, "inkless_fetch_incremental_requests_total"),
        cpu,
        metric(after, "inkless_fetch_session_partitions"),
        r.stdout.strip(),
    )


def measure(binary: Path | None, partitions: int, seconds: int, work: Path) -> list[Run]:
    """Runs fetchbench with and without sessions against a fresh broker."""
    if binary is not None:
        os.environ["INKLESS_BIN"] = str(binary)
    admin = f"127.0.0.1:{free_port()}"
    broker = LocalBroker(work / "data", free_port(), work, name="fetch-sessions")
    broker.extra_env["INKLESS__ADMIN__LISTEN"] = admin
    broker.start()
    try:
        bench = build_fetchbench(work)
        topic = f"wide-{partitions}"
        # The first run creates the topic; run it once untimed so both measured runs find
        # every partition running.
        run_once(broker, admin, bench, topic, partitions, 2, True)
        return [run_once(broker, admin, bench, topic, partitions, seconds, s) for s in (True, False)]
    finally:
        broker.stop()


def main() -> None:
    if len(sys.argv) != 4:
        sys.exit("usage: fetch_sessions.py BINARY PARTITIONS SECONDS")
    binary, partitions, seconds = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    with tempfile.TemporaryDirectory() as work:
        for run in measure(binary, partitions, seconds, Path(work)):
            print(run)


if __name__ == "__main__":
    main()
