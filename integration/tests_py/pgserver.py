"""A real PostgreSQL server for tests: initdb + pg_ctl from /usr/lib/postgresql/<v>/bin in a
temporary directory, on a free 127.0.0.1 port, run as the `postgres` OS user when we are
root (scripts/install-test-deps.sh installs it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import free_port, port_open


def _bin_dir() -> Path:
    found = []
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        for d in root.iterdir():
            b = d / "bin"
            if d.name.isdigit() and (b / "initdb").is_file() and (b / "pg_ctl").is_file():
                found.append((int(d.name), b))
    if not found:
        pytest.fail("PostgreSQL (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin: "
                    "run scripts/install-test-deps.sh", pytrace=False)
    return max(found)[1]


class PgServer:
    """The server lives in its own directory under /tmp (pytest's tmp dirs are private to
    root, and the server runs as `postgres`); `stop()` removes it."""

    def __init__(self, max_connections: int = 300, statement_stats: bool = False):
        """`statement_stats` loads pg_stat_statements (benchmarks: which statements read what)."""
        self.bin = _bin_dir()
        self.max_connections = max_connections
        self.statement_stats = statement_stats
        self.root = Path(tempfile.mkdtemp(prefix="inkless-pg-"))
        self.data = self.root / "pgdata"
        self.port = 0
        self.as_postgres = os.geteuid() == 0

    def _cmd(self, program: str, *args: str) -> list[str]:
        path = str(self.bin / program)
        return (["runuser", "-u", "postgres", "--", path] if self.as_postgres else [path]) + list(args)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        r = subprocess.run(self._cmd("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                                     "--encoding=UTF8", "--locale=C", "--no-sync"),
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.fail(f"initdb failed: {r.stdout}\n{r.stderr}", pytrace=False)
        log = self.root / "server.log"
        for attempt in range(3):
            self.port = free_port()
            opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                    f"-c synchronous_commit=off -c full_page_writes=off -c max_connections={self.max_connections}")
            if self.statement_stats:
                opts += " -c shared_preload_libraries=pg_stat_statements"
            r = subprocess.run(self._cmd("pg_ctl", "-D", str(self.data), "-l", str(log), "-w", "-t", "60",
                                         "-o", opts, "start"), capture_output=True, text=True)
            if r.returncode == 0:
                break
            if attempt == 2:
                pytest.fail(f"pg_ctl start failed: {r.stdout}\n{r.stderr}\n{log.read_text(errors='replace')}",
                            pytrace=False)
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", self.port):
            if time.monotonic() > deadline:
                pytest.fail("PostgreSQL does not accept connections", pytrace=False)
            time.sleep(0.1)

    def create_database(self, name: str) -> None:
        r = subprocess.run(self._cmd("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name),
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.fail(f"createdb {name} failed: {r.stderr}", pytrace=False)

    def url(self, database: str = "postgres", port: int | None = None) -> str:
        """The URL of `database`, optionally through another port (a proxy)."""
        return f"postgres://postgres@127.0.0.1:{port or self.port}/{database}?connect_timeout=2"

    def stop(self) -> None:
        if self.port:
            subprocess.run(self._cmd("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"),
                           capture_output=True)
            self.port = 0
        shutil.rmtree(self.root, ignore_errors=True)
